"""WeChat login building blocks against a fake code2session on 127.0.0.1, and the pure
signature, decryption and body checks."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp.test_utils import TestServer

from game_server.wechat import client as wechat
from game_server.wechat import login as wechat_login
from game_server.wechat.client import WeChatClient, WeChatConfig, WeChatSession
from game_server.wechat.crypto import decrypt_user_info, verify_signature
from game_server.wechat.errors import LoginError
from game_server.wechat.login import LoginOutcome, LoginRequest, login, parse_login_body
from tests.support.fake_wechat import (
    Code2SessionCall,
    FakeWeChat,
    encrypt_bytes,
    encrypt_user_info,
    make_session_key,
    sign_raw_data,
)

ServerFactory = Callable[..., Awaitable[TestServer]]

APPID = "wx0123456789abcdef"
SECRET = "app-secret-0123456789abcdef-do-not-log"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# Fixed keys and iv: the decryption failures below are then the same on every run.
KEY = b64(bytes(range(16)))
OTHER_KEY = b64(bytes(range(16, 32)))
IV = bytes(range(100, 116))
USER = {"nickName": "Wei", "avatarUrl": "https://example.invalid/wei.png", "gender": 1}


@pytest.fixture
def fake() -> FakeWeChat:
    return FakeWeChat()


@pytest.fixture
async def base(fake: FakeWeChat, aiohttp_server: ServerFactory) -> str:
    server = await aiohttp_server(fake.make_app(), host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(base: str, http: aiohttp.ClientSession) -> WeChatClient:
    return WeChatClient(WeChatConfig(APPID, SECRET, api_base=base, timeout=5.0), http)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def expect(error: pytest.ExceptionInfo[LoginError], status: int, code: str) -> LoginError:
    assert (error.value.status, error.value.code) == (status, code), repr(error.value)
    return error.value


# code2session


async def test_a_good_code_gives_the_session(fake: FakeWeChat, client: WeChatClient) -> None:
    key = fake.succeed("code-1", "openid-1", unionid="union-1")
    fake.succeed("code-2", "openid-2")
    assert await client.code2session("code-1") == WeChatSession("openid-1", key, "union-1")
    second = await client.code2session("code-2")
    assert (second.openid, second.unionid) == ("openid-2", None)


async def test_the_request_carries_the_app_credentials_and_the_code(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    code = "a+b&c=d%2F/?#=x"  # every character the query string could mangle
    fake.succeed(code, "openid-1")
    await client.code2session(code)
    assert fake.calls == [Code2SessionCall(APPID, SECRET, code, "authorization_code")]


@pytest.mark.parametrize(
    ("errcode", "status", "code", "retry_after"),
    [
        (40029, 401, "invalid_code", None),
        (40163, 401, "invalid_code", None),
        (45011, 429, "rate_limited", 60.0),
        (40226, 403, "blocked", None),
        (-1, 503, "wechat_busy", 2.0),
    ],
)
async def test_wechat_errcodes_map_to_answers(
    fake: FakeWeChat,
    client: WeChatClient,
    errcode: int,
    status: int,
    code: str,
    retry_after: float | None,
) -> None:
    fake.fail("the-code", errcode)
    with pytest.raises(LoginError) as error:
        await client.code2session("the-code")
    assert expect(error, status, code).retry_after == retry_after
    expected_headers = {} if retry_after is None else {"Retry-After": str(int(retry_after))}
    assert error.value.headers() == expected_headers
    assert error.value.to_json() == {"error": {"code": code, "message": error.value.message}}


async def test_the_invalid_code_message_tells_the_client_what_to_do(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    with pytest.raises(LoginError) as error:
        await client.code2session("never-issued")  # the fake answers 40029, like WeChat
    assert "wx.login" in expect(error, 401, "invalid_code").message


async def test_a_code_works_once(fake: FakeWeChat, client: WeChatClient) -> None:
    fake.succeed("code-1", "openid-1")
    await client.code2session("code-1")
    with pytest.raises(LoginError) as error:
        await client.code2session("code-1")  # WeChat answers 40163
    expect(error, 401, "invalid_code")


async def test_an_unknown_errcode_is_a_gateway_error_naming_it(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    fake.fail("the-code", 40013, "invalid appid, rid: 1234")
    with pytest.raises(LoginError) as error:
        await client.code2session("the-code")
    message = expect(error, 502, "wechat_error").message
    assert "40013" in message
    assert "invalid appid" in message
    assert error.value.retry_after is None


async def test_unreachable_wechat_is_a_gateway_error(
    http: aiohttp.ClientSession, closed_port: int
) -> None:
    config = WeChatConfig(APPID, SECRET, api_base=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(LoginError) as error:
        await WeChatClient(config, http).code2session("the-code")
    assert "reached" in expect(error, 502, "wechat_error").message
    assert SECRET not in str(error.value)


async def test_a_slow_wechat_times_out(
    fake: FakeWeChat, base: str, http: aiohttp.ClientSession
) -> None:
    fake.succeed("the-code", "openid-1")
    fake.delay = 3.0
    client = WeChatClient(WeChatConfig(APPID, SECRET, api_base=base, timeout=0.2), http)
    started = time.monotonic()
    with pytest.raises(LoginError) as error:
        await client.code2session("the-code")
    assert time.monotonic() - started < 2.0
    assert "in time" in expect(error, 502, "wechat_error").message


@pytest.mark.parametrize(
    "body", [b"<html>502 Bad Gateway</html>", b"", b"[1, 2]", b'"openid"', b"null"]
)
async def test_nonsense_is_a_gateway_error(
    fake: FakeWeChat, client: WeChatClient, body: bytes
) -> None:
    fake.succeed("the-code", "openid-1")
    fake.raw_body = body
    with pytest.raises(LoginError) as error:
        await client.code2session("the-code")
    assert "JSON" in expect(error, 502, "wechat_error").message


async def test_an_http_error_status_is_a_gateway_error(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    fake.succeed("the-code", "openid-1")
    fake.status = 500
    with pytest.raises(LoginError) as error:
        await client.code2session("the-code")
    assert "500" in expect(error, 502, "wechat_error").message


async def test_an_oversized_answer_is_a_gateway_error(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    fake.raw_body = b"{" + b" " * wechat.RESPONSE_MAX + b"}"
    with pytest.raises(LoginError) as error:
        await client.code2session("the-code")
    assert "oversized" in expect(error, 502, "wechat_error").message


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "text/html"])
async def test_json_is_read_whatever_the_content_type(
    fake: FakeWeChat,
    base: str,
    http: aiohttp.ClientSession,
    client: WeChatClient,
    content_type: str,
) -> None:
    key = fake.succeed("the-code", "openid-1")
    fake.content_type = content_type
    async with http.get(f"{base}/sns/jscode2session") as probe:
        assert probe.content_type == content_type  # the fake really answers so
    assert await client.code2session("the-code") == WeChatSession("openid-1", key)


@pytest.mark.parametrize(
    ("reply", "missing"),
    [
        ({"session_key": KEY}, "openid"),
        ({"openid": "", "session_key": KEY}, "openid"),
        ({"openid": "openid-1"}, "session_key"),
        ({"openid": "openid-1", "session_key": 12}, "session_key"),
        ({"errcode": 0, "errmsg": "ok"}, "openid and session_key"),
    ],
)
async def test_an_answer_without_the_identity_is_a_gateway_error(
    fake: FakeWeChat, client: WeChatClient, reply: dict[str, Any], missing: str
) -> None:
    fake.replies["the-code"] = reply
    with pytest.raises(LoginError) as error:
        await client.code2session("the-code")
    message = expect(error, 502, "wechat_error").message
    assert message.endswith(f"lacks {missing}")
    assert KEY not in message


async def test_errcode_zero_with_the_identity_is_a_success(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    fake.replies["the-code"] = {"errcode": 0, "openid": "openid-1", "session_key": KEY}
    assert await client.code2session("the-code") == WeChatSession("openid-1", KEY)


@pytest.mark.parametrize(
    "code",
    ["", " ", "a" * 129, "abc def", "código", "abc\n", "abc\x7f", "\x00", "코드"],
)
async def test_malformed_codes_never_reach_wechat(
    fake: FakeWeChat, client: WeChatClient, code: str
) -> None:
    with pytest.raises(LoginError) as error:
        await client.code2session(code)
    expect(error, 400, "bad_request")
    assert fake.calls == []


async def test_the_longest_code_is_sent(fake: FakeWeChat, client: WeChatClient) -> None:
    fake.succeed("a" * 128, "openid-1")
    assert (await client.code2session("a" * 128)).openid == "openid-1"
    assert len(fake.calls) == 1


def test_config_refuses_empty_credentials_and_a_useless_timeout() -> None:
    with pytest.raises(ValueError, match="appid"):
        WeChatConfig("", SECRET)
    with pytest.raises(ValueError, match="secret"):
        WeChatConfig(APPID, "")
    with pytest.raises(ValueError, match="timeout"):
        WeChatConfig(APPID, SECRET, timeout=0)
    assert SECRET not in repr(WeChatConfig(APPID, SECRET))


# the rawData signature


def test_the_right_signature_passes_and_any_change_fails() -> None:
    raw_data, signature = sign_raw_data(USER, KEY)
    verify_signature(raw_data, KEY, signature)
    for raw, key, sig in [
        (raw_data.replace("Wei", "Wu"), KEY, signature),  # someone else's name
        (raw_data, OTHER_KEY, signature),  # signed in another session
        (raw_data, KEY, signature.upper()),
        (raw_data, KEY, signature[:-1]),
        (raw_data, KEY, ""),
        (raw_data, KEY, signature[:-1] + "é"),  # non-ASCII must not crash compare_digest
    ]:
        with pytest.raises(LoginError) as error:
            verify_signature(raw, key, sig)
        expect(error, 401, "bad_signature")


# encryptedData


def test_encrypted_user_info_decrypts_for_its_app() -> None:
    data, iv = encrypt_user_info(USER, KEY, APPID, timestamp=1_700_000_000)
    assert decrypt_user_info(data, iv, KEY, APPID) == {
        **USER,
        "watermark": {"appid": APPID, "timestamp": 1_700_000_000},
    }


@pytest.mark.parametrize(
    "plaintext",
    [
        orjson.dumps({**USER, "watermark": {"appid": "wx-another-app", "timestamp": 1}}),
        orjson.dumps({**USER, "watermark": {"timestamp": 1}}),
        orjson.dumps({**USER, "watermark": "wx0123456789abcdef"}),
        orjson.dumps(USER),
    ],
)
def test_data_made_for_another_app_is_refused(plaintext: bytes) -> None:
    data, iv = encrypt_bytes(plaintext, KEY, IV)
    with pytest.raises(LoginError) as error:
        decrypt_user_info(data, iv, KEY, APPID)
    expect(error, 401, "watermark_mismatch")


def _padded_with_spaces(plaintext: bytes) -> bytes:
    """Valid JSON in whole blocks ending in a space: a byte PKCS#7 padding never ends with."""
    return plaintext + b" " * (16 - len(plaintext) % 16)


GOOD_PLAINTEXT = orjson.dumps({**USER, "watermark": {"appid": APPID, "timestamp": 1}})
GOOD_DATA, GOOD_IV = encrypt_bytes(GOOD_PLAINTEXT, KEY, IV)
KEY_24 = b64(bytes(range(24)))


def _flip(encoded: str, index: int) -> str:
    """``encoded`` with one byte of what it encodes changed."""
    raw = bytearray(base64.b64decode(encoded))
    raw[index] ^= 0x5A
    return b64(bytes(raw))


NO_DECRYPT = "does not decrypt with this session"


@pytest.mark.parametrize(
    ("data", "iv", "key", "says"),
    [
        pytest.param(_flip(GOOD_DATA, 5), GOOD_IV, KEY, NO_DECRYPT, id="corrupt-first-block"),
        pytest.param(_flip(GOOD_DATA, -1), GOOD_IV, KEY, NO_DECRYPT, id="corrupt-last-block"),
        pytest.param(GOOD_DATA, GOOD_IV, OTHER_KEY, NO_DECRYPT, id="another-sessions-key"),
        pytest.param(  # whole blocks of valid JSON, but not PKCS#7-padded
            *encrypt_bytes(_padded_with_spaces(GOOD_PLAINTEXT), KEY, IV, pad=False),
            KEY,
            NO_DECRYPT,
            id="wrong-padding",
        ),
        pytest.param(*encrypt_bytes(b"\xff\xfe", KEY, IV), KEY, NO_DECRYPT, id="not-utf-8"),
        pytest.param(*encrypt_bytes(b"[1, 2]", KEY, IV), KEY, "JSON object", id="not-an-object"),
        pytest.param(GOOD_DATA[:-4], GOOD_IV, KEY, "whole AES blocks", id="truncated"),
        pytest.param("", GOOD_IV, KEY, "whole AES blocks", id="empty"),
        pytest.param("not*base64!", GOOD_IV, KEY, "encryptedData is not valid base64", id="b64"),
        pytest.param(GOOD_DATA, "not*base64!", KEY, "iv is not valid base64", id="iv-b64"),
        pytest.param(GOOD_DATA, GOOD_IV, "not*base64", "session_key is not valid", id="key-b64"),
        pytest.param(GOOD_DATA, b64(IV[:8]), KEY, "iv must be 16 bytes", id="8-byte-iv"),
        # AES-192 works in cryptography; WeChat's keys are 16 bytes, so a 24-byte one is refused.
        pytest.param(
            *encrypt_bytes(GOOD_PLAINTEXT, KEY_24, IV),
            KEY_24,
            "session_key must be 16 bytes",
            id="24-byte-key",
        ),
        pytest.param(GOOD_DATA, GOOD_IV, b64(bytes(8)), "session_key must be 16", id="8-byte-key"),
    ],
)
def test_undecryptable_data_is_a_bad_request(data: str, iv: str, key: str, says: str) -> None:
    with pytest.raises(LoginError) as error:
        decrypt_user_info(data, iv, key, APPID)
    assert says in expect(error, 400, "bad_encrypted_data").message


def test_the_fixtures_above_differ_from_good_data_only_where_they_say() -> None:
    """The failure cases start from data that does decrypt, so they test what they name."""
    assert decrypt_user_info(GOOD_DATA, GOOD_IV, KEY, APPID)["nickName"] == "Wei"
    padded = _padded_with_spaces(GOOD_PLAINTEXT)
    assert orjson.loads(padded) == orjson.loads(GOOD_PLAINTEXT)
    assert len(padded) % 16 == 0


# secrecy


def test_the_session_key_is_not_in_reprs() -> None:
    session = WeChatSession("openid-1", KEY, "union-1")
    outcome = LoginOutcome(session, {"name": "Wei"})
    for text in (repr(session), str(session), repr(outcome), str(outcome)):
        assert "openid-1" in text
        assert KEY not in text
    assert session.session_key == KEY


def test_the_session_key_is_not_in_error_messages() -> None:
    raw_data, _ = sign_raw_data(USER, KEY)
    data, iv = encrypt_user_info(USER, KEY, "wx-another-app")
    failures: list[Callable[[], object]] = [
        lambda: verify_signature(raw_data, KEY, "0" * 40),
        lambda: decrypt_user_info(data, iv, KEY, APPID),
        lambda: decrypt_user_info(GOOD_DATA, GOOD_IV, OTHER_KEY, APPID),
        lambda: decrypt_user_info(GOOD_DATA[:-4], GOOD_IV, KEY, APPID),
    ]
    for failure in failures:
        with pytest.raises(LoginError) as error:
            failure()
        for text in (str(error.value), repr(error.value), str(error.value.to_json())):
            assert KEY not in text


async def test_logs_never_hold_the_secret_or_the_session_key(
    fake: FakeWeChat, client: WeChatClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = fake.succeed("good", "openid-1")
    fake.fail("refused", 40013, "invalid appid")
    fake.replies["partial"] = {"openid": "", "session_key": key}
    with structlog.testing.capture_logs() as events:
        # A fresh logger: one cached by an earlier configure_logging would bypass the capture.
        monkeypatch.setattr(wechat, "log", structlog.get_logger("game_server.wechat.client"))
        await client.code2session("good")
        for code in ("refused", "partial"):
            with pytest.raises(LoginError):
                await client.code2session(code)
    assert [event["event"] for event in events] == ["wechat_refused", "wechat_incomplete"]
    assert SECRET not in str(events)
    assert key not in str(events)


# the login body


def test_a_full_body_is_parsed() -> None:
    body = {
        "code": "the-code",
        "rawData": "{}",
        "signature": "sig",
        "encryptedData": "data",
        "iv": "iv",
        "userInfo": {"ignored": True},
    }
    assert parse_login_body(body) == LoginRequest("the-code", "{}", "sig", "data", "iv")
    assert parse_login_body({"code": "c", "rawData": None, "iv": None}) == LoginRequest("c")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (["code"], "JSON object"),
        ("code", "JSON object"),
        (None, "JSON object"),
        ({}, "code is required"),
        ({"code": 123}, "non-empty string"),
        ({"code": None}, "non-empty string"),
        ({"code": ""}, "non-empty string"),
        ({"code": "a b"}, "printable ASCII"),
        ({"code": "a" * 129}, "at most 128"),
        ({"code": "c", "rawData": {"nickName": "Wei"}}, "rawData must be a string"),
        ({"code": "c", "rawData": "{}", "signature": 5}, "signature must be a string"),
        ({"code": "c", "encryptedData": [], "iv": "x"}, "encryptedData must be a string"),
        ({"code": "c", "encryptedData": "x", "iv": 1}, "iv must be a string"),
        ({"code": "c", "signature": "sig"}, "signature needs the rawData"),
        ({"code": "c", "encryptedData": "data"}, "encryptedData needs its iv"),
        ({"code": "c", "rawData": "x" * (wechat_login.FIELD_MAX + 1)}, "at most"),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: Any, says: str) -> None:
    with pytest.raises(LoginError) as error:
        parse_login_body(body)
    assert says in expect(error, 400, "bad_request").message


# login()


async def test_login_prefers_decrypted_info_over_raw_data(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    key = fake.succeed("the-code", "openid-1")
    raw_data, signature = sign_raw_data({"nickName": "Raw", "avatarUrl": "https://raw"}, key)
    data, iv = encrypt_user_info({"nickName": "Decrypted"}, key, APPID)
    request = LoginRequest("the-code", raw_data, signature, data, iv)
    outcome = await login(client, request)
    assert outcome.session == WeChatSession("openid-1", key)
    # The name from the decrypted info; the avatar it lacks from the verified rawData.
    assert outcome.profile == {"name": "Decrypted", "avatar": "https://raw"}


async def test_login_with_raw_data_only(fake: FakeWeChat, client: WeChatClient) -> None:
    key = fake.succeed("the-code", "openid-1")
    raw_data, signature = sign_raw_data(USER, key)
    outcome = await login(client, LoginRequest("the-code", raw_data, signature), APPID)
    assert outcome.profile == {"name": "Wei", "avatar": USER["avatarUrl"]}


async def test_login_with_the_code_only(fake: FakeWeChat, client: WeChatClient) -> None:
    fake.succeed("the-code", "openid-1", unionid="union-1")
    outcome = await login(client, LoginRequest("the-code"))
    assert outcome == LoginOutcome(
        WeChatSession("openid-1", outcome.session.session_key, "union-1")
    )
    assert outcome.profile == {}


async def test_unsigned_raw_data_is_not_trusted(fake: FakeWeChat, client: WeChatClient) -> None:
    fake.succeed("the-code", "openid-1")
    outcome = await login(client, LoginRequest("the-code", raw_data=orjson.dumps(USER).decode()))
    assert outcome.profile == {}


async def test_login_checks_the_signature_against_this_session(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    fake.succeed("the-code", "openid-1")
    raw_data, signature = sign_raw_data(USER, make_session_key())  # another session's
    with pytest.raises(LoginError) as error:
        await login(client, LoginRequest("the-code", raw_data, signature))
    expect(error, 401, "bad_signature")


async def test_login_checks_the_watermark_against_the_app(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    key = fake.succeed("code-1", "openid-1")
    data, iv = encrypt_user_info(USER, key, APPID)
    request = LoginRequest("code-1", encrypted_data=data, iv=iv)
    with pytest.raises(LoginError) as error:
        await login(client, request, "wx-another-app")
    expect(error, 401, "watermark_mismatch")
    key = fake.succeed("code-2", "openid-1")
    data, iv = encrypt_user_info(USER, key, "wx-another-app")
    with pytest.raises(LoginError) as error:
        await login(client, LoginRequest("code-2", encrypted_data=data, iv=iv))
    expect(error, 401, "watermark_mismatch")


async def test_signed_raw_data_that_is_not_an_object_is_a_bad_request(
    fake: FakeWeChat, client: WeChatClient
) -> None:
    for code, raw_data in [("code-1", "[1]"), ("code-2", "not json")]:
        key = fake.succeed(code, "openid-1")
        signature = hashlib.sha1((raw_data + key).encode()).hexdigest()
        with pytest.raises(LoginError) as error:
            await login(client, LoginRequest(code, raw_data, signature))
        assert "rawData must be" in expect(error, 400, "bad_request").message


async def test_login_stops_at_wechat_errors(fake: FakeWeChat, client: WeChatClient) -> None:
    fake.fail("the-code", 45011)
    with pytest.raises(LoginError) as error:
        await login(client, LoginRequest("the-code"))
    expect(error, 429, "rate_limited")
