"""The console in real Chromium against the real admin server (PostgreSQL when configured):
sign-in per role, avatars from a portrait, personas with field errors, a viewer who cannot edit,
CSRF, knowledge that becomes searchable, sessions with transcript and waterfall, charts (outcomes
per day, unanswered questions), the live handoff queue (server-sent events, accept), a test call from
the avatars page (the widget on /test-call.html joining a real livekit-server), audit, users and keys,
the Chinese UI. Each test fails on any error in the browser console.

Screenshots go to out/console/*.png (also: python -m tests.console.screenshots)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

API = "/api/v1"


def _png(w=512, h=512, color=(200, 160, 140)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (w, h), color)
    for x in range(w // 4, 3 * w // 4):  # some structure, so it is not a flat square
        for y in range(h // 3, h // 3 + 8):
            img.putpixel((x, y), (90, 60, 50))
    img.save(buf, format="PNG")
    return buf.getvalue()


def post_events(server, tenant, events) -> None:
    """Record events as the agent's recorder does: each carries its call's session grant."""
    from admin.core.security import mint_session_grant

    events = [{"grant": mint_session_grant(tenant.id, e["payload"]["session_id"], 3600), **e} for e in events]
    r = httpx.post(f"{server.url}{API}/agent/events", json={"events": events}, headers=tenant.headers["agent"], timeout=30)
    assert r.status_code == 200 and r.json()["applied"] == len(events), r.text


def call_events(started_at: str, turns, outcome: str | None = None, room: str | None = None) -> tuple[str, list[dict]]:
    """One call's events: turns are (speaker, text) or (speaker, text, citations); no outcome: still going."""
    sid = str(uuid.uuid4())
    ev = [{"event_id": str(uuid.uuid4()), "type": "session_start", "payload": {
        "session_id": sid, "room": room or f"room-s{sid[:8]}", "started_at": started_at}}]
    for seq, (speaker, text, *cites) in enumerate(turns):
        ev.append({"event_id": str(uuid.uuid4()), "type": "turn", "payload": {
            "session_id": sid, "seq": seq, "speaker": speaker, "text": text, "language": "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en",
            "citations": cites[0] if cites else []}})
    if outcome:
        ev.append({"event_id": str(uuid.uuid4()), "type": "session_end", "payload": {
            "session_id": sid, "outcome": outcome, "escalated": outcome.startswith("escalated")}})
    return sid, ev


@pytest.fixture(scope="module")
def seeded(server, tenant):
    """Three calls recorded through the agent's event route (as the agent's recorder does)."""
    from datetime import UTC, datetime, timedelta

    today = datetime.now(UTC).date()
    d2, d1 = (today - timedelta(days=2)).isoformat(), (today - timedelta(days=1)).isoformat()
    sids = []
    events = []
    for n, (day, outcome) in enumerate(((d2, "completed"), (d1, "completed"), (d1, "escalated"))):
        sid = str(uuid.uuid4())
        sids.append(sid)
        events.append({"event_id": str(uuid.uuid4()), "type": "session_start", "payload": {
            "session_id": sid, "room": f"room-{n}-s{sid[:6]}", "caller_identity": f"caller-{n}", "started_at": f"{day}T09:00:00Z"}})
        turns = [
            ("user", "Hi, my card 4111 1111 1111 1111 was stolen, what now?",
             {"end_of_turn_delay": 0.45, "transcription_delay": 0.21 + n / 100}, []),
            ("assistant", "I am sorry. Call the card line and the card is blocked at once.",
             {"llm_node_ttft": 0.52 + n / 10, "tts_node_ttfb": 0.18, "e2e_latency": 1.4 + n / 10},
             [{"source": "cards.md", "title": "Lost cards", "chunk_id": "c3", "score": 0.03}]),
            ("user", "Thanks, and when do you open?", {"end_of_turn_delay": 0.5, "transcription_delay": 0.2}, []),
            ("assistant", "We open at nine.", {"llm_node_ttft": 0.4, "tts_node_ttfb": 0.2, "e2e_latency": 1.2},
             [{"source": "hours.md", "title": "Opening hours"}]),
        ]
        for seq, (speaker, text, lat, cites) in enumerate(turns):
            events.append({"event_id": str(uuid.uuid4()), "type": "turn", "payload": {
                "session_id": sid, "seq": seq, "speaker": speaker, "text": text, "language": "en", "latency": lat,
                "citations": cites, "tool_calls": [{"name": "transfer_to_human", "arguments": {
                    "reason": "caller asked for a person", "summary": "stolen card 4111 1111 1111 1111"}}]
                if outcome == "escalated" and seq == 0 else []}})
        events.append({"event_id": str(uuid.uuid4()), "type": "session_end", "payload": {
            "session_id": sid, "outcome": outcome, "escalated": outcome == "escalated",
            "escalation_reason": "caller asked for a person" if outcome == "escalated" else None,
            "ended_at": f"{day}T09:03:30Z"}})
    post_events(server, tenant, events)
    return sids


NAV = {"admin": {"Avatars", "Personas", "Knowledge", "Sessions", "Handoffs", "Insights", "Audit log", "Users & keys"},
       "operator": {"Avatars", "Personas", "Knowledge", "Sessions", "Handoffs", "Insights"},
       "viewer": {"Avatars", "Personas", "Knowledge", "Sessions", "Handoffs", "Insights", "Audit log"}}


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_sign_in_as_each_role_shows_its_navigation_and_sign_out_ends_the_session(console, tenant, role):
    page = console.page
    console.open()
    page.get_by_role("heading", name="dh-agent console").wait_for()
    # keyboard only: the e-mail field has focus, Tab to the password, Enter submits
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(tenant.emails[role])
    page.keyboard.press("Tab")
    page.keyboard.type(tenant.password)
    if role == "admin":
        console.shot("01-sign-in")
    page.keyboard.press("Enter")
    page.get_by_test_id("whoami").wait_for()
    assert tenant.emails[role] in page.get_by_test_id("whoami").inner_text()
    links = set(page.locator("header nav a").all_inner_texts())
    assert links == NAV[role]
    assert page.get_by_test_id("tenant-switch").count() == 0  # platform administrators only
    cookies = {c["name"]: c for c in console.context.cookies()}
    assert cookies["dh_session"]["httpOnly"] and cookies["dh_session"]["sameSite"] == "Strict"
    assert not cookies["dh_csrf"]["httpOnly"]
    assert page.evaluate("document.cookie").count("dh_session") == 0  # scripts cannot read the session
    token = cookies["dh_session"]["value"]
    page.get_by_test_id("sign-out").click()
    page.get_by_test_id("signin-notice").wait_for()
    assert "signed out" in page.get_by_test_id("signin-notice").inner_text()
    r = httpx.get(f"{console.server.url}{API}/console/session", cookies={"dh_session": token})
    assert r.status_code == 401  # the token was revoked, not just forgotten by the browser


def test_wrong_password_is_refused_with_a_message(console, tenant):
    console.allowed.append("status of 400")
    console.open()
    console.page.get_by_label("E-mail").fill(tenant.emails["viewer"])
    console.page.get_by_label("Password").fill("not the password")
    console.page.get_by_role("button", name="Sign in").click()
    err = console.page.get_by_test_id("signin-error")
    err.wait_for()
    assert err.inner_text() == "Wrong e-mail or password."


def test_operator_uploads_a_portrait_and_sees_the_avatar_become_ready(console, tenant):
    page = console.page
    console.sign_in(tenant.emails["operator"], tenant.password)
    page.get_by_label("Name", exact=True).fill("Mia")
    page.get_by_label("Engine").select_option("simple")
    page.get_by_label("Voice").select_option("piper/en_US-joe-medium.onnx")  # from the deployment's voices
    page.get_by_role("button", name="Create").click()
    card = page.locator("article.avatar", has_text="Mia")
    card.wait_for()
    assert card.locator("[data-status]").get_attribute("data-status") == "pending"
    assert "piper/en_US-joe-medium.onnx" in card.inner_text()
    card.get_by_test_id("portrait-input").set_input_files({"name": "mia.png", "mimeType": "image/png", "buffer": _png()})
    page.locator("article.avatar", has_text="Mia").locator('[data-status="ready"]').wait_for(timeout=60_000)
    card = page.locator("article.avatar", has_text="Mia")
    img = card.locator("img.portrait")
    img.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    avatar_id = card.get_attribute("data-avatar-id")
    got = httpx.get(f"{console.server.url}{API}/avatars/{avatar_id}", headers=tenant.headers["viewer"]).json()
    assert got["status"] == "ready" and got["prep_metadata"]["engine"] == "simple"
    # the preview clip of the prepared face loads and plays in the browser
    video = card.get_by_test_id("avatar-preview")
    video.wait_for()
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 2 && v.videoWidth > 0", arg=video.element_handle(),
                           timeout=20_000)
    console.shot("02-avatars")


FACE_VENV = Path.home() / ".cache" / "dh-agent" / "venv-face" / "bin" / "python"


@pytest.mark.skipif(not FACE_VENV.exists(), reason="the portrait engine's face tools are not set up (make face)")
def test_a_portrait_without_a_face_shows_the_engines_sentence(console, tenant):
    page = console.page
    console.sign_in(tenant.emails["operator"], tenant.password)
    page.get_by_label("Name", exact=True).fill("Blank")
    page.get_by_label("Engine").select_option("portrait")
    page.get_by_role("button", name="Create").click()
    card = page.locator("article.avatar", has_text="Blank")
    card.get_by_test_id("portrait-input").set_input_files({"name": "wall.png", "mimeType": "image/png", "buffer": _png(color=(120, 130, 140))})
    failed = page.locator("article.avatar", has_text="Blank").locator('[data-status="failed"]')
    failed.wait_for(timeout=120_000)
    detail = page.locator("article.avatar", has_text="Blank").get_by_test_id("status-detail").inner_text()
    assert detail.startswith("no face was found") and detail.count(".") <= 1
    console.shot("03-avatar-no-face")


def test_persona_errors_appear_next_to_their_field_then_save(console, tenant):
    page = console.page
    console.sign_in(tenant.emails["operator"], tenant.password)
    console.go("#/personas")
    page.get_by_label("Name", exact=True).fill("Bank assistant")
    page.get_by_role("button", name="Create").click()
    page.get_by_role("heading", name="Bank assistant").wait_for()
    console.allowed.append("status of 422")
    page.get_by_label("Greeting (English)").fill("Hello, how can I help?")
    page.get_by_label("Greeting (Chinese)").fill("您好，请问有什么可以帮您？")
    page.get_by_label("Tone").fill("warm and brief")
    page.get_by_test_id("add-rule").click()
    page.get_by_role("button", name="Save").click()  # the new rule has no reason and no words
    reason_err = page.locator('[data-error-for="settings.escalation.0.reason"]')
    reason_err.wait_for()
    assert "at least 1 character" in reason_err.inner_text()
    assert "trigger word" in page.locator('[data-error-for="settings.escalation.0.keywords"]').inner_text()
    reason = page.locator('[data-field="settings.escalation.0.reason"]')
    assert reason.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.dataset.field") == "settings.escalation.0.reason"
    console.shot("04-persona-errors")
    reason.fill("caller wants a person")
    page.locator('[data-field="settings.escalation.0.keywords"]').fill("agent, human, 人工")
    page.get_by_role("button", name="Save").click()
    page.get_by_test_id("saved").wait_for()
    assert reason_err.inner_text() == ""
    pid = page.evaluate("location.hash").rsplit("/", 1)[1]
    p = httpx.get(f"{console.server.url}{API}/personas/{pid}", headers=tenant.headers["viewer"]).json()
    assert p["settings"]["escalation"] == [{"reason": "caller wants a person", "keywords": {"any": ["agent", "human", "人工"]},
                                            "examples": {}}]
    assert p["settings"]["greeting"]["zh"].startswith("您好") and p["greeting"] == "Hello, how can I help?"
    console.shot("05-persona")
    # examples (what a caller might say, matched by meaning): one phrase per line per language, with
    # their errors next to the field; a language the form has no field for is kept as it is
    rule = {**p["settings"]["escalation"][0], "examples": {"de": ["ich will einen Menschen sprechen"]}}
    r = httpx.patch(f"{console.server.url}{API}/personas/{pid}", json={"settings": {**p["settings"], "escalation": [rule]}},
                    headers=tenant.headers["operator"])
    assert r.status_code == 200, r.text
    page.reload()
    en = page.get_by_label("What a caller might say (English)")
    en.fill("let me talk to someone real\n\n" + "far too long " * 30)
    page.get_by_label("What a caller might say (Chinese)").fill("我要找真人")
    page.get_by_role("button", name="Save").click()
    ex_err = page.locator('[data-error-for="settings.escalation.0.examples.en"]')
    ex_err.wait_for()
    assert "at most 300 characters" in ex_err.inner_text()
    assert en.get_attribute("aria-invalid") == "true" and page.evaluate("document.activeElement.dataset.field") == \
        "settings.escalation.0.examples.en"
    en.fill("let me talk to someone real\n  \nI need a human being")
    page.get_by_label("Tone").fill("calm")
    page.get_by_role("button", name="Save").click()
    page.get_by_test_id("saved").wait_for()
    assert ex_err.inner_text() == "" and en.get_attribute("aria-invalid") is None
    s = httpx.get(f"{console.server.url}{API}/personas/{pid}", headers=tenant.headers["viewer"]).json()["settings"]
    assert s["tone"] == "calm"
    assert s["escalation"][0]["examples"] == {"de": ["ich will einen Menschen sprechen"],
                                              "en": ["let me talk to someone real", "I need a human being"], "zh": ["我要找真人"]}
    page.reload()
    assert en.input_value() == "let me talk to someone real\nI need a human being"


def test_viewer_sees_no_edit_controls_and_the_api_refuses_their_writes(console, tenant):
    page = console.page
    h = tenant.headers["operator"]
    pid = httpx.post(f"{console.server.url}{API}/personas", json={"name": "Read-only test"}, headers=h).json()["id"]
    console.sign_in(tenant.emails["viewer"], tenant.password)
    page.locator("article.avatar").first.wait_for()
    assert page.get_by_test_id("portrait-input").count() == 0
    assert page.get_by_role("button", name="Create").count() == 0
    assert page.get_by_role("button", name="Delete").count() == 0
    assert page.get_by_test_id("test-call").count() == 0  # a test call is for admins and operators
    console.go(f"#/personas/{pid}")
    page.get_by_test_id("read-only").wait_for()
    assert page.get_by_role("button", name="Save").count() == 0
    assert page.get_by_label("Name", exact=True).is_disabled()
    console.shot("06-persona-viewer")
    console.allowed.append("status of 403")
    status = page.evaluate("""async () => {
        const csrf = document.cookie.match(/dh_csrf=([^;]+)/)[1];
        const r = await fetch('/api/v1/personas', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                                                   body: JSON.stringify({name: 'by a viewer'})});
        return [r.status, (await r.json()).detail];
    }""")
    assert status[0] == 403 and "viewer" in status[1]


class _Attacker(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        pass


def test_forged_cross_site_post_is_refused(console, tenant):
    page = console.page
    console.sign_in(tenant.emails["operator"], tenant.password)
    # Another site's page (localhost is another site than 127.0.0.1) posts a persona as a JSON-looking form.
    target = f"{console.server.url}{API}/personas"
    _Attacker.page = (f'<form id="f" method="POST" action="{target}" enctype="text/plain">'
                      '<input name=\'{"name":"forged","x":"\' value=\'"}\'></form>'
                      '<script>document.getElementById("f").submit()</script>').encode()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    console.allowed.append("status of 403")
    console.allowed.append("status of 404")  # the browser asks for /favicon.ico on the API's error page
    try:
        with page.expect_response(target) as resp:
            page.goto(f"http://localhost:{srv.server_address[1]}/")
        assert resp.value.status == 403
    finally:
        srv.shutdown()
    # the console's own origin without the CSRF header is refused too, with it accepted
    console.open("#/avatars")
    page.get_by_test_id("whoami").wait_for()
    codes = page.evaluate("""async () => {
        const post = (headers) => fetch('/api/v1/personas', {method: 'POST', headers: {'Content-Type': 'application/json', ...headers},
                                                          body: JSON.stringify({name: 'same-origin'})}).then(r => r.status);
        const csrf = document.cookie.match(/dh_csrf=([^;]+)/)[1];
        return [await post({}), await post({'X-CSRF-Token': 'f'.repeat(64)}), await post({'X-CSRF-Token': csrf})];
    }""")
    assert codes == [403, 403, 201]
    names = [p["name"] for p in httpx.get(target, headers=tenant.headers["viewer"]).json()]
    assert "forged" not in names and not any(n.startswith('{"name"') for n in names)


def test_knowledge_upload_becomes_searchable(console, tenant):
    page = console.page
    console.sign_in(tenant.emails["operator"], tenant.password)
    console.go("#/knowledge")
    page.get_by_label("Name", exact=True).fill("Branch FAQ")
    page.get_by_role("button", name="Create").click()
    page.get_by_role("heading", name="Branch FAQ").wait_for()
    doc = (b"# Opening hours\n\nThe Harbor Street branch opens at 9:00 and closes at 17:00 on weekdays.\n\n"
           b"# Lost cards\n\nCall the card line at any hour and the card is blocked immediately.\n")
    page.get_by_test_id("doc-input").set_input_files({"name": "branch.md", "mimeType": "text/markdown", "buffer": doc})
    page.get_by_role("button", name="Upload").click()
    page.locator('tr[data-doc="branch.md"] [data-status="ready"]').wait_for(timeout=120_000)
    page.locator('tr[data-doc="branch.md"]').get_by_role("button", name="Show passages").click()
    page.get_by_role("heading", name="Passages of branch.md").wait_for()
    assert "Harbor Street" in page.locator("ol.chunks").inner_text()
    page.get_by_role("searchbox", name="Question").fill("When does the Harbor Street branch open?")
    page.get_by_role("button", name="Ask").click()
    first = page.get_by_test_id("try-results").locator("ol.hits li").first
    first.wait_for()
    assert "9:00" in first.inner_text() and "relevant" in first.inner_text()
    # what the agent would answer: the call's policy on this knowledge base, with the passage it cites
    page.get_by_test_id("answer-decision").wait_for(timeout=60_000)
    assert page.get_by_test_id("answer-decision").get_attribute("data-decision") == "answer"
    assert "9" in page.get_by_test_id("answer-text").inner_text()
    assert "branch.md" in page.get_by_test_id("answer-citations").inner_text()
    console.shot("07-knowledge")


def test_sessions_list_filters_and_session_page_shows_transcript_and_waterfall(console, tenant, seeded):
    page = console.page
    console.sign_in(tenant.emails["viewer"], tenant.password)
    console.go("#/sessions")
    page.get_by_test_id("session-list").wait_for()
    assert page.get_by_test_id("session-total").inner_text() == "3 sessions"
    console.shot("08-sessions")
    page.get_by_label("Outcome").select_option("escalated")
    page.get_by_role("button", name="Apply").click()
    # (a locator, not wait_for_function: the console's CSP forbids evaluating strings in the page)
    page.locator("[data-testid=session-total]", has_text="1 sessions").wait_for()
    assert page.locator("[data-testid=session-list] tbody tr").count() == 1
    page.locator("[data-testid=session-list] tbody a").first.click()
    page.get_by_test_id("transcript").wait_for()
    text = page.get_by_test_id("transcript").inner_text()
    assert "4111" not in text and "[CARD]" in text  # redacted by the server before storage
    assert "We open at nine." in text
    assert "cards.md · Lost cards" in page.locator(".citations").first.inner_text()
    tools = page.get_by_test_id("tool-calls").inner_text()  # on the caller's turn, arguments redacted
    assert "transfer_to_human" in tools and "caller asked for a person" in tools and "4111" not in tools
    assert "caller asked for a person" in page.locator("dl.facts").inner_text()
    wf = page.get_by_test_id("waterfall")
    assert wf.locator(".wf-row").count() == 4
    stages = set(wf.locator("[data-stage]").evaluate_all("els => els.map(e => e.dataset.stage)"))
    assert stages == {"end_of_turn_delay", "transcription_delay", "llm_node_ttft", "tts_node_ttfb"}
    widths = wf.locator(".seg").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert all(w > 0 for w in widths)
    # the second stage of a turn starts where the first ends (a waterfall, not overlapping bars)
    lefts = wf.locator(".wf-row").nth(1).locator(".seg").evaluate_all(
        "els => els.map(e => [e.getBoundingClientRect().left, e.getBoundingClientRect().right])")
    assert abs(lefts[1][0] - lefts[0][1]) < 1.5
    assert "1.60 s" in wf.locator(".wf-row").nth(1).inner_text()  # e2e 1.6 s (longer than the stages' sum)
    console.shot("09-session")


def test_insights_charts_render_with_data(console, tenant, seeded):
    page = console.page
    console.sign_in(tenant.emails["viewer"], tenant.password)
    console.go("#/insights")
    for cid in ("chart-latency", "chart-calls", "chart-trend"):
        page.locator(f"#{cid}").wait_for()
    assert page.get_by_test_id("kpi-sessions").inner_text() == "3"
    assert int(page.locator("#chart-latency").get_attribute("data-points")) == 5  # four stages and e2e
    assert int(page.locator("#chart-calls").get_attribute("data-points")) == 3  # the three calls of the last days
    assert int(page.locator("#chart-trend").get_attribute("data-points")) == 5
    page.wait_for_function("""() => ['chart-latency', 'chart-calls', 'chart-trend'].every(id => {
        const c = document.getElementById(id); return c.width > 0 && c.height > 0; })""")
    painted = page.evaluate("""() => ['chart-latency', 'chart-calls', 'chart-trend'].map(id => {
        const c = document.getElementById(id); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0, any = 0;
        for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0) any++; if (d[i + 2] > 150 && d[i] < 120 && d[i + 3] > 0) blue++; }
        return [any, blue]; })""")
    assert all(any_ > 2000 for any_, _ in painted), painted
    assert painted[0][1] > 500, painted  # the p50/p95 bars themselves (blue), not only axes and labels
    greens = page.evaluate("""() => { const c = document.getElementById('chart-calls');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 140 && d[i] < 60 && d[i + 2] < 100 && d[i + 3] > 200) n++;
        return n; }""")
    assert greens > 800, greens  # the calls-per-day bars, beyond the legend's swatch
    assert int(page.locator("#chart-outcomes").get_attribute("data-points")) == 3
    page.get_by_test_id("no-unanswered").wait_for()  # every question of these calls was answered
    console.shot("10-insights")


def test_audit_log_verifies_and_admin_manages_users_and_keys(console, tenant):
    page = console.page
    console.sign_in(tenant.emails["admin"], tenant.password)
    console.go("#/audit")
    v = page.get_by_test_id("audit-verify")
    v.wait_for()
    assert v.get_attribute("data-ok") == "true" and "Chain verified" in v.inner_text()
    assert page.locator("[data-testid=audit-list] tbody tr").count() >= 3
    assert "login" in page.locator("[data-testid=audit-list]").inner_text()
    console.shot("11-audit")
    console.go("#/admin")
    page.get_by_test_id("user-list").wait_for()
    assert page.locator("[data-testid=user-list] tbody tr").count() == 3
    page.get_by_label("Name", exact=True).fill("kiosk agent")
    page.locator("#k-role").select_option("agent")
    page.locator("form[aria-label='New API key']").get_by_role("button", name="Create").click()
    key = page.get_by_test_id("new-key").locator("code").inner_text()
    assert key.startswith("dhk_")
    assert httpx.get(f"{console.server.url}{API}/personas", headers={"X-API-Key": key}).status_code == 200
    console.shot("12-users-and-keys")


def test_a_platform_admin_switches_the_organisation_from_the_header(console, tenant):
    from tests.admin.conftest import make_tenant

    su = make_tenant(superuser=True)
    base = console.server.url + API
    theirs = httpx.post(f"{base}/personas", json={"name": f"Persona of {tenant.slug}"}, headers=tenant.headers["admin"])
    home = httpx.post(f"{base}/personas", json={"name": f"Persona of {su.slug}"}, headers=su.headers["admin"])
    assert theirs.status_code == 201 and home.status_code == 201
    page = console.page
    console.sign_in(su.emails["admin"], su.password)
    console.go(f"#/personas/{home.json()['id']}")  # a page of the platform admin's own organisation
    page.get_by_role("heading", name=f"Persona of {su.slug}").wait_for()
    select = page.get_by_label("Organisation", exact=True)
    page.locator(f"[data-testid=tenant-select] option[value='{tenant.id}']").wait_for(state="attached")
    assert select.input_value() == su.id
    select.focus()
    select.select_option(tenant.id)
    page.keyboard.press("Tab")  # to the Switch button, then Enter: the keyboard is enough
    assert page.evaluate("document.activeElement.dataset.testid") == "tenant-go"
    page.keyboard.press("Enter")
    page.get_by_role("link", name=f"Persona of {tenant.slug}").wait_for()
    assert page.evaluate("location.hash") == "#/personas"  # the other organisation's list, not the old detail page
    assert page.get_by_role("link", name=f"Persona of {su.slug}").count() == 0
    assert page.evaluate("document.activeElement.dataset.testid") == "tenant-select"
    assert "elsewhere" in page.get_by_test_id("tenant-switch").get_attribute("class")
    console.shot("19-tenant-switcher")
    log = httpx.get(f"{base}/audit", headers=tenant.headers["admin"]).json()
    assert any(e["action"] == "switch_tenant" and e["actor_id"] == su.users["admin"] for e in log)
    page.get_by_label("Organisation", exact=True).select_option(su.id)
    page.get_by_role("button", name="Switch", exact=True).click()
    page.get_by_role("link", name=f"Persona of {su.slug}").wait_for()
    assert page.get_by_role("link", name=f"Persona of {tenant.slug}").count() == 0


def test_chinese_ui(console, tenant):
    page = console.page
    console.sign_in(tenant.emails["admin"], tenant.password)
    page.get_by_test_id("lang-toggle").click()
    page.get_by_role("link", name="数字人").wait_for()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert set(page.locator("header nav a").all_inner_texts()) == {"数字人", "人设", "知识库", "会话", "转人工", "统计", "审计日志", "用户与密钥"}
    console.go("#/sessions")
    page.get_by_role("heading", name="会话").wait_for()
    console.shot("13-sessions-zh")
    console.go("#/handoffs")
    page.get_by_role("heading", name="转人工", exact=True).wait_for()
    assert page.get_by_test_id("handoffs-none").inner_text() == "目前没有等待人工的通话。"
    page.get_by_test_id("lang-toggle").click()
    page.get_by_role("link", name="Avatars").wait_for()


# --- insights: outcomes per day, unanswered questions ---------------------------------------------
COUNT_COLOR = """([id, rgb, tol]) => { const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && Math.abs(d[i] - rgb[0]) < tol && Math.abs(d[i + 1] - rgb[1]) < tol
      && Math.abs(d[i + 2] - rgb[2]) < tol) n++;
    return n; }"""


@pytest.fixture(scope="module")
def outcomes_tenant(server):
    """An organisation of its own (the other tests count their tenant's calls) with calls of every kind
    and questions the agent had no approved answer for."""
    from datetime import UTC, datetime, timedelta

    from dialogue.templates import PHRASES
    from tests.admin.conftest import make_tenant

    t = make_tenant()
    now = datetime.now(UTC)
    d2, d1 = (now.date() - timedelta(days=2)).isoformat(), (now.date() - timedelta(days=1)).isoformat()
    no, still = PHRASES["no_answer"], PHRASES["still_no_answer"]
    calls = [
        (f"{d2}T09:00:00Z", "completed", [("user", "Do you open on Sundays?"), ("assistant", no["en"]),
                                           ("user", "OK, thanks."), ("assistant", "You're welcome.")]),
        (f"{d2}T10:00:00Z", "escalated_handled", [("user", "I want a person about my mortgage."),
                                                   ("assistant", PHRASES["transfer"]["en"])]),
        (f"{d1}T09:00:00Z", "escalated_unanswered", [("user", "do you open on sundays"), ("assistant", still["en"]),
                                                      ("user", "Can I pay in gold bars?"), ("assistant", no["en"])]),
        (f"{d1}T10:00:00Z", "abandoned", [("user", "你们周日开门吗？"), ("assistant", no["zh"])]),
        (f"{d1}T11:00:00Z", "escalated_handled", [("user", "When do you open?"),
                                                   ("assistant", "We open at nine.", [{"source": "hours.md"}])]),
        ((now - timedelta(minutes=2)).isoformat(), None, [("user", "Do you open on Sundays?!"), ("assistant", no["en"])]),
    ]
    events = [e for start, outcome, turns in calls for e in call_events(start, turns, outcome)[1]]
    post_events(server, t, events)
    return SimpleNamespace(tenant=t, d1=d1[5:], d2=d2[5:])


def test_insights_show_outcomes_per_day_and_unanswered_questions(console, outcomes_tenant):
    page = console.page
    t = outcomes_tenant.tenant
    console.sign_in(t.emails["viewer"], t.password)
    console.go("#/insights")
    for cid in ("chart-latency", "chart-calls", "chart-trend", "chart-outcomes", "chart-unanswered"):
        page.locator(f"#{cid}").wait_for()
    assert page.get_by_test_id("kpi-sessions").inner_text() == "6"
    assert int(page.locator("#chart-outcomes").get_attribute("data-points")) == 6
    assert int(page.locator("#chart-unanswered").get_attribute("data-points")) == 3
    # the tables behind the charts (closed <details>: their text, not what is drawn)
    rows = page.locator("[data-testid=unanswered-table] tbody tr")
    assert rows.count() == 3
    first = rows.nth(0).locator("td").all_text_contents()
    assert first[:3] == ["1", "Do you open on Sundays?!", "3"]  # three wordings, one question; the latest shown
    assert {rows.nth(i).get_attribute("data-key") for i in (1, 2)} == {"can i pay in gold bars", "你们周日开门吗"}
    table = page.locator("#chart-outcomes").locator("xpath=ancestor::section[1]").locator("table")
    day1 = table.locator("tbody tr", has_text=outcomes_tenant.d1).first.locator("td").all_text_contents()
    # day, completed, abandoned, escalated, escalated_handled, escalated_unanswered, failed, open, rate
    assert day1 == [day1[0], "0", "1", "0", "1", "1", "0", "0", "67%"], day1
    heads = table.locator("thead th").all_text_contents()
    assert heads[4:6] == ["escalated, taken by a person", "escalated, nobody came"]
    page.wait_for_function("""() => ['chart-outcomes', 'chart-unanswered'].every(id => {
        const c = document.getElementById(id); return c.width > 0 && c.height > 0; })""")
    # the stacked bars are drawn: more of each outcome's colour than its legend swatch alone (failed: 0 calls)
    swatch = page.evaluate(COUNT_COLOR, ["chart-outcomes", [127, 29, 29], 20])
    handled = page.evaluate(COUNT_COLOR, ["chart-outcomes", [8, 145, 178], 20])
    unanswered = page.evaluate(COUNT_COLOR, ["chart-outcomes", [220, 38, 38], 20])
    assert handled > swatch + 300 and unanswered > swatch + 300, (swatch, handled, unanswered)
    bars = page.evaluate(COUNT_COLOR, ["chart-unanswered", [147, 51, 234], 20])
    assert bars > 3000, bars  # the horizontal bars of the ranking (the chart has no legend)
    page.locator("#chart-unanswered").locator("xpath=ancestor::section[1]").locator("summary").click()
    rows.nth(0).wait_for()
    console.shot("14-insights-outcomes-unanswered")


# --- the live handoff queue -----------------------------------------------------------------------
def handoff_call(server, tenant, reason: str, summary: str) -> tuple[str, str]:
    """A call that asks for a person now: its turns, then the agent's ``handoff`` event (waiting)."""
    from datetime import UTC, datetime

    room = f"call-h{uuid.uuid4().hex[:8]}"  # a letter first: 8 decimal digits would be read as a phone
    sid, events = call_events(datetime.now(UTC).isoformat(), [
        ("user", "I want to close my account and nobody answers my letters."),
        ("assistant", "I understand. This needs a colleague's attention, so I'm connecting you to a person now."),
    ], room=room)
    events.append({"event_id": str(uuid.uuid4()), "type": "handoff", "payload": {
        "session_id": sid, "state": "waiting", "room": room, "reason": reason, "summary": summary}})
    post_events(server, tenant, events)
    return sid, room


def handoff_state(server, tenant, sid: str, state: str) -> None:
    post_events(server, tenant, [{"event_id": str(uuid.uuid4()), "type": "handoff", "payload": {"session_id": sid, "state": state}}])


def _jwt_claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_handoff_queue_is_live_and_an_operator_accepts_a_call(console):
    from tests.admin.conftest import make_tenant

    t = make_tenant()
    page = console.page
    seen: list[tuple[str, str]] = []
    page.on("request", lambda r: "/api/v1/handoffs" in r.url and seen.append((r.method, r.url.split("/api/v1", 1)[1])))
    console.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.server.url)
    console.sign_in(t.emails["operator"], t.password)
    console.go("#/handoffs")
    page.get_by_test_id("handoffs-none").wait_for()
    page.locator("[data-testid=stream-state][data-state=live]").wait_for()
    # the call asks for a person only now, with the page open
    reason, summary = "account closure complaint", "Wants to close the account; letters unanswered."
    sid, room = handoff_call(console.server, t, reason, summary)
    card = page.locator("[data-testid=handoffs-waiting] article[data-status=waiting]", has_text=reason)
    card.wait_for(timeout=15_000)
    assert page.get_by_test_id("handoffs-none").is_hidden()
    assert card.get_by_test_id("handoff-summary").inner_text() == summary
    said = card.get_by_test_id("handoff-transcript").inner_text()
    assert "close my account" in said and "connecting you to a person" in said
    assert room in card.inner_text()
    assert "New call waiting for a person: account closure complaint." in page.get_by_test_id("handoff-announce").inner_text()
    card.locator("[data-testid=waiting-for]", has_text=re.compile(r"^waiting for ([3-9]|\d\d) s$")).wait_for(timeout=10_000)
    console.shot("15-handoffs-waiting")
    # live from the stream: the queue and the history loaded once when the page opened, no polling since
    loads = [("GET", "/handoffs?state=open"), ("GET", "/handoffs?state=closed&limit=25&transcript=false")]
    assert sorted(seen) == sorted([*loads, ("GET", "/handoffs/stream")]), seen
    page.get_by_test_id("history-none").wait_for()

    with page.expect_response(lambda r: r.url.endswith("/accept")) as resp:
        card.get_by_role("button", name="Accept").click()
    assert resp.value.status == 200
    got = resp.value.json()
    joined = page.get_by_test_id("handoff-joined")
    joined.wait_for()
    assert joined.get_by_test_id("join-room").inner_text() == room == got["room"]
    identity = joined.get_by_test_id("join-identity").inner_text()
    assert identity == got["identity"] and identity.startswith("operator-")
    assert joined.get_by_test_id("join-url").input_value() == got["server_url"]
    token = joined.get_by_test_id("join-token").input_value()
    assert token == got["token"]
    claims = _jwt_claims(token)
    assert claims["sub"] == identity and claims["video"]["room"] == room and claims["video"]["roomJoin"] is True
    assert page.evaluate("document.activeElement.dataset.testid") == "join-token"  # focus on what to copy
    joined.get_by_role("button", name="Copy the token").click()
    joined.get_by_text("Copied.").first.wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == token
    # the stream brings the accepted state: the call moves to "taken over", the join details stay
    taken = page.locator("[data-testid=handoffs-taken] article[data-status=accepted]", has_text=reason)
    taken.wait_for(timeout=15_000)
    assert taken.get_by_test_id("handoff-joined").count() == 1
    assert page.locator("[data-testid=handoffs-waiting] article").count() == 0
    assert taken.get_by_role("button", name="Accept").count() == 0
    listed = httpx.get(f"{console.server.url}{API}/handoffs", headers=t.headers["viewer"]).json()
    assert [(h["id"], h["status"], h["accepted_by"]) for h in listed] == [(got["handoff"]["id"], "accepted", t.users["operator"])]
    console.shot("16-handoff-accepted")
    # the colleague leaves, the agent has the call again: it leaves the queue, live
    handoff_state(console.server, t, sid, "returned")
    page.locator(f"article[data-handoff-id='{got['handoff']['id']}']").wait_for(state="detached", timeout=15_000)
    assert "left the queue (handed back)" in page.get_by_test_id("handoff-announce").inner_text()
    # ... and into the history, from the stream too: who took it, how long the caller waited, the session
    row = page.locator(f"[data-testid=handoff-history] tr[data-handoff-id='{got['handoff']['id']}']")
    row.wait_for()
    assert page.get_by_test_id("history-none").is_hidden()
    assert row.get_attribute("data-status") == "returned" and row.get_by_test_id("history-status").inner_text() == "handed back"
    assert reason in row.inner_text() and summary in row.inner_text()
    assert row.get_by_test_id("history-taker").inner_text() == t.emails["operator"]
    assert re.fullmatch(r"([3-9]|\d\d) s|\d+ min \d\d s", row.get_by_test_id("history-waited").inner_text())
    assert sorted(m for m in seen if m[1].startswith("/handoffs?")) == sorted(loads)
    console.shot("16b-handoff-history")
    row.get_by_role("link", name=re.compile(room)).click()
    page.get_by_test_id("transcript").wait_for()
    assert "close my account" in page.get_by_test_id("transcript").inner_text()


def test_viewer_watches_the_queue_without_accept_and_the_api_refuses_them(console):
    from tests.admin.conftest import make_tenant

    t = make_tenant()
    _, room = handoff_call(console.server, t, "caller asked for a person", "Asked twice for a colleague.")
    page = console.page
    console.sign_in(t.emails["viewer"], t.password)
    console.go("#/handoffs")
    card = page.locator("[data-testid=handoffs-waiting] article[data-status=waiting]", has_text="caller asked for a person")
    card.wait_for()
    page.get_by_test_id("read-only").wait_for()
    page.locator("[data-testid=stream-state][data-state=live]").wait_for()
    assert page.get_by_role("button", name="Accept").count() == 0
    console.shot("17-handoffs-viewer")
    console.allowed.append("status of 403")
    hid = card.get_attribute("data-handoff-id")
    status = page.evaluate("""async (id) => {
        const csrf = document.cookie.match(/dh_csrf=([^;]+)/)[1];
        const r = await fetch(`/api/v1/handoffs/${id}/accept`, {method: 'POST', headers: {'X-CSRF-Token': csrf}});
        return [r.status, (await r.json()).detail];
    }""", hid)
    assert status[0] == 403 and "viewer" in status[1], status
    still = httpx.get(f"{console.server.url}{API}/handoffs", headers=t.headers["operator"]).json()
    assert [(h["room"], h["status"]) for h in still] == [(room, "waiting")]


def test_handoff_queue_catches_up_after_the_stream_reconnects(console):
    """A change while the stream is down (here: the call handed back between two connections) reaches
    the page when EventSource reconnects: the page loads the open list once more and drops the call."""
    from tests.admin.conftest import make_tenant

    t = make_tenant()
    sid, _ = handoff_call(console.server, t, "lost card", "Card lost abroad.")
    page = console.page
    streams: list[str] = []

    def on_stream(route):
        streams.append(route.request.url)
        if len(streams) == 1:  # the first connection ends after 2 s (the route's `seconds`)
            route.continue_(url=f"{route.request.url}?seconds=2")
        elif len(streams) == 2:  # the call leaves the queue while there is no stream; this reconnect fails
            handoff_state(console.server, t, sid, "returned")
            route.abort()
        else:
            route.continue_()

    lists: list[str | None] = []
    page.on("request", lambda r: "/api/v1/handoffs?" in r.url and lists.append(r.headers.get("x-console-background")))
    console.allowed.append("net::ERR_FAILED")  # the aborted reconnect
    page.route("**/api/v1/handoffs/stream*", on_stream)
    console.sign_in(t.emails["operator"], t.password)
    console.go("#/handoffs")
    card = page.locator("[data-testid=handoffs-waiting] article", has_text="lost card")
    card.wait_for()
    card.wait_for(state="detached", timeout=20_000)
    page.locator("[data-testid=stream-state][data-state=live]").wait_for()
    assert len(streams) >= 3, streams
    # the page's own loads (queue and history), then one catch-up of both (background requests)
    assert lists == [None, None, "1", "1"], lists
    page.get_by_test_id("handoffs-none").wait_for()
    # the call that left while the stream was down is in the history
    page.locator("[data-testid=handoff-history] tr[data-status=returned]", has_text="lost card").wait_for()


def test_handoff_history_pages_back_through_past_calls(console):
    """The history lists the calls that left the queue (handed back, nobody came), newest first, 25 at a
    time; Load more (keyboard) pages back; calls still in the queue and other organisations' are not in it."""
    from datetime import UTC, datetime, timedelta

    from tests.admin.conftest import make_tenant

    t, other = make_tenant(), make_tenant()
    start = datetime.now(UTC) - timedelta(days=1)
    events, names = [], []
    for n in range(27):
        at = start + timedelta(minutes=n)
        sid, ev = call_events(at.isoformat(), [("user", f"question {n}")])
        state = "unanswered" if n % 2 else "returned"
        names.append((f"reason {n}", state))
        ev += [{"event_id": str(uuid.uuid4()), "type": "handoff", "payload": {
                    "session_id": sid, "state": "waiting", "room": f"room-{n}", "reason": f"reason {n}", "at": at.isoformat()}},
               {"event_id": str(uuid.uuid4()), "type": "handoff", "payload": {
                    "session_id": sid, "state": state, "at": (at + timedelta(seconds=40 + n)).isoformat()}}]
        events += ev
    post_events(console.server, t, events)
    handoff_call(console.server, t, "still waiting", "In the queue now.")
    handoff_call(console.server, other, "another organisation", "Not ours.")
    page = console.page
    console.sign_in(t.emails["viewer"], t.password)
    console.go("#/handoffs")
    rows = page.locator("[data-testid=handoff-history] tbody tr")
    rows.nth(24).wait_for()
    assert rows.count() == 25
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in (0, 24)] == ["reason 26", "reason 2"]
    assert rows.nth(0).get_by_test_id("history-status").inner_text() == "handed back"
    assert rows.nth(1).get_by_test_id("history-status").inner_text() == "nobody came"
    assert rows.nth(0).get_by_test_id("history-waited").inner_text() == "1 min 06 s"  # asked to nobody came: 40 + 26 s
    assert rows.nth(0).get_by_test_id("history-taker").inner_text() == "—"
    more = page.get_by_test_id("history-more")
    more.focus()
    page.keyboard.press("Enter")
    rows.nth(26).wait_for()
    assert rows.count() == 27 and more.is_hidden()
    listed = [(rows.nth(i).locator("td").nth(1).inner_text(), rows.nth(i).get_attribute("data-status")) for i in range(27)]
    assert listed == names[::-1]
    text = page.get_by_test_id("handoff-history").inner_text()
    assert "still waiting" not in text and "another organisation" not in text
    page.locator("[data-testid=handoffs-waiting] article", has_text="still waiting").wait_for()
    console.shot("18-handoff-history")


def test_an_operator_starts_a_test_call_from_the_avatars_page(console_db, browser, out_dir, tmp_path):
    """Test call: the button of a ready avatar opens /test-call.html, whose widget gets a caller's token for
    that avatar from POST /console/test-call and joins its room on a real livekit-server (no agent here);
    an avatar that is not ready has a sentence instead of the button."""
    from admin.core.db import session_scope
    from admin.models import Avatar
    from harness.devstack import Stack, free_port, room_identities
    from tests.admin.conftest import make_tenant
    from tests.console.conftest import CHROMIUM, Console, admin_server

    t = make_tenant()
    with session_scope() as db:
        ready = Avatar(tenant_id=t.id, name="Tess", engine="simple", status="ready", progress=1.0)
        waiting = Avatar(tenant_id=t.id, name="Wren", engine="simple", status="pending")
        db.add_all([ready, waiting])
        db.flush()
        ready_id = ready.id
    stack = Stack(log_dir=tmp_path / "livekit", http_port=free_port())
    try:
        stack.start_server()
        with admin_server(console_db.data, console_db.url, ADMIN_LIVEKIT_URL=stack.url) as server:
            # a browser of its own with a fake microphone, from the module's Playwright
            b = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
            c = Console(b, server, out_dir)
            try:
                page = c.page
                c.sign_in(t.emails["operator"], t.password)
                c.go("#/avatars")
                assert page.locator("article.avatar", has_text="Wren").get_by_test_id("test-call").count() == 0
                assert page.locator("article.avatar", has_text="Wren").get_by_test_id("test-call-unavailable") \
                    .inner_text() == "A test call is possible once the avatar is ready."
                link = page.get_by_role("link", name="Test call with Tess in a new tab")
                with c.context.expect_page() as popup:
                    link.click()
                call = popup.value
                call.on("console", lambda m: m.type == "error" and c.errors.append(m.text))
                call.on("pageerror", lambda e: c.errors.append(f"pageerror: {e}"))
                call.wait_for_load_state()
                assert call.url == f"{server.url}/test-call.html?avatar={ready_id}"
                launcher = call.get_by_role("button", name=re.compile("^Start the test call"))
                launcher.wait_for()
                call.wait_for_function("() => window.dhWidget && window.dhWidget.avatarInfo.name === 'Test call: Tess'")
                with call.expect_response(lambda r: r.url.endswith("/api/v1/console/test-call")) as resp:
                    launcher.click()
                assert resp.value.status == 201, resp.value.text()
                call.get_by_role("heading", name="Test call: Tess").wait_for()
                grant = resp.value.json()
                assert grant["identity"].startswith("console-test-") and f"-a{ready_id[:8]}-" in grant["room"]
                assert grant["server_url"] == stack.url
                call.wait_for_function("() => window.dhWidget && window.dhWidget.state === 'in-call'", timeout=20_000)
                assert call.get_by_role("button", name="End call").is_visible()
                assert room_identities(stack.url, grant["room"]) == [grant["identity"]]
                call.screenshot(path=str(out_dir / "19-test-call.png"))
                call.get_by_role("button", name="End call").click()
                call.wait_for_function("() => window.dhWidget.state !== 'in-call'", timeout=10_000)
                assert not c.unexpected_errors(), c.unexpected_errors()
            finally:
                c.close()
                b.close()
    finally:
        stack.stop()
