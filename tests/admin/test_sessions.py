"""Sessions and turns: idempotent intake, redaction, list/filter/detail, export, post-processing."""

from __future__ import annotations

import csv
import io
import json
import uuid

API = "/api/v1"


def _events(sid: str, n_turns: int = 3, **end):
    evs = [{"event_id": str(uuid.uuid4()), "type": "session_start",
            "payload": {"session_id": sid, "room": f"room-{sid[:6]}", "started_at": "2026-01-02T10:00:00Z"}}]
    for i in range(n_turns):
        evs.append({"event_id": str(uuid.uuid4()), "type": "turn", "payload": {
            "session_id": sid, "seq": i, "speaker": "user" if i % 2 == 0 else "assistant",
            "text": f"turn {i}", "language": "en", "citations": [{"doc": "faq.md", "chunk": 2}] if i % 2 else [],
            "latency": {"transcription_delay": 0.2, "llm_node_ttft": 0.3, "tts_node_ttfb": 0.15, "e2e_latency": 0.9},
        }})
    evs.append({"event_id": str(uuid.uuid4()), "type": "session_end",
                "payload": {"session_id": sid, "outcome": "completed", **end}})
    return evs


def _post(client, t, events, role="agent"):
    """Post as the agent does: each event carries the session grant its call's token minted
    (for tenant ``t``); tests/security/test_tenant_recording.py covers events without one."""
    from admin.core.security import mint_session_grant

    if role == "agent":
        events = [{"grant": mint_session_grant(t.id, e["payload"].get("session_id", ""), 3600), **e} for e in events]
    return client.post(f"{API}/agent/events", json={"events": events}, headers=t.headers[role])


def test_redelivered_events_land_exactly_once(client, tenant):
    sid = str(uuid.uuid4())
    evs = _events(sid, 4)
    r1 = _post(client, tenant, evs)
    assert r1.json() == {"applied": 6, "duplicates": 0}
    r2 = _post(client, tenant, evs)  # the recorder lost the response and sends again
    assert r2.json() == {"applied": 0, "duplicates": 6}
    log = client.get(f"{API}/audit", params={"resource": "session"}, headers=tenant.headers["admin"]).json()
    assert len(log) == 1 and log[0]["action"] == "record" and log[0]["resource_id"] == sid
    assert log[0]["changes"]["applied"] == 6 and log[0]["actor_type"] == "api_key"
    detail = client.get(f"{API}/sessions/{sid}", headers=tenant.headers["viewer"]).json()
    assert [t["seq"] for t in detail["turns"]] == [0, 1, 2, 3]
    assert detail["turns"][1]["citations"] == [{"doc": "faq.md", "chunk": 2}]
    assert detail["turns"][0]["latency"]["e2e_latency"] == 0.9
    assert detail["outcome"] == "completed" and detail["ended_at"]


def test_turn_text_is_redacted_server_side(client, tenant):
    sid = str(uuid.uuid4())
    evs = _events(sid, 0)
    evs.insert(1, {"event_id": str(uuid.uuid4()), "type": "turn", "payload": {
        "session_id": sid, "speaker": "user",
        "text": "my card is 4111 1111 1111 1111, mail jane.doe@bank.example.org, call +44 20 7946 0958"}})
    _post(client, tenant, evs)
    text = client.get(f"{API}/sessions/{sid}", headers=tenant.headers["viewer"]).json()["turns"][0]["text"]
    assert "4111" not in text and "jane.doe" not in text and "7946" not in text
    assert "[CARD]" in text and "[EMAIL]" in text and "[PHONE]" in text


def test_malformed_event_is_reported_not_retried_forever(client, tenant):
    bad = {"event_id": str(uuid.uuid4()), "type": "turn", "payload": {"session_id": "x" * 8, "speaker": "robot"}}
    r = _post(client, tenant, [bad])
    assert r.status_code == 200 and r.json() == {"applied": 0, "duplicates": 0}
    assert _post(client, tenant, [bad]).json()["duplicates"] == 1


def test_cannot_write_into_another_tenants_session(client, tenant, other_tenant):
    sid = str(uuid.uuid4())
    _post(client, tenant, _events(sid, 1))
    intrusion = [{"event_id": str(uuid.uuid4()), "type": "turn",
                  "payload": {"session_id": sid, "speaker": "user", "text": "injected"}}]
    assert _post(client, other_tenant, intrusion).json()["applied"] == 0
    turns = client.get(f"{API}/sessions/{sid}", headers=tenant.headers["viewer"]).json()["turns"]
    assert [t["text"] for t in turns] == ["turn 0"]


def test_list_filter_and_post_processing(client, tenant):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    _post(client, tenant, _events(a, 2))
    _post(client, tenant, _events(b, 3, escalated=True, escalation_reason="caller asked for a person"))
    h = tenant.headers["viewer"]
    page = client.get(f"{API}/sessions", headers=h).json()
    assert page["total"] == 2 and {s["id"] for s in page["items"]} == {a, b}
    esc = client.get(f"{API}/sessions", params={"escalated": True}, headers=h).json()
    assert [s["id"] for s in esc["items"]] == [b] and esc["items"][0]["outcome"] == "escalated"
    assert client.get(f"{API}/sessions", params={"outcome": "completed"}, headers=h).json()["total"] == 1
    assert client.get(f"{API}/sessions", params={"since": "2027-01-01T00:00:00Z"}, headers=h).json()["total"] == 0
    detail = client.get(f"{API}/sessions/{a}", headers=h).json()
    assert detail["post_status"] == "done" and detail["summary"].startswith("2 turns")
    assert detail["redaction_findings"] == 0


def test_export_json_and_csv(client, tenant):
    sid = str(uuid.uuid4())
    evs = _events(sid, 2)
    evs[1]["payload"]["text"] = "=HYPERLINK(\"http://evil\")"
    _post(client, tenant, evs)
    h = tenant.headers["viewer"]
    data = client.get(f"{API}/sessions/export", params={"format": "json"}, headers=h).json()
    assert len(data) == 1 and len(data[0]["turns"]) == 2
    r = client.get(f"{API}/sessions/export", params={"format": "csv"}, headers=h)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["turn_seq"] for row in rows] == ["0", "1"]
    assert rows[0]["text"].startswith("'=")  # no spreadsheet formula injection
    assert '"e2e_latency": 0.9' in rows[0]["latency"]


def test_viewer_cannot_post_events_and_agent_cannot_read_sessions(client, tenant):
    assert _post(client, tenant, _events(str(uuid.uuid4()), 1), role="viewer").status_code == 403
    assert client.get(f"{API}/sessions", headers=tenant.headers["agent"]).status_code == 403


def test_stats_give_latency_percentiles_and_outcomes(client, tenant, other_tenant):
    _post(client, tenant, _events(str(uuid.uuid4()), 4))
    _post(client, tenant, _events(str(uuid.uuid4()), 2, escalated=True))
    _post(client, other_tenant, _events(str(uuid.uuid4()), 8))  # not counted
    st = client.get(f"{API}/sessions/stats", headers=tenant.headers["viewer"]).json()
    assert st["sessions"] == 2 and st["outcomes"] == {"completed": 1, "escalated": 1}
    assert st["escalation_rate"] == 0.5
    assert st["latency"]["e2e_latency"] == {"count": 6, "p50": 0.9, "p90": 0.9, "p95": 0.9, "max": 0.9}


def test_the_tools_a_call_ran_about_a_question_are_on_its_turn(client, tenant, tmp_path):
    """The production path: the call's policy answers, CallLog matches its record to the caller's turn,
    the agent's recorder sends it, the API stores it redacted; the session page and export show it."""
    import asyncio
    from types import SimpleNamespace

    import httpx
    from livekit.agents import llm, utils

    from admin.core.security import mint_session_grant
    from agent.recorder import SessionRecorder
    from agent.worker import CallLog
    from dialogue import CORE_TOOLS, DialogueSettings, Message, load_persona, load_policy

    def forward(request: httpx.Request) -> httpx.Response:  # the recorder's HTTP, to the real app
        r = client.request(request.method, request.url.path, content=request.content, headers=dict(request.headers))
        return httpx.Response(r.status_code, content=r.content, headers=r.headers)

    settings = DialogueSettings()
    policy = load_policy(settings, persona=load_persona(settings.persona_file))
    question = "I want to talk to a real person, call me on +44 20 7946 0958"

    async def call() -> SessionRecorder:
        rec = SessionRecorder("http://admin", tenant.headers["agent"]["X-API-Key"], tmp_path,
                              transport=httpx.MockTransport(forward), max_backoff=0.2)
        sid = str(uuid.uuid4())
        rec.start_session(session_id=sid, room="tools", grant=mint_session_grant(tenant.id, sid, 3600))
        session: utils.EventEmitter = utils.EventEmitter()
        log = CallLog(session, "tools", rec, sid)  # type: ignore[arg-type]
        async for _ in policy.respond([Message("user", question)], list(CORE_TOOLS)):
            pass
        log.on_policy_turn(policy.turns[-1])
        session.emit("conversation_item_added", SimpleNamespace(item=llm.ChatMessage(role="user", content=[question])))
        log.close()
        rec.end_session(sid, outcome="escalated", escalated=True)
        assert await rec.aclose(timeout=10)
        return sid

    sid = asyncio.run(call())
    turn = client.get(f"{API}/sessions/{sid}", headers=tenant.headers["viewer"]).json()["turns"][0]
    assert turn["speaker"] == "user" and [c["name"] for c in turn["tool_calls"]] == ["transfer_to_human"]
    assert "7946" not in json.dumps(turn["tool_calls"]) and turn["tool_calls"][0]["arguments"]["reason"]
    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/sessions/export", params={"format": "csv"},
                                                      headers=tenant.headers["viewer"]).text)))
    assert "transfer_to_human" in rows[0]["tool_calls"]
    # a malformed tool call is one refused event, the others land
    bad = {"event_id": str(uuid.uuid4()), "type": "turn", "payload": {
        "session_id": sid, "speaker": "user", "text": "x", "tool_calls": [{"name": "", "arguments": {}}]}}
    assert _post(client, tenant, [bad]).json()["applied"] == 0
