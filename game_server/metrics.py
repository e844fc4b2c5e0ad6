"""Prometheus metrics for ``GET /metrics`` (prometheus-client, one registry per app).

Counters on the hot path are pre-bound to their label values, so counting a message is
one lock and one add. Gauges read the game service at scrape time instead of being kept
up to date on every change.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from protocol import CLIENT_MESSAGES, SERVER_MESSAGES, EndReason, ErrorCode

ROUND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)


class PrometheusObserver:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._in = Counter(
            "rps_messages_in", "Client messages decoded, by type", ["type"], registry=r
        )
        self._out = Counter(
            "rps_messages_out", "Server messages sent, by type", ["type"], registry=r
        )
        self._errors = Counter(
            "rps_errors", "Errors answered to clients, by code", ["code"], registry=r
        )
        self._started = Counter("rps_matches_started", "Matches started", ["bot"], registry=r)
        self._finished = Counter(
            "rps_matches_finished", "Matches finished, by reason", ["reason", "bot"], registry=r
        )
        self._rounds = Histogram(
            "rps_round_seconds",
            "Time from a round's start to its result",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self._dropped = Counter(
            "rps_send_queue_drops",
            "Connections dropped because their send queue was full",
            registry=r,
        )
        self._in_by = {cls.TYPE: self._in.labels(cls.TYPE) for cls in CLIENT_MESSAGES}
        self._out_by = {cls.TYPE: self._out.labels(cls.TYPE) for cls in SERVER_MESSAGES}
        self._errors_by = {code.value: self._errors.labels(code.value) for code in ErrorCode}
        for bot in ("true", "false"):
            self._started.labels(bot)
            for reason in EndReason:
                self._finished.labels(reason.value, bot)

    def gauges(
        self,
        players: Callable[[], float],
        queue: Callable[[], float],
        matches: Callable[[], float],
    ) -> None:
        """Wire the live gauges to the game service (read at scrape time)."""
        for name, doc, read in (
            ("rps_players_connected", "Players connected (said hello)", players),
            ("rps_queue_length", "Players waiting in the matchmaking queue", queue),
            ("rps_matches_live", "Matches in progress", matches),
        ):
            Gauge(name, doc, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------ Observer

    def message_in(self, kind: str) -> None:
        self._in_by[kind].inc()

    def message_out(self, kind: str) -> None:
        self._out_by[kind].inc()

    def error(self, code: str) -> None:
        counter = self._errors_by.get(code)
        (counter or self._errors.labels(code)).inc()

    def match_started(self, bot: bool) -> None:
        self._started.labels("true" if bot else "false").inc()

    def match_finished(self, reason: str, bot: bool) -> None:
        self._finished.labels(reason, "true" if bot else "false").inc()

    def round_resolved(self, seconds: float) -> None:
        self._rounds.observe(seconds)

    def dropped(self) -> None:
        self._dropped.inc()
