"""Avatar uploads end to end: real servers on 127.0.0.1, real HTTP and WebSocket clients,
SQLite files (``POST /applet/avatar``, ``GET /applet/avatars/{id}``, protocol §9)."""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from game_server.core.records import PlayerRecord
from game_server.net.appkeys import SERVICE, STORE
from game_server.net.avatars import PLAYER_BURST, UPLOAD_MAX
from tests.conftest import ServerFactory
from tests.support.wire import Player, connect

PICTURE_URL = re.compile(r"http://127\.0\.0\.1:[0-9]+/applet/avatars/([0-9a-f]{32})")


def picture(kind: str = "JPEG", size: tuple[int, int] = (300, 200), **options: Any) -> bytes:
    image = Image.new("RGBA" if kind == "PNG" else "RGB", size, (30, 140, 60))
    out = io.BytesIO()
    image.save(out, format=kind, **options)
    return out.getvalue()


def as_upload(data: bytes, filename: str = "tmp_1a2b.jpg", **fields: str) -> aiohttp.FormData:
    """What wx.uploadFile sends: multipart/form-data, the file under its ``name``, and
    ``formData`` fields beside it."""
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("avatar", data, filename=filename, content_type="application/octet-stream")
    return form


def bearer(player: Player) -> dict[str, str]:
    return {"Authorization": f"Bearer {player.hi['token']}"}


async def post(
    http: aiohttp.ClientSession, server: TestServer, body: Any, **headers: str
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(server.make_url("/applet/avatar"), data=body, headers=headers) as r:
        return r.status, await r.json(), r


def stored_pictures(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM avatars").fetchone()
    return int(count)


@pytest.fixture
async def server(start_server: ServerFactory, tmp_path: Path) -> TestServer:
    return await start_server({"db": str(tmp_path / "rps.db")})


async def test_an_upload_becomes_the_avatar_opponents_see_and_is_served_cacheable(
    server: TestServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    status, body, _ = await post(http, server, as_upload(picture(), scene="lobby"), **bearer(ann))
    assert status == 200, body
    match = PICTURE_URL.fullmatch(body["avatar"])
    assert match, body
    assert (body["width"], body["height"]) == (132, 132)

    async with http.get(body["avatar"]) as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
        assert "immutable" in response.headers["Cache-Control"]
        etag = response.headers["ETag"]
        served = await response.read()
    assert Image.open(io.BytesIO(served)).size == (132, 132)
    async with http.get(body["avatar"], headers={"If-None-Match": etag}) as response:
        assert response.status == 304

    await ann.send(type="join", bot="never")
    await bob.send(type="join", bot="never")
    start = await bob.expect("start", skip=("queued",))
    assert start["opponent"]["avatar"] == body["avatar"]

    # The player's avatar was stored with the picture... (Ann is a guest who has played
    # nothing yet: her live copy carries it, and her first finished match stores it.)
    await server.app[STORE].flush()
    assert stored_pictures(tmp_path / "rps.db") == 1


async def test_the_picture_is_taken_by_its_content_whatever_it_is_called(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    ann = await connect(http, server, "Ann")
    png = picture("PNG")  # transparency: kept as a PNG
    status, body, _ = await post(http, server, as_upload(png, filename="cat.gif"), **bearer(ann))
    assert status == 200, body
    # A raw body works too, whatever its Content-Type claims.
    status, raw, _ = await post(
        http, server, picture("WEBP"), **bearer(ann), **{"Content-Type": "image/gif"}
    )
    assert status == 200, raw
    async with http.get(body["avatar"]) as response:
        assert response.content_type == "image/png"
    async with http.get(raw["avatar"]) as response:
        assert response.content_type == "image/jpeg"


async def test_a_stored_player_gets_the_avatar_in_storage(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    """A player this process does not hold (another node's, or forgotten): storage has it."""
    store, service = server.app[STORE], server.app[SERVICE]
    store.save_player(PlayerRecord(id="p_stored", name="Stored", created_at=1.0, last_seen=2.0))
    await store.flush()
    token = service.signer.issue("p_stored")
    status, body, _ = await post(
        http, server, as_upload(picture()), Authorization=f"Bearer {token}"
    )
    assert status == 200, body
    record = await store.get_player("p_stored")
    assert record is not None
    assert record.avatar == body["avatar"]


async def test_two_servers_on_one_database_serve_each_others_uploads(
    start_server: ServerFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Nodes sharing storage: the upload is committed before its URL is handed out."""
    options = {"db": str(tmp_path / "shared.db"), "token_secret": b"one secret for both nodes"}
    first, second = await start_server(options), await start_server(options)
    ann = await connect(http, first, "Ann")
    status, body, _ = await post(http, first, as_upload(picture()), **bearer(ann))
    assert status == 200, body
    picture_id = PICTURE_URL.fullmatch(body["avatar"]).group(1)  # type: ignore[union-attr]
    async with http.get(second.make_url(f"/applet/avatars/{picture_id}")) as response:
        assert response.status == 200
        assert response.content_type == "image/jpeg"
    async with http.get(second.make_url("/applet/avatars/" + "0" * 32)) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "no token"),
        ({"Authorization": "Bearer v1.p_x.9999999999.forged"}, "forged"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "another scheme"),
    ],
)
async def test_without_a_valid_token_nothing_is_read(
    server: TestServer, http: aiohttp.ClientSession, headers: dict[str, str], detail: str
) -> None:
    status, body, _ = await post(http, server, as_upload(picture()), **headers)
    assert (status, body["error"]["code"]) == (401, "invalid_token"), detail


async def test_a_token_of_a_player_nobody_knows_is_refused(
    server: TestServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = server.app[SERVICE].signer.issue("p_never_made")
    status, body, _ = await post(
        http, server, as_upload(picture()), Authorization=f"Bearer {token}"
    )
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    assert stored_pictures(tmp_path / "rps.db") == 0


def multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    boundary = "----wxboundary7MA4YWxkTrZu0gW"
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


TRUNCATED = picture(size=(800, 800))[:3000]


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: as_upload(b"GIF89a" + b"\0" * 64), 400, "unsupported_image"),
        (lambda: as_upload(b"<svg onload=alert(1)>"), 400, "unsupported_image"),
        (lambda: as_upload(TRUNCATED), 400, "bad_image"),
        (lambda: as_upload(picture("PNG", (1, 20_000))), 400, "too_many_pixels"),
        (lambda: as_upload(b"\xff\xd8\xff" + b"\0" * (UPLOAD_MAX + 1)), 413, "too_large"),
        (
            lambda: multipart(("a", "1.jpg", picture()), ("b", "2.jpg", picture())),
            400,
            "bad_request",
        ),
        (lambda: multipart(("note", None, b"hello")), 400, "bad_request"),
        (lambda: (b"--x\r\nnonsense", "multipart/form-data; boundary=x"), 400, "bad_request"),
        (lambda: (picture(), "multipart/form-data"), 400, "bad_request"),
    ],
)
async def test_a_bad_upload_gets_its_code_and_nothing_changes(
    server: TestServer,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    make: Any,
    status: int,
    code: str,
) -> None:
    ann = await connect(http, server, "Ann")
    avatar = {"avatar": None}
    made = make()
    headers = bearer(ann)
    if isinstance(made, tuple):
        made, headers["Content-Type"] = made
    got, body, _ = await post(http, server, made, **headers)
    assert (got, body["error"]["code"]) == (status, code), body
    live = server.app[SERVICE].live_record(ann.hi["player_id"])
    assert live is not None
    assert {"avatar": live.avatar} == avatar
    await server.app[STORE].flush()
    assert stored_pictures(tmp_path / "rps.db") == 0


async def test_a_body_over_the_limit_is_refused_as_it_streams(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    """No Content-Length (chunked): the reading stops at the limit."""
    ann = await connect(http, server, "Ann")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"\xff\xd8\xff"
        for _ in range(40):
            yield b"\0" * 8192

    status, body, _ = await post(http, server, chunks(), **bearer(ann))
    assert (status, body["error"]["code"]) == (413, "too_large")


async def test_uploads_are_limited_per_player_and_counted(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    for _ in range(int(PLAYER_BURST)):
        status, body, _ = await post(http, server, as_upload(picture()), **bearer(ann))
        assert status == 200, body
    status, body, response = await post(http, server, as_upload(picture()), **bearer(ann))
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert response.headers["Retry-After"] == "60"
    status, _, _ = await post(http, server, as_upload(picture()), **bearer(bob))
    assert status == 200  # another player is not held back
    await post(http, server, as_upload(b"not a picture"), **bearer(bob))

    async with http.get(server.make_url("/metrics")) as response:
        text = await response.text()
    counts = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "rps_avatar_uploads_total"
    }
    assert counts["accepted"] == PLAYER_BURST + 1
    assert counts["rate_limited"] == 1
    assert counts["unsupported_image"] == 1
    assert counts["too_large"] == 0


async def test_the_url_is_on_the_origin_the_client_reached(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    # A forwarded scheme from a peer that is not a trusted proxy is anyone's to forge.
    plain = await start_server()
    ann = await connect(http, plain, "Ann")
    forged = {"X-Forwarded-Proto": "https", **bearer(ann)}
    _, body, _ = await post(http, plain, as_upload(picture()), **forged)
    assert body["avatar"].startswith(f"http://127.0.0.1:{plain.port}/applet/avatars/")
    # From a trusted proxy (nginx on this host): https, on the Host it passed.
    proxied = await start_server({"trusted_proxies": ("127.0.0.1/32",)})
    bob = await connect(http, proxied, "Bob")
    headers = {"X-Forwarded-Proto": "https", "Host": "game.example.com", **bearer(bob)}
    _, body, _ = await post(http, proxied, as_upload(picture()), **headers)
    assert body["avatar"].startswith("https://game.example.com/applet/avatars/")
    # --public-url wins over all of it.
    fixed = await start_server({"public_url": "https://cdn.example.net"})
    cy = await connect(http, fixed, "Cy")
    _, body, _ = await post(http, fixed, as_upload(picture()), Host="x.example", **bearer(cy))
    assert body["avatar"].startswith("https://cdn.example.net/applet/avatars/")
    # A Host that is no host name gives no URL: nothing is read or stored.
    status, body, _ = await post(http, plain, as_upload(picture()), Host="a b@evil/", **bearer(ann))
    assert (status, body["error"]["code"]) == (400, "bad_request")
