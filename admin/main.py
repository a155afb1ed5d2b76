"""The FastAPI application."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from admin.api.main import api_router
from admin.api.routes import health
from admin.core.config import get_settings
from admin.core.ratelimit import RateLimiter

STATIC_DIR = Path(__file__).parent / "static"


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0] if route.tags else 'default'}-{route.name}"


def create_app() -> FastAPI:
    """Build the app from the current settings."""
    s = get_settings()
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
    if s.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], allow_credentials=False)
    app.middleware("http")(health.metrics_middleware)
    app.include_router(health.router)
    app.include_router(api_router, prefix=s.api_prefix)
    if STATIC_DIR.is_dir():  # the web widget / dashboard, mounted last so the API wins
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
