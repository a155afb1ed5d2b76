"""The handoff queue's API: entries from the agent's events, the live stream, one accept per call."""

from __future__ import annotations

import json
import uuid

from livekit import api as lk

API = "/api/v1"


def _room(sid: str) -> str:
    # 8 decimal digits after the dash: the redactor would read "room-13241898" as a phone number
    return f"room-{int(sid[:8], 16) % 10**8:08d}"


def _handoff(client, t, state: str = "waiting", sid: str | None = None) -> str:  # noqa: ANN001
    from admin.core.security import mint_session_grant

    sid = sid or str(uuid.uuid4())
    grant = mint_session_grant(t.id, sid, 600)
    events = [
        {"event_id": str(uuid.uuid4()), "type": "session_start", "payload": {"session_id": sid, "room": _room(sid)}},
        {"event_id": str(uuid.uuid4()), "type": "turn",
         "payload": {"session_id": sid, "speaker": "user", "text": "I want a person, my card 4111 1111 1111 1111"}},
        {"event_id": str(uuid.uuid4()), "type": "handoff",
         "payload": {"session_id": sid, "state": state, "room": _room(sid), "reason": "caller asked for a person",
                     "summary": "lost card 4111 1111 1111 1111"}},
    ]
    r = client.post(f"{API}/agent/events", json={"events": [{**e, "grant": grant} for e in events]},
                    headers=t.headers["agent"])
    assert r.json()["applied"] == 3, r.text
    return sid


def test_the_queue_lists_the_call_redacted_and_streams_it(client, tenant, other_tenant):
    sid = _handoff(client, tenant)
    got = client.get(f"{API}/handoffs", headers=tenant.headers["viewer"]).json()
    entry = next(h for h in got if h["session_id"] == sid)
    assert entry["status"] == "waiting" and entry["reason"] == "caller asked for a person"
    assert "4111" not in json.dumps(entry)  # summary and transcript are redacted
    assert entry["transcript"][0]["speaker"] == "user" and entry["waiting_seconds"] >= 0
    assert all(h["session_id"] != sid for h in client.get(f"{API}/handoffs", headers=other_tenant.headers["admin"]).json())
    body = client.get(f"{API}/handoffs/stream", params={"seconds": 1}, headers=tenant.headers["operator"]).text
    events = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]
    assert any(e["session_id"] == sid for e in events) and "event: handoff" in body


def test_one_operator_accepts_and_gets_an_operator_token_for_that_room_only(client, tenant, other_tenant):
    sid = _handoff(client, tenant)
    hid = next(h["id"] for h in client.get(f"{API}/handoffs", headers=tenant.headers["operator"]).json()
               if h["session_id"] == sid)
    assert client.post(f"{API}/handoffs/{hid}/accept", headers=tenant.headers["viewer"]).status_code == 403
    assert client.post(f"{API}/handoffs/{hid}/accept", headers=other_tenant.headers["operator"]).status_code == 404
    r = client.post(f"{API}/handoffs/{hid}/accept", headers=tenant.headers["operator"])
    assert r.status_code == 200, r.text
    out = r.json()
    claims = lk.TokenVerifier("devkey", "secret").verify(out["token"])
    # the operator is sent to the caller's room exactly: a room is an address, never redacted
    assert claims.video.room == out["room"] == _room(sid) and claims.identity.startswith("operator-")
    assert not claims.room_config or not claims.room_config.agents  # joining dispatches nothing
    assert out["handoff"]["status"] == "accepted" and out["handoff"]["accepted_by"] == tenant.users["operator"]
    assert client.post(f"{API}/handoffs/{hid}/accept", headers=tenant.headers["admin"]).status_code == 409
    # nobody else may ask for an operator identity
    av = client.post(f"{API}/avatars", json={"name": "A", "engine": "simple"}, headers=tenant.headers["operator"]).json()
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"], "identity": "operator-x"},
                    headers=tenant.headers["operator"])
    assert r.status_code == 403


def test_a_caller_no_longer_waiting_cannot_be_accepted(client, tenant):
    sid = _handoff(client, tenant)
    _handoff(client, tenant, state="unanswered", sid=sid)
    h = next(h for h in client.get(f"{API}/handoffs", params={"state": "all"}, headers=tenant.headers["operator"]).json()
             if h["session_id"] == sid)
    assert h["status"] == "unanswered" and h["ended_at"]
    # nobody joins any more: the room, kept as it was for the operator's token, rests redacted now
    assert h["room"] == "room-[PHONE]" != _room(sid)
    r = client.post(f"{API}/handoffs/{h['id']}/accept", headers=tenant.headers["operator"])
    assert r.status_code == 409 and "no longer waiting" in r.json()["detail"]
