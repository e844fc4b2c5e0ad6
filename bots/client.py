"""A bot that plays over a real WebSocket, exactly as a player's client would.

It speaks only the public protocol (through ``protocol``'s codec), checks what it can
see of the rules as it plays, and records anything off-spec as a violation, so the same
client serves end-to-end tests, soak runs and load benchmarks.

Three pieces, the last two sans-I/O so they can be tested with fabricated messages:

- :class:`BotClient` connects, says hello, joins, plays and joins again (or, paired
  with another client by a :class:`FriendLink`, meets it by room code and rematch);
- :class:`MatchChecker` checks one player's view of its matches against the rules
  (round order, scores, match end, streak scoring);
- :class:`RoundLedger` cross-checks the two sides of a bot-vs-bot round when both sides
  are played in the same process (same hands, mirrored outcome and score).

The client is used for load tests with hundreds of clients in one process, so the hot
path does no logging, keeps no growing lists unless asked to (``keep_results``, the
default latency lists) and caps the violation and error texts it stores.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import aiohttp
import attrs

from game_server.core.strategies import Strategy, make_strategy
from protocol import (
    BotMode,
    Bye,
    Choice,
    ClientMessage,
    CreateRoom,
    EndReason,
    Error,
    ErrorCode,
    Hello,
    Hi,
    Join,
    Leave,
    Left,
    MakeChoice,
    Movement,
    MovementKind,
    Outcome,
    Pong,
    ProtocolError,
    Queued,
    Rematch,
    RematchDeclined,
    RematchOffer,
    Result,
    Resume,
    RoomOpened,
    ServerMessage,
    Start,
    Winner,
    decode_server,
    encode,
    judge,
)

__all__ = [
    "DEFAULT_URL",
    "BotClient",
    "BotReport",
    "FriendLink",
    "LatencySink",
    "MatchChecker",
    "Phase",
    "ProtocolViolation",
    "RoundLedger",
    "compare_sides",
]

M = TypeVar("M", bound=ServerMessage)

DEFAULT_URL = "ws://127.0.0.1:9595/applet/websocket"
DEFAULT_MAX_TEXTS = 50
"""Violation and error texts kept per client; all of them are counted."""

_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)
_FORFEITS = frozenset({EndReason.FORFEIT, EndReason.OPPONENT_LEFT})
_MIRROR_WINNER = {
    Winner.YOU: Winner.OPPONENT,
    Winner.OPPONENT: Winner.YOU,
    Winner.DRAW: Winner.DRAW,
}
_PAIRED_REASON = {
    EndReason.ROUNDS: EndReason.ROUNDS,
    EndReason.AFK: EndReason.AFK,
    EndReason.FORFEIT: EndReason.OPPONENT_LEFT,
    EndReason.OPPONENT_LEFT: EndReason.FORFEIT,
}
# A join answered with one of these gets no ``queued``: the server thinks we still play.
_JOIN_REFUSED = frozenset({ErrorCode.ALREADY_IN_MATCH, ErrorCode.ALREADY_QUEUED})
# After hi on a reconnect, how long to wait for the resume (or queued) that follows it if
# the player still has a match (or a queue entry): the server sends them in the same turn.
_FOLLOW_UP_SECONDS = 1.0
_JOIN_ID = "join"  # the id of every join, so its refusal can be told from other errors


class ProtocolViolation(ConnectionError):
    """The server broke the protocol so that this connection cannot go on (already recorded)."""


# Hellos answered "unavailable" in a row before a client gives up on the server.
_HELLO_RETRIES = 20


class LatencySink(Protocol):
    """Where latencies go: a ``list`` or anything with ``append`` (e.g. a histogram)."""

    def append(self, seconds: float, /) -> None: ...


class Phase:
    """What a :class:`BotClient` is doing, for watchdogs and progress displays."""

    OFFLINE = "offline"
    CONNECTING = "connecting"  # connecting or waiting for hi
    IDLE = "idle"  # between matches
    QUEUED = "queued"  # join sent, no start yet
    PLAYING = "playing"  # in a match


@attrs.define
class BotReport:
    """What one bot saw; summed over many bots by the soak tool."""

    matches: int = 0
    rounds: int = 0
    wins: int = 0
    losses: int = 0
    draws: int = 0
    bot_opponents: int = 0
    sent: int = 0
    received: int = 0
    errors: list[str] = attrs.Factory(list)  # the first texts; error_count counts all
    violations: list[str] = attrs.Factory(list)  # the first texts; violation_count counts all
    choice_latency: list[float] = attrs.Factory(list)  # choice sent -> result received, s
    start_latency: list[float] = attrs.Factory(list)  # join sent -> first start, s
    results: list[Result] = attrs.Factory(list)  # final results, for cross-checks
    player_id: str | None = None
    total_score: int = 0
    win_streak: int = 0
    error_count: int = 0
    violation_count: int = 0
    error_codes: dict[str, int] = attrs.Factory(dict)
    bot_matches: int = 0  # finished matches against a house bot
    bye_reason: str | None = None  # the last bye the server sent
    resumes: int = 0  # resume messages: after a reconnect, or a takeover of the match
    abandoned: int = 0  # matches started whose final result never came (seen by this side)
    # Their ids (the first few): a cluster test looks each one up in the shared store, where
    # a match whose final result died with a node's connection is still recorded as over.
    abandoned_matches: list[str] = attrs.Factory(list)
    rating: int | None = None  # the latest the server said (hi, a final result)
    # Rating points between this bot and each human opponent as their match began.
    rating_gaps: list[float] = attrs.Factory(list)


# ---------------------------------------------------------------- rule checks


class MatchChecker:
    """One player's view of its matches, checked against the rules; sans-I/O.

    Call :meth:`joined` after sending ``join``, :meth:`chose` after sending a hand, and
    :meth:`start`, :meth:`movement` and :meth:`result` with what arrives. Each broken rule
    is passed to ``violation`` as a short text.

    Totals: a new player starts from 0/0; the streak rule is checked from the previous
    final result. After a reconnect that may have forfeited a match we never saw the end
    of, call :meth:`forget_totals`: the next final result is then taken as it is.
    """

    def __init__(self, violation: Callable[[str], None]) -> None:
        self._violation = violation
        self.total_score = 0
        self.win_streak = 0
        self.totals_known = True
        self.match_id: str | None = None
        self.opponent_id: str | None = None
        self.best_of = 0
        self.round = 0  # the round of the latest start; 0 before the first
        self.resolved = True  # the latest round has had its result
        self.wins = 0  # rounds won in this match, counted from the results
        self.losses = 0
        self.chosen: Choice | None = None  # our hand in the current round, if sent
        self.movement_seen = False
        self.over = False  # the final result of this match has arrived

    def forget_totals(self) -> None:
        self.totals_known = False

    def new_player(self) -> None:
        """The server created a new player for us: totals start again from 0/0."""
        self.total_score = self.win_streak = 0
        self.totals_known = True

    def joined(self) -> None:
        self.match_id = self.opponent_id = None
        self.best_of = self.round = self.wins = self.losses = 0
        self.resolved = True
        self.chosen = None
        self.over = False

    def chose(self, choice: Choice) -> None:
        self.chosen = choice

    def start(self, m: Start) -> None:
        v = self._violation
        mid = m.match_id
        if self.match_id is None:
            self.match_id, self.opponent_id, self.best_of = mid, m.opponent.id, m.best_of
            if m.round != 1:
                v(f"{mid}: first start is round {m.round}, not 1")
        else:
            if self.over:
                v(f"{mid}: start of round {m.round} after the final result of {self.match_id}")
            elif mid != self.match_id:
                v(f"start for {mid} while playing {self.match_id}")
            if not self.resolved:
                v(f"{mid}: start of round {m.round} before the result of round {self.round}")
            if m.round != self.round + 1:
                v(f"{mid}: start of round {m.round} after round {self.round}")
            if m.best_of != self.best_of:
                v(f"{mid}: best_of changed from {self.best_of} to {m.best_of}")
            if m.opponent.id != self.opponent_id:
                v(f"{mid}: opponent changed from {self.opponent_id} to {m.opponent.id}")
        if m.round > m.best_of:
            v(f"{mid}: round {m.round} of best of {m.best_of}")
        if m.score.you != self.wins or m.score.opponent != self.losses:
            v(
                f"{mid}: start of round {m.round} says {m.score.you}-{m.score.opponent},"
                f" results say {self.wins}-{self.losses}"
            )
        self.round = m.round
        self.resolved = False
        self.chosen = None
        self.movement_seen = False

    def resume(self, m: Resume) -> None:
        """Where the match stands after a reconnect or a takeover by another process."""
        v = self._violation
        mid = m.match_id
        if self.match_id is None:
            self.match_id, self.opponent_id, self.best_of = mid, m.opponent.id, m.best_of
        elif mid != self.match_id or self.over:
            v(f"resume of {mid} while playing {self.match_id}")
        elif m.opponent.id != self.opponent_id:
            v(f"{mid}: resumed against {m.opponent.id}, not {self.opponent_id}")
        if m.round < self.round:
            v(f"{mid}: resumed at round {m.round} after round {self.round}")
        if m.score.you != self.wins or m.score.opponent != self.losses:
            v(
                f"{mid}: resume of round {m.round} says {m.score.you}-{m.score.opponent},"
                f" results say {self.wins}-{self.losses}"
            )
        if m.round != self.round or m.deadline_ms > 0:
            # A new round, or one opened again with a fresh deadline (a takeover): what we
            # chose before is what the server says we chose.
            self.round = m.round
            self.resolved = m.deadline_ms == 0
            self.chosen = m.choice
            self.movement_seen = False

    def resync(self, m: Resume) -> None:
        """After a reconnect, messages may have been lost with the old socket: take the
        match as ``resume`` says it stands (a result we missed may have ended a streak,
        so the totals are unknown until the next final result)."""
        if m.match_id != self.match_id:
            self.joined()
        self.match_id, self.opponent_id, self.best_of = m.match_id, m.opponent.id, m.best_of
        self.wins, self.losses = m.score.you, m.score.opponent
        self.round = m.round
        self.resolved = m.deadline_ms == 0
        self.chosen = m.choice
        self.movement_seen = False
        self.over = False

    def movement(self, m: Movement) -> None:
        v = self._violation
        if m.match_id != self.match_id or self.over:
            v(f"movement for {m.match_id} while playing {self.match_id}")
        elif m.round != self.round:
            v(f"{m.match_id}: movement for round {m.round} in round {self.round}")
        elif m.kind is MovementKind.CHOICE:
            if self.resolved:
                v(f"{m.match_id}: choice movement after the result of round {m.round}")
            elif self.movement_seen:
                v(f"{m.match_id}: second choice movement in round {m.round}")
            self.movement_seen = True

    def result(self, m: Result) -> None:
        v = self._violation
        mid, rnd = m.match_id, m.round
        forfeit = m.reason in _FORFEITS
        if self.match_id is None:
            v(f"{mid}: result of round {rnd} before any start")
        elif mid != self.match_id:
            v(f"result for {mid} while playing {self.match_id}")
        if self.over:
            v(f"{mid}: result of round {rnd} after the final result")
        elif rnd != self.round:
            v(f"{mid}: result of round {rnd} in round {self.round}")
        elif self.resolved and not forfeit:  # a forfeit in the pause repeats the round number
            v(f"{mid}: second result of round {rnd}")
        self.resolved = True
        if m.you is not None and m.you is not self.chosen:
            v(f"{mid}: round {rnd} says we played {m.you}, we sent {self.chosen}")
        if forfeit:
            want = (
                (Outcome.LOSE, Winner.OPPONENT)
                if m.reason is EndReason.FORFEIT
                else (Outcome.WIN, Winner.YOU)
            )
            if (m.outcome, m.winner) != want:
                v(f"{mid}: {m.reason} with outcome {m.outcome} and winner {m.winner}")
        else:
            expected = judge(m.you, m.opponent)
            if m.outcome is not expected:
                v(f"{mid}: round {rnd} {m.you} vs {m.opponent} is {expected}, got {m.outcome}")
            if m.outcome is Outcome.WIN:
                self.wins += 1
            elif m.outcome is Outcome.LOSE:
                self.losses += 1
        if m.score.you != self.wins or m.score.opponent != self.losses:
            v(
                f"{mid}: result of round {rnd} says {m.score.you}-{m.score.opponent},"
                f" results say {self.wins}-{self.losses}"
            )
        rounds_left = self.best_of - rnd
        decided = rounds_left <= 0 or abs(self.wins - self.losses) > rounds_left
        if not m.match_over:
            if (
                m.winner is not None
                or m.reason is not None
                or m.total_score is not None
                or m.win_streak is not None
            ):
                v(f"{mid}: non-final result of round {rnd} carries final fields")
            if decided:
                v(f"{mid}: not over at {self.wins}-{self.losses} after round {rnd}/{self.best_of}")
            return
        self.over = True
        self._final(m, decided)

    def _final(self, m: Result, decided: bool) -> None:
        v = self._violation
        mid = m.match_id
        if m.winner is None or m.reason is None or m.total_score is None or m.win_streak is None:
            v(f"{mid}: final result without winner/reason/total_score/win_streak")
            self.totals_known = False
            return
        if m.reason is EndReason.ROUNDS:
            if not decided:
                v(f"{mid}: ended by rounds at {self.wins}-{self.losses} after round {m.round}")
            leader = (
                Winner.YOU
                if self.wins > self.losses
                else Winner.OPPONENT
                if self.losses > self.wins
                else Winner.DRAW
            )
            if m.winner is not leader:
                v(f"{mid}: winner {m.winner} at {self.wins}-{self.losses}")
        elif m.reason is EndReason.AFK and (
            (m.winner is Winner.YOU and m.opponent is not None)
            or (m.winner is Winner.OPPONENT and m.you is not None)
            or (m.winner is Winner.DRAW and (m.you is not None or m.opponent is not None))
        ):
            v(f"{mid}: afk winner {m.winner} with hands {m.you} vs {m.opponent}")
        if self.totals_known:
            streak, total = self.win_streak, self.total_score
            if m.winner is Winner.YOU:
                streak += 1
                total += streak
            elif m.winner is Winner.OPPONENT:
                streak = 0
            if m.total_score != total or m.win_streak != streak:
                v(
                    f"{mid}: streak scoring: from total {self.total_score} streak"
                    f" {self.win_streak}, winner {m.winner} gives {total}/{streak},"
                    f" got {m.total_score}/{m.win_streak}"
                )
        elif m.total_score < self.total_score:
            v(f"{mid}: total score went down from {self.total_score} to {m.total_score}")
        self.total_score, self.win_streak = m.total_score, m.win_streak
        self.totals_known = True


def compare_sides(
    a_player: str,
    a_opponent: str | None,
    a: Result,
    b_player: str,
    b_opponent: str | None,
    b: Result,
) -> list[str]:
    """What differs between two players' results of the same round (empty: consistent)."""
    where = f"{a.match_id} round {a.round} ({a_player} vs {b_player})"
    problems: list[str] = []
    if a_player == b_player:
        return [f"{where}: two results for the same player"]
    if a_opponent != b_player or b_opponent != a_player:
        problems.append(f"{where}: opponents {a_opponent} and {b_opponent}")
    if a.you is not b.opponent or a.opponent is not b.you:
        problems.append(
            f"{where}: hands differ: {a.you} vs {a.opponent} against {b.opponent} vs {b.you}"
        )
    if a.outcome.mirrored is not b.outcome:
        problems.append(f"{where}: outcomes {a.outcome} and {b.outcome} are not mirrored")
    if a.score.you != b.score.opponent or a.score.opponent != b.score.you:
        problems.append(
            f"{where}: scores {a.score.you}-{a.score.opponent} and"
            f" {b.score.you}-{b.score.opponent} are not mirrored"
        )
    if a.match_over != b.match_over:
        problems.append(f"{where}: match_over {a.match_over} and {b.match_over}")
    elif a.match_over:
        if a.winner is None or b.winner is None or _MIRROR_WINNER[a.winner] is not b.winner:
            problems.append(f"{where}: winners {a.winner} and {b.winner} are not mirrored")
        if a.reason is None or _PAIRED_REASON[a.reason] is not b.reason:
            problems.append(f"{where}: reasons {a.reason} and {b.reason} do not match")
    return problems


_Entry = tuple[str, str | None, Result, float]


class RoundLedger:
    """Both sides' results of each round of bot-vs-bot matches played in one process.

    The first side to report a round is kept; when the other side reports it, the two are
    compared with :func:`compare_sides` and the entry is deleted. Entries whose partner
    never comes (a foreign client, a disconnect) are dropped by :meth:`sweep` after
    ``ttl`` seconds, so memory stays proportional to the rounds in flight. Forfeit results
    are kept apart from ordinary ones: a forfeit in the pause after a round repeats that
    round's number.
    """

    def __init__(self, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.paired = 0  # rounds seen from both sides
        self.expired = 0  # entries dropped without a partner
        self._pending: dict[tuple[str, int, bool], _Entry] = {}
        self._records = 0

    def __len__(self) -> int:
        return len(self._pending)

    def record(self, player_id: str, opponent_id: str | None, result: Result) -> list[str] | None:
        """Record one side; ``None`` if it is the first side, else the problems found."""
        key = (result.match_id, result.round, result.reason in _FORFEITS)
        pending = self._pending
        other = pending.pop(key, None)
        if other is None:
            pending[key] = (player_id, opponent_id, result, self.clock())
            self._records += 1
            if self._records & 4095 == 0:
                self.sweep()
            return None
        if other[0] == player_id:
            pending[key] = other
            return [f"{result.match_id} round {result.round}: two results for {player_id}"]
        self.paired += 1
        return compare_sides(other[0], other[1], other[2], player_id, opponent_id, result)

    def reopen(self, match_id: str, round_number: int) -> int:
        """Round ``round_number`` of the match is open again (a ``resume`` with time left):
        results of it and later rounds seen so far are void. In a cluster a host can die
        after sending a round's result and before its checkpoint of that round reached
        Redis; the survivor replays the round (protocol/README.md, ``resume``). Returns
        how many entries went."""
        stale = [key for key in self._pending if key[0] == match_id and key[1] >= round_number]
        for key in stale:
            del self._pending[key]
        return len(stale)

    def sweep(self, now: float | None = None) -> int:
        """Drop the entries older than ``ttl``; returns how many."""
        cutoff = (self.clock() if now is None else now) - self.ttl
        pending = self._pending
        dropped = 0
        while pending:
            key = next(iter(pending))  # insertion order is age order
            if pending[key][3] > cutoff:
                break
            del pending[key]
            dropped += 1
        self.expired += dropped
        return dropped

    def clear(self) -> None:
        self._pending.clear()


# ---------------------------------------------------------------- the client


_REMATCH = "rematch"  # what a host hands its guest instead of a code: accept my rematch


class FriendLink:
    """Two clients that play only each other, as friends do (the soak's ``friends``): the
    host opens a private room and hands the code to its guest, who joins by it; after a
    match the host asks for a rematch and the guest accepts the offer, until
    ``room_every`` seconds have passed since the room, when they meet in a new one. (A
    connection may try one code every 5 s once its first 10 are spent, protocol §6.9:
    ``room_every`` keeps a pair of bots playing at full speed within that.) Codes pass
    in-process, as a chat app would pass them; the two may be connected to different
    servers of a cluster."""

    def __init__(self, room_every: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.room_every = room_every
        self.clock = clock
        self.last_room: float | None = None  # when the host last opened a room
        # Host to guest: a room code, _REMATCH, or None once the host has stopped.
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()


class BotClient:
    """One bot player over one WebSocket at a time (reconnects keep the player's token).

    ``mode`` is the ``join.bot`` mode; with ``house_share`` > 0 that share of joins asks
    for a house bot (``now``) instead. ``ledger`` cross-checks bot-vs-bot rounds with the
    other clients of this process. ``choice_latency``/``start_latency`` replace the
    report's lists as latency sinks; ``on_result(result, first)`` is called for every
    result, ``first`` being false when the other side already reported that round here.
    With ``friend`` it meets only the other client of that link, as its ``host`` or guest,
    and a dropped connection is not resumed (the pair would have to meet again).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        strategy: Strategy | None = None,
        name: str | None = None,
        mode: BotMode = BotMode.NEVER,
        think: tuple[float, float] = (0.0, 0.0),
        rng: random.Random | None = None,
        keep_results: bool = False,
        clock: Callable[[], float] = time.perf_counter,
        house_share: float = 0.0,
        ledger: RoundLedger | None = None,
        choice_latency: LatencySink | None = None,
        start_latency: LatencySink | None = None,
        on_result: Callable[[Result, bool], None] | None = None,
        max_texts: int = DEFAULT_MAX_TEXTS,
        rating_gaps: LatencySink | None = None,
        friend: FriendLink | None = None,
        host: bool = False,
    ) -> None:
        self.url = url
        self.friend = friend
        self.host = host
        self._friend_gone = False  # the host stopped: its guest has nobody to meet
        self.rng = rng or random.Random()
        self.strategy = strategy or make_strategy("mix", self.rng)
        self.name = name
        self.mode = mode
        self.think = think
        self.keep_results = keep_results
        self.clock = clock
        self.house_share = house_share
        self.ledger = ledger
        self.on_result = on_result
        self.max_texts = max_texts
        self.report = BotReport()
        self.checker = MatchChecker(self.record_violation)
        self._choice_latency: LatencySink = (
            self.report.choice_latency if choice_latency is None else choice_latency
        )
        self._start_latency: LatencySink = (
            self.report.start_latency if start_latency is None else start_latency
        )
        self._rating_gaps: LatencySink = (
            self.report.rating_gaps if rating_gaps is None else rating_gaps
        )
        self.token: str | None = None
        self.phase = Phase.OFFLINE
        self.last_activity = clock()  # the last frame sent or received
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._match_pending = False  # a join is out: a drop now may forfeit a match
        self._started = False  # the pending match has begun (we saw its start)
        # What the server said after hi on a reconnect: the match goes on (resume), or we
        # are still queued; the next _play_one_match picks it up instead of joining.
        self._follow_up: Resume | Queued | None = None
        self._stop: asyncio.Event | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def play(
        self,
        matches: int | None,
        *,
        session: aiohttp.ClientSession | None = None,
        stop: asyncio.Event | None = None,
    ) -> BotReport:
        """Connect, say hello and play until the report holds ``matches`` matches.

        ``None`` plays until ``stop`` is set; ``stop`` is looked at between matches. A
        second call reconnects as the same player (with the token from ``hi``).
        """
        own_session = session is None
        session = session or aiohttp.ClientSession()
        report = self.report
        self.phase = Phase.CONNECTING
        self.last_activity = self.clock()
        self._stop = stop
        try:
            async with session.ws_connect(
                self.url, autoping=True, max_msg_size=1 << 16, timeout=_WS_TIMEOUT
            ) as ws:
                self._ws = ws
                await self._hello()
                while (
                    (matches is None or report.matches < matches)
                    and not (stop is not None and stop.is_set())
                    and not self._friend_gone
                ):
                    await self._play_one_match()
        finally:
            self._ws = None
            self.phase = Phase.OFFLINE
            if self.friend is not None and self.host:
                self.friend.inbox.put_nowait(None)  # its guest stops too
            if own_session:
                await session.close()
        return report

    def record_violation(self, text: str) -> None:
        report = self.report
        report.violation_count += 1
        if len(report.violations) < self.max_texts:
            report.violations.append(text)

    # ------------------------------------------------------------ internals

    async def _send(self, message: ClientMessage) -> None:
        assert self._ws is not None
        await self._ws.send_frame(encode(message), aiohttp.WSMsgType.TEXT)
        self.report.sent += 1
        self.last_activity = self.clock()

    async def _receive(self) -> ServerMessage:
        ws = self._ws
        assert ws is not None
        report = self.report
        while True:
            frame = await ws.receive()
            self.last_activity = self.clock()
            if frame.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed ({frame.type.name}, code {ws.close_code})")
            report.received += 1
            try:
                message = decode_server(frame.data)
            except ProtocolError as exc:
                self.record_violation(f"undecodable frame: {exc.message}")
                continue
            if isinstance(message, Bye):
                report.bye_reason = message.reason
                raise ConnectionError(f"server said bye: {message.reason}")
            return message

    async def _expect(self, kind: type[M]) -> M:
        message = await self._receive()
        if not isinstance(message, kind):
            self.record_violation(f"expected {kind.TYPE}, got {message!r}")
            raise ProtocolViolation(f"protocol violation: expected {kind.TYPE}")
        return message

    def _error(self, error: Error) -> None:
        report = self.report
        report.error_count += 1
        code = error.code.value
        report.error_codes[code] = report.error_codes.get(code, 0) + 1
        if len(report.errors) < self.max_texts:
            report.errors.append(f"{code}: {error.message}")

    async def _receive_within(self, seconds: float) -> ServerMessage | None:
        try:
            return await asyncio.wait_for(self._receive(), seconds)
        except TimeoutError:
            return None

    async def _hello(self) -> None:
        await self._send(Hello(name=self.name, token=self.token))
        reply = await self._receive()
        for _ in range(_HELLO_RETRIES):
            # The server cannot read our player just now (its storage, or a cluster's
            # Redis, is failing): keep the token and say hello again (protocol §3).
            if not (isinstance(reply, Error) and reply.code is ErrorCode.UNAVAILABLE):
                break
            self._error(reply)
            await asyncio.sleep(self.rng.uniform(0.5, 1.0))
            await self._send(Hello(name=self.name, token=self.token))
            reply = await self._receive()
        if isinstance(reply, Error) and reply.code is ErrorCode.INVALID_TOKEN and self.token:
            # Expired, or a server restarted with another secret: start over as a guest.
            self.token = None
            await self._send(Hello(name=self.name))
            reply = await self._receive()
        if not isinstance(reply, Hi):
            self.record_violation(f"expected hi, got {reply!r}")
            raise ProtocolViolation("protocol violation: expected hi")
        hi = reply
        if self.report.player_id is not None:
            if hi.player_id != self.report.player_id:
                self.checker.new_player()  # the token was forgotten: a new player, 0/0
            elif self._match_pending:
                # Back within the reconnect grace: the server follows hi with resume (the
                # match goes on, perhaps on another process) or queued (still waiting).
                follow = await self._receive_within(_FOLLOW_UP_SECONDS)
                if isinstance(follow, Resume):
                    # What we missed while the socket was down is in the resume: it is
                    # the truth from here (checked strictly only without a reconnect).
                    self.checker.resync(follow)
                    self._follow_up = follow
                elif isinstance(follow, Queued):
                    self._follow_up = follow
                else:
                    # The match ended while we were away (forfeited past the grace, or its
                    # final result went to the connection that died), or something else
                    # came: leave whatever is left; totals unknown now.
                    if isinstance(follow, Error):
                        self._error(follow)
                    if self._started:
                        self.report.abandoned += 1
                        kept = self.report.abandoned_matches
                        if self.checker.match_id and len(kept) < self.max_texts:
                            kept.append(self.checker.match_id)
                    await self._send(Leave(id="rejoin"))
                    while not isinstance(message := await self._receive(), Left):
                        if isinstance(message, Error):
                            self._error(message)
                    self.checker.forget_totals()
        if self._follow_up is None:
            self._match_pending = False
        self.report.player_id = hi.player_id
        self.report.rating = hi.rating
        self.token = hi.token
        self.phase = Phase.IDLE

    async def _await_queued(self) -> bool:
        """The next message after ``join`` must be ``queued``: nothing about an old match.
        False if the join was refused for now (``unavailable``): join again later."""
        while True:
            message = await self._receive()
            if isinstance(message, Queued):
                return True
            if isinstance(message, Error):
                self._error(message)
                if message.code is ErrorCode.UNAVAILABLE and message.ref == _JOIN_ID:
                    return False  # matchmaking is down for a moment (a cluster's Redis)
                if message.code not in _JOIN_REFUSED:
                    continue  # e.g. a choice that crossed the final result: counted as an error
                self.record_violation(f"join refused with {message.code} after a final result")
            else:
                self.record_violation(f"expected queued after join, got {message!r}")
            raise ProtocolViolation("protocol violation: expected queued")

    async def _play_one_match(self) -> None:
        report = self.report
        checker = self.checker
        ledger = self.ledger
        on_result = self.on_result
        clock = self.clock
        mode = self.mode
        if self.house_share and self.rng.random() < self.house_share:
            mode = BotMode.NOW
        follow, self._follow_up = self._follow_up, None
        started = self._started and isinstance(follow, Resume)
        opponent_bot = isinstance(follow, Resume) and follow.opponent.bot
        if follow is None:
            self._match_pending = True
            self._started = False
            self.phase = Phase.QUEUED
            joined_at = clock()
            if self.friend is not None:
                if not await self._meet_friend(self.friend):
                    self._match_pending = False
                    self.phase = Phase.IDLE
                    return
                joined_at = clock()
            else:
                await self._send(Join(bot=mode, id=_JOIN_ID))
                while not await self._await_queued():
                    await asyncio.sleep(self.rng.uniform(0.5, 1.0))
                    joined_at = clock()
                    await self._send(Join(bot=mode, id=_JOIN_ID))
            checker.joined()
        else:
            # Picking up after a reconnect: the match (or the queue entry) is still ours.
            joined_at = clock()
            self.phase = Phase.PLAYING if isinstance(follow, Resume) else Phase.QUEUED
        chosen_at: float | None = None
        pending: list[ServerMessage] = [follow] if isinstance(follow, Resume) else []
        while True:
            message = pending.pop() if pending else await self._receive()
            if isinstance(message, Resume):
                report.resumes += 1
                if not started:
                    started = self._started = True
                    self.phase = Phase.PLAYING
                    opponent_bot = message.opponent.bot
                checker.resume(message)
                if ledger is not None and message.deadline_ms > 0:
                    ledger.reopen(message.match_id, message.round)
                if message.deadline_ms > 0 and message.choice is None:
                    await self._think(message.round_ms)
                    choice = self.strategy.next_choice()
                    checker.chose(choice)
                    chosen_at = clock()
                    await self._send(
                        MakeChoice(match_id=message.match_id, round=message.round, choice=choice)
                    )
            elif isinstance(message, Start):
                if not started:
                    started = self._started = True
                    self.phase = Phase.PLAYING
                    self._start_latency.append(clock() - joined_at)
                    opponent_bot = message.opponent.bot
                    if opponent_bot:
                        report.bot_opponents += 1
                    elif report.rating is not None and message.opponent.rating is not None:
                        self._rating_gaps.append(abs(report.rating - message.opponent.rating))
                checker.start(message)
                await self._think(message.round_ms)
                choice = self.strategy.next_choice()
                checker.chose(choice)
                chosen_at = clock()
                await self._send(
                    MakeChoice(match_id=message.match_id, round=message.round, choice=choice)
                )
            elif isinstance(message, Result):
                if chosen_at is not None:
                    self._choice_latency.append(clock() - chosen_at)
                    chosen_at = None
                report.rounds += 1
                checker.result(message)
                self.strategy.observe(message.you, message.opponent)
                first = True
                if ledger is not None and not opponent_bot and report.player_id is not None:
                    problems = ledger.record(report.player_id, checker.opponent_id, message)
                    if problems is not None:
                        first = False
                        for problem in problems:
                            self.record_violation(problem)
                if on_result is not None:
                    on_result(message, first)
                if message.match_over:
                    self._finish(message, opponent_bot)
                    return
            elif isinstance(message, Movement):
                checker.movement(message)
            elif isinstance(message, Error):
                self._error(message)
            elif isinstance(message, RematchDeclined) and self.friend is not None and not started:
                # Our rematch, which the guest did not take up: it stopped (the soak's end).
                if not (self._stop is not None and self._stop.is_set()):
                    self.record_violation(f"our friend declined a rematch: {message.reason}")
                self._match_pending = False
                self.phase = Phase.IDLE
                return
            elif not isinstance(message, Pong):
                self.record_violation(f"unexpected {message.TYPE} during a match")

    async def _meet_friend(self, link: FriendLink) -> bool:
        """Set up the next match with the friend (see ``FriendLink``); ``start`` follows.
        False if the host has stopped, so there is nobody to meet."""
        last = self.checker.match_id if self.checker.over else None
        if self.host:
            now = link.clock()
            room_age = None if link.last_room is None else now - link.last_room
            if last is not None and room_age is not None and room_age < link.room_every:
                await self._send(Rematch(match_id=last, id=_JOIN_ID))
                link.inbox.put_nowait(_REMATCH)
                return True
            link.last_room = now
            await self._send(CreateRoom(id=_JOIN_ID))
            while not isinstance(message := await self._receive(), RoomOpened):
                self._unexpected_while_meeting(message)
            link.inbox.put_nowait(message.code)
            return True
        while True:  # the guest: wait for the host's word, looking at the stop now and then
            try:
                word = await asyncio.wait_for(link.inbox.get(), 1.0)
                break
            except TimeoutError:
                if self._stop is not None and self._stop.is_set():
                    return False
        if word is None:
            self._friend_gone = True
            return False
        if word == _REMATCH:
            while not isinstance(message := await self._receive(), RematchOffer):
                self._unexpected_while_meeting(message)
            await self._send(Rematch(match_id=message.match_id, id=_JOIN_ID))
        else:
            await self._send(Join(room=word, id=_JOIN_ID))
        return True

    def _unexpected_while_meeting(self, message: ServerMessage) -> None:
        if isinstance(message, Error):
            self._error(message)
        elif not isinstance(message, Pong):
            self.record_violation(f"unexpected {message.TYPE} while meeting a friend")

    async def _think(self, round_ms: int) -> None:
        low, high = self.think
        if high > 0:
            await asyncio.sleep(min(self.rng.uniform(low, high), round_ms / 1000 * 0.8))

    def _finish(self, result: Result, opponent_bot: bool) -> None:
        report = self.report
        report.matches += 1
        self._match_pending = False
        self._started = False
        self.phase = Phase.IDLE
        if opponent_bot:
            report.bot_matches += 1
        if result.winner is Winner.YOU:
            report.wins += 1
        elif result.winner is Winner.OPPONENT:
            report.losses += 1
        elif result.winner is Winner.DRAW:
            report.draws += 1
        report.total_score = self.checker.total_score
        report.win_streak = self.checker.win_streak
        if result.rating is not None:
            report.rating = result.rating
        if self.keep_results:
            report.results.append(result)
