"""Signed, expiring session tokens: ``<player id>.<expiry>.<HMAC>``.

A token is verified with the secret alone, so it survives a restart and any process that
shares the secret accepts it; no token table to keep or replicate. Sliding expiry: every
``hi`` carries a fresh token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

VERSION = "v1"
SECRET_MIN_BYTES = 16


class InvalidToken(Exception):
    """Forged, malformed or expired; the message says which, for the client."""


def _mac(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class TokenSigner:
    def __init__(
        self,
        secret: bytes,
        ttl: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < SECRET_MIN_BYTES:
            raise ValueError(f"the token secret must be at least {SECRET_MIN_BYTES} bytes")
        if ttl <= 0:
            raise ValueError("the token lifetime must be positive")
        self._secret = secret
        self.ttl = ttl
        self._clock = clock

    @classmethod
    def random(cls, ttl: float) -> TokenSigner:
        """For development: tokens die with the process."""
        return cls(secrets.token_bytes(32), ttl)

    def issue(self, player_id: str) -> str:
        if "." in player_id or not player_id.isascii():
            raise ValueError("player ids must be ASCII without dots")
        expires = int(self._clock() + self.ttl)
        body = f"{VERSION}.{player_id}.{expires}"
        return f"{body}.{_mac(self._secret, body)}"

    def verify(self, token: str) -> str:
        """The player id the token was issued to; raises ``InvalidToken``."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != VERSION:
            raise InvalidToken("this token was not issued by this server; log in again")
        _, player_id, expires, mac = parts
        if not hmac.compare_digest(mac, _mac(self._secret, f"{VERSION}.{player_id}.{expires}")):
            raise InvalidToken("this token was not issued by this server; log in again")
        if not expires.isdigit() or int(expires) <= self._clock():
            raise InvalidToken("this token has expired; log in again")
        return player_id
