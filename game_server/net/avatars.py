"""Pictures the server serves under ``/applet/avatars/``, and the absolute URLs it hands out.

Clients show avatars from URLs: the 2016 demo's page puts an opponent's ``uavatar`` in an
``<image>``, and a mini-program resolves a relative URL inside its own package, so every
URL handed out is absolute, on the origin the client reached (``public_origin``).

``robot.png`` is the demo's robot: the demo's server gave its robots a picture, and its
page shows a blank square without one. It ships with the package and is read once.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

from aiohttp import web

from game_server.net.addresses import forwarded_scheme
from game_server.net.appkeys import CONFIG, TRUSTED_PROXIES

AVATARS_PREFIX = "/applet/avatars/"
ROBOT_FILE = "robot.png"
ROBOT_PATH = AVATARS_PREFIX + ROBOT_FILE
ROBOT_PNG: bytes = resources.files("game_server.net").joinpath("static/" + ROBOT_FILE).read_bytes()
_ROBOT_ETAG = '"' + hashlib.sha256(ROBOT_PNG).hexdigest()[:32] + '"'
# A day: the picture may change with a server version (it is not named by its content).
_ROBOT_HEADERS = {"Cache-Control": "public, max-age=86400", "ETag": _ROBOT_ETAG}
# What a Host header may be: a DNS name or an IPv4 address, or an IPv6 one in brackets,
# with an optional port. Anything else (spaces, "@", "/", a path) never reaches a URL.
_HOST = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def public_origin(request: web.Request) -> str | None:
    """``scheme://host[:port]`` as the client reached this server, or None if the request
    does not say it in a form fit for a URL.

    ``--public-url`` wins. Otherwise the request's Host, with https when the connection is
    TLS or a trusted proxy's ``X-Forwarded-Proto`` says the client's was (nginx
    terminates TLS and passes plain HTTP on).
    """
    configured: str | None = request.app[CONFIG].public_url
    if configured:
        return configured
    host = request.headers.get("Host", "")
    if not _HOST.fullmatch(host):
        return None
    trusted = request.app[TRUSTED_PROXIES]
    scheme = forwarded_scheme(request.remote, request.headers, trusted)
    if scheme is None:
        scheme = "https" if request.secure else "http"
    return f"{scheme}://{host.lower()}"


def robot_avatar_url(request: web.Request) -> str | None:
    """The demo's robot picture, as an absolute URL on the origin of ``request``."""
    origin = public_origin(request)
    return None if origin is None else origin + ROBOT_PATH


async def robot_avatar(request: web.Request) -> web.Response:
    if _ROBOT_ETAG in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=_ROBOT_HEADERS)
    return web.Response(body=ROBOT_PNG, content_type="image/png", headers=_ROBOT_HEADERS)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROBOT_PATH, robot_avatar)
