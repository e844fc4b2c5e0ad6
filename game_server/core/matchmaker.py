"""The in-memory matchmaking queue (the default ``Matchmaker``): equals meet equals.

The rule (protocol §6.5), the same as the cluster's Redis queue (``cluster/queue.py``):

- A waiting player's *window* is ``window`` rating points when it joins and widens by
  ``widen`` points a second while it waits, so nobody waits long in a thin queue.
- Two waiting players fit when their ratings differ by no more than *both* windows
  (so by no more than the younger ticket's window: every window grows at the same pace).
- A player who joins is paired at once with the closest-rated player that fits (ties: the
  longer-waiting one); else it waits. As windows widen, waiting players are served
  longest-waiting first, each with the closest-rated player that fits it then.
- ``auto`` tickets that waited ``bot_after`` with no human fitting get a house bot;
  ``never`` tickets widen without limit; ``now`` never enters the queue.

No pairing scans the queue. The tickets are kept sorted by rating (a list kept in order
with ``bisect``), so the closest players that fit are the neighbours, found by bisection
and a walk outwards that stops at the window's edge. Nobody is checked on a clock either:
a pair that fits is found when the younger one's window reaches the other (at that
moment the older one's window, never narrower, fits too). So each ticket has one *probe*
in a heap: the moment its window reaches the nearest rating it does not cover yet. At a
probe it looks for a fit within its window; players inside it that do not fit are
younger, and find it by their own probes. A new player needs no probe of anyone else,
for the same reason. ``next_wakeup`` is the earliest probe or house bot due.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterator

import attrs

from game_server.core.ports import Pairing, PairingsDone
from protocol import BotMode, ErrorCode, ProtocolError

WINDOW = 100.0  # rating points a new ticket's window covers either side
WIDEN = 50.0  # points a second the window widens while it waits
# Rounding: a probe due when a window reaches a rating must find it inside.
SLACK = 1e-6


@attrs.define(eq=False)
class Ticket:
    player_id: str
    mode: BotMode
    joined_at: float
    rating: float = 1500.0
    seq: int = 0  # arrival order: ties go to the longer-waiting
    probe_at: float | None = None  # its one live probe (older heap entries are stale)

    @property
    def key(self) -> tuple[float, int, str]:
        return (self.rating, self.seq, self.player_id)


class InMemoryMatchmaker:
    """See the module docstring. ``window`` may be ``math.inf`` (any two players fit: the
    2016 demo's lobby, first come, first served)."""

    def __init__(self, bot_after: float, window: float = WINDOW, widen: float = WIDEN) -> None:
        if bot_after < 0:
            raise ValueError("bot_after must not be negative")
        if window < 0 or widen < 0:
            raise ValueError("window and widen must not be negative")
        self.bot_after = bot_after
        self.window = window
        self.widen = widen
        self._tickets: dict[str, Ticket] = {}  # insertion order is queue order
        self._sorted: list[tuple[float, int, str]] = []  # (rating, seq, id), ascending
        self._probes: list[tuple[float, int, str]] = []  # a heap of (when, seq, id)
        self._bots: deque[Ticket] = deque()  # auto tickets in arrival order (some gone)
        self._seq = itertools.count()

    def listen(self, on_pairings: PairingsDone) -> None:
        """Every pairing is made at once (``join``, ``tick``): nothing comes later."""

    # ------------------------------------------------------------ Matchmaker

    def join(
        self, player_id: str, mode: BotMode, now: float, rating: float = 1500.0
    ) -> list[Pairing]:
        if player_id in self._tickets:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already in the queue")
        if mode is BotMode.NOW:
            return [Pairing(player_id, None)]
        ticket = Ticket(player_id, mode, now, float(rating), next(self._seq))
        # Everyone waiting is older: its window is at least this one, so fitting this
        # player's window is fitting both.
        partner, beyond = self._closest(ticket, self.window, now)
        if partner is not None:
            self._remove(partner)
            return [Pairing(partner.player_id, player_id)]
        self._tickets[player_id] = ticket
        bisect.insort(self._sorted, ticket.key)
        if mode is BotMode.AUTO:
            self._bots.append(ticket)
        self._schedule(ticket, beyond)
        return self.tick(now)

    def leave(self, player_id: str) -> bool:
        ticket = self._tickets.get(player_id)
        if ticket is None:
            return False
        self._remove(ticket)
        return True

    def tick(self, now: float) -> list[Pairing]:
        pairings: list[Pairing] = []
        due: list[Ticket] = []
        probes = self._probes
        while probes and probes[0][0] <= now:
            when, _, player_id = heapq.heappop(probes)
            ticket = self._tickets.get(player_id)
            if ticket is not None and ticket.probe_at == when:
                ticket.probe_at = None
                due.append(ticket)
        due.sort(key=lambda ticket: ticket.seq)  # the longest-waiting first
        for ticket in due:
            if ticket.player_id not in self._tickets:
                continue  # paired by a probe before it in this tick
            partner, beyond = self._closest(ticket, self._window_of(ticket, now), now)
            if partner is None:
                self._schedule(ticket, beyond)
                continue
            self._remove(ticket)
            self._remove(partner)
            first, second = (ticket, partner) if ticket.seq < partner.seq else (partner, ticket)
            pairings.append(Pairing(first.player_id, second.player_id))
        bots = self._bots
        while bots and (
            bots[0].player_id not in self._tickets or bots[0].joined_at + self.bot_after <= now
        ):
            ticket = bots.popleft()
            if self._tickets.get(ticket.player_id) is ticket:
                self._remove(ticket)
                pairings.append(Pairing(ticket.player_id, None))
        return pairings

    @property
    def next_wakeup(self) -> float | None:
        probes, bots = self._probes, self._bots
        while probes and (
            (ticket := self._tickets.get(probes[0][2])) is None or ticket.probe_at != probes[0][0]
        ):
            heapq.heappop(probes)  # stale: the ticket left, or was probed again
        while bots and self._tickets.get(bots[0].player_id) is not bots[0]:
            bots.popleft()
        times = [probes[0][0]] if probes else []
        if bots:
            times.append(bots[0].joined_at + self.bot_after)
        return min(times, default=None)

    def __len__(self) -> int:
        return len(self._tickets)

    def __contains__(self, player_id: object) -> bool:
        return player_id in self._tickets

    def __iter__(self) -> Iterator[str]:
        """The waiting players, longest-waiting first."""
        return iter(list(self._tickets))

    def position(self, player_id: str) -> int | None:
        """1-based place in the queue, or None when not queued."""
        for index, queued in enumerate(self._tickets, start=1):
            if queued == player_id:
                return index
        return None

    def rating_of(self, player_id: str) -> float | None:
        ticket = self._tickets.get(player_id)
        return None if ticket is None else ticket.rating

    # ------------------------------------------------------------ the sorted queue

    def _window_of(self, ticket: Ticket, now: float) -> float:
        return self.window + self.widen * max(0.0, now - ticket.joined_at)

    def _closest(
        self, ticket: Ticket, window: float, now: float
    ) -> tuple[Ticket | None, float | None]:
        """The closest-rated waiting player (not ``ticket``) that fits ``ticket`` with its
        ``window``, ties to the longer-waiting; and, when none does, the distance of the
        nearest rating beyond the window (None if there is none), for the next probe.

        Walks outwards from ``ticket``'s place in rating order, nearer side first, and
        stops at the window's edge: the players it passes are the ones inside the window.
        """
        entries = self._sorted
        rating = ticket.rating
        at = bisect.bisect_left(entries, ticket.key)
        left = at - 1
        right = at + 1 if at < len(entries) and entries[at][2] == ticket.player_id else at
        best: Ticket | None = None
        best_distance = math.inf
        while True:
            left_distance = rating - entries[left][0] if left >= 0 else math.inf
            right_distance = entries[right][0] - rating if right < len(entries) else math.inf
            distance = min(left_distance, right_distance)
            if distance == math.inf:  # nobody left on either side
                return best, None
            if distance > window + SLACK or distance > best_distance:
                return best, None if best is not None else distance
            if left_distance <= right_distance:
                other = self._tickets[entries[left][2]]
                left -= 1
            else:
                other = self._tickets[entries[right][2]]
                right += 1
            # It fits if the distance is within its window too (older players' always is).
            if distance <= self._window_of(other, now) + SLACK and (
                best is None or other.seq < best.seq
            ):
                best, best_distance = other, distance

    def _schedule(self, ticket: Ticket, beyond: float | None) -> None:
        """The ticket's next probe: when its window reaches ``beyond`` (never without one,
        or with windows that do not widen)."""
        if beyond is None or self.widen <= 0 or math.isinf(beyond):
            ticket.probe_at = None
            return
        when = ticket.joined_at + max(0.0, beyond - self.window) / self.widen
        ticket.probe_at = when
        heapq.heappush(self._probes, (when, ticket.seq, ticket.player_id))

    def _remove(self, ticket: Ticket) -> None:
        del self._tickets[ticket.player_id]
        ticket.probe_at = None  # its heap entries are stale now
        at = bisect.bisect_left(self._sorted, ticket.key)
        del self._sorted[at]
