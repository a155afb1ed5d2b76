"""Operator loop, item 2 (tenant boundaries) and the failure cases of a call's set-up.

The caller's token names an opaque ticket; only the organisation's own agent key or the
deployment's platform key exchanges it for the call's persona, knowledge and grant, and what the
agent does with each answer is `agent.call_config.resolve_call` (the worker's own path)."""

from __future__ import annotations

import asyncio

from .conftest import API, call_token, dispatch_metadata, make_avatar, serve


def _persona(client, t, **kw) -> dict:  # noqa: ANN001
    r = client.post(f"{API}/personas", json={"name": "Ava", "greeting": "Hello from the bank.", **kw},
                    headers=t.headers["operator"])
    assert r.status_code == 201, r.text
    return r.json()


def test_a_ticket_is_resolved_only_by_its_organisation_or_the_platform(client, tenant, other_tenant):
    a, b = tenant, other_tenant
    av = make_avatar(client, a)
    p = _persona(client, a)
    client.patch(f"{API}/avatars/{av['id']}", json={"persona_id": p["id"]}, headers=a.headers["operator"])
    ticket = dispatch_metadata(call_token(client, a, av["id"])["token"])["ticket"]
    paths = (f"/agent/calls/{ticket}", f"/agent/calls/{ticket}/knowledge", f"/agent/calls/{ticket}/avatar")
    # another organisation's keys, even its agent and worker: as if the call did not exist
    for role in ("agent", "worker"):
        codes = [client.get(f"{API}{path}", headers=b.headers[role]).status_code for path in paths]
        assert codes == ([404, 404, 404] if role == "agent" else [403, 403, 404]), (role, codes)
    # people, even the organisation's own admin, do not resolve tickets: machines do
    assert client.get(f"{API}{paths[0]}", headers=a.headers["admin"]).status_code == 403
    # a guessed or altered ticket
    for bad in (ticket[:-1] + ("A" if ticket[-1] != "A" else "B"), "x" * 32, "short"):
        assert client.get(f"{API}/agent/calls/{bad}", headers=a.headers["platform-agent"]).status_code == 404
    # the organisation's own key and the deployment's key see the same call: A's persona, A's session
    own = client.get(f"{API}{paths[0]}", headers=a.headers["agent"]).json()
    platform = client.get(f"{API}{paths[0]}", headers=b.headers["platform-agent"]).json()
    assert own["persona"]["name"] == platform["persona"]["name"] == "Ava"
    assert own["persona"]["greeting"] == {"en": "Hello from the bank."} and own["organisation"] == a.slug
    assert own["session_id"] == platform["session_id"]


def test_an_api_key_made_through_the_api_is_never_a_platform_key(client, tenant, other_tenant):
    made = client.post(f"{API}/api-keys", json={"name": "sneaky", "role": "agent", "platform": True},
                       headers=tenant.headers["admin"])
    assert made.status_code in (201, 422), made.text  # the field is ignored or refused, never honoured
    key = made.json()["key"] if made.status_code == 201 else client.post(
        f"{API}/api-keys", json={"name": "plain", "role": "agent"}, headers=tenant.headers["admin"]).json()["key"]
    ticket = dispatch_metadata(call_token(client, other_tenant, make_avatar(client, other_tenant)["id"])["token"])["ticket"]
    assert client.get(f"{API}/agent/calls/{ticket}", headers={"X-API-Key": key}).status_code == 404


def test_every_failure_gives_a_working_call_with_a_reason(app, tenant, tmp_path):
    """What resolve_call hands the worker in each failure case: never an exception, never a hang."""
    from agent.call_config import resolve_call
    from harness.devstack import free_port

    with serve(app) as url:
        from httpx import Client

        with Client(base_url=url, timeout=30) as http:
            av = http.post(f"{API}/avatars", json={"name": "A", "engine": "portrait"}, headers=tenant.headers["operator"]).json()
            tok = http.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"]}, headers=tenant.headers["operator"]).json()
        meta = dispatch_metadata(tok["token"])
        key = tenant.headers["agent"]["X-API-Key"]

        def resolve(m, admin_url=url, api_key=key):  # noqa: ANN001, ANN202
            return asyncio.run(resolve_call(m, admin_url=admin_url, api_key=api_key, cache_dir=tmp_path, timeout=3))

        # the avatar has no persona and is not prepared: recorded, the default persona, no knowledge at all
        cfg = resolve(meta)
        assert cfg.grant and cfg.session_id == tok["session_id"] and cfg.persona is None
        assert cfg.index is not None and cfg.index.chunks == []  # never the deployment's default knowledge
        assert any("no persona" in r for r in cfg.reasons) and any("not prepared" in r for r in cfg.reasons)
        assert "ticket" not in cfg.avatar_metadata()  # the avatar worker shows its default face
        # unknown ticket, no ticket, no admin configured, admin unreachable: default persona and knowledge, not recorded
        for m, admin_url, why in (({"ticket": "y" * 32}, url, "refused"), ({}, url, "no call ticket"),
                                  (meta, "", "not set"), (meta, f"http://127.0.0.1:{free_port()}", "unreachable")):
            cfg = resolve(m, admin_url=admin_url)
            assert cfg.grant is None and cfg.persona is None and cfg.index is None, why
            assert any(why in r for r in cfg.reasons), (why, cfg.reasons)


def test_a_resumed_call_gets_its_session_turns_so_far_in_order(client, tenant, other_tenant):
    """A call taken over by a standby agent worker (agent/failover.py) continues its session: the
    ticket's call config carries the turns recorded so far, oldest first, redacted as stored; a new
    call's is empty, and another organisation's key still sees nothing."""
    import uuid

    from admin.core.security import mint_session_grant

    av = make_avatar(client, tenant)
    ticket = dispatch_metadata(call_token(client, tenant, av["id"])["token"])["ticket"]
    first = client.get(f"{API}/agent/calls/{ticket}", headers=tenant.headers["agent"]).json()
    assert first["history"] == []
    sid = first["session_id"]
    turns = [(1, "assistant", "Hello, how can I help?"), (0, "user", "hi"),
             (2, "user", "my card 4111 1111 1111 1111 was stolen"), (100000, "assistant", "Sorry, we were cut off.")]
    events = [{"event_id": str(uuid.uuid4()), "type": "turn", "grant": mint_session_grant(tenant.id, sid, 600),
               "payload": {"session_id": sid, "seq": seq, "speaker": who, "text": text}} for seq, who, text in turns]
    r = client.post(f"{API}/agent/events", json={"events": events}, headers=tenant.headers["agent"])
    assert r.status_code == 200 and r.json()["applied"] == 4, r.text
    again = client.get(f"{API}/agent/calls/{ticket}", headers=tenant.headers["agent"]).json()
    assert again["session_id"] == sid
    assert [(t["seq"], t["speaker"]) for t in again["history"]] == [(0, "user"), (1, "assistant"), (2, "user"),
                                                                   (100000, "assistant")]
    assert "4111" not in again["history"][2]["text"]
    assert client.get(f"{API}/agent/calls/{ticket}", headers=other_tenant.headers["agent"]).status_code == 404
