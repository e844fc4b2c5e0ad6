"""How a WeChat login fails: one exception carrying the HTTP answer the client gets."""

from __future__ import annotations

import math
from typing import Any


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


def bad_request(message: str) -> LoginError:
    return LoginError(400, "bad_request", message)
