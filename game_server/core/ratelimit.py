"""Flood control for one connection: warn on bursts, disconnect on sustained abuse."""

from __future__ import annotations

import enum

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
