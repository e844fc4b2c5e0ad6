"""WeChat mini-program login: code2session, the rawData signature, encryptedData decryption.

The client sends the code from ``wx.login()`` (and optionally what ``wx.getUserInfo()``
returned); the server trades the code for the user's ``openid`` and ``session_key`` with
WeChat, using the app secret. The ``session_key`` is what proves the rest: ``rawData`` is
signed with it and ``encryptedData`` is encrypted with it. It never leaves the server and
never goes to logs, and neither does the app secret.

Every failure is a ``LoginError`` carrying the HTTP status, stable code and message the login
route answers with, so the route is a thin shell over ``parse_login_body`` and ``login``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
from typing import Any

import aiohttp
import attrs
import orjson
import structlog
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

log = structlog.get_logger("game_server.wechat.client")

CODE_MAX = 128
"""wx.login codes are 32 characters today; anything far longer is not one."""
FIELD_MAX = 64 * 1024
"""rawData, encryptedData and friends are a few hundred bytes; refuse to hash or decrypt more."""
RESPONSE_MAX = 64 * 1024
"""code2session answers are tiny; a huge body is not WeChat, so stop reading it."""
RATE_LIMIT_RETRY = 60.0
"""45011 is a per-minute quota."""
BUSY_RETRY = 2.0
"""-1 is WeChat's 'system busy, try again'."""
ERRMSG_MAX = 200

AES_BLOCK_BITS = 128
AES_KEY_BYTES = 16


@attrs.frozen
class WeChatConfig:
    """The mini-program's credentials and where to reach WeChat (tests point it at a fake)."""

    appid: str = attrs.field(validator=attrs.validators.min_len(1))
    secret: str = attrs.field(validator=attrs.validators.min_len(1), repr=False)
    api_base: str = "https://api.weixin.qq.com"
    timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))


class LoginError(Exception):
    """A login that cannot go on, as the HTTP answer the client should get.

    ``code`` is stable for clients to branch on; ``message`` is for people; ``retry_after``
    (seconds) becomes a ``Retry-After`` header when set.
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"LoginError({self.status}, {self.code!r}, {self.message!r})"

    def to_json(self) -> dict[str, Any]:
        """The error body every HTTP endpoint of this server answers with."""
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (rounded up) when the client should wait."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def _bad_request(message: str) -> LoginError:
    return LoginError(400, "bad_request", message)


@attrs.frozen
class Session:
    """Who WeChat says the code belongs to. ``session_key`` is base64, as WeChat sends it."""

    openid: str
    session_key: str = attrs.field(repr=False)
    unionid: str | None = None


@attrs.frozen
class LoginRequest:
    """A validated login body; optional fields are ``None`` when absent (or sent as null)."""

    code: str
    raw_data: str | None = None
    signature: str | None = None
    encrypted_data: str | None = None
    iv: str | None = None


@attrs.frozen
class LoginOutcome:
    """The WeChat identity and what it proves about the player (``name``, ``avatar``)."""

    session: Session
    profile: dict[str, str] = attrs.Factory(dict)


def check_code(code: object) -> str:
    """The code if it looks like one: visible ASCII, 1 to ``CODE_MAX`` characters.

    Garbage is refused here so it never costs a call against WeChat's quota.
    """
    if not isinstance(code, str) or not code:
        raise _bad_request("code must be the non-empty string wx.login() returned")
    if len(code) > CODE_MAX:
        raise _bad_request(f"code must be at most {CODE_MAX} characters")
    if not all("!" <= char <= "~" for char in code):
        raise _bad_request("code must be printable ASCII without spaces")
    return code


# errcode -> (status, code, message, retry_after)
_ERRCODES: dict[int, tuple[int, str, str, float | None]] = {
    40029: (
        401,
        "invalid_code",
        "the login code is invalid or was already used; call wx.login again",
        None,
    ),
    # 40163 is "code been used": the same remedy as 40029, so the same answer.
    40163: (
        401,
        "invalid_code",
        "the login code is invalid or was already used; call wx.login again",
        None,
    ),
    45011: (
        429,
        "rate_limited",
        "too many logins for this user; try again in a minute",
        RATE_LIMIT_RETRY,
    ),
    40226: (403, "blocked", "WeChat blocked this user as high-risk", None),
    -1: (503, "wechat_busy", "WeChat is busy; try again shortly", BUSY_RETRY),
}


def _errcode_error(errcode: object, errmsg: str) -> LoginError:
    known = _ERRCODES.get(errcode) if isinstance(errcode, int) else None
    if known is not None:
        status, code, message, retry_after = known
        return LoginError(status, code, message, retry_after=retry_after)
    return LoginError(
        502, "wechat_error", f"WeChat refused the login: errcode {errcode!r} {errmsg}"
    )


def _wechat_error(message: str) -> LoginError:
    return LoginError(502, "wechat_error", message)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(8192):
        body += chunk
        if len(body) > limit:
            raise _wechat_error("WeChat answered with an oversized body")
    return bytes(body)


class WeChatClient:
    """Calls WeChat's login API with one app's credentials.

    The caller owns the ``aiohttp.ClientSession`` (one per server, for its connection pool)
    and closes it.
    """

    def __init__(self, config: WeChatConfig, http: aiohttp.ClientSession) -> None:
        self.config = config
        self._http = http
        self._url = config.api_base.rstrip("/") + "/sns/jscode2session"

    async def code2session(self, code: str) -> Session:
        """Trade a ``wx.login()`` code for the user's identity; raises ``LoginError``.

        Bounded by ``config.timeout`` as a whole (connect, answer and body), so a slow WeChat
        costs a login at most that long.
        """
        check_code(code)
        params = {
            "appid": self.config.appid,
            "secret": self.config.secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        try:
            async with asyncio.timeout(self.config.timeout):
                # The URL carries the secret: exceptions are reported by type only, never text.
                async with self._http.get(
                    self._url, params=params, allow_redirects=False
                ) as response:
                    status = response.status
                    body = await _read_limited(response, RESPONSE_MAX)
        except TimeoutError:
            log.warning("wechat_timeout", timeout=self.config.timeout)
            raise _wechat_error("WeChat did not answer in time") from None
        except aiohttp.ClientError as exc:
            log.warning("wechat_unreachable", error=type(exc).__name__)
            raise _wechat_error("WeChat could not be reached") from None
        if status != 200:
            log.warning("wechat_http_error", status=status)
            raise _wechat_error(f"WeChat answered HTTP {status}")
        return _session_from(body)


def _session_from(body: bytes) -> Session:
    """Parse code2session's answer whatever its content type (WeChat often says text/plain)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        log.warning("wechat_not_json", length=len(body))
        raise _wechat_error("WeChat answered with something other than JSON") from None
    if not isinstance(data, dict):
        log.warning("wechat_not_json", length=len(body))
        raise _wechat_error("WeChat answered with something other than a JSON object")
    errcode = data.get("errcode", 0)
    if errcode != 0 and errcode is not None:
        errmsg = str(data.get("errmsg", ""))[:ERRMSG_MAX]
        error = _errcode_error(errcode, errmsg)
        log.warning("wechat_refused", errcode=errcode, errmsg=errmsg, code=error.code)
        raise error
    openid, session_key = data.get("openid"), data.get("session_key")
    # Report which fields are missing, never the body: it may hold the session_key.
    missing = [
        name
        for name, value in (("openid", openid), ("session_key", session_key))
        if not isinstance(value, str) or not value
    ]
    if missing:
        log.warning("wechat_incomplete", missing=missing)
        raise _wechat_error(f"WeChat's answer lacks {' and '.join(missing)}")
    assert isinstance(openid, str)
    assert isinstance(session_key, str)
    unionid = data.get("unionid")
    return Session(
        openid=openid,
        session_key=session_key,
        unionid=unionid if isinstance(unionid, str) and unionid else None,
    )


def verify_signature(raw_data: str, session_key: str, signature: str) -> None:
    """Raise ``LoginError`` (bad_signature) unless ``signature == sha1(rawData + session_key)``.

    Only WeChat and this server know the session_key, so a match proves WeChat produced
    rawData for this user. Compared in constant time.
    """
    expected = hashlib.sha1((raw_data + session_key).encode()).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str, and signature comes from a client.
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise LoginError(401, "bad_signature", "signature does not match rawData")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_encrypted(f"{what} is not valid base64") from None


def _bad_encrypted(message: str) -> LoginError:
    return LoginError(400, "bad_encrypted_data", message)


def decrypt_user_info(encrypted_data: str, iv: str, session_key: str, appid: str) -> dict[str, Any]:
    """Decrypt ``encryptedData`` (AES-128-CBC, PKCS#7) and check it was made for ``appid``.

    The watermark check stops data encrypted for another mini-program (a replay from a
    different app sharing a user) from being accepted here.
    """
    key = _b64decode(session_key, "session_key")
    if len(key) != AES_KEY_BYTES:
        raise _bad_encrypted(f"session_key must be {AES_KEY_BYTES} bytes")
    iv_bytes = _b64decode(iv, "iv")
    if len(iv_bytes) != AES_BLOCK_BITS // 8:
        raise _bad_encrypted(f"iv must be {AES_BLOCK_BITS // 8} bytes")
    ciphertext = _b64decode(encrypted_data, "encryptedData")
    if not ciphertext or len(ciphertext) % (AES_BLOCK_BITS // 8):
        raise _bad_encrypted("encryptedData is not whole AES blocks")
    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv_bytes)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(AES_BLOCK_BITS).unpadder()
        plaintext = unpadder.update(padded) + unpadder.finalize()
        info = orjson.loads(plaintext)
    except ValueError:  # bad padding (a wrong key, mostly) or not JSON (JSONDecodeError)
        raise _bad_encrypted("encryptedData does not decrypt with this session") from None
    if not isinstance(info, dict):
        raise _bad_encrypted("encryptedData does not hold a JSON object")
    watermark = info.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise LoginError(401, "watermark_mismatch", "encryptedData was made for another app")
    return info


_OPTIONAL_FIELDS = {
    "rawData": "raw_data",
    "signature": "signature",
    "encryptedData": "encrypted_data",
    "iv": "iv",
}


def parse_login_body(body: Any) -> LoginRequest:
    """Validate a decoded login body; raises ``LoginError`` (bad_request) saying what is wrong.

    Optional fields sent as ``null`` count as absent (JavaScript clients send them so).
    """
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    if "code" not in body:
        raise _bad_request("code is required: send what wx.login() returned")
    code = check_code(body["code"])
    fields: dict[str, str] = {}
    for wire, name in _OPTIONAL_FIELDS.items():
        value = body.get(wire)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _bad_request(f"{wire} must be a string")
        if len(value) > FIELD_MAX:
            raise _bad_request(f"{wire} must be at most {FIELD_MAX} characters")
        fields[name] = value
    if "signature" in fields and "raw_data" not in fields:
        raise _bad_request("signature needs the rawData it signs")
    if "encrypted_data" in fields and "iv" not in fields:
        raise _bad_request("encryptedData needs its iv")
    return LoginRequest(code=code, **fields)


def _profile_fields(info: dict[str, Any]) -> dict[str, str]:
    profile = {}
    for wire, name in (("nickName", "name"), ("avatarUrl", "avatar")):
        value = info.get(wire)
        if isinstance(value, str) and value:
            profile[name] = value
    return profile


async def login(
    client: WeChatClient, request: LoginRequest, appid: str | None = None
) -> LoginOutcome:
    """code2session, then the signature if sent, then the decryption if sent.

    The profile takes ``name``/``avatar`` from the decrypted user info, else from the
    verified rawData; rawData sent without a signature is not trusted and not used.
    ``appid`` defaults to the client's own.
    """
    session = await client.code2session(request.code)
    profile: dict[str, str] = {}
    if request.raw_data is not None and request.signature is not None:
        verify_signature(request.raw_data, session.session_key, request.signature)
        try:
            raw = orjson.loads(request.raw_data)
        except orjson.JSONDecodeError:
            raise _bad_request("rawData must be JSON") from None
        if not isinstance(raw, dict):
            raise _bad_request("rawData must be a JSON object")
        profile = _profile_fields(raw)
    if request.encrypted_data is not None and request.iv is not None:
        info = decrypt_user_info(
            request.encrypted_data,
            request.iv,
            session.session_key,
            client.config.appid if appid is None else appid,
        )
        profile |= _profile_fields(info)
    return LoginOutcome(session=session, profile=profile)
