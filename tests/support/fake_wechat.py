"""A fake of WeChat's ``code2session`` endpoint, and the client-side material WeChat would
hand a mini-program (signed ``rawData``, ``encryptedData``) for a given session_key.

Serve ``FakeWeChat.make_app()`` on 127.0.0.1 (pytest-aiohttp's ``aiohttp_server``) and point
``WeChatConfig.api_base`` at it. Like the real one it answers ``text/plain`` by default,
answers unknown codes with 40029 and a code used once with 40163.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from typing import Any

import attrs
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PATH = "/sns/jscode2session"


@attrs.frozen
class Code2SessionCall:
    """The query parameters one request carried (``None`` when absent)."""

    appid: str | None
    secret: str | None
    js_code: str | None
    grant_type: str | None


def make_session_key() -> str:
    """A fresh session_key as WeChat sends it: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode()


@attrs.define(eq=False)
class FakeWeChat:
    """What the fake answers, per code, and every request it got (in ``calls``).

    ``delay`` holds every answer back (for timeouts); ``raw_body`` replaces every answer with
    these bytes (for nonsense); ``status`` and ``content_type`` shape every answer.
    """

    replies: dict[str, dict[str, Any]] = attrs.Factory(dict)
    calls: list[Code2SessionCall] = attrs.Factory(list)
    single_use: bool = True
    delay: float = 0.0
    raw_body: bytes | None = None
    status: int = 200
    content_type: str = "text/plain"
    _used: set[str] = attrs.Factory(set)

    def succeed(
        self,
        code: str,
        openid: str,
        *,
        session_key: str | None = None,
        unionid: str | None = None,
    ) -> str:
        """Make ``code`` log ``openid`` in; returns the session_key (made if not given)."""
        key = session_key if session_key is not None else make_session_key()
        reply: dict[str, Any] = {"openid": openid, "session_key": key}
        if unionid is not None:
            reply["unionid"] = unionid
        self.replies[code] = reply
        return key

    def fail(self, code: str, errcode: int, errmsg: str = "fake error") -> None:
        """Make ``code`` answer with a WeChat error."""
        self.replies[code] = {"errcode": errcode, "errmsg": errmsg}

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PATH, self._code2session)
        return app

    def _reply_for(self, code: str | None) -> dict[str, Any]:
        if code is None or code not in self.replies:
            return {"errcode": 40029, "errmsg": "invalid code, rid: fake"}
        if self.single_use and code in self._used:
            return {"errcode": 40163, "errmsg": "code been used, rid: fake"}
        reply = self.replies[code]
        if "openid" in reply:
            self._used.add(code)
        return reply

    async def _code2session(self, request: web.Request) -> web.Response:
        query = request.query
        self.calls.append(
            Code2SessionCall(
                appid=query.get("appid"),
                secret=query.get("secret"),
                js_code=query.get("js_code"),
                grant_type=query.get("grant_type"),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        body = self.raw_body
        if body is None:
            body = orjson.dumps(self._reply_for(query.get("js_code")))
        return web.Response(body=body, status=self.status, content_type=self.content_type)


def sign_raw_data(user_info: dict[str, Any], session_key: str) -> tuple[str, str]:
    """``(rawData, signature)`` as ``wx.getUserInfo()`` returns them for this session."""
    raw_data = orjson.dumps(user_info).decode()
    return raw_data, hashlib.sha1((raw_data + session_key).encode()).hexdigest()


def encrypt_bytes(
    plaintext: bytes, session_key: str, iv: bytes | None = None, *, pad: bool = True
) -> tuple[str, str]:
    """``(encryptedData, iv)``: AES-128-CBC under the session_key, base64 like WeChat's.

    ``pad=False`` skips PKCS#7 (the plaintext must then be whole blocks), to make
    ciphertext whose padding is wrong.
    """
    iv = os.urandom(16) if iv is None else iv
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(base64.b64decode(session_key)), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return base64.b64encode(ciphertext).decode(), base64.b64encode(iv).decode()


def encrypt_user_info(
    user_info: dict[str, Any],
    session_key: str,
    appid: str,
    *,
    iv: bytes | None = None,
    timestamp: int | None = None,
) -> tuple[str, str]:
    """``(encryptedData, iv)`` for ``user_info`` with the watermark WeChat adds for ``appid``."""
    stamped = {
        **user_info,
        "watermark": {
            "appid": appid,
            "timestamp": int(time.time()) if timestamp is None else timestamp,
        },
    }
    return encrypt_bytes(orjson.dumps(stamped), session_key, iv)
