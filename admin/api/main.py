"""All versioned routers."""

from fastapi import APIRouter

from admin.api.routes import api_keys, audit, avatars, knowledge, login, personas, sessions, tenants, tokens, users, widget
from admin.api.routes import calls, console, handoffs

api_router = APIRouter()
for module in (login, tenants, users, api_keys, personas, avatars, knowledge, sessions, tokens, audit, widget, console, calls, handoffs):
    api_router.include_router(module.router)
