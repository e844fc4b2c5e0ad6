"""WeChat's code2session API: trade a ``wx.login()`` code for the user's identity.

The server calls it with the app secret; the answer's ``session_key`` proves what the
client sends beside the code (``wechat/crypto.py``). It never leaves the server and never
goes to logs, and neither does the app secret.
"""

from __future__ import annotations

import asyncio

import aiohttp
import attrs
import orjson
import structlog

from game_server.wechat.errors import LoginError, bad_request

log = structlog.get_logger("game_server.wechat")

CODE_MAX = 128
"""wx.login codes are 32 characters today; anything far longer is not one."""
RESPONSE_MAX = 64 * 1024
"""code2session answers are tiny; a huge body is not WeChat, so stop reading it."""
RATE_LIMIT_RETRY = 60.0
"""45011 is a per-minute quota."""
BUSY_RETRY = 2.0
"""-1 is WeChat's 'system busy, try again'."""
ERRMSG_MAX = 200


@attrs.frozen
class WeChatConfig:
    """The mini-program's credentials and where to reach WeChat (tests point it at a fake)."""

    appid: str = attrs.field(validator=attrs.validators.min_len(1))
    secret: str = attrs.field(validator=attrs.validators.min_len(1), repr=False)
    api_base: str = "https://api.weixin.qq.com"
    timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))


@attrs.frozen
class WeChatSession:
    """Who WeChat says the code belongs to. ``session_key`` is base64, as WeChat sends it."""

    openid: str
    session_key: str = attrs.field(repr=False)
    unionid: str | None = None


def check_code(code: object) -> str:
    """The code if it looks like one: visible ASCII, 1 to ``CODE_MAX`` characters.

    Garbage is refused here so it never costs a call against WeChat's quota.
    """
    if not isinstance(code, str) or not code:
        raise bad_request("code must be the non-empty string wx.login() returned")
    if len(code) > CODE_MAX:
        raise bad_request(f"code must be at most {CODE_MAX} characters")
    if not all("!" <= char <= "~" for char in code):
        raise bad_request("code must be printable ASCII without spaces")
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

    async def code2session(self, code: str) -> WeChatSession:
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


def _session_from(body: bytes) -> WeChatSession:
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
    return WeChatSession(
        openid=openid,
        session_key=session_key,
        unionid=unionid if isinstance(unionid, str) and unionid else None,
    )
