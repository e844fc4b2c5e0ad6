"""Test doubles for the sans-I/O core: a clock that only moves when told, and an outlet
that records what the service would have sent."""

from __future__ import annotations

from typing import TypeVar

import attrs

from protocol import ServerMessage, decode_server, encode

M = TypeVar("M", bound=ServerMessage)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@attrs.define(eq=False)
class RecordingOutlet:
    """Every message goes through the real codec, so tests see what a client would."""

    sent: list[ServerMessage] = attrs.Factory(list)
    closed: tuple[int, str] | None = None

    def send(self, message: ServerMessage) -> None:
        assert self.closed is None, f"send after close: {message!r}"
        self.sent.append(decode_server(encode(message)))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def take(self) -> list[ServerMessage]:
        out, self.sent = self.sent, []
        return out

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.sent if isinstance(m, kind)]

    def last(self, kind: type[M]) -> M:
        found = self.of(kind)
        assert found, f"no {kind.TYPE} in {self.sent!r}"
        return found[-1]
