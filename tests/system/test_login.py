"""POST /applet/login end to end: a real server process against a local fake of WeChat."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from game_server.net.http_api import LOGIN_BODY_MAX
from tests.support.fake_wechat import FakeWeChat, encrypt_user_info, sign_raw_data
from tests.support.processes import PYTHON, ServerProcess, launch

APPID = "wxTESTAPP0001"
SECRET = "s3cret-app-secret"
PROFILE = {"nickName": "微信用户 Wei", "avatarUrl": "https://thirdwx.qlogo.cn/w.png"}

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def wechat(aiohttp_server: ServerFactory) -> tuple[FakeWeChat, str]:
    fake = FakeWeChat()
    server = await aiohttp_server(fake.make_app(), host="127.0.0.1")
    return fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def game(wechat: tuple[FakeWeChat, str]) -> AsyncIterator[ServerProcess]:
    _, base = wechat
    server = await launch(
        "--wechat-appid", APPID, "--wechat-secret", SECRET, "--wechat-api-base", base
    )
    yield server
    await server.stop()


async def post(server: ServerProcess, body: Any) -> tuple[int, dict[str, Any], Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.http}/applet/login", data=data) as response,
    ):
        return response.status, dict(response.headers), await response.json()


async def test_a_full_login_gives_a_token_the_socket_accepts(
    wechat: tuple[FakeWeChat, str], game: ServerProcess
) -> None:
    fake, _ = wechat
    key = fake.succeed("code-1", "openid-wei", unionid="union-wei")
    raw, signature = sign_raw_data(PROFILE, key)
    encrypted, iv = encrypt_user_info({**PROFILE, "openId": "openid-wei"}, key, APPID)
    body = {"code": "code-1", "rawData": raw, "signature": signature}
    status, _, reply = await post(game, {**body, "encryptedData": encrypted, "iv": iv})
    assert status == 200, reply
    assert reply["player"]["name"] == PROFILE["nickName"]
    assert reply["player"]["avatar"] == PROFILE["avatarUrl"]
    assert reply["expires_in"] == 7 * 24 * 3600
    assert key not in orjson.dumps(reply).decode()  # the session_key never leaves
    (call,) = fake.calls
    assert (call.appid, call.secret, call.js_code, call.grant_type) == (
        APPID,
        SECRET,
        "code-1",
        "authorization_code",
    )
    async with aiohttp.ClientSession() as http, http.ws_connect(game.url) as ws:
        await ws.send_str(orjson.dumps({"type": "hello", "token": reply["token"]}).decode())
        hi = orjson.loads(await ws.receive_str(timeout=5))
    assert (hi["type"], hi["player_id"], hi["name"]) == (
        "hi",
        reply["player"]["id"],
        PROFILE["nickName"],
    )
    # The same WeChat user logging in again is the same player.
    fake.succeed("code-2", "openid-wei")
    status, _, again = await post(game, {"code": "code-2"})
    assert (status, again["player"]["id"]) == (200, reply["player"]["id"])


@pytest.mark.parametrize(
    ("errcode", "status", "code"),
    [
        (40029, 401, "invalid_code"),
        (45011, 429, "rate_limited"),
        (40226, 403, "blocked"),
        (-1, 503, "wechat_busy"),
        (40013, 502, "wechat_error"),
    ],
)
async def test_wechat_errors_become_clear_http_errors(
    wechat: tuple[FakeWeChat, str], game: ServerProcess, errcode: int, status: int, code: str
) -> None:
    fake, _ = wechat
    fake.fail("bad-code", errcode)
    got, headers, reply = await post(game, {"code": "bad-code"})
    assert (got, reply["error"]["code"]) == (status, code)
    assert reply["error"]["message"]
    assert ("Retry-After" in headers) == (code in ("rate_limited", "wechat_busy"))


async def test_tampered_user_data_is_refused(
    wechat: tuple[FakeWeChat, str], game: ServerProcess
) -> None:
    fake, _ = wechat
    key = fake.succeed("c-sig", "openid-1")
    raw, signature = sign_raw_data(PROFILE, key)
    forged = raw.replace("Wei", "Mallory")
    status, _, reply = await post(
        game, {"code": "c-sig", "rawData": forged, "signature": signature}
    )
    assert (status, reply["error"]["code"]) == (401, "bad_signature")

    key = fake.succeed("c-mark", "openid-1")
    encrypted, iv = encrypt_user_info(PROFILE, key, "wxSOMEONEELSE")
    status, _, reply = await post(game, {"code": "c-mark", "encryptedData": encrypted, "iv": iv})
    assert (status, reply["error"]["code"]) == (401, "watermark_mismatch")

    key = fake.succeed("c-junk", "openid-1")
    status, _, reply = await post(game, {"code": "c-junk", "encryptedData": "AAAA", "iv": "AAAA"})
    assert (status, reply["error"]["code"]) == (400, "bad_encrypted_data")


@pytest.mark.parametrize("body", [b"not json", b"[1]", {"code": 5}, {}, {"code": "x" * 500}])
async def test_malformed_bodies_never_reach_wechat(
    wechat: tuple[FakeWeChat, str], game: ServerProcess, body: Any
) -> None:
    fake, _ = wechat
    status, _, reply = await post(game, body)
    assert (status, reply["error"]["code"]) == (400, "bad_request")
    assert fake.calls == []


async def test_without_wechat_configured_login_is_unavailable() -> None:
    server = await launch()
    try:
        status, _, reply = await post(server, {"code": "anything"})
        assert (status, reply["error"]["code"]) == (404, "login_unavailable")
    finally:
        await server.stop()


def test_wechat_options_go_together() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "game_server", "--wechat-appid", APPID],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--wechat-appid and --wechat-secret go together" in done.stderr


async def post_raw(
    server: ServerProcess, data: Any, content_type: str = "application/json"
) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.http}/applet/login", data=data, headers={"Content-Type": content_type}
        ) as response,
    ):
        return response.status, response.content_type, await response.json()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json; charset=bogus"),  # LookupError before
        (b"[" * 100_000, "application/json"),  # RecursionError before
        (b'{"code": "\xff"}', "application/json"),  # not UTF-8
        (b"", "application/json"),
    ],
)
async def test_undecodable_bodies_are_400s_in_json(
    wechat: tuple[FakeWeChat, str], game: ServerProcess, body: bytes, content_type: str
) -> None:
    fake, _ = wechat
    status, kind, reply = await post_raw(game, body, content_type)
    assert (status, kind, reply["error"]["code"]) == (400, "application/json", "bad_request")
    assert fake.calls == []


async def test_json_is_utf8_whatever_the_charset_says(
    wechat: tuple[FakeWeChat, str], game: ServerProcess
) -> None:
    fake, _ = wechat
    fake.succeed("code-cs", "openid-cs")
    body = orjson.dumps({"code": "code-cs"})
    status, _, reply = await post_raw(game, body, "application/json; charset=bogus")
    assert status == 200, reply
    assert reply["token"]


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 4096):
        yield b" " * 4096


@pytest.mark.parametrize(
    "body",
    [
        b" " * (LOGIN_BODY_MAX + 1),  # with a Content-Length
        b" " * (2 * 1024 * 1024),  # beyond aiohttp's own 1 MiB limit (a plain-text 413)
        "chunked",  # no Content-Length: counted as it comes
    ],
)
async def test_a_body_over_the_limit_is_a_413_in_json(
    wechat: tuple[FakeWeChat, str], game: ServerProcess, body: Any
) -> None:
    fake, _ = wechat
    data = chunks(LOGIN_BODY_MAX + 8192) if body == "chunked" else body
    status, kind, reply = await post_raw(game, data)
    assert (status, kind, reply["error"]["code"]) == (413, "application/json", "too_large")
    assert fake.calls == []
    # A body just under the limit is read (and refused for what it says, not its size).
    padded = b'{"code": 5}' + b" " * (LOGIN_BODY_MAX - 11)
    status, _, reply = await post_raw(game, padded)
    assert (status, reply["error"]["code"]) == (400, "bad_request")
