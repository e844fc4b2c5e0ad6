"""Flood control for one connection (warn on bursts, disconnect on sustained abuse), and
the per-address limits: connections per address, and a bucket per address."""

from __future__ import annotations

import enum
import ipaddress

import attrs


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # drop the message, answer rate_limited
    DISCONNECT = "disconnect"  # close with 1008


@attrs.define
class TokenBucket:
    rate: float
    capacity: float
    tokens: float = attrs.field(default=None)
    stamp: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.tokens is None:
            self.tokens = self.capacity

    def take(self, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@attrs.define
class FloodGuard:
    """Two buckets: one meters messages, the other meters how often the first ran dry.

    A client at ``rate`` messages per second (plus a ``burst``) is never bothered. Past it,
    each extra message is dropped with a warning and spends a strike; strikes refill at
    ``strike_rate`` per second up to ``strikes``, and the connection is closed when none
    is left. So a brief spike costs a few warnings, a client a little over the rate is
    throttled indefinitely, and one well over it for seconds is cut off.
    """

    rate: float = 20.0
    burst: float = 40.0
    strike_rate: float = 2.0
    strikes: float = 20.0
    _messages: TokenBucket = attrs.field(init=False)
    _strikes: TokenBucket = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._messages = TokenBucket(self.rate, self.burst)
        self._strikes = TokenBucket(self.strike_rate, self.strikes)

    def check(self, now: float) -> Verdict:
        if self._messages.take(now):
            return Verdict.ACCEPT
        if self._strikes.take(now):
            return Verdict.REJECT
        return Verdict.DISCONNECT


def address_key(address: str | None) -> str:
    """What per-address limits count by: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's usual share: a client can pick any address in it)."""
    if address is None:
        return "-"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class AddressCounts:
    """Open connections per address key, against a cap (0 = no cap)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        count = self.counts.get(key, 0)
        if self.cap and count >= self.cap:
            return False
        self.counts[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self.counts.get(key, 0) - 1
        if count > 0:
            self.counts[key] = count
        else:
            self.counts.pop(key, None)


class AddressBuckets:
    """A token bucket per address key (``rate`` a second, ``burst`` at once), in bounded
    memory: a bucket that has filled up again is what a new one starts as, so ``prune``
    drops those (its owner calls it every ``refill_seconds`` while any are kept, so
    addresses that stopped coming cost nothing); past ``max_keys`` addresses ``take``
    prunes at once, and if that is not enough, drops all (failing open: never more
    memory, never refusing an honest address for a full table).
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take(now)

    @property
    def refill_seconds(self) -> float:
        """How long an emptied bucket takes to fill up again."""
        return self.burst / self.rate

    def prune(self, now: float) -> None:
        """Forget every bucket that is full again."""
        self._prune(now)

    def _prune(self, now: float) -> None:
        rate, burst = self.rate, self.burst
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket.stamp is not None and bucket.tokens + (now - bucket.stamp) * rate < burst
        }
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()
