"""Item 7: session metadata, the caller's identity (a phone number), nested citation fields and
card numbers written with dots were stored unredacted, and a log line held a partial card number
(pydantic's validation error echoes the input). Now dialogue's redactor is applied to every stored
field, recursively, and validation errors are logged without their input."""

from __future__ import annotations

import json
import logging
import uuid

from .conftest import API

CARD_DOTS = "4111.1111.1111.1111"
PHONE = "+4930901820"
SECRETS = ("4111", "1111", "30901820", "151 12345678", "jane.doe", "DE89", "0532")


def _post(client, t, events):  # noqa: ANN001
    from admin.core.security import mint_session_grant

    events = [{**e, "grant": mint_session_grant(t.id, e["payload"]["session_id"], 600)} for e in events]
    r = client.post(f"{API}/agent/events", json={"events": events}, headers=t.headers["agent"])
    assert r.status_code == 200, r.text
    return r.json()


def _ev(kind: str, payload: dict) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": kind, "payload": payload}


def test_every_stored_field_is_redacted(client, tenant):
    from admin.core.db import session_scope
    from admin.models import CallSession, Turn

    sid = str(uuid.uuid4())
    out = _post(client, tenant, [
        _ev("session_start", {"session_id": sid, "room": f"sip-{PHONE}", "caller_identity": PHONE,
                              "meta": {"caller": {"phone": "+49 151 12345678", "cards": [CARD_DOTS]},
                                       PHONE: "keyed by number", "iban": "DE89 3704 0044 0532 0130 00"}}),
        _ev("turn", {"session_id": sid, "speaker": "user", "text": f"my card is {CARD_DOTS}",
                     "citations": [{"doc": "faq.md", "meta": {"quote": "write to jane.doe@bank.example",
                                                              "nested": [{"card": CARD_DOTS}]}}, f"call {PHONE}"]}),
        _ev("session_end", {"session_id": sid, "escalated": True, "escalation_reason": f"call back on {PHONE}",
                            "meta": {"callback": PHONE}}),
    ])
    assert out["applied"] == 3
    with session_scope() as db:  # what is at rest, not what the API renders
        s = db.get(CallSession, sid)
        t = db.query(Turn).filter(Turn.session_id == sid).one()
        stored = json.dumps([s.room, s.caller_identity, s.meta, s.escalation_reason, t.text, t.citations])
    for secret in SECRETS:
        assert secret not in stored, (secret, stored)
    assert "[CARD]" in stored and "[PHONE]" in stored and "[EMAIL]" in stored
    # the room filter still finds the call by the room name the agent reported
    page = client.get(f"{API}/sessions", params={"room": f"sip-{PHONE}"}, headers=tenant.headers["viewer"]).json()
    assert [i["id"] for i in page["items"]] == [sid]


def test_admin_uses_dialogues_redactor_only():
    import importlib.util

    from admin import worker
    from admin.api.routes import sessions
    from dialogue import guardrails

    assert importlib.util.find_spec("admin.core.redaction") is None  # the weaker copy is gone
    assert sessions.redact is guardrails.redact and worker.redact is guardrails.redact


def test_validation_errors_are_logged_without_the_input(client, tenant, caplog):
    sid = str(uuid.uuid4())
    bad = _ev("turn", {"session_id": sid, "speaker": "user", "text": "ok", "seq": "4111 1111 1111 1111"})
    bad2 = _ev("session_start", {"session_id": sid, "started_at": f"card {CARD_DOTS}"})
    with caplog.at_level(logging.DEBUG):
        assert _post(client, tenant, [bad, bad2])["applied"] == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "rejected recorder event" in text and "seq" in text
    assert "4111" not in text and "1111" not in text
