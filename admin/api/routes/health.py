"""Liveness, readiness (unversioned, no auth: for probes) and Prometheus metrics (bearer token
``ADMIN_METRICS_TOKEN``; without one configured ``/metrics`` answers 404)."""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text

from admin.core.config import get_settings
from admin.core.db import get_engine

router = APIRouter(tags=["health"])

REQUESTS = Counter("admin_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("admin_http_request_seconds", "HTTP request duration", ["method", "route"])
EVENTS = Counter("admin_recorder_events_total", "Recorder events received", ["result"])


async def metrics_middleware(request: Request, call_next):  # noqa: ANN001, ANN201
    """Count and time requests by route template (not raw path, to bound label cardinality)."""
    start = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    path = getattr(route, "path", "unmatched")
    LATENCY.labels(request.method, path).observe(time.perf_counter() - start)
    REQUESTS.labels(request.method, path, str(response.status_code)).inc()
    return response


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz() -> Response:
    """The database answers and its schema is at the migration head."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from admin.migrate import alembic_config

    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # noqa: BLE001
        return JSONResponse({"status": "unavailable", "database": str(exc.__class__.__name__)}, status_code=503)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current != head:
        return JSONResponse({"status": "unavailable", "schema": current, "expected": head,
                             "hint": "run: python -m admin migrate"}, status_code=503)
    return JSONResponse({"status": "ready", "schema": current})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (``Authorization: Bearer $ADMIN_METRICS_TOKEN``)."""
    expected = get_settings().metrics_token
    if not expected:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Send 'Authorization: Bearer <ADMIN_METRICS_TOKEN>'.",
                            headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
