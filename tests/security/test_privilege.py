"""Item 6: an admin of a tenant could PATCH the platform administrator's password, then sign in
as them and list and create tenants. Now only a platform administrator changes or removes one."""

from __future__ import annotations

from .conftest import API, make_tenant


def _login(client, email, password):  # noqa: ANN001
    return client.post(f"{API}/login/access-token", data={"username": email, "password": password})


def test_tenant_admin_cannot_take_over_the_platform_admin(client):
    platform = make_tenant(superuser=True)  # its admin is a platform administrator
    su_id = platform.users["admin"]
    # a second, ordinary admin of the same organisation
    r = client.post(f"{API}/users", json={"email": f"admin2-{platform.slug}@example.org", "password": "another long pw",
                                          "role": "admin"}, headers=platform.headers["admin"])
    assert r.status_code == 201, r.text
    tok = _login(client, f"admin2-{platform.slug}@example.org", "another long pw").json()["access_token"]
    h = {"Authorization": f"Bearer {tok}"}
    assert client.get(f"{API}/tenants", headers=h).status_code == 403
    for body in ({"password": "attacker password"}, {"role": "viewer"}, {"is_active": False}, {"full_name": "x"}):
        r = client.patch(f"{API}/users/{su_id}", json=body, headers=h)
        assert r.status_code == 403, (body, r.text)
    assert client.delete(f"{API}/users/{su_id}", headers=h).status_code == 403
    assert _login(client, platform.emails["admin"], "attacker password").status_code == 400
    assert _login(client, platform.emails["admin"], platform.password).status_code == 200
    # the platform administrator still manages ordinary users
    r = client.patch(f"{API}/users/{platform.users['viewer']}", json={"full_name": "Vee"},
                     headers=platform.headers["admin"])
    assert r.status_code == 200


def test_tenant_admin_cannot_grant_itself_platform_rights(client, tenant):
    r = client.patch(f"{API}/users/{tenant.users['operator']}", json={"role": "admin", "is_superuser": True},
                     headers=tenant.headers["admin"])
    assert r.status_code == 200
    assert client.get(f"{API}/tenants", headers=tenant.headers["operator"]).status_code == 403
    r = client.post(f"{API}/users", json={"email": f"x-{tenant.slug}@example.org", "password": "long enough pw",
                                          "role": "admin", "is_superuser": True}, headers=tenant.headers["admin"])
    assert r.status_code == 201
    tok = _login(client, f"x-{tenant.slug}@example.org", "long enough pw").json()["access_token"]
    assert client.get(f"{API}/tenants", headers={"Authorization": f"Bearer {tok}"}).status_code == 403
