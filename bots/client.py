"""A bot that plays over a real WebSocket, exactly as a player's client would.

It speaks only the public protocol (through ``protocol``'s codec), checks what it can
see of the rules as it plays, and records anything off-spec as a violation, so the same
client serves end-to-end tests, soak runs and load benchmarks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TypeVar

import aiohttp
import attrs

from bots.strategies import Strategy, make_strategy
from protocol import (
    BotMode,
    ClientMessage,
    Error,
    Hello,
    Hi,
    Join,
    MakeChoice,
    Movement,
    Pong,
    ProtocolError,
    Queued,
    Result,
    ServerMessage,
    Start,
    decode_server,
    encode,
)

M = TypeVar("M", bound=ServerMessage)

DEFAULT_URL = "ws://127.0.0.1:9595/applet/websocket"


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
    errors: list[str] = attrs.Factory(list)
    violations: list[str] = attrs.Factory(list)
    choice_latency: list[float] = attrs.Factory(list)  # choice sent -> result received, s
    start_latency: list[float] = attrs.Factory(list)  # join sent -> first start, s
    results: list[Result] = attrs.Factory(list)  # final results, for cross-checks
    player_id: str | None = None
    total_score: int = 0
    win_streak: int = 0


class BotClient:
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
    ) -> None:
        self.url = url
        self.rng = rng or random.Random()
        self.strategy = strategy or make_strategy("mix", self.rng)
        self.name = name
        self.mode = mode
        self.think = think
        self.keep_results = keep_results
        self.clock = clock
        self.report = BotReport()
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def play(
        self,
        matches: int,
        *,
        session: aiohttp.ClientSession | None = None,
        stop: asyncio.Event | None = None,
    ) -> BotReport:
        """Connect, say hello and play ``matches`` matches (or until ``stop`` is set)."""
        own_session = session is None
        session = session or aiohttp.ClientSession()
        try:
            async with session.ws_connect(self.url, autoping=True, max_msg_size=1 << 16) as ws:
                self._ws = ws
                await self._send(Hello(name=self.name))
                hi = await self._expect(Hi)
                self.report.player_id = hi.player_id
                while self.report.matches < matches and not (stop and stop.is_set()):
                    await self._play_one_match(stop)
        finally:
            self._ws = None
            if own_session:
                await session.close()
        return self.report

    # ------------------------------------------------------------ internals

    async def _send(self, message: ClientMessage) -> None:
        assert self._ws is not None
        await self._ws.send_frame(encode(message), aiohttp.WSMsgType.TEXT)
        self.report.sent += 1

    async def _receive(self) -> ServerMessage:
        assert self._ws is not None
        frame = await self._ws.receive()
        if frame.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed ({frame.type.name}, code {self._ws.close_code})")
        self.report.received += 1
        try:
            return decode_server(frame.data)
        except ProtocolError as exc:
            self.report.violations.append(f"undecodable frame: {exc.message}")
            raise

    async def _expect(self, kind: type[M]) -> M:
        message = await self._receive()
        if not isinstance(message, kind):
            self._violation(f"expected {kind.TYPE}, got {message!r}")
            raise ConnectionError(f"protocol violation: expected {kind.TYPE}")
        return message

    def _violation(self, text: str) -> None:
        self.report.violations.append(text)

    async def _play_one_match(self, stop: asyncio.Event | None) -> None:
        joined_at = self.clock()
        await self._send(Join(bot=self.mode))
        await self._expect(Queued)
        match_id: str | None = None
        expected_round = 1
        chosen_at: float | None = None
        while True:
            message = await self._receive()
            if isinstance(message, Start):
                if match_id is None:
                    match_id = message.match_id
                    self.report.start_latency.append(self.clock() - joined_at)
                    if message.opponent.bot:
                        self.report.bot_opponents += 1
                if message.match_id != match_id:
                    self._violation(f"start for match {message.match_id}, playing {match_id}")
                if message.round != expected_round:
                    self._violation(f"start round {message.round}, expected {expected_round}")
                expected_round = message.round + 1
                await self._think(message.round_ms)
                chosen_at = self.clock()
                await self._send(
                    MakeChoice(
                        match_id=message.match_id,
                        round=message.round,
                        choice=self.strategy.next_choice(),
                    )
                )
            elif isinstance(message, Result):
                if message.match_id != match_id:
                    self._violation(f"result for match {message.match_id}, playing {match_id}")
                if chosen_at is not None:
                    self.report.choice_latency.append(self.clock() - chosen_at)
                    chosen_at = None
                self.report.rounds += 1
                self.strategy.observe(message.you, message.opponent)
                if message.match_over:
                    self._finish(message)
                    return
            elif isinstance(message, Error):
                self.report.errors.append(f"{message.code.value}: {message.message}")
            elif isinstance(message, Movement | Pong):
                continue
            else:
                self._violation(f"unexpected {message.TYPE} during a match")

    async def _think(self, round_ms: int) -> None:
        low, high = self.think
        if high > 0:
            await asyncio.sleep(min(self.rng.uniform(low, high), round_ms / 1000 * 0.8))

    def _finish(self, result: Result) -> None:
        report = self.report
        report.matches += 1
        if result.winner is None or result.reason is None or result.total_score is None:
            self._violation(f"final result without winner/reason/total: {result!r}")
        elif result.winner.value == "you":
            report.wins += 1
        elif result.winner.value == "opponent":
            report.losses += 1
        else:
            report.draws += 1
        if result.total_score is not None and result.total_score < report.total_score:
            self._violation(f"total score went down: {report.total_score} -> {result.total_score}")
        report.total_score = result.total_score or 0
        report.win_streak = result.win_streak or 0
        if self.keep_results:
            report.results.append(result)
