"""Item 11, the smaller findings, each reproduced and now refused."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import httpx

from .conftest import API, dispatch_metadata, make_avatar, png_bytes, serve

ROOT = Path(__file__).resolve().parents[2]


# --- X-Forwarded-For from loopback -------------------------------------------------------------
def _widget_tokens(url: str, avatar_id: str, n: int, forwarded=lambda i: f"203.0.113.{i}") -> list[int]:  # noqa: ANN001
    return [httpx.post(f"{url}{API}/widget/token", json={"avatar_id": avatar_id},
                       headers={"X-Forwarded-For": forwarded(i)}).status_code for i in range(n)]


def _last_token_ip(tenant_id: str) -> str | None:
    from sqlalchemy import select

    from admin.core.db import session_scope
    from admin.models import AuditEntry

    with session_scope() as db:
        return db.scalar(select(AuditEntry.client_ip).where(AuditEntry.tenant_id == tenant_id,
                                                           AuditEntry.action == "issue_token")
                         .order_by(AuditEntry.seq.desc()).limit(1))


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(app, client, tenant, monkeypatch, settings_override):
    av = make_avatar(client, tenant)["id"]
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", av)
    monkeypatch.setenv("ADMIN_WIDGET_RATE_LIMIT", "3/3600")
    with serve(app) as url:  # uvicorn as `python -m admin serve` runs it, caller on loopback
        assert _widget_tokens(url, av, 4) == [201, 201, 201, 429]  # a new forged address each time: still limited
        assert _last_token_ip(tenant.id) == "127.0.0.1"
    app.state.rate_limiter.reset()
    settings_override(trusted_proxies=["127.0.0.1/32"])
    with serve(app) as url:  # behind a configured proxy, the address it saw counts
        assert _widget_tokens(url, av, 4) == [201] * 4
        assert _last_token_ip(tenant.id) == "203.0.113.3"
        # a client-written entry left of the proxy's proves nothing: the right-most untrusted one counts
        assert _widget_tokens(url, av, 1, forwarded=lambda i: "198.51.100.7, 192.0.2.9") == [201]
        assert _last_token_ip(tenant.id) == "192.0.2.9"


# --- lockout ---------------------------------------------------------------------------------
def test_failures_from_many_addresses_do_not_lock_the_account(app, tenant, settings_override):
    settings_override(trusted_proxies=["127.0.0.1"], login_rate_limit="10/3600")
    email = tenant.emails["viewer"]
    with serve(app) as url:
        def login(ip: str, pw: str) -> int:
            return httpx.post(f"{url}{API}/login/access-token", data={"username": email, "password": pw},
                              headers={"X-Forwarded-For": ip}).status_code

        assert [login(f"198.51.100.{i}", "wrong") for i in range(12)] == [400] * 12
        assert login("192.0.2.10", tenant.password) == 200  # the owner, from their own address
        # one address guessing is still stopped
        assert [login("198.51.100.200", "wrong") for _ in range(11)][-1] == 429


# --- CSV formulas ------------------------------------------------------------------------------
def test_csv_export_escapes_formulas_in_every_column(client, tenant):
    from admin.core.security import mint_session_grant

    sid = str(uuid.uuid4())
    g = mint_session_grant(tenant.id, sid, 600)
    evs = [{"event_id": str(uuid.uuid4()), "type": "session_start", "grant": g,
            "payload": {"session_id": sid, "room": "=HYPERLINK(\"http://x.example\",\"x\")"}},
           {"event_id": str(uuid.uuid4()), "type": "turn", "grant": g,
            "payload": {"session_id": sid, "speaker": "user", "text": "@SUM(A1)", "language": "+cmd|calc!A0"}}]
    assert client.post(f"{API}/agent/events", json={"events": evs}, headers=tenant.headers["agent"]).json()["applied"] == 2
    r = client.get(f"{API}/sessions/export", params={"format": "csv"}, headers=tenant.headers["viewer"])
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1
    for col in ("room", "language", "text"):
        assert rows[0][col].startswith("'"), (col, rows[0][col])


# --- password reset ----------------------------------------------------------------------------
def test_password_reset_revokes_existing_tokens(client, tenant):
    old = tenant.headers["operator"]
    assert client.get(f"{API}/users/me", headers=old).status_code == 200
    r = client.patch(f"{API}/users/{tenant.users['operator']}", json={"password": "a brand new password"},
                     headers=tenant.headers["admin"])
    assert r.status_code == 200
    assert client.get(f"{API}/users/me", headers=old).status_code == 401
    new = client.post(f"{API}/login/access-token",
                      data={"username": tenant.emails["operator"], "password": "a brand new password"})
    assert client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {new.json()['access_token']}"}).status_code == 200


def test_cli_password_reset_revokes_tokens_but_a_restart_does_not(client, tenant):
    from admin.cli import create_admin

    h = tenant.headers["admin"]
    create_admin(tenant.emails["admin"], tenant.password, tenant.slug, superuser=False)  # same password (serve)
    assert client.get(f"{API}/users/me", headers=h).status_code == 200
    create_admin(tenant.emails["admin"], "a reset password!", tenant.slug, superuser=False)
    assert client.get(f"{API}/users/me", headers=h).status_code == 401


# --- widget token, CORS, widget avatars ----------------------------------------------------------
def test_widget_token_carries_only_what_a_browser_needs(client, tenant, monkeypatch):
    av = make_avatar(client, tenant)["id"]
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", av)
    body = client.post(f"{API}/widget/token", json={"avatar_id": av}).json()
    assert set(body) == {"server_url", "token", "room", "identity", "expires_at"}
    meta = dispatch_metadata(body["token"])
    assert set(meta) == {"ticket"}  # no organisation, server path, admin URL, persona or grant to read
    assert tenant.id not in body["token"] and av not in body["token"]
    assert tenant.id not in body["room"]


def test_widget_cors_answers_configured_origins_only(client, tenant, monkeypatch):
    av = make_avatar(client, tenant)["id"]
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", av)
    for origins in ("", "*", "https://bank.example"):
        monkeypatch.setenv("ADMIN_WIDGET_ORIGINS", origins)
        r = client.post(f"{API}/widget/token", json={"avatar_id": av}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers, origins
    pre = client.options(f"{API}/widget/token", headers={"Origin": "https://bank.example",
                                                         "Access-Control-Request-Method": "POST"})
    assert pre.headers["access-control-allow-origin"] == "https://bank.example"


def test_widget_avatars_are_scoped_per_tenant_and_respect_inactive_tenants(client, tenant, other_tenant, monkeypatch):
    from admin.core.db import session_scope
    from admin.models import Tenant

    mine, theirs = make_avatar(client, tenant)["id"], make_avatar(client, other_tenant)["id"]
    tok = lambda a: client.post(f"{API}/widget/token", json={"avatar_id": a}).status_code  # noqa: E731
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", "*")
    assert (tok(mine), tok(theirs)) == (404, 404)  # no longer every avatar of every tenant
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", f"{tenant.slug}:*")
    assert (tok(mine), tok(theirs)) == (201, 404)
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", f"{tenant.slug}:*,{theirs}")
    with session_scope() as db:
        db.get(Tenant, other_tenant.id).is_active = False
    assert (tok(mine), tok(theirs)) == (201, 404)
    assert client.get(f"{API}/widget/avatars/{theirs}").status_code == 404


# --- security headers, kiosk ---------------------------------------------------------------------
def test_html_pages_carry_security_headers(client, settings_override):
    for path in ("/kiosk.html", "/widget/demo.html", f"{API}/docs"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    csp = client.get("/kiosk.html").headers["content-security-policy"]
    connect = next(d for d in csp.split(";") if d.strip().startswith("connect-src")).split()[1:]
    assert connect == ["'self'", "ws://127.0.0.1:7880", "http://127.0.0.1:7880"]  # not ?url= anywhere
    assert "script-src 'self';" in csp
    assert client.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_frame_ancestors_come_from_the_settings(settings_override):
    from fastapi.testclient import TestClient

    from admin.main import create_app

    settings_override(frame_ancestors="https://lobby.bank.example")
    with TestClient(create_app()) as c:
        r = c.get("/kiosk.html")
    assert "frame-ancestors https://lobby.bank.example" in r.headers["content-security-policy"]
    assert "x-frame-options" not in r.headers


def test_kiosk_takes_no_backend_from_the_query_string(client):
    src = (ROOT / "widget" / "src" / "index.js").read_text()
    js = client.get("/widget/dh-widget.js").text
    assert "q('url')" not in src and 'r("url")' not in js
    assert "url=" not in client.get("/kiosk.html").text


# --- files of deleted rows ----------------------------------------------------------------------
def test_deleting_avatars_documents_and_knowledge_bases_removes_their_files(client, tenant):
    from admin.core.db import session_scope
    from admin.models import Avatar, Document

    h = tenant.headers["operator"]
    av = make_avatar(client, tenant)["id"]
    r = client.post(f"{API}/avatars/{av}/portrait", files={"file": ("p.png", png_bytes(), "image/png")}, headers=h)
    assert r.status_code == 202, r.text
    with session_scope() as db:
        portrait = Path(db.get(Avatar, av).portrait_path)
    assert portrait.is_file()
    assert client.delete(f"{API}/avatars/{av}", headers=h).status_code == 204
    assert not portrait.exists() and not portrait.parent.exists()

    kb = client.post(f"{API}/knowledge-bases", json={"name": "kb"}, headers=h).json()["id"]
    docs = [client.post(f"{API}/knowledge-bases/{kb}/documents", files={"file": (f"{n}.txt", f"text {n}".encode())},
                        headers=h).json()["id"] for n in ("a", "b")]
    with session_scope() as db:
        paths = [Path(db.get(Document, d).path) for d in docs]
    assert all(p.is_file() for p in paths)
    assert client.delete(f"{API}/documents/{docs[0]}", headers=h).status_code == 204
    assert not paths[0].exists() and paths[1].is_file()
    assert client.delete(f"{API}/knowledge-bases/{kb}", headers=h).status_code == 204
    assert not paths[1].exists() and not paths[1].parent.exists()


# --- /metrics ----------------------------------------------------------------------------------
def test_metrics_need_the_configured_token(client, settings_override):
    assert client.get("/metrics").status_code == 404  # not configured: not served
    settings_override(metrics_token="scrape-0123456789abcdef")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-0123456789abcdef"})
    assert r.status_code == 200 and "admin_http_requests_total" in r.text
