"""Item 2: calls of every tenant were recorded in the tenant whose agent key the agent holds.

Now each call resolves (its token names an opaque ticket) to a signed ``session_grant`` (tenant + session) that the agent's
recorder sends with every event; the admin records an event only in the tenant the grant names,
and refuses events with no grant, a forged one, or one for another session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

from .conftest import API, call_token, dispatch_metadata, make_avatar, resolved, serve


def _events(sid: str, grant: str | None, text: str = "hello") -> list[dict]:
    evs = [{"event_id": str(uuid.uuid4()), "type": "session_start", "payload": {"session_id": sid, "room": "r"}},
           {"event_id": str(uuid.uuid4()), "type": "turn", "payload": {"session_id": sid, "speaker": "user",
                                                                        "text": text}}]
    return [{**e, "grant": grant} if grant else e for e in evs]


def _post(client, headers, events):  # noqa: ANN001
    r = client.post(f"{API}/agent/events", json={"events": events}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _stored(sid: str):
    from admin.core.db import session_scope
    from admin.models import CallSession

    with session_scope() as db:
        s = db.get(CallSession, sid)
        return None if s is None else s.tenant_id


def test_session_of_tenant_b_posted_with_tenant_a_key_does_not_land_in_a(client, tenant, other_tenant):
    a, b = tenant, other_tenant
    b_call = call_token(client, b, make_avatar(client, b)["id"])
    sid = b_call["session_id"]
    # the attack of the report: B's session id, A's agent key, no grant
    assert _post(client, a.headers["agent"], _events(sid, None)) == {"applied": 0, "duplicates": 0}
    assert _stored(sid) is None
    # A's own grant (for A's call) does not open B's session either
    a_meta = resolved(client, a, call_token(client, a, make_avatar(client, a)["id"])["token"])
    assert _post(client, a.headers["agent"], _events(sid, a_meta["session_grant"]))["applied"] == 0
    assert _stored(sid) is None
    assert client.get(f"{API}/sessions", headers=a.headers["viewer"]).json()["total"] == 0
    # with B's grant the call is recorded where it belongs: in B, whoever's agent key carried it
    # A's agent key cannot even resolve B's call; B's (or the deployment's platform key) can
    ticket = dispatch_metadata(b_call["token"])["ticket"]
    assert client.get(f"{API}/agent/calls/{ticket}", headers=a.headers["agent"]).status_code == 404
    b_meta = resolved(client, a, b_call["token"], role="platform-agent")  # one agent serves every organisation
    assert _post(client, a.headers["agent"], _events(sid, b_meta["session_grant"]))["applied"] == 2
    assert _stored(sid) == b.id
    assert client.get(f"{API}/sessions/{sid}", headers=b.headers["viewer"]).status_code == 200
    assert client.get(f"{API}/sessions/{sid}", headers=a.headers["viewer"]).status_code == 404


def _forge(grant: str, **claims) -> str:
    prefix, body, mac = grant.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(claims)
    new_body = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{prefix}.{new_body}.{mac}"


def test_forged_expired_or_resigned_grants_are_refused(client, tenant, other_tenant, settings_override):
    a, b = tenant, other_tenant
    a_meta = resolved(client, a, call_token(client, a, make_avatar(client, a)["id"])["token"])
    sid = a_meta["session_id"]
    grant = a_meta["session_grant"]
    # the tenant swapped inside the grant (the signature no longer matches)
    assert _post(client, a.headers["agent"], _events(sid, _forge(grant, t=b.id)))["applied"] == 0
    # re-signed with a guessed key (the shipped default)
    prefix, body, _ = _forge(grant, t=b.id).split(".")
    guess = hmac.new(b"change-me-in-production", b"session-grant", hashlib.sha256).digest()
    guessed = base64.urlsafe_b64encode(hmac.new(guess, f"{prefix}.{body}".encode(), hashlib.sha256).digest())
    settings_override(secret_key="a-real-deployment-secret-" + "x" * 20)
    assert _post(client, a.headers["agent"], _events(sid, f"{prefix}.{body}.{guessed.rstrip(b'=').decode()}"))[
        "applied"] == 0
    assert _stored(sid) is None
    # expired
    from admin.core.security import mint_session_grant

    old = mint_session_grant(a.id, sid, -1)
    assert _post(client, a.headers["agent"], _events(sid, old))["applied"] == 0
    assert _stored(sid) is None
    fresh = mint_session_grant(a.id, sid, 60)
    assert _post(client, a.headers["agent"], _events(sid, fresh))["applied"] == 2
    assert _stored(sid) == a.id


def test_one_agent_process_records_each_tenants_call_in_its_tenant(app, tenant, other_tenant, tmp_path, monkeypatch):
    """One recorder per process: the first call used to decide for all. Two calls of two tenants
    through the same agent process (tenant A's key) land in their own tenants."""
    import httpx

    import agent.recorder as recorder_mod
    from agent.settings import AgentSettings
    from agent.worker import get_recorder

    monkeypatch.setattr(recorder_mod, "_process_recorder", None)
    a, b = tenant, other_tenant
    with serve(app) as url:
        metas = []
        for t in (a, b):
            av = httpx.post(f"{url}{API}/avatars", json={"name": "X", "engine": "simple"},
                            headers=t.headers["operator"]).json()
            tok = httpx.post(f"{url}{API}/tokens/livekit", json={"avatar_id": av["id"]}, headers=t.headers["operator"])
            metas.append(tok.json()["token"])
        monkeypatch.setenv("DH_ADMIN_URL", url)
        monkeypatch.setenv("DH_ADMIN_API_KEY", a.headers["platform-agent"]["X-API-Key"])  # the deployment's key
        monkeypatch.setenv("AGENT_SPOOL_DIR", str(tmp_path))
        settings = AgentSettings()
        # the worker's own path: the ticket in each token resolved with the process's one key
        from agent.call_config import resolve_call

        cfgs = [asyncio.run(resolve_call(dispatch_metadata(tok), admin_url=url, api_key=settings.admin_api_key,
                                         cache_dir=tmp_path / "calls")) for tok in metas]
        metas = [{**c.recorder_meta(), "avatar_id": c.avatar["id"]} for c in cfgs]
        recs = [get_recorder(settings, m) for m in metas]
        assert recs[0] is recs[1]  # still one per process
        for rec, meta in zip(recs, metas):
            sid = rec.start_session(session_id=meta["session_id"], avatar_id=meta["avatar_id"], room="r")
            rec.add_turn(sid, "user", f"call of {meta['avatar_id']}")
            rec.end_session(sid)
        deadline = time.monotonic() + 15
        while recs[0].pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recs[0].close(timeout=5)
    assert _stored(metas[0]["session_id"]) == a.id
    assert _stored(metas[1]["session_id"]) == b.id
