"""Test doubles for the sans-I/O core: a clock that only moves when told, and an outlet
that records what the service would have sent."""

from __future__ import annotations

from typing import TypeVar

import attrs

from game_server.core.ports import LoadDone, StoreUnavailable
from game_server.core.records import MatchRecord, PlayerRecord
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

    def send_encoded(self, data: bytes) -> None:
        assert self.closed is None, f"send after close: {data!r}"
        self.sent.append(decode_server(data))

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


@attrs.define(eq=False)
class MemoryStore:
    """A ``PlayerStore`` in dicts; with ``defer`` set, loads answer only on ``answer()``;
    with ``broken`` set, they fail as a real store's do when its disk fails."""

    players: dict[str, PlayerRecord] = attrs.Factory(dict)
    matches: list[MatchRecord] = attrs.Factory(list)
    defer: bool = False
    broken: bool = False
    waiting: list[tuple[str, LoadDone]] = attrs.Factory(list)

    def load_player(self, player_id: str, done: LoadDone) -> None:
        if self.defer:
            self.waiting.append((player_id, done))
        else:
            self._answer(player_id, done)

    def answer(self) -> None:
        waiting, self.waiting = self.waiting, []
        for player_id, done in waiting:
            self._answer(player_id, done)

    def _answer(self, player_id: str, done: LoadDone) -> None:
        if self.broken:
            done(StoreUnavailable("disk I/O error"))
        else:
            done(self.players.get(player_id))

    def save_player(self, record: PlayerRecord) -> None:
        self.players[record.id] = record

    def record_match(self, record: MatchRecord) -> None:
        self.matches.append(record)
        for player in record.players:
            self.players[player.id] = player
