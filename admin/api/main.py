"""All versioned routers."""

from fastapi import APIRouter

from admin.api.routes import (
    api_keys,
    audit,
    avatars,
    calls,
    console,
    handoffs,
    knowledge,
    login,
    personas,
    sessions,
    tenants,
    tokens,
    users,
    voices,
    widget,
)

api_router = APIRouter()
for module in (login, tenants, users, api_keys, personas, avatars, knowledge, sessions, tokens, audit, widget, console, calls, handoffs, voices):
    api_router.include_router(module.router)
