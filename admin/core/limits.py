"""Request size limits, enforced at the ASGI layer before the application reads a byte.

:class:`BodyLimitMiddleware` wraps the whole app. A request whose ``Content-Length`` is over
its route's limit is answered 413 at once, without reading the body; a body sent without a
length (chunked) is counted as it streams in and the request fails with 413 as soon as it
passes the limit, so nothing larger than the limit is ever buffered or spooled to disk.
Paths and query strings holding a NUL character are refused (422) here too: no database
column can store one, and PostgreSQL answers an error when asked to compare with one.

The limit of a route is the first matching rule of ``rules`` (method, path regex, bytes), else
``default`` (``ADMIN_MAX_BODY_BYTES``); see :func:`default_rules` for the upload routes' caps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# What a multipart envelope adds around an uploaded file (boundaries, part headers, a long file name).
MULTIPART_OVERHEAD = 64 * 1024


def _too_large_detail(limit: int) -> str:
    if limit >= 1024 * 1024:
        size = f"{limit / (1024 * 1024):.1f} MB"
    elif limit >= 1024:
        size = f"{limit // 1024} kB"
    else:
        size = f"{limit} bytes"
    return f"The request body is larger than this route accepts ({size}); send less."


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes its limit; FastAPI and Starlette re-raise
    HTTPExceptions from body parsing, so the client gets this 413, not a parsing error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_detail(limit))
        self.limit = limit


def default_rules(api_prefix: str, *, max_document_bytes: int, max_portrait_bytes: int,
                  max_public_body_bytes: int) -> list[tuple[str | None, re.Pattern[str], int]]:
    """The per-route caps: uploads get their file limit plus the multipart envelope; routes
    without authentication (widget, login, console sign-in) get a small cap."""
    p = re.escape(api_prefix.rstrip("/"))
    return [
        ("POST", re.compile(rf"^{p}/knowledge-bases/[^/]+/documents/?$"), max_document_bytes + MULTIPART_OVERHEAD),
        ("POST", re.compile(rf"^{p}/avatars/[^/]+/portrait/?$"), max_portrait_bytes + MULTIPART_OVERHEAD),
        (None, re.compile(rf"^{p}/widget/"), max_public_body_bytes),
        (None, re.compile(rf"^{p}/login/"), max_public_body_bytes),
        ("POST", re.compile(rf"^{p}/console/login/?$"), max_public_body_bytes),
    ]


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 past the route's body limit, 422 for NUL in the path or query."""

    def __init__(self, app: ASGIApp, *, default: int,
                 rules: list[tuple[str | None, re.Pattern[str], int]] | None = None) -> None:
        self.app = app
        self.default = default
        self.rules = rules or []

    def limit_for(self, method: str, path: str) -> int:
        """The body limit of a request."""
        for rule_method, pattern, limit in self.rules:
            if (rule_method is None or rule_method == method) and pattern.match(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"") or b""
        if "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query:
            await _reject(send, 422, "The path or query string holds a NUL character; remove it.")
            return
        limit = self.limit_for(scope["method"], scope.get("path", ""))
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            if not declared.strip().isdigit():
                await _reject(send, 400, "The Content-Length header is not a number.")
                return
            if int(declared) > limit:  # refused before a byte of the body is read
                await _reject(send, 413, _too_large_detail(limit), close=True)
                return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as exc:  # read by code that does not turn HTTPExceptions into responses
            too_large = _find_too_large(exc)
            if too_large is None or started:
                raise
            await _reject(send, 413, too_large.detail, close=True)


def _find_too_large(exc: BaseException) -> BodyTooLarge | None:
    """The BodyTooLarge in ``exc``, also inside exception groups (a BaseHTTPMiddleware reads the
    body in a task group of its own)."""
    if isinstance(exc, BodyTooLarge):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_too_large(inner)
            if found is not None:
                return found
    return None


async def _reject(send: Send, status: int, detail: str, *, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the unread body is still on the wire: this connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
