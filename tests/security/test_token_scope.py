"""Item 5: tokens for other tenants' rooms and for reserved identities.

An operator of tenant A obtained a token for tenant B's live room with the caller's own identity
(join, kick the caller, publish); an agent key obtained ``identity: agent-...``. Now a custom room
must lie in the caller's tenant's namespace, and agent-/avatar-/caller- identities are never issued
on request.
"""

from __future__ import annotations

import pytest

from .conftest import API, call_token, jwt_claims, make_avatar


def test_operator_of_a_gets_no_token_for_tenant_bs_live_room(client, tenant, other_tenant):
    a, b = tenant, other_tenant
    live = call_token(client, b, make_avatar(client, b)["id"])  # B's caller is in this room
    a_avatar = make_avatar(client, a)["id"]
    for body in ({"room": live["room"], "identity": live["identity"]},
                 {"room": live["room"], "identity": "supervisor"},
                 {"room": live["room"]}):
        r = client.post(f"{API}/tokens/livekit", json={"avatar_id": a_avatar, **body}, headers=a.headers["operator"])
        assert r.status_code == 404, (body, r.text)
    # a room outside every namespace is refused too (it could be anyone's)
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": a_avatar, "room": "support-1"},
                    headers=a.headers["operator"])
    assert r.status_code == 404


def test_operator_of_b_may_join_bs_room_but_not_as_the_caller(client, other_tenant):
    b = other_tenant
    avatar = make_avatar(client, b)["id"]
    live = call_token(client, b, avatar)
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": avatar, "room": live["room"],
                                                   "identity": live["identity"]}, headers=b.headers["operator"])
    assert r.status_code == 403  # the caller's identity would kick the caller out
    joined = call_token(client, b, avatar, room=live["room"], identity="supervisor-ann")
    claims = jwt_claims(joined["token"])
    assert claims["video"]["room"] == live["room"] and claims["sub"] == "supervisor-ann"


@pytest.mark.parametrize("identity", ["agent-AJ_x1", "avatar-dh-avatar", "AGENT-1", " agent-2", "caller-1234"])
@pytest.mark.parametrize("role", ["agent", "operator", "admin"])
def test_reserved_identities_are_never_issued(client, tenant, identity, role):
    avatar = make_avatar(client, tenant)["id"]
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": avatar, "identity": identity},
                    headers=tenant.headers[role])
    assert r.status_code == 403, r.text


def test_widget_caller_cannot_choose_room_or_identity(client, tenant, other_tenant, monkeypatch):
    live = call_token(client, other_tenant, make_avatar(client, other_tenant)["id"])
    av = make_avatar(client, tenant)["id"]
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", av)
    r = client.post(f"{API}/widget/token", json={"avatar_id": av, "room": live["room"], "identity": "agent-x"})
    assert r.status_code == 201
    claims = jwt_claims(r.json()["token"])
    assert claims["video"]["room"] != live["room"] and not claims["sub"].startswith("agent-")
