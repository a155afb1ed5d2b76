"""Probes and metrics."""


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_schema_at_head(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"


def test_metrics_counts_requests(client):
    client.get("/healthz")
    body = client.get("/metrics").text
    assert "admin_http_requests_total" in body
    assert 'route="/healthz"' in body


def test_openapi_is_versioned(client):
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/sessions" in spec["paths"]
    assert "/api/v1/tokens/livekit" in spec["paths"]
