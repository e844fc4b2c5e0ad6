"""``GET /``: the browser client, one self-contained HTML page shipped as package data.

Why it lives in the game server: a player needs nothing but a browser and the server's
address, and the page talks to ``/applet/websocket`` on the same origin, so it works as is
behind nginx and TLS. The page has no build step and fetches nothing from elsewhere: its
CSS and JavaScript are inline. The file is read and hashed once at import, so serving it
costs no disk access, and the Content-Security-Policy allows exactly those inline blocks
(by their SHA-256 hashes) instead of ``'unsafe-inline'``: an injected script or style
would not run even if some text ever slipped into the page.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from aiohttp import web

__all__ = ["CONTENT_SECURITY_POLICY", "PAGE", "add_client_routes"]

PAGE: bytes = resources.files("game_server.net").joinpath("static/index.html").read_bytes()

_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


def _inline_hashes(page: bytes, tag: bytes) -> str:
    """The CSP source list allowing the page's inline ``<script>`` or ``<style>`` blocks."""
    sources = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for kind, body in _INLINE.findall(page)
        if kind == tag
    ]
    return " ".join(sources) or "'none'"


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_inline_hashes(PAGE, b'script')}",
        f"style-src {_inline_hashes(PAGE, b'style')}",
        # The game socket on this origin; ws:/wss: spelled out for browsers whose 'self'
        # does not cover WebSocket schemes.
        "connect-src 'self' ws: wss:",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_ETAG = '"' + hashlib.sha256(PAGE).hexdigest()[:32] + '"'
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Revalidate every time (the ETag makes that a 304), so a new server version's page
    # is never mixed with an old cached one.
    "Cache-Control": "no-cache",
    "ETag": _ETAG,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def index(request: web.Request) -> web.Response:
    if _ETAG in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=_HEADERS)
    return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers=_HEADERS)


def add_client_routes(app: web.Application) -> None:
    """Serve the browser client at ``GET /`` (and ``HEAD /``)."""
    app.router.add_get("/", index)
