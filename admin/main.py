"""The FastAPI application."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from admin.api.main import api_router
from admin.api.routes import health
from admin.core.config import get_settings
from admin.core.headers import SecurityHeaders
from admin.core.limits import BodyLimitMiddleware, default_rules
from admin.core.ratelimit import RateLimiter

logger = logging.getLogger("admin")
STATIC_DIR = Path(__file__).parent / "static"


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0] if route.tags else 'default'}-{route.name}"


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The recorder and the dashboard retry on 503; nothing was written.
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        return JSONResponse({"detail": "The database is unavailable; try again shortly."}, status_code=503,
                            headers={"Retry-After": "2"})
    if isinstance(exc, DataError):  # the database refused a value (too long, out of range): the request's fault
        logger.error("database refused a value on %s %s: %s", request.method, request.url.path,
                     str(exc.orig).splitlines()[0] if exc.orig else exc.__class__.__name__)
        return JSONResponse({"detail": "A value is too long or out of range for its field; shorten or correct it."},
                            status_code=422)
    if isinstance(exc, IntegrityError):  # a concurrent request wrote the same thing first
        logger.warning("integrity conflict on %s %s: %s", request.method, request.url.path,
                       str(exc.orig).splitlines()[0] if exc.orig else exc.__class__.__name__)
        return JSONResponse({"detail": "The change conflicts with existing data (a concurrent change?); "
                                       "reload and try again."}, status_code=409)
    logger.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal error; it has been logged."}, status_code=500)


def create_app(static_dir: Path | None = None) -> FastAPI:
    """Build the app from the current settings; ``static_dir`` (default admin/static) is served at ``/``."""
    s = get_settings()
    s.check_production()  # ADMIN_ENV=production: refuse default or short secrets, with one clear error
    app = FastAPI(
        title="dh-agent admin",
        version="1",
        description="Manage digital humans, their personas and knowledge, and review every call.",
        openapi_url=f"{s.api_prefix}/openapi.json",
        docs_url=f"{s.api_prefix}/docs",
        redoc_url=None,
        generate_unique_id_function=_operation_id,
    )
    app.state.rate_limiter = RateLimiter(s.rate_limit_redis_url)
    # Body limits (admin.core.limits): added first, so they wrap the routes directly (a 413 raised while
    # a route reads reaches FastAPI as an HTTPException, not from the metrics middleware's task group);
    # no middleware reads a body, so the Content-Length check still comes before any byte is read.
    app.add_middleware(
        BodyLimitMiddleware, default=s.max_body_bytes,
        rules=default_rules(s.api_prefix, max_document_bytes=s.max_document_bytes,
                            max_portrait_bytes=s.max_portrait_bytes, max_public_body_bytes=s.max_public_body_bytes),
    )
    if s.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], allow_credentials=False)
    app.middleware("http")(health.metrics_middleware)
    app.add_middleware(SecurityHeaders, settings=s)
    app.add_exception_handler(DBAPIError, _database_unavailable)
    app.include_router(health.router)
    app.include_router(api_router, prefix=s.api_prefix)
    static_dir = static_dir or STATIC_DIR
    if static_dir.is_dir():  # the web widget / dashboard, mounted last so the API wins
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="static")
    return app
