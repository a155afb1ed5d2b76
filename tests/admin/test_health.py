"""Probes and metrics."""


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_schema_at_head(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"


def test_metrics_counts_requests(client, monkeypatch):
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "metrics_token", "scrape-token-0123456789")
    client.get("/healthz")
    body = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}).text
    assert "admin_http_requests_total" in body
    assert 'route="/healthz"' in body


def test_openapi_is_versioned(client):
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/sessions" in spec["paths"]
    assert "/api/v1/tokens/livekit" in spec["paths"]


def test_static_files_are_served_at_root_without_shadowing_the_api(tmp_path):
    from fastapi.testclient import TestClient

    from admin.main import create_app

    (tmp_path / "index.html").write_text("<h1>widget</h1>")
    with TestClient(create_app(static_dir=tmp_path)) as c:
        assert "widget" in c.get("/").text
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/api/v1/sessions").status_code == 401
