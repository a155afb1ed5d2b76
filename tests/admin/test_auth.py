"""Auth matrix: every route checks a role; each role gets exactly the routes of the matrix;
a tenant can neither read nor change another's data (route by route); login works and is rate limited."""

from __future__ import annotations

import re
import uuid

import pytest

from .conftest import REDIS_URL, make_tenant, png_bytes, requires_redis

API = "/api/v1"
ROLES = ("admin", "operator", "viewer", "agent", "worker")
R, E, A = {"admin", "operator", "viewer"}, {"admin", "operator"}, {"admin"}
MISSING = "00000000-0000-0000-0000-000000000000"

# (method, path, roles allowed). {id} is filled with a missing id: an allowed role then gets 404 or 422
# (it passed the role check), a forbidden one 403, an anonymous caller 401.
MATRIX: list[tuple[str, str, set[str]]] = [
    ("POST", "/logout", R),
    ("GET", "/tenants/current", R),
    ("PATCH", "/tenants/current", A),
    ("GET", "/tenants", set()),  # platform administrators only
    ("POST", "/tenants", set()),
    ("GET", "/users/me", R),
    ("GET", "/users", A),
    ("POST", "/users", A),
    ("GET", "/users/{id}", A),
    ("PATCH", "/users/{id}", A),
    ("DELETE", "/users/{id}", A),
    ("GET", "/api-keys", A),
    ("POST", "/api-keys", A),
    ("DELETE", "/api-keys/{id}", A),
    ("GET", "/personas", R | {"agent"}),
    ("POST", "/personas", E),
    ("GET", "/personas/{id}", R | {"agent"}),
    ("PATCH", "/personas/{id}", E),
    ("DELETE", "/personas/{id}", E),
    ("GET", "/avatars", R | {"agent", "worker"}),
    ("POST", "/avatars", E),
    ("GET", "/avatars/{id}", R | {"agent", "worker"}),
    ("PATCH", "/avatars/{id}", E),
    ("DELETE", "/avatars/{id}", E),
    ("POST", "/avatars/{id}/portrait", E),
    ("GET", "/avatars/{id}/portrait", R | {"agent", "worker"}),
    ("GET", "/avatars/{id}/preview", R | {"agent", "worker"}),
    ("GET", "/voices", R),
    ("POST", "/avatars/{id}/prepare", E),
    ("GET", "/knowledge-bases", R | {"agent"}),
    ("POST", "/knowledge-bases", E),
    ("GET", "/knowledge-bases/{id}", R | {"agent"}),
    ("PATCH", "/knowledge-bases/{id}", E),
    ("DELETE", "/knowledge-bases/{id}", E),
    ("GET", "/knowledge-bases/{id}/documents", R | {"agent"}),
    ("POST", "/knowledge-bases/{id}/documents", E),
    ("GET", "/documents/{id}", R | {"agent"}),
    ("GET", "/documents/{id}/chunks", R | {"agent"}),
    ("POST", "/documents/{id}/ingest", E),
    ("DELETE", "/documents/{id}", E),
    ("GET", "/sessions", R),
    ("GET", "/sessions/export", R),
    ("GET", "/sessions/stats", R),
    ("GET", "/sessions/{id}", R),
    ("POST", "/agent/events", {"agent", "admin"}),
    ("GET", "/agent/calls/{id}", {"agent"}),
    ("GET", "/agent/calls/{id}/knowledge", {"agent"}),
    ("GET", "/agent/calls/{id}/avatar", {"agent", "worker"}),
    ("GET", "/handoffs", R),
    ("GET", "/handoffs/stream", R),
    ("POST", "/handoffs/{id}/accept", E),
    ("POST", "/tokens/livekit", {"admin", "operator", "agent"}),
    ("GET", "/audit", {"admin", "viewer"}),
    ("GET", "/audit/verify", {"admin", "viewer"}),
]


def _routes():
    from fastapi.routing import APIRoute

    from admin.api.main import api_router  # noqa: F401  (imports every route module)
    from admin.api.routes import (
        api_keys,
        audit,
        avatars,
        calls,
        handoffs,
        knowledge,
        login,
        personas,
        sessions,
        tenants,
        tokens,
        users,
    )

    for mod in (login, tenants, users, api_keys, personas, avatars, knowledge, sessions, tokens, audit, calls, handoffs):
        for route in mod.router.routes:
            if isinstance(route, APIRoute):
                for method in route.methods:
                    yield method, re.sub(r"\{[^}]+\}", "{id}", route.path), route


def _role_check(dependant):
    for dep in dependant.dependencies:
        if hasattr(dep.call, "allowed_roles"):
            return dep.call
        found = _role_check(dep)
        if found:
            return found
    return None


def test_every_route_has_a_role_check_and_is_in_the_matrix():
    documented = {(m, p) for m, p, _ in MATRIX}
    for method, path, route in _routes():
        if path == "/login/access-token":
            continue  # the one public route: rate limited instead
        check = _role_check(route.dependant)
        assert check is not None, f"{method} {path} has no role check"
        assert (method, path) in documented, f"{method} {path} is missing from the auth matrix test"
        roles = set() if check.superuser_only else {r.value for r in check.allowed_roles}
        assert roles == dict(((m, p), r) for m, p, r in MATRIX)[(method, path)], f"{method} {path}"


@pytest.mark.parametrize("method,path,allowed", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_role_matrix(client, method, path, allowed, shared_tenant):
    url = API + path.replace("{id}", MISSING) + ("?seconds=1" if path.endswith("/stream") else "")  # streams end
    assert client.request(method, url).status_code == 401
    assert client.request(method, url, headers={"Authorization": "Bearer dht_forged"}).status_code == 401
    for role in ROLES:
        r = client.request(method, url, headers=shared_tenant.headers[role])
        if role in allowed:
            assert r.status_code not in (401, 403), f"{role} refused on {method} {path}: {r.text}"
        else:
            assert r.status_code == 403, f"{role} allowed on {method} {path}: {r.status_code}"


@pytest.fixture
def shared_tenant():
    """Function-scoped: the logout probe revokes its tokens."""
    return make_tenant()


def test_superuser_routes(client):
    su = make_tenant(superuser=True)
    assert client.get(f"{API}/tenants", headers=su.headers["admin"]).status_code == 200
    slug = f"new-{uuid.uuid4().hex[:8]}"
    r = client.post(f"{API}/tenants", headers=su.headers["admin"],
                    json={"name": "New Bank", "slug": slug, "admin_email": f"boss@{slug}.example.org",
                          "admin_password": "long enough password"})
    assert r.status_code == 201, r.text
    login = client.post(f"{API}/login/access-token",
                        data={"username": f"boss@{slug}.example.org", "password": "long enough password"})
    assert login.status_code == 200
    me = client.get(f"{API}/tenants/current", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert me.json()["slug"] == slug


# --- tenant isolation ---------------------------------------------------------------------
@pytest.fixture
def seeded(client, tenant):
    """Tenant A with one of everything."""
    h = tenant.headers["admin"]
    ids = {}
    ids["kb"] = client.post(f"{API}/knowledge-bases", json={"name": "FAQ"}, headers=h).json()["id"]
    ids["persona"] = client.post(f"{API}/personas", json={"name": "Clerk", "knowledge_base_id": ids["kb"]},
                                 headers=h).json()["id"]
    ids["avatar"] = client.post(f"{API}/avatars", json={"name": "Ana", "engine": "simple",
                                                        "persona_id": ids["persona"]}, headers=h).json()["id"]
    ids["doc"] = client.post(f"{API}/knowledge-bases/{ids['kb']}/documents",
                             files={"file": ("faq.md", b"# Hours\n\nWe open at nine.", "text/markdown")},
                             headers=h).json()["id"]
    ids["user"] = tenant.users["viewer"]
    ids["key"] = client.post(f"{API}/api-keys", json={"name": "agent"}, headers=h).json()["id"]
    ids["session"] = str(uuid.uuid4())
    client.post(f"{API}/agent/events", headers=tenant.headers["agent"], json={"events": [
        {"event_id": str(uuid.uuid4()), "type": "session_start", "payload": {"session_id": ids["session"]}},
        {"event_id": str(uuid.uuid4()), "type": "turn",
         "payload": {"session_id": ids["session"], "speaker": "user", "text": "secret of A"}},
    ]})
    return ids


def test_tenant_isolation_route_by_route(client, tenant, other_tenant, seeded):
    ids = seeded
    img = {"file": ("p.png", png_bytes(), "image/png")}
    doc = {"file": ("x.md", b"x", "text/markdown")}
    probes = [
        ("GET", f"/users/{ids['user']}", None),
        ("PATCH", f"/users/{ids['user']}", {"json": {"full_name": "pwned"}}),
        ("DELETE", f"/users/{ids['user']}", None),
        ("DELETE", f"/api-keys/{ids['key']}", None),
        ("GET", f"/personas/{ids['persona']}", None),
        ("PATCH", f"/personas/{ids['persona']}", {"json": {"name": "pwned"}}),
        ("DELETE", f"/personas/{ids['persona']}", None),
        ("GET", f"/avatars/{ids['avatar']}", None),
        ("PATCH", f"/avatars/{ids['avatar']}", {"json": {"name": "pwned"}}),
        ("POST", f"/avatars/{ids['avatar']}/portrait", {"files": img}),
        ("GET", f"/avatars/{ids['avatar']}/portrait", None),
        ("GET", f"/avatars/{ids['avatar']}/preview", None),
        ("POST", f"/avatars/{ids['avatar']}/prepare", None),
        ("DELETE", f"/avatars/{ids['avatar']}", None),
        ("GET", f"/knowledge-bases/{ids['kb']}", None),
        ("PATCH", f"/knowledge-bases/{ids['kb']}", {"json": {"name": "pwned"}}),
        ("GET", f"/knowledge-bases/{ids['kb']}/documents", None),
        ("POST", f"/knowledge-bases/{ids['kb']}/documents", {"files": doc}),
        ("DELETE", f"/knowledge-bases/{ids['kb']}", None),
        ("GET", f"/documents/{ids['doc']}", None),
        ("GET", f"/documents/{ids['doc']}/chunks", None),
        ("POST", f"/documents/{ids['doc']}/ingest", None),
        ("DELETE", f"/documents/{ids['doc']}", None),
        ("GET", f"/sessions/{ids['session']}", None),
        ("POST", "/tokens/livekit", {"json": {"avatar_id": ids["avatar"]}}),
        # a persona or avatar of B may not point at A's objects either
        ("POST", "/personas", {"json": {"name": "x", "knowledge_base_id": ids["kb"]}}),
        ("POST", "/avatars", {"json": {"name": "x", "persona_id": ids["persona"]}}),
    ]
    for method, path, kw in probes:
        for role in ROLES:
            r = client.request(method, API + path, headers=other_tenant.headers[role], **(kw or {}))
            assert r.status_code in (403, 404), f"{role} of B got {r.status_code} on {method} {path}"
    # lists of B show nothing of A
    hb = other_tenant.headers["admin"]
    for path in ("/users", "/api-keys", "/personas", "/avatars", "/knowledge-bases", "/sessions", "/audit"):
        body = client.get(API + path, headers=hb).text
        for value in ids.values():
            assert value not in body, f"{path} of B shows A's {value}"
    assert "secret of A" not in client.get(f"{API}/sessions/export", headers=hb).text
    # and A's data is intact
    ha = tenant.headers["admin"]
    assert client.get(f"{API}/personas/{ids['persona']}", headers=ha).json()["name"] == "Clerk"
    assert client.get(f"{API}/avatars/{ids['avatar']}", headers=ha).json()["name"] == "Ana"
    assert client.get(f"{API}/users/{ids['user']}", headers=ha).json()["full_name"] is None
    assert client.get(f"{API}/documents/{ids['doc']}", headers=ha).status_code == 200


# --- login --------------------------------------------------------------------------------
def test_login_logout_and_argon2(client, tenant):
    from sqlalchemy import select

    from admin.core.db import session_scope
    from admin.models import User

    bad = client.post(f"{API}/login/access-token", data={"username": tenant.emails["operator"], "password": "nope"})
    assert bad.status_code == 400
    failed = client.get(f"{API}/audit", params={"resource": "user"}, headers=tenant.headers["admin"]).json()
    assert [e["action"] for e in failed] == ["login_failed"]
    r = client.post(f"{API}/login/access-token",
                    data={"username": tenant.emails["operator"].upper(), "password": tenant.password})
    assert r.status_code == 200
    h = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get(f"{API}/users/me", headers=h).json()["role"] == "operator"
    assert client.post(f"{API}/logout", headers=h).status_code == 204
    assert client.get(f"{API}/users/me", headers=h).status_code == 401
    with session_scope() as db:
        assert db.scalar(select(User.hashed_password).where(User.id == tenant.users["operator"])).startswith("$argon2id$")


def test_login_is_rate_limited(client, tenant, monkeypatch):
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "login_rate_limit", "10/86400")  # a window that cannot roll over mid-test
    codes = [client.post(f"{API}/login/access-token", data={"username": tenant.emails["viewer"], "password": "x"}).status_code
             for _ in range(12)]
    assert codes[:10] == [400] * 10 and codes[10:] == [429, 429]


def test_successful_sign_ins_do_not_use_up_the_throttle(client, tenant, monkeypatch):
    """Colleagues behind one address sign in all morning; only failures count."""
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "login_rate_limit", "3/86400")
    good = {"username": tenant.emails["operator"], "password": tenant.password}
    codes = [client.post(f"{API}/login/access-token", data=good).status_code for _ in range(6)]
    assert codes == [200] * 6
    bad = {"username": tenant.emails["operator"], "password": "wrong"}
    codes = [client.post(f"{API}/login/access-token", data=bad).status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    assert client.post(f"{API}/login/access-token", data=good).status_code == 429  # the address is throttled now


def test_deactivated_user_and_revoked_key_are_refused(client, tenant):
    ha = tenant.headers["admin"]
    client.patch(f"{API}/users/{tenant.users['viewer']}", json={"is_active": False}, headers=ha)
    assert client.get(f"{API}/users/me", headers=tenant.headers["viewer"]).status_code == 401
    created = client.post(f"{API}/api-keys", json={"name": "w", "role": "worker"}, headers=ha).json()
    kh = {"X-API-Key": created["key"]}
    assert client.get(f"{API}/avatars", headers=kh).status_code == 200
    client.delete(f"{API}/api-keys/{created['id']}", headers=ha)
    assert client.get(f"{API}/avatars", headers=kh).status_code == 401


def test_admin_cannot_lock_themselves_out(client, tenant):
    r = client.patch(f"{API}/users/{tenant.users['admin']}", json={"role": "viewer"}, headers=tenant.headers["admin"])
    assert r.status_code == 400


@requires_redis
def test_rate_limits_are_shared_between_processes_through_redis():
    from fastapi import HTTPException

    from admin.core.ratelimit import RateLimiter

    key = f"test:{uuid.uuid4().hex}"
    a, b = RateLimiter(REDIS_URL), RateLimiter(REDIS_URL)  # two API processes
    a.hit(key, "3/60")
    b.hit(key, "3/60")
    a.hit(key, "3/60")
    with pytest.raises(HTTPException) as exc:
        b.hit(key, "3/60")
    assert exc.value.status_code == 429
    with pytest.raises(HTTPException):
        a.check(key, "3/60")  # what the other process counted
    a.check(f"{key}:other", "3/60")


def test_admin_renames_own_tenant_and_it_is_audited(client, tenant):
    r = client.patch(f"{API}/tenants/current", json={"name": "Bank of Tests"}, headers=tenant.headers["admin"])
    assert r.status_code == 200 and r.json()["name"] == "Bank of Tests"
    log = client.get(f"{API}/audit", params={"resource": "tenant"}, headers=tenant.headers["admin"]).json()
    assert log[-1]["changes"]["name"]["to"] == "Bank of Tests"


def test_user_management_by_admin(client, tenant):
    h = tenant.headers["admin"]
    u = client.post(f"{API}/users", json={"email": f"op-{tenant.slug}@example.org", "password": "0123456789ab",
                                          "role": "operator"}, headers=h)
    assert u.status_code == 201
    uid = u.json()["id"]
    assert client.post(f"{API}/users", json={"email": f"op-{tenant.slug}@example.org", "password": "0123456789ab"},
                       headers=h).status_code == 409
    assert client.patch(f"{API}/users/{uid}", json={"password": "another long one"}, headers=h).status_code == 200
    login = client.post(f"{API}/login/access-token",
                        data={"username": f"op-{tenant.slug}@example.org", "password": "another long one"})
    assert login.status_code == 200
    assert "another long one" not in client.get(f"{API}/audit", headers=h).text
    assert client.delete(f"{API}/users/{uid}", headers=h).status_code == 204
    assert client.get(f"{API}/users/{uid}", headers=h).status_code == 404
