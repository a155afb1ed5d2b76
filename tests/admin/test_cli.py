"""The command line: bootstrap is idempotent, create-admin can sign in, last-session reads the API."""

from __future__ import annotations

import uuid

API = "/api/v1"


def test_bootstrap_is_idempotent_and_keys_work(client, tmp_path):
    from admin.cli import bootstrap

    kw = dict(tenant_slug=f"demo-{uuid.uuid4().hex[:6]}", state_file=tmp_path / "state.json",
              admin_url="http://x", avatar_name="Demo", engine="simple")
    first = bootstrap(**kw)
    assert bootstrap(**kw) == first
    assert client.get(f"{API}/avatars/{first['DH_AVATAR_ID']}", headers={"X-API-Key": first["DH_ADMIN_API_KEY"]}).status_code == 200
    assert client.get(f"{API}/sessions", headers={"X-API-Key": first["DH_ADMIN_VIEWER_KEY"]}).status_code == 200


def test_create_admin_then_login(client):
    from admin.cli import create_admin

    email = f"root-{uuid.uuid4().hex[:6]}@example.org"
    create_admin(email, "a long password", f"org-{uuid.uuid4().hex[:6]}")
    r = client.post(f"{API}/login/access-token", data={"username": email, "password": "a long password"})
    assert r.status_code == 200
    me = client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()
    assert me["role"] == "admin"
