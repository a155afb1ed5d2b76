"""LiveKit tokens: room-scoped, TTL capped at 15 minutes, dispatching the agent with the avatar."""

from __future__ import annotations

import json

from livekit import api as lk

API = "/api/v1"


def _avatar(client, tenant, **kw):
    return client.post(f"{API}/avatars", json={"name": "Ana", "engine": "simple", **kw},
                       headers=tenant.headers["operator"]).json()


def test_token_is_room_scoped_and_dispatches_the_agent(client, tenant):
    av = _avatar(client, tenant)
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"], "ttl_seconds": 3600, "name": "Caller"},
                    headers=tenant.headers["agent"])
    assert r.status_code == 201, r.text
    out = r.json()
    claims = lk.TokenVerifier("devkey", "secret").verify(out["token"])
    assert claims.video.room == out["room"] and claims.video.room_join
    assert not claims.video.room_admin and not claims.video.room_create
    assert claims.identity == out["identity"]
    dispatch = claims.room_config.agents[0]
    assert dispatch.agent_name == "dh-agent"
    meta = json.loads(dispatch.metadata)
    # an opaque ticket and nothing else: no URL, path, organisation, persona or grant a caller could read
    assert set(meta) == {"ticket"} and len(meta["ticket"]) >= 32
    assert tenant.id not in out["token"] and av["id"] not in dispatch.metadata
    # the agent exchanges it with its key for the call's session and grant
    cfg = client.get(f"{API}/agent/calls/{meta['ticket']}", headers=tenant.headers["agent"]).json()
    from admin.core.security import verify_session_grant

    assert cfg["session_id"] == out["session_id"] and cfg["avatar"]["id"] == av["id"]
    assert verify_session_grant(cfg["session_grant"], out["session_id"]) == tenant.id


def test_ttl_is_capped_at_15_minutes(client, tenant):
    import base64

    av = _avatar(client, tenant)
    out = client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"], "ttl_seconds": 86400},
                      headers=tenant.headers["operator"]).json()
    payload = out["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["nbf"] <= 900


def test_token_endpoint_is_rate_limited(client, tenant, monkeypatch):
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "token_rate_limit", "30/86400")  # a window that cannot roll over mid-test
    av = _avatar(client, tenant)
    codes = [client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"]}, headers=tenant.headers["agent"]).status_code
             for _ in range(32)]
    assert codes[:30] == [201] * 30 and codes[30:] == [429, 429]


def test_failed_avatar_gets_no_token(client, tenant):
    from admin.core.db import session_scope
    from admin.models import Avatar

    av = _avatar(client, tenant)
    with session_scope() as db:
        a = db.get(Avatar, av["id"])
        a.status, a.status_detail = "failed", "No face was found in the photo."
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"]}, headers=tenant.headers["agent"])
    assert r.status_code == 409 and "No face" in r.json()["detail"]


def test_a_call_room_survives_the_redactor_whatever_its_ids():
    """Rooms are stored redacted; a generated one must come back as it is, even when an id's first
    8 hex digits are all decimal (seen in CI: "dh…-59627935-9459a977" was stored as "dh…-[PHONE]-…")."""
    from admin.api.routes.tokens import call_room
    from dialogue.guardrails import redact

    for avatar_id, session_id in (("59627935-0000-4000-8000-000000000000", "94590977-1111-4111-8111-111111111111"),
                                  ("abcdef12-0000-4000-8000-000000000000", "12345678-1111-4111-8111-111111111111")):
        room = call_room("tenant-1", avatar_id, session_id)
        assert redact(room) == room, room


def test_a_requested_room_holding_personal_data_is_refused(client, tenant):
    from admin.core.security import room_prefix

    av = _avatar(client, tenant)
    room = f"{room_prefix(tenant.id)}-4915112345678"
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"], "room": room}, headers=tenant.headers["agent"])
    assert r.status_code == 422 and "personal data" in r.json()["detail"]
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"], "room": f"{room_prefix(tenant.id)}-desk-a"},
                    headers=tenant.headers["agent"])
    assert r.status_code == 201, r.text
