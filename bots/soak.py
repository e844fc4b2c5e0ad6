"""The bot-vs-bot soak: many checking bot clients against a running server.

``python -m bots soak`` is the command line; :func:`run_soak` is the same from Python,
for benchmarks and tests::

    summary = await run_soak(SoakConfig(url=url, clients=100, duration=20))
    print(summary.format_table())

Every client loops hello, join, play, join again, and checks every message it gets
(:class:`~bots.client.MatchChecker`); the two sides of each bot-vs-bot round are compared
in a shared :class:`~bots.client.RoundLedger`. Memory stays bounded however long the run:
latencies go to fixed-size log-bucket histograms, ledger entries are deleted when paired
or dropped after a timeout, and only the first few violation and error texts are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Iterator
from typing import Any, TextIO

import aiohttp
import attrs
import orjson

from bots.client import (
    DEFAULT_URL,
    BotClient,
    BotReport,
    FriendLink,
    Phase,
    ProtocolViolation,
    RoundLedger,
)
from game_server.core.strategies import MIX, STRATEGY_NAMES, make_strategy
from protocol import BotMode, EndReason, Result

__all__ = [
    "OPPONENT_MODES",
    "GapHistogram",
    "GapStats",
    "LatencyHistogram",
    "LatencyStats",
    "SoakConfig",
    "SoakSummary",
    "run_soak",
]

OPPONENT_MODES = ("never", "auto", "now", "mix", "friends")
# The join's bot mode for each: "mix" joins as the page does ("Find an opponent" is
# "auto"), and about one join in ten is its "Play a bot" ("now"). "friends" never joins
# the queue: the clients play in pairs, by private room and rematch (``FriendLink``).
_JOIN_MODE = {
    "never": BotMode.NEVER,
    "auto": BotMode.AUTO,
    "now": BotMode.NOW,
    "mix": BotMode.AUTO,
    "friends": BotMode.NEVER,
}
_FORFEITS = frozenset({EndReason.FORFEIT, EndReason.OPPONENT_LEFT})
_SAMPLES = 10  # violation/failure texts kept in the summary


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


@attrs.frozen
class SoakConfig:
    """One soak run. At least one of ``duration`` (seconds) and ``matches`` is required."""

    url: str = DEFAULT_URL
    # More servers (the nodes of a cluster): the clients are spread over ``url`` and these,
    # round-robin. The cross-checks work the same, whichever node each side talks to.
    more_urls: tuple[str, ...] = ()
    clients: int = 10
    duration: float | None = None
    matches: int | None = None  # distinct matches across all clients
    strategies: tuple[str, ...] = (MIX,)  # handed out to the clients in turn
    # never: bots meet each other only; auto: each other, or a house bot after the server's
    # --bot-after; now: house bots; mix: auto, and 1 join in 10 asks for a house bot at once;
    # friends: in pairs, by private room, and rematches until the next room is due
    opponents: str = "never"
    think: tuple[float, float] = (0.0, 0.0)  # seconds before each hand, uniform in range
    ramp: float = 0.0  # connect the clients evenly over this many seconds
    max_reconnects: int = 0  # per client; each one is counted
    seed: int | None = None
    house_share: float = 0.1  # share of joins that ask for a house bot, with "mix"
    stall_timeout: float = 30.0  # a busy client that hears nothing this long is stalled
    grace: float = 2.0  # after the stop, seconds for matches in flight to finish
    ledger_ttl: float = 30.0  # seconds a round waits for its other side
    room_every: float = 5.0  # with "friends": a pair meets in a new room this often at most

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.more_urls)

    def __attrs_post_init__(self) -> None:
        if self.duration is None and self.matches is None:
            raise ValueError("give a duration, a match count or both: a soak must be bounded")
        _positive("duration", self.duration)
        _positive("matches", self.matches)
        _positive("clients", self.clients)
        _positive("stall_timeout", self.stall_timeout)
        if self.opponents not in OPPONENT_MODES:
            raise ValueError(f"opponents must be one of {', '.join(OPPONENT_MODES)}")
        if self.clients < 2 and self.opponents == "never":
            raise ValueError("one client has nobody to meet: use more clients or other opponents")
        if self.opponents == "friends" and self.clients % 2:
            raise ValueError("friends play in pairs: give an even number of clients")
        if self.opponents == "friends" and self.max_reconnects:
            raise ValueError("friends do not reconnect (the pair would have to meet again)")
        if not self.strategies:
            raise ValueError("give at least one strategy")
        for name in self.strategies:
            if name != MIX and name not in STRATEGY_NAMES:
                valid = ", ".join((*STRATEGY_NAMES, MIX))
                raise ValueError(f"unknown strategy {name!r}; valid names: {valid}")
        low, high = self.think
        if not 0 <= low <= high:
            raise ValueError(f"think must be 0 <= LOW <= HIGH, got {low}-{high}")
        _positive("room_every", self.room_every)
        if self.ramp < 0 or self.max_reconnects < 0 or self.grace < 0:
            raise ValueError("ramp, max_reconnects and grace must not be negative")


class LatencyHistogram:
    """Latencies in seconds, in log-spaced buckets: fixed memory for any run length.

    Bucket edges grow by ``growth`` (1 %), so a percentile, reported as its bucket's
    geometric middle, is within half a percent of the exact value between ``lowest`` and
    ``highest``. ``count``, ``total`` and ``max`` are exact. It has ``append`` so that it
    can stand where a list of latencies was.
    """

    __slots__ = ("_buckets", "_growth", "_inv_log", "_lowest", "count", "max", "total")

    def __init__(self, *, growth: float = 1.01, lowest: float = 1e-6, highest: float = 1e4):
        self._growth = growth
        self._lowest = lowest
        self._inv_log = 1.0 / math.log(growth)
        self._buckets = [0] * (int(math.log(highest / lowest) * self._inv_log) + 2)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def append(self, seconds: float, /) -> None:
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if seconds <= self._lowest:
            index = 0
        else:
            index = int(math.log(seconds / self._lowest) * self._inv_log) + 1
            if index >= len(self._buckets):
                index = len(self._buckets) - 1
        self._buckets[index] += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in seconds, or ``None`` with no data."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        if rank >= self.count:
            return self.max
        seen = 0
        index = 0
        for index, n in enumerate(self._buckets):  # noqa: B007 - index is used after the loop
            seen += n
            if seen >= rank:
                break
        value = self._lowest * self._growth ** (index - 0.5) if index else self._lowest
        return min(value, self.max)


class GapHistogram:
    """Rating gaps (whole points) counted exactly: a count per point up to ``highest``
    (beyond it, in the last), fixed memory for any run length."""

    __slots__ = ("_counts", "count", "max")

    def __init__(self, highest: int = 4000) -> None:
        self._counts = [0] * (highest + 1)
        self.count = 0
        self.max = 0

    def append(self, gap: float, /) -> None:
        points = min(int(gap), len(self._counts) - 1)
        self._counts[points] += 1
        self.count += 1
        self.max = max(self.max, int(gap))

    def percentile(self, q: float) -> int | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        last = len(self._counts) - 1
        for points, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return self.max if points == last else points  # the last counts what is past
        return self.max


@attrs.frozen
class GapStats:
    """The rating points between the two sides of the human-vs-human matches, as each
    match began (each side counts its view: every match twice)."""

    count: int = 0
    p50: int | None = None
    p95: int | None = None
    max: int | None = None

    @classmethod
    def of(cls, histogram: GapHistogram) -> GapStats:
        if not histogram.count:
            return cls()
        return cls(
            count=histogram.count,
            p50=histogram.percentile(50),
            p95=histogram.percentile(95),
            max=histogram.max,
        )


@attrs.frozen
class LatencyStats:
    """Percentiles in milliseconds; ``None`` when nothing was measured."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None

    @classmethod
    def of(cls, histogram: LatencyHistogram) -> LatencyStats:
        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 3)

        count = histogram.count
        return cls(
            count=count,
            p50=ms(histogram.percentile(50)),
            p95=ms(histogram.percentile(95)),
            p99=ms(histogram.percentile(99)),
            max=ms(histogram.max if count else None),
            mean=ms(histogram.total / count if count else None),
        )


@attrs.frozen
class SoakSummary:
    url: str
    clients: int
    seconds: float  # from the start to the stop (duration, match count, signal)
    stopped: str  # "duration", "matches", "interrupted" or "clients_done"
    matches: int  # distinct matches finished, bot-vs-bot matches counted once
    matches_in_window: int  # of which finished before the stop
    house_bot_matches: int
    rounds: int  # distinct rounds played (forfeits not counted)
    wins: int  # from the clients' side
    losses: int
    draws: int
    sent: int
    received: int
    choice_to_result: LatencyStats
    join_to_start: LatencyStats
    connection_failures: int
    reconnects: int
    clients_failed: int  # clients that gave up (no reconnects left)
    failure_samples: tuple[str, ...]
    violations: int
    violation_samples: tuple[str, ...]
    errors: int
    errors_by_code: dict[str, int]
    rounds_cross_checked: int
    unpaired_rounds: int  # one side only, dropped after the timeout
    resumes: int = 0  # resume messages the clients got (reconnects, takeovers)
    abandoned: int = 0  # started matches a client never saw the end of
    abandoned_matches: tuple[str, ...] = ()  # their ids, as far as the clients kept them
    rating_gap: GapStats = GapStats()  # how close in rating the matchmaker's pairs were

    @property
    def matches_per_second(self) -> float:
        return self.matches_in_window / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not (self.violations or self.errors or self.clients_failed)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self, recurse=True)
        out["matches_per_second"] = round(self.matches_per_second, 2)
        out["seconds"] = round(self.seconds, 3)
        out["ok"] = self.ok
        return out

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS).decode()

    def format_table(self) -> str:
        def num(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        lines = [
            f"soak of {self.url}: {self.clients} clients, {self.seconds:.1f} s"
            f" (stopped: {self.stopped})",
            f"matches       {self.matches}  ({self.matches_per_second:.1f}/s,"
            f" {self.house_bot_matches} against a house bot)",
            f"rounds        {self.rounds}  (cross-checked from both sides:"
            f" {self.rounds_cross_checked}, one side only: {self.unpaired_rounds})",
            f"results       wins {self.wins}  losses {self.losses}  draws {self.draws}",
            f"messages      sent {self.sent}  received {self.received}",
            "latency ms         p50      p95      p99      max     count",
        ]
        for label, stats in (
            ("choice->result", self.choice_to_result),
            ("join->start", self.join_to_start),
        ):
            lines.append(
                f"  {label:<14}{num(stats.p50):>7}  {num(stats.p95):>7}  {num(stats.p99):>7}"
                f"  {num(stats.max):>7}  {stats.count:>8}"
            )
        gap = self.rating_gap
        lines.append(
            f"rating gap    p50 {'-' if gap.p50 is None else gap.p50}"
            f"  p95 {'-' if gap.p95 is None else gap.p95}"
            f"  max {'-' if gap.max is None else gap.max}"
            f"  (points between the sides as a match began; {gap.count} views of human matches)"
        )
        lines.append(
            f"connections   failures {self.connection_failures}  reconnects {self.reconnects}"
            f"  clients failed {self.clients_failed}"
        )
        lines += [f"  {text}" for text in self.failure_samples[:5]]
        lines.append(
            f"continuity    resumes {self.resumes}  matches abandoned {self.abandoned}"
            " (started, final result never seen)"
        )
        codes = "  ".join(f"{code} {n}" for code, n in sorted(self.errors_by_code.items()))
        lines.append(f"errors        {self.errors}" + (f"  ({codes})" if codes else ""))
        lines.append(f"violations    {self.violations}")
        lines += [f"  {text}" for text in self.violation_samples[:5]]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


@attrs.define
class _Slot:
    client: BotClient
    delay: float
    task: asyncio.Task[None] | None = None
    stalled: str | None = None
    gave_up: bool = False


class _Soak:
    def __init__(
        self, config: SoakConfig, stop: asyncio.Event | None, progress: TextIO | None
    ) -> None:
        self.config = config
        self.stop = asyncio.Event() if stop is None else stop
        self.progress = progress
        self.clock = time.perf_counter
        self.ledger = RoundLedger(ttl=config.ledger_ttl)
        self.choice_latency = LatencyHistogram()
        self.start_latency = LatencyHistogram()
        self.rating_gaps = GapHistogram()
        self.matches = 0
        self.rounds = 0
        self.connection_failures = 0
        self.reconnects = 0
        self.failure_samples: list[str] = []
        self.stopped: str | None = None
        self.started = 0.0
        self.links: list[FriendLink] = []  # with "friends": one per pair of clients
        self.slots = [self._slot(index) for index in range(config.clients)]

    def _slot(self, index: int) -> _Slot:
        config = self.config
        seed_rng = random.Random(None if config.seed is None else config.seed * 1_000_003 + index)
        rng = random.Random(seed_rng.getrandbits(64))
        strategy = config.strategies[index % len(config.strategies)]
        urls = config.urls
        link = None
        if config.opponents == "friends":
            if index % 2 == 0:
                self.links.append(FriendLink(config.room_every))
            link = self.links[index // 2]
        client = BotClient(
            urls[index % len(urls)],  # a pair's two clients on two servers, if there are
            strategy=make_strategy(strategy, rng),
            name=f"soak-{index + 1}",
            mode=_JOIN_MODE[config.opponents],
            house_share=config.house_share if config.opponents == "mix" else 0.0,
            think=config.think,
            rng=rng,
            clock=self.clock,
            ledger=self.ledger,
            choice_latency=self.choice_latency,
            start_latency=self.start_latency,
            on_result=self._on_result,
            rating_gaps=self.rating_gaps,
            friend=link,
            host=index % 2 == 0,
        )
        return _Slot(client, delay=config.ramp * index / config.clients)

    # ------------------------------------------------------------ counting

    def _on_result(self, result: Result, first: bool) -> None:
        if not first:
            return
        if result.reason not in _FORFEITS:
            self.rounds += 1
        if result.match_over:
            self.matches += 1
            limit = self.config.matches
            if limit is not None and self.matches >= limit:
                self._set_stop("matches")

    def _set_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stopped = reason
            self.stop.set()

    def _failure(self, client: BotClient, exc: BaseException) -> None:
        self.connection_failures += 1
        if len(self.failure_samples) < _SAMPLES:
            self.failure_samples.append(f"{client.name}: {type(exc).__name__}: {exc}")

    def _reports(self) -> Iterator[BotReport]:
        return (slot.client.report for slot in self.slots)

    # ------------------------------------------------------------ the clients

    async def _wait_stop(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped first; true if stopped."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    async def _client_main(self, slot: _Slot, session: aiohttp.ClientSession) -> None:
        client = slot.client
        if await self._wait_stop(slot.delay):
            return
        reconnects = 0
        while not self.stop.is_set():
            try:
                await client.play(None, session=session, stop=self.stop)
                return
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if slot.stalled is None or task is None:
                    raise
                task.uncancel()
                if task.cancelling():
                    raise
                client.record_violation(f"{client.name} stalled: {slot.stalled}")
                slot.stalled = None
            except ProtocolViolation:
                pass  # recorded by the client; start over on a new connection
            except (aiohttp.ClientError, OSError, ConnectionError, TimeoutError) as exc:
                if self.stop.is_set():
                    return
                self._failure(client, exc)
            except Exception as exc:  # a bug in the bot: report it, keep the others going
                self._failure(client, exc)
                slot.gave_up = True
                return
            if self.stop.is_set():
                return
            if reconnects >= self.config.max_reconnects:
                slot.gave_up = True
                return
            reconnects += 1
            self.reconnects += 1
            urls = self.config.urls
            if len(urls) > 1:  # the next server, as a load balancer would pick a live one
                client.url = urls[(urls.index(client.url) + 1) % len(urls)]
            if await self._wait_stop(min(0.1 * 2**reconnects, 2.0) * client.rng.uniform(0.5, 1)):
                return

    # ------------------------------------------------------------ the ticker

    def _watchdog(self, now: float) -> None:
        limit = self.config.stall_timeout + self.config.think[1]
        queue_limit = limit + self.config.ramp
        for slot in self.slots:
            client = slot.client
            phase = client.phase
            if phase is Phase.OFFLINE or phase is Phase.IDLE or slot.stalled is not None:
                continue
            quiet = now - client.last_activity
            if quiet > (queue_limit if phase is Phase.QUEUED else limit) and slot.task:
                slot.stalled = f"nothing for {quiet:.0f} s while {phase}"
                slot.task.cancel()

    def _progress_line(self, now: float, rate: float) -> str:
        errors = violations = connected = 0
        for slot in self.slots:
            report = slot.client.report
            errors += report.error_count
            violations += report.violation_count
            connected += slot.client.connected
        return (
            f"\r{now - self.started:7.1f} s  matches {self.matches}  {rate:7.1f}/s"
            f"  errors {errors}  violations {violations}"
            f"  connected {connected}/{len(self.slots)}\x1b[K"
        )

    async def _tick(self) -> None:
        last_time, last_matches = self.clock(), 0
        while True:
            await asyncio.sleep(1.0)
            now = self.clock()
            self.ledger.sweep()
            self._watchdog(now)
            if self.progress is not None:
                rate = (self.matches - last_matches) / max(now - last_time, 1e-9)
                self.progress.write(self._progress_line(now, rate))
                self.progress.flush()
            last_time, last_matches = now, self.matches

    # ------------------------------------------------------------ the run

    async def run(self) -> SoakSummary:
        config = self.config
        self.started = self.clock()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            for slot in self.slots:
                slot.task = asyncio.create_task(self._client_main(slot, session))
            tasks = [slot.task for slot in self.slots if slot.task is not None]
            ticker = asyncio.create_task(self._tick())
            stop_waiter = asyncio.create_task(self.stop.wait())
            deadline = None if config.duration is None else self.started + config.duration
            running: set[asyncio.Task[Any]] = set(tasks)
            try:
                while running and not self.stop.is_set():
                    timeout = None if deadline is None else max(0.0, deadline - self.clock())
                    done, _ = await asyncio.wait(
                        {stop_waiter, *running}, timeout=timeout, return_when="FIRST_COMPLETED"
                    )
                    running -= done
                    if deadline is not None and self.clock() >= deadline:
                        self._set_stop("duration")
                self._set_stop("clients_done")  # no-op if already stopped
                if self.stopped is None:
                    self.stopped = "interrupted"
                stopped_at = self.clock()
                matches_in_window = self.matches
                await self._wind_down(tasks)
            finally:
                for task in (ticker, stop_waiter, *tasks):
                    task.cancel()
                await asyncio.gather(ticker, stop_waiter, *tasks, return_exceptions=True)
                if self.progress is not None:
                    self.progress.write("\r\x1b[K")
                    self.progress.flush()
        self.ledger.clear()
        return self._summary(stopped_at - self.started, matches_in_window)

    async def _wind_down(self, tasks: list[asyncio.Task[None]]) -> None:
        """Clients in a match finish it (within the grace); the others go at once."""
        for slot in self.slots:
            if slot.task is not None and slot.client.phase is not Phase.PLAYING:
                slot.task.cancel()
        pending = [task for task in tasks if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.config.grace)
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _summary(self, seconds: float, matches_in_window: int) -> SoakSummary:
        reports = list(self._reports())
        errors_by_code: dict[str, int] = {}
        violation_samples: list[str] = []
        for report in reports:
            for code, n in report.error_codes.items():
                errors_by_code[code] = errors_by_code.get(code, 0) + n
            for text in report.violations:
                if len(violation_samples) < _SAMPLES:
                    violation_samples.append(f"{report.player_id}: {text}")
        return SoakSummary(
            url=", ".join(self.config.urls),
            clients=self.config.clients,
            seconds=seconds,
            stopped=self.stopped or "interrupted",
            matches=self.matches,
            matches_in_window=matches_in_window,
            house_bot_matches=sum(r.bot_matches for r in reports),
            rounds=self.rounds,
            wins=sum(r.wins for r in reports),
            losses=sum(r.losses for r in reports),
            draws=sum(r.draws for r in reports),
            sent=sum(r.sent for r in reports),
            received=sum(r.received for r in reports),
            choice_to_result=LatencyStats.of(self.choice_latency),
            join_to_start=LatencyStats.of(self.start_latency),
            connection_failures=self.connection_failures,
            reconnects=self.reconnects,
            clients_failed=sum(slot.gave_up for slot in self.slots),
            failure_samples=tuple(self.failure_samples),
            violations=sum(r.violation_count for r in reports),
            violation_samples=tuple(violation_samples),
            errors=sum(r.error_count for r in reports),
            errors_by_code=errors_by_code,
            rounds_cross_checked=self.ledger.paired,
            unpaired_rounds=self.ledger.expired,
            resumes=sum(r.resumes for r in reports),
            abandoned=sum(r.abandoned for r in reports),
            abandoned_matches=tuple(m for r in reports for m in r.abandoned_matches),
            rating_gap=GapStats.of(self.rating_gaps),
        )


async def run_soak(
    config: SoakConfig, *, stop: asyncio.Event | None = None, progress: TextIO | None = None
) -> SoakSummary:
    """Run one soak and return its summary.

    Setting ``stop`` ends the run early (the command line sets it on SIGINT/SIGTERM): the
    clients between matches or waiting in the queue leave at once, the ones in a match
    finish it within ``config.grace`` seconds or are cancelled. ``progress``, if given,
    gets a ``\\r``-updated status line every second.
    """
    return await _Soak(config, stop, progress).run()
