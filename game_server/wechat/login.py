"""A WeChat login from the client's body to a proven identity and profile.

The client sends the code from ``wx.login()`` (and optionally what ``wx.getUserInfo()``
returned); ``parse_login_body`` checks the body and ``login`` runs code2session, then the
signature and the decryption if they were sent. Every failure is a ``LoginError`` carrying
the HTTP status, stable code and message the route answers with, so the route is a thin
shell over these two.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson

from game_server.wechat.client import WeChatClient, WeChatSession, check_code
from game_server.wechat.crypto import decrypt_user_info, verify_signature
from game_server.wechat.errors import bad_request

FIELD_MAX = 64 * 1024
"""rawData, encryptedData and friends are a few hundred bytes; refuse to hash or decrypt more."""


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

    session: WeChatSession
    profile: dict[str, str] = attrs.Factory(dict)


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
        raise bad_request("the body must be a JSON object")
    if "code" not in body:
        raise bad_request("code is required: send what wx.login() returned")
    code = check_code(body["code"])
    fields: dict[str, str] = {}
    for wire, name in _OPTIONAL_FIELDS.items():
        value = body.get(wire)
        if value is None:
            continue
        if not isinstance(value, str):
            raise bad_request(f"{wire} must be a string")
        if len(value) > FIELD_MAX:
            raise bad_request(f"{wire} must be at most {FIELD_MAX} characters")
        fields[name] = value
    if "signature" in fields and "raw_data" not in fields:
        raise bad_request("signature needs the rawData it signs")
    if "encrypted_data" in fields and "iv" not in fields:
        raise bad_request("encryptedData needs its iv")
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
            raise bad_request("rawData must be JSON") from None
        if not isinstance(raw, dict):
            raise bad_request("rawData must be a JSON object")
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
