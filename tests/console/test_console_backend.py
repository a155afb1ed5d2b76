"""The console's backend parts without a browser: the cookie session (flags, CSRF, idle timeout,
logout, throttle), the knowledge search route, daily insights and persona settings validation.

Runs on the admin tests' database (PostgreSQL when DH_TEST_DATABASE_URL is set, else SQLite)."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.admin.conftest import make_tenant

API = "/api/v1"


@pytest.fixture(scope="module", autouse=True)
def _db(tmp_path_factory):
    from tests.console.conftest import configure_admin_env

    with configure_admin_env(tmp_path_factory.mktemp("console-admin")):
        yield


@pytest.fixture
def client():
    from admin.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as c:
        yield c


@pytest.fixture
def tenant():
    return make_tenant()


def _login(client, t, role="operator"):
    r = client.post(f"{API}/console/login", data={"username": t.emails[role], "password": t.password})
    assert r.status_code == 200, r.text
    return r


def test_login_sets_httponly_strict_cookies_and_csrf_guards_writes(client, tenant):
    r = _login(client, tenant)
    cookies = {c.split("=", 1)[0]: c for c in r.headers.get_list("set-cookie")}
    assert "HttpOnly" in cookies["dh_session"] and "SameSite=strict" in cookies["dh_session"]
    assert "HttpOnly" not in cookies["dh_csrf"] and "SameSite=strict" in cookies["dh_csrf"]
    assert "Secure" not in cookies["dh_session"]  # plain HTTP here
    body = r.json()
    assert body["user"]["role"] == "operator" and body["csrf_token"] == client.cookies["dh_csrf"]
    # reads need no CSRF token; the cookie alone authenticates
    assert client.get(f"{API}/personas").status_code == 200
    # writes without the header, with a wrong one, or with a cookie-only copy are refused
    assert client.post(f"{API}/personas", json={"name": "p"}).status_code == 403
    assert client.post(f"{API}/personas", json={"name": "p"}, headers={"X-CSRF-Token": "x" * 64}).status_code == 403
    ok = client.post(f"{API}/personas", json={"name": "p"}, headers={"X-CSRF-Token": body["csrf_token"]})
    assert ok.status_code == 201, ok.text
    # a CSRF value is bound to its session: a planted matching cookie/header pair is useless
    client.cookies.set("dh_csrf", "a" * 64)
    assert client.post(f"{API}/personas", json={"name": "p"}, headers={"X-CSRF-Token": "a" * 64}).status_code == 403


def test_cross_site_writes_are_refused_even_without_cookies(client, tenant):
    assert client.post(f"{API}/personas", json={"name": "x"}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post(f"{API}/console/login", data={"username": tenant.emails["admin"], "password": tenant.password},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    r = _login(client, tenant)
    h = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert client.post(f"{API}/personas", json={"name": "x"}, headers={**h, "Origin": "https://evil.example"}).status_code == 403
    assert client.post(f"{API}/personas", json={"name": "x"}, headers={**h, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post(f"{API}/personas", json={"name": "x"}, headers={**h, "Origin": "http://testserver"}).status_code == 201
    # bearer tokens and API keys are not cookies: no CSRF token needed, other origins allowed (CORS decides)
    client.cookies.clear()
    assert client.post(f"{API}/personas", json={"name": "y"},
                       headers={**tenant.headers["operator"], "Origin": "https://app.example"}).status_code == 201


def test_secure_cookie_over_https():
    from admin.main import create_app

    t = make_tenant()
    with TestClient(create_app(), base_url="https://testserver") as c:
        r = c.post(f"{API}/console/login", data={"username": t.emails["viewer"], "password": t.password})
        assert r.status_code == 200
        assert all("Secure" in v for v in r.headers.get_list("set-cookie"))


def test_roles_are_enforced_for_cookie_sessions(client, tenant):
    r = _login(client, tenant, "viewer")
    h = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert client.get(f"{API}/console/session").json()["user"]["role"] == "viewer"
    assert client.post(f"{API}/personas", json={"name": "v"}, headers=h).status_code == 403
    assert client.get(f"{API}/audit/verify").json()["ok"] is True
    assert client.get(f"{API}/users").status_code == 403


def test_logout_revokes_the_session(client, tenant):
    r = _login(client, tenant)
    token = client.cookies["dh_session"]
    assert client.post(f"{API}/console/logout").status_code == 403  # logout is CSRF-checked too
    out = client.post(f"{API}/console/logout", headers={"X-CSRF-Token": r.json()["csrf_token"]})
    assert out.status_code == 204 and 'dh_session=""' in out.headers.get("set-cookie", "")
    client.cookies.clear()
    client.cookies.set("dh_session", token)
    assert client.get(f"{API}/console/session").status_code == 401
    log = client.get(f"{API}/audit", headers=tenant.headers["admin"]).json()
    assert [e["action"] for e in log if e["actor_id"] == tenant.users["operator"]][-2:] == ["login", "logout"]


def test_a_superuser_switches_the_console_to_another_organisation(client, tenant):
    su = make_tenant(superuser=True)  # its admin is a platform administrator
    theirs = client.post(f"{API}/personas", json={"name": "Theirs"}, headers=tenant.headers["admin"]).json()
    r = _login(client, su, "admin")
    assert r.json()["tenant"]["id"] == su.id and r.json()["is_superuser"] is True
    h = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert tenant.id in {t["id"] for t in client.get(f"{API}/tenants").json()}
    assert theirs["id"] not in {p["id"] for p in client.get(f"{API}/personas").json()}
    # a write like any other: CSRF-checked; an unknown organisation is a 404
    assert client.post(f"{API}/console/tenant", json={"tenant_id": tenant.id}).status_code == 403
    assert client.post(f"{API}/console/tenant", json={"tenant_id": str(uuid.uuid4())}, headers=h).status_code == 404
    out = client.post(f"{API}/console/tenant", json={"tenant_id": tenant.id}, headers=h)
    assert out.status_code == 200, out.text
    assert out.json()["tenant"]["id"] == tenant.id and out.json()["user"]["tenant_id"] == su.id
    cookie = next(c for c in out.headers.get_list("set-cookie") if c.startswith("dh_tenant="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    # every organisation-scoped route of this session now sees the chosen organisation
    assert client.get(f"{API}/console/session").json()["tenant"]["id"] == tenant.id
    assert client.get(f"{API}/tenants/current").json()["id"] == tenant.id
    assert theirs["id"] in {p["id"] for p in client.get(f"{API}/personas").json()}
    made = client.post(f"{API}/personas", json={"name": "Made by the platform"}, headers=h)
    assert made.status_code == 201
    assert made.json()["id"] in {p["id"] for p in client.get(f"{API}/personas", headers=tenant.headers["admin"]).json()}
    # audited in the organisation chosen
    log = client.get(f"{API}/audit", headers=tenant.headers["admin"]).json()
    switch = [e for e in log if e["action"] == "switch_tenant"]
    assert len(switch) == 1 and switch[0]["actor_id"] == su.users["admin"] and switch[0]["resource_id"] == tenant.id
    # bearer tokens are not affected: the same superuser's token acts on its own organisation
    assert client.get(f"{API}/tenants/current", headers=su.headers["admin"]).json()["id"] == su.id
    assert client.post(f"{API}/console/tenant", json={"tenant_id": tenant.id},
                       headers={**su.headers["admin"], "Origin": "http://testserver"}).status_code == 400
    # the choice is bound to this session: copied into another person's session it is ignored
    value = client.cookies["dh_tenant"]
    from admin.main import create_app

    other = make_tenant()
    with TestClient(create_app(), base_url="http://testserver") as c2:
        assert c2.post(f"{API}/console/login", data={"username": other.emails["admin"], "password": other.password}).status_code == 200
        c2.cookies.set("dh_tenant", value)
        assert c2.get(f"{API}/tenants/current").json()["id"] == other.id
        assert c2.get(f"{API}/console/session").json()["tenant"]["id"] == other.id
    # choosing one's own organisation ends it; so does a new sign-in
    back = client.post(f"{API}/console/tenant", json={"tenant_id": su.id}, headers=h)
    assert back.status_code == 200 and back.json()["tenant"]["id"] == su.id
    assert client.get(f"{API}/tenants/current").json()["id"] == su.id
    client.post(f"{API}/console/tenant", json={"tenant_id": tenant.id}, headers=h)
    assert client.get(f"{API}/tenants/current").json()["id"] == tenant.id
    again = _login(client, su, "admin")
    assert again.json()["tenant"]["id"] == su.id
    assert client.get(f"{API}/tenants/current").json()["id"] == su.id


def test_only_a_superuser_may_switch_the_organisation(client, tenant):
    other = make_tenant()
    mine = client.post(f"{API}/personas", json={"name": "Mine"}, headers=tenant.headers["admin"]).json()
    r = _login(client, tenant, "admin")
    h = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert r.json()["is_superuser"] is False and r.json()["tenant"]["id"] == tenant.id
    assert client.get(f"{API}/tenants").status_code == 403
    refused = client.post(f"{API}/console/tenant", json={"tenant_id": other.id}, headers=h)
    assert refused.status_code == 403 and "dh_tenant" not in (refused.headers.get("set-cookie") or "")
    assert client.get(f"{API}/tenants/current").json()["id"] == tenant.id
    assert [p["id"] for p in client.get(f"{API}/personas").json()] == [mine["id"]]


def _ready_avatar(tenant, name="Tess", status="ready") -> str:
    from admin.core.db import session_scope
    from admin.models import Avatar

    with session_scope() as db:
        a = Avatar(tenant_id=tenant.id, name=name, engine="simple", status=status, progress=1.0)
        db.add(a)
        db.flush()
        return a.id


def test_a_test_call_mints_a_callers_token_for_the_avatar(client, tenant):
    import json

    from livekit import api as lk

    from admin.core.security import room_prefix

    avatar_id = _ready_avatar(tenant)
    csrf = _login(client, tenant, "operator").json()["csrf_token"]
    url = f"{API}/console/test-call"
    assert client.post(url, json={"avatar_id": avatar_id}).status_code == 403  # CSRF needed, like every write
    assert client.post(url, json={"avatar_id": avatar_id}, headers={"X-CSRF-Token": "x" * 64}).status_code == 403
    r = client.post(url, json={"avatar_id": avatar_id}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["identity"].startswith("console-test-") and out["identity"][13:].isalpha()
    assert out["room"].startswith(room_prefix(tenant.id) + "-a" + avatar_id[:8])
    # a caller's token as POST /tokens/livekit mints it: this room, the agent dispatched with a ticket
    claims = lk.TokenVerifier("devkey", "secret").verify(out["token"])
    assert claims.video.room == out["room"] and claims.video.room_join and not claims.video.room_admin
    assert claims.identity == out["identity"]
    dispatch = claims.room_config.agents[0]
    meta = json.loads(dispatch.metadata)
    assert dispatch.agent_name == "dh-agent" and set(meta) == {"ticket"}
    cfg = client.get(f"{API}/agent/calls/{meta['ticket']}", headers=tenant.headers["agent"]).json()
    assert cfg["session_id"] == out["session_id"] and cfg["avatar"]["id"] == avatar_id
    # audited: the token as every token, and the test call itself
    log = client.get(f"{API}/audit", headers=tenant.headers["admin"]).json()
    mine = {e["action"]: e for e in log if e["actor_id"] == tenant.users["operator"]}
    assert mine["test_call"]["resource_id"] == avatar_id
    assert mine["test_call"]["changes"]["session_id"] == out["session_id"]
    assert mine["issue_token"]["changes"]["identity"] == out["identity"]
    # nobody else may pose as the console's test call
    asked = client.post(f"{API}/tokens/livekit", json={"avatar_id": avatar_id, "identity": "console-test-x"},
                        headers=tenant.headers["operator"])
    assert asked.status_code == 403
    # an admin may too (a bearer token needs no CSRF header)
    assert client.post(url, json={"avatar_id": avatar_id}, headers=tenant.headers["admin"]).status_code == 201


def test_a_test_call_is_refused_to_viewers_other_organisations_and_unready_avatars(client, tenant):
    avatar_id = _ready_avatar(tenant)
    pending = _ready_avatar(tenant, "Pending", status="pending")
    failed = _ready_avatar(tenant, "Broken", status="failed")
    other = _ready_avatar(make_tenant(), "Theirs")
    url = f"{API}/console/test-call"
    csrf = _login(client, tenant, "viewer").json()["csrf_token"]
    assert client.post(url, json={"avatar_id": avatar_id}, headers={"X-CSRF-Token": csrf}).status_code == 403
    assert client.post(url, json={"avatar_id": avatar_id}, headers=tenant.headers["viewer"]).status_code == 403
    csrf = _login(client, tenant, "operator").json()["csrf_token"]
    h = {"X-CSRF-Token": csrf}
    assert client.post(url, json={"avatar_id": other}, headers=h).status_code == 404  # another organisation's
    assert client.post(url, json={"avatar_id": str(uuid.uuid4())}, headers=h).status_code == 404
    for aid, state in ((pending, "pending"), (failed, "failed")):
        r = client.post(url, json={"avatar_id": aid}, headers=h)
        assert r.status_code == 409 and f"not ready yet ({state})" in r.json()["detail"], r.text
    client.cookies.clear()
    assert client.post(url, json={"avatar_id": avatar_id}).status_code == 401


def test_idle_timeout_slides_but_not_for_background_polls(client, tenant, monkeypatch):
    monkeypatch.setenv("ADMIN_CONSOLE_IDLE_MINUTES", "0.05")  # 3 s
    r = _login(client, tenant)
    assert r.json()["idle_timeout_seconds"] == 3
    for _ in range(3):  # activity keeps it alive past the first 3 s
        time.sleep(1.2)
        assert client.get(f"{API}/avatars").status_code == 200
    background = ({"X-Console-Background": "1"}, {"Accept": "text/event-stream"}, {"X-Console-Background": "1"})
    for headers in background:  # polling marked as background, and event streams (EventSource), do not
        time.sleep(1.2)
        code = client.get(f"{API}/avatars", headers=headers).status_code
    assert code == 401


def test_console_login_uses_the_failed_login_throttle(client, tenant, monkeypatch):
    monkeypatch.setenv("ADMIN_LOGIN_RATE_LIMIT", "3/60")
    from admin.core.config import get_settings

    get_settings.cache_clear()
    try:
        codes = [client.post(f"{API}/console/login", data={"username": tenant.emails["admin"], "password": "wrong password"}).status_code
                 for _ in range(4)]
        assert codes == [400, 400, 400, 429]
        right = client.post(f"{API}/console/login", data={"username": tenant.emails["admin"], "password": tenant.password})
        assert right.status_code == 429
    finally:
        get_settings.cache_clear()
    log = client.get(f"{API}/audit", headers=tenant.headers["admin"]).json()
    assert sum(e["action"] == "login_failed" for e in log) == 3


def test_persona_settings_errors_name_their_field(client, tenant):
    h = tenant.headers["operator"]
    p = client.post(f"{API}/personas", json={"name": "Ava"}, headers=h).json()
    bad = {"settings": {"tone": "x" * 400, "escalation": [{"reason": "", "keywords": {"any": [" "]}}],
                        "greeting": {"english!": "hi"}}}
    r = client.patch(f"{API}/personas/{p['id']}", json=bad, headers=h)
    assert r.status_code == 422
    locs = {".".join(map(str, e["loc"])) for e in r.json()["detail"]}
    assert {"body.settings.tone", "body.settings.escalation.0.reason", "body.settings.escalation.0.keywords",
            "body.settings.greeting"} <= locs
    good = {"settings": {"tone": "calm", "greeting": {"en": "Hello", "zh": "您好"}, "allowed_topics": ["cards", " "],
                         "escalation": [{"reason": "complaint", "keywords": {"any": ["complaint", "投诉"]}}], "custom": 1}}
    r = client.patch(f"{API}/personas/{p['id']}", json=good, headers=h)
    assert r.status_code == 200, r.text
    s = r.json()["settings"]
    assert s == {"tone": "calm", "greeting": {"en": "Hello", "zh": "您好"}, "allowed_topics": ["cards"],
                 "escalation": [{"reason": "complaint", "keywords": {"any": ["complaint", "投诉"]}, "examples": {}}],
                 "custom": 1}
    from dialogue.persona import Persona  # what the agent builds from it

    assert Persona.model_validate(s).escalation_rule("I want to file a complaint").reason == "complaint"


def test_persona_examples_are_checked_per_language_and_cleaned(client, tenant):
    h = tenant.headers["operator"]
    p = client.post(f"{API}/personas", json={"name": "Ava"}, headers=h).json()
    rule = {"reason": "complaint", "keywords": {"any": ["complaint"]}}
    bad = {"settings": {"escalation": [{**rule, "examples": {"en": ["x" * 301], "zh": ["好"] * 51}}],
                        "forbidden_topics": [{"name": "advice", "keywords": {"any": ["invest"]}, "examples": {"english!": ["a"]}}]}}
    r = client.patch(f"{API}/personas/{p['id']}", json=bad, headers=h)
    assert r.status_code == 422
    errors = {".".join(map(str, e["loc"])): e["msg"] for e in r.json()["detail"]}
    assert "300 characters" in errors["body.settings.escalation.0.examples.en.0"]
    assert "50 items" in errors["body.settings.escalation.0.examples.zh"]
    assert "not a language code" in errors["body.settings.forbidden_topics.0.examples"]
    good = {"settings": {"escalation": [{**rule, "examples": {"en": [" I want to complain ", "", "I want to complain", "this is a disgrace"],
                                                               "zh": [" "]}}]}}
    r = client.patch(f"{API}/personas/{p['id']}", json=good, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["escalation"][0]["examples"] == {"en": ["I want to complain", "this is a disgrace"]}


def test_knowledge_search_finds_an_uploaded_document(client, tenant):
    h = tenant.headers["operator"]
    kb = client.post(f"{API}/knowledge-bases", json={"name": "FAQ"}, headers=h).json()
    doc = b"# Hours\n\nThe branch on Harbor Street opens at nine and closes at five.\n\n# Cards\n\nA lost card is blocked at once by phone."
    r = client.post(f"{API}/knowledge-bases/{kb['id']}/documents", files={"file": ("faq.md", doc, "text/markdown")}, headers=h)
    assert r.status_code == 202 and client.get(f"{API}/documents/{r.json()['id']}", headers=h).json()["status"] == "ready"
    out = client.post(f"{API}/knowledge-bases/{kb['id']}/search", json={"query": "When does the Harbor Street branch open?"},
                      headers=tenant.headers["viewer"]).json()
    assert out["hits"] and "Harbor Street" in out["hits"][0]["text"] and out["hits"][0]["relevant"]
    nothing = client.post(f"{API}/knowledge-bases/{kb['id']}/search", json={"query": "zebra giraffe"}, headers=h).json()
    assert not any(hit["relevant"] for hit in nothing["hits"])
    assert client.post(f"{API}/knowledge-bases/{kb['id']}/search", json={"query": "x"},
                       headers=tenant.headers["worker"]).status_code == 403
    other = make_tenant()
    assert client.post(f"{API}/knowledge-bases/{kb['id']}/search", json={"query": "x"},
                       headers=other.headers["admin"]).status_code == 404


def test_insights_count_calls_per_day_and_latency_percentiles(client, tenant):
    events = []
    for day, lat in (("2026-03-01", [0.2, 0.4]), ("2026-03-01", [0.6]), ("2026-03-03", [1.0])):
        sid = str(uuid.uuid4())
        events.append({"event_id": str(uuid.uuid4()), "type": "session_start",
                       "payload": {"session_id": sid, "started_at": f"{day}T10:00:00Z"}})
        for i, v in enumerate(lat):
            events.append({"event_id": str(uuid.uuid4()), "type": "turn", "payload": {
                "session_id": sid, "seq": i, "speaker": "assistant", "text": "ok", "latency": {"llm_node_ttft": v}}})
        events.append({"event_id": str(uuid.uuid4()), "type": "session_end",
                       "payload": {"session_id": sid, "escalated": day == "2026-03-03"}})
    from admin.core.security import mint_session_grant

    # as the agent records a call: each event carries its call's session grant
    events = [{"grant": mint_session_grant(tenant.id, e["payload"]["session_id"], 3600), **e} for e in events]
    r = client.post(f"{API}/agent/events", json={"events": events}, headers=tenant.headers["agent"])
    assert r.status_code == 200 and r.json()["applied"] == len(events), r.text
    out = client.get(f"{API}/console/insights", params={"days": 4, "until": "2026-03-04T00:00:00Z"},
                     headers=tenant.headers["viewer"]).json()
    assert out["days"] == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert out["calls"] == [2, 0, 1, 0] and out["escalated"] == [0, 0, 1, 0]
    assert out["latency"]["llm_node_ttft"]["p50"] == [0.4, None, 1.0, None]
    assert out["latency"]["llm_node_ttft"]["p95"] == [0.6, None, 1.0, None]
    assert client.get(f"{API}/console/insights", headers=tenant.headers["agent"]).status_code == 403


def _record(client, tenant, events):
    from admin.core.security import mint_session_grant

    events = [{"grant": mint_session_grant(tenant.id, e["payload"]["session_id"], 3600), **e} for e in events]
    r = client.post(f"{API}/agent/events", json={"events": events}, headers=tenant.headers["agent"])
    assert r.status_code == 200 and r.json()["applied"] == len(events), r.text


def _call(started_at, turns, outcome=None, escalated=False):
    """Recorder events of one call: turns are (speaker, text) or (speaker, text, citations)."""
    sid = str(uuid.uuid4())
    ev = [{"event_id": str(uuid.uuid4()), "type": "session_start", "payload": {"session_id": sid, "started_at": started_at}}]
    for seq, (speaker, text, *cites) in enumerate(turns):
        ev.append({"event_id": str(uuid.uuid4()), "type": "turn", "payload": {
            "session_id": sid, "seq": seq, "speaker": speaker, "text": text, "citations": cites[0] if cites else []}})
    if outcome is not None:
        ev.append({"event_id": str(uuid.uuid4()), "type": "session_end",
                   "payload": {"session_id": sid, "outcome": outcome, "escalated": escalated}})
    return ev


def test_insights_rank_unanswered_questions_and_count_outcomes_per_day(client, tenant):
    from dialogue.templates import PHRASES

    no, still = PHRASES["no_answer"], PHRASES["still_no_answer"]
    cite = [{"source": "pets.md", "title": "Pets"}]
    # a persona's own wording of "no answer" counts too (Persona.phrases)
    own = "Sadly that is beyond what I know. Shall I get you a colleague?"
    r = client.post(f"{API}/personas", json={"name": "own words", "settings": {"phrases": {"no_answer": {"en": own}}}},
                    headers=tenant.headers["operator"])
    assert r.status_code == 201, r.text
    events = [
        *_call("2026-03-01T10:00:00Z", [
            ("assistant", "Hello, how can I help you?"),
            ("user", "When do you open on Sundays?"), ("assistant", no["en"]),
            ("user", "Can I bring my dog?"), ("assistant", no["en"], cite),  # it cited a passage: answered
            ("user", "Thanks."), ("assistant", "You're welcome."),
        ], outcome="escalated_handled", escalated=True),
        *_call("2026-03-02T09:00:00Z", [
            ("user", "when do you open on sundays"), ("assistant", still["en"] + " "),
            ("user", "Do you sell gold coins?"), ("assistant", "We open at nine."),  # a real answer, even uncited
            ("user", "Hello?"), ("user", "What is the IBAN fee?"), ("assistant", no["en"]),  # the last question counts
            ("user", "Where do I park?"), ("assistant", own),
        ], outcome="escalated_unanswered"),  # (no escalated flag: the outcome says it)
        *_call("2026-03-02T15:00:00Z", [
            ("user", "你们周日几点开门？"), ("assistant", no["zh"]),
            ("user", "  When do you OPEN on Sundays!! "), ("assistant", no["en"].upper()),
            ("user", "你们周日几点开门"), ("assistant", still["zh"]),
        ]),  # still going: no outcome
        *_call("2026-03-03T08:00:00Z", [("user", "Where do I park?"), ("assistant", no["en"])], outcome="completed"),
        # outside the window
        *_call("2026-02-20T10:00:00Z", [("user", "Where do I park?"), ("assistant", no["en"])], outcome="completed"),
        # the agent's reply still to come
        *_call("2026-03-03T09:00:00Z", [("user", "Where do I park?")]),
    ]
    _record(client, tenant, events)
    other = make_tenant()  # another organisation's unanswered questions are not ours
    _record(client, other, _call("2026-03-02T10:00:00Z", [("user", "Where do I park?"), ("assistant", no["en"])]))

    out = client.get(f"{API}/console/insights", params={"days": 4, "until": "2026-03-04T00:00:00Z"},
                     headers=tenant.headers["viewer"]).json()
    assert out["days"] == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert out["calls"] == [1, 2, 2, 0]
    assert out["outcomes"] == {"completed": [0, 0, 1, 0], "abandoned": [0, 0, 0, 0], "escalated": [0, 0, 0, 0],
                               "escalated_handled": [1, 0, 0, 0], "escalated_unanswered": [0, 1, 0, 0],
                               "failed": [0, 0, 0, 0], "open": [0, 1, 1, 0]}
    assert out["escalated"] == [1, 1, 0, 0]
    assert out["escalation_rate"] == [1.0, 0.5, 0.0, None]
    ranked = [(q["key"], q["count"], q["text"]) for q in out["unanswered"]]
    assert ranked == [
        ("when do you open on sundays", 3, "  When do you OPEN on Sundays!! "),  # the latest wording
        ("where do i park", 2, "Where do I park?"),
        ("你们周日几点开门", 2, "你们周日几点开门"),
        ("what is the iban fee", 1, "What is the IBAN fee?"),
    ]
    assert out["unanswered_total"] == 8
    assert out["unanswered"][0]["last_at"].startswith("2026-03-02T15:00")
    # a window without those calls has none
    empty = client.get(f"{API}/console/insights", params={"days": 2, "until": "2026-03-10T00:00:00Z"},
                       headers=tenant.headers["viewer"]).json()
    assert empty["unanswered"] == [] and empty["unanswered_total"] == 0 and empty["escalation_rate"] == [None, None]


def test_at_most_twenty_unanswered_questions(client, tenant):
    from dialogue.templates import PHRASES

    turns = []
    for n in range(25):
        for _ in range(1 + (n == 7)):  # question 7 asked twice: ranked first
            turns += [("user", f"Question number {n}?"), ("assistant", PHRASES["no_answer"]["en"])]
    _record(client, tenant, _call("2026-04-01T10:00:00Z", turns, outcome="completed"))
    out = client.get(f"{API}/console/insights", params={"days": 1, "until": "2026-04-01T23:00:00Z"},
                     headers=tenant.headers["viewer"]).json()
    assert len(out["unanswered"]) == 20 and out["unanswered_total"] == 26
    assert out["unanswered"][0] == {**out["unanswered"][0], "key": "question number 7", "count": 2}
    assert all(q["count"] == 1 for q in out["unanswered"][1:])


def test_handoff_history_is_closed_handoffs_paged_by_time(client, tenant):
    """GET /handoffs?state=closed (the console's history): handed back or nobody came, newest first,
    ``before`` pages back, ``transcript=false`` leaves the turns out, the taker's name is given."""
    from datetime import UTC, datetime, timedelta

    from admin.core.security import mint_session_grant

    start = datetime.now(UTC) - timedelta(hours=1)
    events, taken = [], ""
    for n, state in enumerate(["returned", "unanswered", "returned", "waiting"]):
        sid, at = str(uuid.uuid4()), (start + timedelta(minutes=n)).isoformat()
        for typ, payload in (("session_start", {"room": f"r{n}", "started_at": at}),
                             ("turn", {"seq": 0, "speaker": "user", "text": f"question {n}"}),
                             ("handoff", {"state": "waiting", "reason": f"reason {n}", "at": at})):
            events.append({"event_id": str(uuid.uuid4()), "type": typ, "payload": {"session_id": sid, **payload}})
        if n == 0:  # an operator takes this one, then hands it back
            taken = sid
        elif state != "waiting":
            events.append({"event_id": str(uuid.uuid4()), "type": "handoff", "payload": {"session_id": sid, "state": state}})

    def post(evs):
        evs = [{"grant": mint_session_grant(tenant.id, e["payload"]["session_id"], 3600), **e} for e in evs]
        assert client.post(f"{API}/agent/events", json={"events": evs}, headers=tenant.headers["agent"]).status_code == 200

    post(events)
    hid = next(h["id"] for h in client.get(f"{API}/handoffs", headers=tenant.headers["viewer"]).json()
               if h["room"] == "r0")
    assert client.post(f"{API}/handoffs/{hid}/accept", headers=tenant.headers["operator"]).status_code == 200
    post([{"event_id": str(uuid.uuid4()), "type": "handoff", "payload": {"session_id": taken, "state": "returned"}}])

    h = tenant.headers["viewer"]
    closed = client.get(f"{API}/handoffs", params={"state": "closed", "transcript": "false"}, headers=h).json()
    assert [(x["reason"], x["status"]) for x in closed] == [("reason 2", "returned"), ("reason 1", "unanswered"),
                                                          ("reason 0", "returned")]
    assert all(x["transcript"] == [] for x in closed)
    assert closed[2]["accepted_by_name"] == tenant.emails["operator"] and closed[0]["accepted_by_name"] is None
    older = client.get(f"{API}/handoffs", params={"state": "closed", "before": closed[0]["requested_at"], "limit": 1},
                       headers=h).json()
    assert [x["reason"] for x in older] == ["reason 1"]
    full = client.get(f"{API}/handoffs", params={"state": "closed"}, headers=h).json()
    assert full[0]["transcript"][0]["text"] == "question 2"
    assert client.get(f"{API}/handoffs", params={"state": "closed"}, headers=make_tenant().headers["viewer"]).json() == []


@pytest.fixture
def embedding_ingestor(monkeypatch):
    """Documents ingested as for a call (MiniLM embeddings, so the knowledge base gets an index)."""
    from admin.core.config import get_settings

    monkeypatch.setenv("ADMIN_KNOWLEDGE_INGESTOR", "admin.ingest:dialogue_ingestor")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_agents_answer_with_citations_from_the_calls_policy(client, tenant, embedding_ingestor):
    h, v = tenant.headers["operator"], tenant.headers["viewer"]
    kb = client.post(f"{API}/knowledge-bases", json={"name": "FAQ"}, headers=h).json()
    doc = b"# Hours\n\nThe branch on Harbor Street opens at nine and closes at five on weekdays."
    r = client.post(f"{API}/knowledge-bases/{kb['id']}/documents", files={"file": ("faq.md", doc, "text/markdown")}, headers=h)
    assert r.status_code == 202 and client.get(f"{API}/knowledge-bases/{kb['id']}", headers=h).json()["index_chunks"] > 0
    rule = {"reason": "complaint", "keywords": {"any": ["complaint"]}}
    with_examples = client.post(f"{API}/personas", json={"name": "Ava", "knowledge_base_id": kb["id"], "settings": {
        "escalation": [{**rule, "examples": {"en": ["this service is a disgrace"]}}]}}, headers=h).json()
    without = client.post(f"{API}/personas", json={"name": "Bo", "settings": {"escalation": [rule]}}, headers=h).json()

    def ask(question, persona=None, headers=v):
        return client.post(f"{API}/knowledge-bases/{kb['id']}/answer", json={"question": question, "persona_id": persona},
                           headers=headers)

    out = ask("When does the Harbor Street branch open?", with_examples["id"]).json()
    assert out["decision"] == "answer" and out["policy"] == "grounded-offline" and out["passages"] >= 1
    assert "nine" in out["answer"] and out["persona"] == {"id": with_examples["id"], "name": "Ava"}
    assert [c["source"] for c in out["citations"]] == ["faq.md"] and "Harbor Street" in out["citations"][0]["text"]
    # what the call says without an approved passage, in the caller's language
    out = ask("What does a mortgage cost?", with_examples["id"]).json()
    assert out["decision"] == "no_answer" and out["citations"] == [] and "approved information" in out["answer"]
    assert ask("抵押贷款多少钱？").json()["language"] == "zh"
    # a person asked for: the tool the call would run is listed (not run), for the default persona too
    out = ask("I want to talk to a real person").json()
    assert out["decision"] == "escalate" and [t["name"] for t in out["tool_calls"]] == ["transfer_to_human"]
    assert out["persona"]["id"] is None and client.get(f"{API}/handoffs", headers=v).json() == []
    # the persona's examples count by meaning: the same words escalate only with the example
    said = "Honestly, your service is disgraceful"
    assert ask(said, with_examples["id"]).json()["tool_calls"][0]["arguments"]["reason"] == "complaint"
    assert ask(said, without["id"]).json()["decision"] != "escalate"
    # roles and organisations
    assert ask("x", headers=tenant.headers["worker"]).status_code == 403
    other = make_tenant()
    assert ask("x", headers=other.headers["admin"]).status_code == 404
    other_persona = client.post(f"{API}/personas", json={"name": "theirs"}, headers=other.headers["operator"]).json()
    assert ask("x", other_persona["id"]).status_code == 404
    # the CSRF rule of every console write: a cookie session needs the token
    r = _login(client, tenant, "viewer")
    assert client.post(f"{API}/knowledge-bases/{kb['id']}/answer", json={"question": "x"}).status_code == 403
    ok = client.post(f"{API}/knowledge-bases/{kb['id']}/answer", json={"question": "When does the branch open?"},
                     headers={"X-CSRF-Token": r.json()["csrf_token"]})
    assert ok.status_code == 200 and ok.json()["decision"] == "answer"


def test_the_answer_route_keeps_the_event_loop_free(client, tenant, monkeypatch):
    """The policy runs in a worker thread: a slow answer does not hold up other requests."""
    import threading

    from admin.api.routes import console as console_routes

    release, started = threading.Event(), threading.Event()
    real = console_routes.agent_answer

    def slow(*a, **kw):
        started.set()
        release.wait(10)
        return real(*a, **kw)

    monkeypatch.setattr(console_routes, "agent_answer", slow)
    kb = client.post(f"{API}/knowledge-bases", json={"name": "empty"}, headers=tenant.headers["operator"]).json()
    result = {}
    th = threading.Thread(target=lambda: result.update(r=client.post(
        f"{API}/knowledge-bases/{kb['id']}/answer", json={"question": "Are you open on Sunday?"}, headers=tenant.headers["viewer"])))
    th.start()
    assert started.wait(10)
    assert client.get("/healthz").status_code == 200  # answered while the answer is being worked out
    release.set()
    th.join(20)
    out = result["r"].json()
    assert result["r"].status_code == 200 and out["passages"] == 0
    # (dialogue.load_policy replaces an empty index by the deployment's default knowledge, in a call too: said)
    assert out["decision"] == "no_answer" or "default knowledge" in out["note"]
