"""Prometheus metrics for ``GET /metrics`` (prometheus-client, one registry per app).

The hot path only adds to plain ints in dicts: the event loop is single-threaded, so a
client library counter's lock per message would buy nothing and cost ~13 % of saturation
throughput (measured). A collector turns the counts into Prometheus families when
scraped, and reads the live gauges from the game service at the same moment.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from game_server.core.ports import LIMITS
from protocol import CLIENT_MESSAGES, SERVER_MESSAGES, EndReason, ErrorCode

# One extra sample: name, help, "counter" or "gauge", value, labels.
Sample = tuple[str, str, str, float, dict[str, str]]

ROUND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
_BOT = {True: "true", False: "false"}


class PrometheusObserver(Collector):
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.messages_in = {cls.TYPE: 0 for cls in CLIENT_MESSAGES}
        self.messages_out = {cls.TYPE: 0 for cls in SERVER_MESSAGES}
        self.errors = {code.value: 0 for code in ErrorCode}
        self.started = dict.fromkeys(_BOT.values(), 0)
        self.finished = {(r.value, bot): 0 for r in EndReason for bot in _BOT.values()}
        self.drops = 0
        self.limits = dict.fromkeys(LIMITS, 0)
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []
        self._counters: list[tuple[str, str, Callable[[], float]]] = []
        self._extra: list[Callable[[], list[Sample]]] = []
        self._labelled: list[tuple[str, str, str, Callable[[], dict[str, int]]]] = []
        self._more_gauges: list[tuple[str, str, Callable[[], float]]] = []
        # rps_round_seconds: a count per bucket (the last one is +Inf) and the sum.
        self.round_buckets = [0] * (len(ROUND_BUCKETS) + 1)
        self.round_seconds = 0.0
        self.registry.register(self)

    def gauges(
        self,
        players: Callable[[], float],
        queue: Callable[[], float],
        matches: Callable[[], float],
        store_backlog: Callable[[], float] = lambda: 0,
        store_failures: Callable[[], float] = lambda: 0,
        store_writes_dropped: Callable[[], float] = lambda: 0,
        log_lines_lost: Callable[[], float] = lambda: 0,
        remembered: Callable[[], float] = lambda: 0,
    ) -> None:
        """Wire the live gauges (and the storage's own counters) up, read at scrape time."""
        self._gauges = [
            ("rps_players_connected", "Players connected (said hello)", players),
            ("rps_queue_length", "Players waiting in the matchmaking queue", queue),
            ("rps_matches_live", "Matches in progress", matches),
            ("rps_store_backlog", "Writes waiting for the storage thread", store_backlog),
            (
                "rps_players_remembered",
                "Players in memory: connected, away, or offline for a while after they played",
                remembered,
            ),
        ]
        self._counters = [
            (
                "rps_store_failures",
                "Storage batches given up because their transaction failed",
                store_failures,
            ),
            (
                "rps_store_writes_dropped",
                "Writes lost to failed batches or a full storage backlog",
                store_writes_dropped,
            ),
            (
                "rps_log_lines_lost",
                "Log lines that could not be written (a broken log pipe, a full disk)",
                log_lines_lost,
            ),
        ]

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """One more live gauge, read at scrape time."""
        self._more_gauges.append((name, doc, read))

    def labelled(self, name: str, doc: str, label: str, read: Callable[[], dict[str, int]]) -> None:
        """A counter family with one label, its values read at scrape time."""
        self._labelled.append((name, doc, label, read))

    def extra(self, source: Callable[[], list[Sample]]) -> None:
        """More families, read from ``source`` at scrape time (a cluster's)."""
        self._extra.append(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        for name, doc, label, counts in (
            ("rps_messages_in", "Client messages decoded, by type", "type", self.messages_in),
            ("rps_messages_out", "Server messages sent, by type", "type", self.messages_out),
            ("rps_errors", "Errors answered to clients, by code", "code", self.errors),
            ("rps_matches_started", "Matches started", "bot", self.started),
        ):
            family = CounterMetricFamily(name, doc, labels=[label])
            for value, count in counts.items():
                family.add_metric([value], count)
            yield family
        finished = CounterMetricFamily(
            "rps_matches_finished", "Matches finished, by reason", labels=["reason", "bot"]
        )
        for (reason, bot), count in self.finished.items():
            finished.add_metric([reason, bot], count)
        yield finished
        yield CounterMetricFamily(
            "rps_send_queue_drops",
            "Connections dropped because their send queue was full",
            value=self.drops,
        )
        limited = CounterMetricFamily(
            "rps_limited",
            "What the limits against abuse turned away, by limit",
            labels=["limit"],
        )
        for limit, count in self.limits.items():
            limited.add_metric([limit], count)
        yield limited
        cumulative, buckets = 0, []
        for bound, count in zip(
            [*map(str, ROUND_BUCKETS), "+Inf"], self.round_buckets, strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "rps_round_seconds",
            "Time from a round's start to its result",
            buckets=buckets,
            sum_value=self.round_seconds,
        )
        for name, doc, read in [*self._gauges, *self._more_gauges]:
            yield GaugeMetricFamily(name, doc, value=read())
        for name, doc, read in self._counters:
            yield CounterMetricFamily(name, doc, value=read())
        for name, doc, label, read_labelled in self._labelled:
            family = CounterMetricFamily(name, doc, labels=[label])
            for value, count in read_labelled().items():
                family.add_metric([value], count)
            yield family
        for source in self._extra:
            for name, doc, kind, sample, labels in source():
                extra: CounterMetricFamily | GaugeMetricFamily
                if kind == "counter":
                    extra = CounterMetricFamily(name, doc, labels=list(labels))
                else:
                    extra = GaugeMetricFamily(name, doc, labels=list(labels))
                extra.add_metric(list(labels.values()), sample)
                yield extra

    # ------------------------------------------------------------ Observer

    def message_in(self, kind: str) -> None:
        self.messages_in[kind] += 1

    def message_out(self, kind: str) -> None:
        self.messages_out[kind] += 1

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def match_started(self, bot: bool) -> None:
        self.started[_BOT[bot]] += 1

    def match_finished(self, reason: str, bot: bool) -> None:
        key = (reason, _BOT[bot])
        self.finished[key] = self.finished.get(key, 0) + 1

    def round_resolved(self, seconds: float) -> None:
        self.round_buckets[bisect.bisect_left(ROUND_BUCKETS, seconds)] += 1
        self.round_seconds += seconds

    def dropped(self) -> None:
        self.drops += 1

    def limited(self, limit: str) -> None:
        self.limits[limit] = self.limits.get(limit, 0) + 1
