"""Security headers on every response; a Content-Security-Policy on every HTML page.

Pages (the kiosk, the widget demo) may load scripts, styles and images from this origin only,
talk to this origin and to the LiveKit server only (``connect-src``), and be framed only by
``ADMIN_FRAME_ANCESTORS`` (default ``'none'``). The API docs page gets a policy that also allows
the CDN Swagger UI is loaded from.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin.core.config import Settings


def _livekit_sources(url: str) -> list[str]:
    parts = urlsplit(url)
    if not parts.netloc:
        return []
    secure = parts.scheme in ("wss", "https")
    return [f"{'wss' if secure else 'ws'}://{parts.netloc}", f"{'https' if secure else 'http'}://{parts.netloc}"]


def page_policy(s: Settings) -> str:
    """The CSP of the static HTML pages."""
    connect = " ".join(["'self'", *_livekit_sources(s.livekit_url)])
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; "
            f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {s.frame_ancestors}")


def docs_policy(s: Settings) -> str:
    """The CSP of the Swagger UI page (inline boot script, assets from jsDelivr)."""
    cdn = "https://cdn.jsdelivr.net"
    return (f"default-src 'self'; script-src 'self' 'unsafe-inline' {cdn}; style-src 'self' 'unsafe-inline' {cdn}; "
            f"img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; "
            f"base-uri 'none'; frame-ancestors {s.frame_ancestors}")


class SecurityHeaders:
    """ASGI middleware adding the headers (pure ASGI: streaming responses stay streamed)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.page = page_policy(settings).encode()
        self.docs = docs_policy(settings).encode()
        self.docs_path = f"{settings.api_prefix}/docs"
        self.deny_frames = settings.frame_ancestors.strip() == "'none'"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-content-type-options", b"referrer-policy")]
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    policy = self.docs if path.startswith(self.docs_path) else self.page
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
                    headers.append((b"content-security-policy", policy))
                    if self.deny_frames:  # for browsers without frame-ancestors
                        headers.append((b"x-frame-options", b"DENY"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
