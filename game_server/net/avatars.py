"""Avatars: uploaded (``POST /applet/avatar``), kept in storage, served under
``/applet/avatars/``; and the absolute URLs the server hands out for them.

Why uploads: since 2022 WeChat hands mini-programs a grey avatar instead of the user's;
the player picks a picture (``<button open-type="chooseAvatar">``), which is a file on
the phone, and the mini-program uploads it (``wx.uploadFile``, multipart) with its token.
The server checks it by content, re-encodes it (``net/pictures.py``), keeps it in the
shared storage (every node of a cluster serves it) and makes its URL the player's
avatar, so opponents see it in ``start``. Protocol §9 is the contract.

Clients show avatars from URLs: the 2016 demo's page puts an opponent's ``uavatar`` in an
``<image>``, and a mini-program resolves a relative URL inside its own package, so every
URL handed out is absolute, on the origin the client reached (``public_origin``).

``robot.png`` is the demo's robot: the demo's server gave its robots a picture, and its
page shows a blank square without one. It ships with the package and is read once.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import re
import time
from importlib import resources

import structlog
from aiohttp import web

from game_server.core.ratelimit import AddressBuckets, address_key
from game_server.core.records import Picture
from game_server.core.tokens import InvalidToken
from game_server.net.addresses import forwarded_scheme
from game_server.net.appkeys import CONFIG, METRICS, SERVICE, STORE, TRUSTED_PROXIES
from game_server.net.http_api import json_error, read_body, storage_errors
from game_server.net.pictures import PictureError, reencode
from game_server.ops.logs import CLIENT_ADDRESS
from protocol import fields

log = structlog.get_logger("game_server.http")

UPLOAD_PATH = "/applet/avatar"
AVATARS_PREFIX = "/applet/avatars/"
PICTURE_PATH = AVATARS_PREFIX + "{picture_id:[0-9a-f]{32}}"
UPLOAD_MAX = 256 * 1024  # the whole request body, multipart wrapping included
# Uploads per player: 5 at once, then one a minute (a player picks a picture now and
# then); per client address: 30 at once, then one every 2 s (generous, for carrier NATs;
# it bounds how fast new guests could fill the disk). Each node counts its own.
PLAYER_BURST, PLAYER_RATE = 5.0, 1 / 60
ADDRESS_BURST, ADDRESS_RATE = 30.0, 0.5
DECODES_AT_ONCE = 2  # pictures decoded at once (on threads): bounds their memory and CPU
CACHED_PICTURES = 512  # recently served pictures kept in memory (each a few KiB)
# Named by their content: a URL never shows anything else, so caches may keep it for ever.
_PICTURE_CACHE = "public, max-age=31536000, immutable"
# Every outcome of an upload, for rps_avatar_uploads_total{outcome}.
OUTCOMES = (
    "accepted",
    "invalid_token",
    "rate_limited",
    "too_large",
    "timeout",
    "bad_request",
    "unsupported_image",
    "bad_image",
    "too_many_pixels",
)
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


class Avatars:
    """The upload and serving state of one app: limits, decode slots, a small cache,
    and the counts ``/metrics`` reads."""

    def __init__(self) -> None:
        self.players = AddressBuckets(PLAYER_RATE, PLAYER_BURST)
        self.addresses = AddressBuckets(ADDRESS_RATE, ADDRESS_BURST)
        self.decoding = asyncio.Semaphore(DECODES_AT_ONCE)
        self.cache: collections.OrderedDict[str, Picture] = collections.OrderedDict()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)

    def remember(self, picture: Picture) -> None:
        self.cache[picture.id] = picture
        self.cache.move_to_end(picture.id)
        while len(self.cache) > CACHED_PICTURES:
            self.cache.popitem(last=False)


AVATARS = web.AppKey("avatars", Avatars)


class Refused(Exception):
    """An upload turned away: its status, error code and message (protocol §9)."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _bearer(request: web.Request) -> str:
    """The token of ``Authorization: Bearer <token>``, checked as a hello's token is."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "invalid_token", "send your token as Authorization: Bearer <token>")
    try:
        return fields.token(token.strip())
    except ValueError:
        raise Refused(401, "invalid_token", "the token is not one this server issued") from None


_MULTIPART = re.compile(r"multipart/form-data", re.IGNORECASE)
_BOUNDARY = re.compile(r';\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_DISPOSITION = re.compile(rb"^content-disposition:(.*)$", re.IGNORECASE | re.MULTILINE)
_PARAM = re.compile(rb';\s*(name|filename)="([^"]*)"', re.IGNORECASE)


def file_of(body: bytes, content_type: str) -> bytes:
    """The picture in a request body: the body itself, or the one file of a
    ``multipart/form-data`` body (``wx.uploadFile`` sends one, under the field name the
    client chose, maybe with more form fields beside it)."""
    if not _MULTIPART.match(content_type.strip()):
        return body
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise Refused(400, "bad_request", "a multipart body needs its boundary")
    delimiter = b"\r\n--" + (found.group(1) or found.group(2)).encode("latin-1")
    pieces = (b"\r\n" + body).split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise Refused(400, "bad_request", "the multipart body is not well formed")
    files, named = [], []
    for piece in pieces[1:-1]:
        head, sep, content = piece.partition(b"\r\n\r\n")
        disposition = _DISPOSITION.search(head)
        if not sep or not head.lstrip(b" \t").startswith(b"\r\n") or disposition is None:
            raise Refused(400, "bad_request", "the multipart body is not well formed")
        params = {key.lower(): value for key, value in _PARAM.findall(disposition.group(1))}
        if b"filename" in params:
            files.append(content)
        elif params.get(b"name") in (b"avatar", b"file"):
            named.append(content)
    chosen = files or named
    if len(chosen) != 1:
        raise Refused(400, "bad_request", "send exactly one file (the picture)")
    return chosen[0]


async def upload(request: web.Request) -> web.Response:
    """``POST /applet/avatar``: a new avatar for the token's player (protocol §9)."""
    avatars = request.app[AVATARS]
    try:
        response = await _upload(request, avatars)
    except Refused as refused:
        avatars.outcomes[refused.code] = avatars.outcomes.get(refused.code, 0) + 1
        log.info("avatar_refused", code=refused.code, status=refused.status)
        return json_error(refused.status, refused.code, refused.message, **refused.headers)
    avatars.outcomes["accepted"] += 1
    return response


async def _upload(request: web.Request, avatars: Avatars) -> web.Response:
    app = request.app
    service, store = app[SERVICE], app[STORE]
    # Who, then how often, then whether there is such a player and a URL to give it:
    # all before a byte of the body is read.
    try:
        player_id = service.player_of(_bearer(request))
    except InvalidToken as exc:
        raise Refused(401, "invalid_token", str(exc)) from None
    now = time.monotonic()
    address = request.get(CLIENT_ADDRESS) or request.remote
    if not avatars.addresses.take(address_key(address), now):
        raise Refused(
            429, "rate_limited", "too many uploads from your address", **{"Retry-After": "2"}
        )
    if not avatars.players.take(player_id, now):
        raise Refused(
            429, "rate_limited", "too many uploads; try again in a minute", **{"Retry-After": "60"}
        )
    live = service.live_record(player_id) is not None
    if not live and await store.get_player(player_id) is None:
        raise Refused(401, "invalid_token", "this token's player is unknown here; log in again")
    origin = public_origin(request)
    if origin is None:
        raise Refused(400, "bad_request", "the Host header is not a host name")
    if request.content_length is not None and request.content_length > UPLOAD_MAX:
        raise Refused(413, "too_large", f"the body must be at most {UPLOAD_MAX // 1024} KiB")
    try:
        # Within the request deadline: a body sent a byte at a time holds no handler.
        async with asyncio.timeout(app[CONFIG].request_timeout):
            body = await read_body(request, UPLOAD_MAX)
    except TimeoutError:
        raise Refused(408, "timeout", "the body did not arrive in time") from None
    if body is None:
        raise Refused(413, "too_large", f"the body must be at most {UPLOAD_MAX // 1024} KiB")
    data = file_of(body, request.headers.get("Content-Type", ""))
    try:
        async with avatars.decoding:
            encoded = await asyncio.to_thread(reencode, data)
    except PictureError as exc:
        raise Refused(400, exc.code, exc.message) from None
    url = f"{origin}{AVATARS_PREFIX}{encoded.id}"
    picture = Picture(
        id=encoded.id,
        content_type=encoded.content_type,
        data=encoded.data,
        uploaded_by=player_id,
        created_at=time.time(),
    )
    # Stored (and committed) first: by the time anyone is shown the URL, every node
    # serves it. Then the live player, if this process holds it.
    await store.store_avatar(picture, player_id, url)
    avatars.remember(picture)
    service.set_avatar(player_id, url)
    log.info("avatar_stored", player_id=player_id, picture=encoded.id, bytes=len(encoded.data))
    return web.json_response({"avatar": url, "width": encoded.width, "height": encoded.height})


async def picture(request: web.Request) -> web.Response:
    """``GET /applet/avatars/{id}``: an uploaded avatar, cacheable for ever."""
    picture_id = request.match_info["picture_id"]
    etag = f'"{picture_id}"'
    headers = {"Cache-Control": _PICTURE_CACHE, "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    avatars = request.app[AVATARS]
    found = avatars.cache.get(picture_id)
    if found is None:
        found = await request.app[STORE].get_avatar(picture_id)
        if found is None:
            return json_error(404, "not_found", "no such avatar")
        avatars.remember(found)
    return web.Response(body=found.data, content_type=found.content_type, headers=headers)


def add_routes(app: web.Application) -> None:
    avatars = app[AVATARS] = Avatars()
    app[METRICS].labelled(
        "rps_avatar_uploads",
        "Avatar uploads, by outcome: accepted, or the error code they were refused with",
        "outcome",
        lambda: avatars.outcomes,
    )
    app.router.add_post(UPLOAD_PATH, storage_errors(upload))
    app.router.add_get(ROBOT_PATH, robot_avatar)
    app.router.add_get(PICTURE_PATH, storage_errors(picture))
