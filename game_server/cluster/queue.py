"""One queue for the whole cluster: a Redis sorted set by rating, paired by Lua scripts.

The rule is the in-memory queue's (``core/matchmaker.py``, protocol §6.5): a player who
joins is paired with the closest-rated waiting player that fits both windows (ties: the
longer-waiting), on any process, or waits; a waiting player's window widens with its
wait, and it is *probed* when its window reaches the nearest rating it does not cover
yet. ``PAIR`` does a join or a probe in one atomic step (find the closest that fits and
take both tickets out, or enqueue the joiner), so no player is ever seated twice and none
is lost between two processes. Windows are reckoned on Redis's clock (``TIME``), the same
for every process; a ticket keeps when it joined. Tickets of dead processes are skipped
and swept as they come up.

``PAIR`` never scans the queue: it walks outwards from the player's rating in the sorted
set, a few entries at a time, and stops at the window's edge (``ZRANGEBYSCORE`` with
``LIMIT``: O(log n) to start, then the entries inside the window).

The joiner's (or the probed player's) process hosts the match. When the partner waits on
another process, that process hands the partner over (``cluster/node.py``: its state, and
its connection's frames from then on) before the match starts here. Until then both stay
queued.

The house bot: an ``auto`` ticket that waited ``bot_after`` seconds is taken back with
``LEAVE``; only if that succeeds (nobody paired it meanwhile) does a bot sit down.

Tickets heal themselves: a process checks now and then that each of its waiting players
still has its ticket, and puts back one that vanished with no hand-over (a pairing whose
reply was lost, or Redis restarted empty).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import structlog

from game_server.cluster.keys import Keys
from game_server.cluster.link import RedisLink
from game_server.core.matchmaker import WIDEN, WINDOW
from game_server.core.ports import Pairing, PairingsDone
from protocol import BotMode, ErrorCode, ProtocolError

if TYPE_CHECKING:
    from game_server.cluster.node import Cluster

log = structlog.get_logger("game_server.cluster")

# A join or a leave waits at most this long for others to share its round trip to Redis:
# a few milliseconds more before a match starts, where each round trip saved is CPU in
# this process and in Redis (docs/cluster.md, "What a node costs").
QUEUE_SECONDS = 0.01

# KEYS: queue (by rating), tickets, arrival counter. ARGV: 1 player, 2 its process, 3 its
# mode, 4 the prefix of process keys, 5 its arrival number ("" for a new one), 6 its
# rating, 7 when it joined ("" for now), 8 the window a new ticket has, 9 the points a
# second it widens, 10 "join" (pair or enqueue), "probe" (pair a waiting ticket, or leave
# it waiting) or "restore" (enqueue only), 11 the time now ("": Redis's clock).
# A ticket is JSON: [process, mode, arrival, rating, joined] (numbers that must come back
# exactly, as strings). Replies: {"paired", partner, its ticket}, {"queued", queue length,
# arrival, joined, the distance of the nearest rating beyond the window or "-1"}, or
# {"gone"} (a probed ticket another process paired meanwhile).
PAIR = """
local q, t = KEYS[1], KEYS[2]
local me, kind = ARGV[1], ARGV[10]
local now = tonumber(ARGV[11])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local window0, widen, SLACK = tonumber(ARGV[8]), tonumber(ARGV[9]), 0.000001
local rating_text, joined_text, seq = ARGV[6], ARGV[7], ARGV[5]
if joined_text == '' then joined_text = string.format('%.17g', now) end
local queued = false
local mine = redis.call('HGET', t, me)
if mine then
  local ticket = cjson.decode(mine)
  if ticket[1] == ARGV[2] then
    queued = true
    seq, rating_text, joined_text = tostring(ticket[3]), ticket[4], ticket[5]
  else
    -- A ticket another process left behind (it died, the player came back here): gone.
    redis.call('HDEL', t, me)
    redis.call('ZREM', q, me)
  end
elseif kind == 'probe' then
  return {'gone'}
end
local rating, joined = tonumber(rating_text), tonumber(joined_text)
local function window_of(since) return window0 + widen * math.max(0, now - since) end
local function enqueue(beyond)
  if not queued then
    if seq == '' then seq = tostring(redis.call('INCR', KEYS[3])) end
    redis.call('ZADD', q, rating_text, me)
    redis.call('HSET', t, me, cjson.encode({ARGV[2], ARGV[3], tonumber(seq), rating_text,
      joined_text}))
  end
  return {'queued', redis.call('ZCARD', q), tonumber(seq), joined_text, beyond}
end
if kind == 'restore' then return enqueue('-1') end
local mywin = window_of(joined)
-- Walk outwards from the rating: below (scores up to it, nearest first) and above.
local CHUNK = 16
local low, high = {n = 0, at = 1, offset = 0, full = true}, {n = 0, at = 1, offset = 0, full = true}
local function refill(side, down)
  if side.at <= side.n or not side.full then return end
  local got
  if down then
    got = redis.call('ZREVRANGEBYSCORE', q, rating_text, '-inf', 'WITHSCORES', 'LIMIT',
      side.offset, CHUNK)
  else
    got = redis.call('ZRANGEBYSCORE', q, '(' .. rating_text, '+inf', 'WITHSCORES', 'LIMIT',
      side.offset, CHUNK)
  end
  side.items, side.n, side.at = got, #got, 1
  side.offset = side.offset + CHUNK
  side.full = #got == 2 * CHUNK
end
local best, best_raw, best_distance, best_seq = nil, nil, math.huge, math.huge
local beyond, dead = '-1', {}
while true do
  refill(low, true)
  refill(high, false)
  local low_distance, high_distance = math.huge, math.huge
  if low.at <= low.n then low_distance = rating - tonumber(low.items[low.at + 1]) end
  if high.at <= high.n then high_distance = tonumber(high.items[high.at + 1]) - rating end
  local distance = math.min(low_distance, high_distance)
  if distance == math.huge then break end
  if distance > mywin + SLACK or distance > best_distance then
    if not best then beyond = string.format('%.17g', distance) end
    break
  end
  local other
  if low_distance <= high_distance then
    other = low.items[low.at]
    low.at = low.at + 2
  else
    other = high.items[high.at]
    high.at = high.at + 2
  end
  if other ~= me then
    local raw = redis.call('HGET', t, other)
    if not raw then
      table.insert(dead, other)
    else
      local ticket = cjson.decode(raw)
      if redis.call('EXISTS', ARGV[4] .. ticket[1]) == 0 then
        table.insert(dead, other)
      elseif distance <= window_of(tonumber(ticket[5])) + SLACK and ticket[3] < best_seq then
        best, best_raw, best_distance, best_seq = other, raw, distance, ticket[3]
      end
    end
  end
end
for _, gone in ipairs(dead) do
  redis.call('HDEL', t, gone)
  redis.call('ZREM', q, gone)
end
if best then
  redis.call('HDEL', t, best)
  redis.call('ZREM', q, best)
  if queued then
    redis.call('HDEL', t, me)
    redis.call('ZREM', q, me)
  end
  return {'paired', best, best_raw}
end
return enqueue(beyond)
"""

# KEYS: queue, tickets. ARGV: player. 1 if its ticket was there (and is gone now).
LEAVE = """
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# KEYS: queue, tickets. ARGV: a process. Removes that process's tickets; returns how many.
SWEEP = """
local swept = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local ticket = cjson.decode(all[i + 1])
  if ticket[1] == ARGV[1] then
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('ZREM', KEYS[1], all[i])
    swept = swept + 1
  end
end
return swept
"""


class State(enum.Enum):
    JOINING = "joining"  # PAIR sent to join, no answer yet
    WAITING = "waiting"  # its ticket is in the queue
    PROBING = "probing"  # its ticket is in the queue, and PAIR sent to probe for a fit
    PAIRING = "pairing"  # it found a partner on another process: the hand-over is under way
    TAKEN = "taken"  # another process paired it: its hand-over request is on the way
    BOT = "bot"  # waited long enough: LEAVE sent to take it back for a house bot


# A probe that finds nothing where its window should have reached a rating (this
# process's clock and Redis's differ a little) looks again this much later.
PROBE_RETRY = 0.05


@attrs.define(eq=False)
class Ticket:
    mode: BotMode
    joined_at: float  # monotonic
    state: State = State.JOINING
    seq: int | None = None  # its arrival number in the shared queue
    missing: int = 0  # audits that did not find its ticket in the queue
    rating: float = 1500.0
    joined: str | None = None  # when it joined, on Redis's clock (its window grows from it)
    probe_at: float | None = None  # monotonic: when its window reaches the next rating


class SharedQueue:
    """A lobby's ``Matchmaker`` in cluster mode (see the module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        lobby: str,
        bot_after: float,
        clock: Callable[[], float],
        window: float = WINDOW,
        widen: float = WIDEN,
    ) -> None:
        self.cluster = cluster
        self.link: RedisLink = cluster.link
        self.keys: Keys = cluster.keys
        self.lobby = lobby
        self.bot_after = bot_after
        self.window = window
        self.widen = widen
        self.clock = clock
        self.tickets: dict[str, Ticket] = {}  # this process's queued players
        self.size = 0  # the shared queue's length, as last seen
        self.handovers = 0  # partners handed over from other processes
        self._on_pairings: PairingsDone = lambda pairings: None
        self._pair = cluster.link.lua(PAIR)
        self._leave = cluster.link.lua(LEAVE)
        self._sweep = cluster.link.lua(SWEEP)
        self._queue_keys = [self.keys.queue(lobby), self.keys.tickets(lobby)]

    # ------------------------------------------------------------ Matchmaker

    def listen(self, on_pairings: PairingsDone) -> None:
        self._on_pairings = on_pairings

    def join(
        self, player_id: str, mode: BotMode, now: float, rating: float = 1500.0
    ) -> list[Pairing]:
        if player_id in self.tickets:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already in the queue")
        if mode is BotMode.NOW:
            return [Pairing(player_id, None)]
        if not self.link.available:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                "matchmaking is unavailable right now; join again in a moment",
            )
        self.tickets[player_id] = Ticket(mode, now, rating=float(rating))
        self._send_pair(player_id, "join")
        return []

    def leave(self, player_id: str) -> bool:
        ticket = self.tickets.pop(player_id, None)
        if ticket is None:
            return False
        if ticket.state in (State.WAITING, State.JOINING, State.TAKEN, State.PROBING):
            self._send_leave(player_id, None)
        return True

    def tick(self, now: float) -> list[Pairing]:
        due = [
            (ticket.seq or 0, player_id)
            for player_id, ticket in self.tickets.items()
            if ticket.state is State.WAITING
            and ticket.probe_at is not None
            and ticket.probe_at <= now
        ]
        for _, player_id in sorted(due):  # the longest-waiting first
            ticket = self.tickets[player_id]
            ticket.state, ticket.probe_at = State.PROBING, None
            self._send_pair(player_id, "probe")
        for player_id, ticket in self.tickets.items():
            if (
                ticket.state is State.WAITING
                and ticket.mode is BotMode.AUTO
                and ticket.joined_at + self.bot_after <= now
            ):
                ticket.state = State.BOT
                self._send_leave(player_id, self._bot_claimed)
        return []

    @property
    def next_wakeup(self) -> float | None:
        due = []
        for ticket in self.tickets.values():
            if ticket.state is State.WAITING:
                if ticket.mode is BotMode.AUTO:
                    due.append(ticket.joined_at + self.bot_after)
                if ticket.probe_at is not None:
                    due.append(ticket.probe_at)
        return min(due, default=None)

    def __len__(self) -> int:
        return max(self.size, len(self.tickets))

    def __contains__(self, player_id: object) -> bool:
        return player_id in self.tickets

    # ------------------------------------------------------------ the shared queue

    def _args(self, player_id: str, ticket: Ticket, kind: str) -> list[str]:
        return [
            player_id,
            self.cluster.node_id,
            ticket.mode.value,
            self.keys.node_prefix,
            "" if ticket.seq is None else str(ticket.seq),
            repr(ticket.rating),
            ticket.joined or "",
            repr(self.window),
            repr(self.widen),
            kind,
            "",  # Redis's clock
        ]

    def _send_pair(self, player_id: str, kind: str) -> None:
        ticket = self.tickets[player_id]
        keys = [*self._queue_keys, self.keys.queue_seq(self.lobby)]
        self.link.submit(
            self._pair(keys, self._args(player_id, ticket, kind)),
            lambda reply: self._paired(player_id, reply),
            within=QUEUE_SECONDS,
        )

    def _send_leave(self, player_id: str, done: Callable[[str, Any], None] | None) -> None:
        keys = self._queue_keys
        self.link.submit(
            self._leave(keys, [player_id]),
            None if done is None else (lambda reply: done(player_id, reply)),
            within=QUEUE_SECONDS,
        )

    def _paired(self, player_id: str, reply: Any) -> None:
        ticket = self.tickets.get(player_id)
        if isinstance(reply, Exception):
            # The script may or may not have run: asking again is safe (an enqueued player
            # is found queued; a partner it popped is healed by its own process's audit).
            log.warning("queue_pair_failed", player_id=player_id, error=repr(reply))
            if ticket is not None and ticket.state is State.JOINING:
                self.cluster.later(0.5, lambda: self._retry(player_id))
            elif ticket is not None and ticket.state is State.PROBING:
                ticket.state, ticket.probe_at = State.WAITING, self.clock() + 0.5
                self._on_pairings([])
            return
        outcome = _text(reply[0])
        if outcome == "gone":
            # Another process paired it while this one probed: its hand-over is coming
            # (or, if not, the audit puts its ticket back).
            if ticket is not None and ticket.state is State.PROBING:
                ticket.state = State.TAKEN
            return
        if outcome == "queued":
            self.size = int(reply[1])
            if ticket is None:  # it left while the script ran
                self._send_leave(player_id, None)
                return
            ticket.state = State.WAITING
            ticket.seq = int(reply[2])
            ticket.joined = _text(reply[3])
            self._schedule(ticket, float(_text(reply[4])))
            self._on_pairings([])  # its house-bot deadline and probe are due from now on
            return
        other, raw = _text(reply[1]), reply[2]
        partner = _Partner.parse(raw)
        if ticket is None:
            # It left while the script ran: the partner goes back where it was.
            self._restore(other, partner)
            return
        if partner.node == self.cluster.node_id:
            mate = self.tickets.get(other)
            if mate is None or mate.state not in (State.WAITING, State.PROBING):
                self._retry(player_id)  # it left here meanwhile; look again
                return
            del self.tickets[other]
            del self.tickets[player_id]
            # The one who waited longer takes the first seat, as in the in-memory queue.
            first, second = (other, player_id)
            if (ticket.seq or 0) < partner.seq and ticket.seq is not None:
                first, second = player_id, other
            self._on_pairings([Pairing(first, second)])
            return
        ticket.state = State.PAIRING
        self.cluster.request_handover(
            partner.node,
            other,
            self.lobby,
            lambda adopted: self._handed_over(player_id, other, partner, adopted),
        )

    def _schedule(self, ticket: Ticket, beyond: float) -> None:
        """Its next probe: when its window reaches ``beyond`` (-1: nobody beyond it)."""
        if beyond < 0 or self.widen <= 0:
            ticket.probe_at = None
            return
        when = ticket.joined_at + max(0.0, beyond - self.window) / self.widen
        ticket.probe_at = max(when, self.clock() + PROBE_RETRY)

    def _retry(self, player_id: str) -> None:
        ticket = self.tickets.get(player_id)
        if ticket is not None:
            ticket.state = State.JOINING
            self._send_pair(player_id, "join")

    def _restore(self, player_id: str, partner: _Partner) -> None:
        """Put a ticket back at its place in the queue (a pairing that did not happen),
        as it was: its arrival, rating and the time it joined."""
        args = [
            player_id,
            partner.node,
            partner.mode.value,
            self.keys.node_prefix,
            str(partner.seq),
            partner.rating,
            partner.joined,
            repr(self.window),
            repr(self.widen),
            "restore",
            "",
        ]
        keys = [*self._queue_keys, self.keys.queue_seq(self.lobby)]
        self.link.submit(self._pair(keys, args))

    def _handed_over(
        self, player_id: str, partner_id: str, partner: _Partner, adopted: bool
    ) -> None:
        """The partner's process answered: it is ours now (queued in this lobby), or not."""
        ticket = self.tickets.get(player_id)
        if adopted:
            self.handovers += 1
            if ticket is not None and ticket.state is State.PAIRING:
                del self.tickets[player_id]
                self._on_pairings([Pairing(partner_id, player_id)])
            else:
                # Ours left meanwhile: the partner (ours now) queues again, at its place.
                self.tickets[partner_id] = Ticket(
                    partner.mode,
                    self.clock(),
                    State.JOINING,
                    partner.seq,
                    rating=float(partner.rating),
                    joined=partner.joined,
                )
                self._send_pair(partner_id, "join")
            return
        if ticket is not None and ticket.state is State.PAIRING:
            self._retry(player_id)

    def _bot_claimed(self, player_id: str, reply: Any) -> None:
        ticket = self.tickets.get(player_id)
        if ticket is None or ticket.state is not State.BOT:
            return
        if isinstance(reply, Exception):
            ticket.state = State.WAITING  # try again at the next tick
            self._on_pairings([])
            return
        if int(reply) == 1:
            del self.tickets[player_id]
            self._on_pairings([Pairing(player_id, None)])
        else:
            # Another process paired it a moment ago: its hand-over request is coming.
            ticket.state = State.TAKEN

    # ------------------------------------------------------------ the cluster's side

    def hand_over(self, player_id: str) -> bool:
        """Another process paired this player: give up its ticket here (True), or refuse
        because it is not waiting here any more (it left, or found a partner itself)."""
        ticket = self.tickets.get(player_id)
        waiting = (State.WAITING, State.TAKEN, State.BOT, State.PROBING)
        if ticket is None or ticket.state not in waiting:
            return False
        del self.tickets[player_id]
        self._send_leave(player_id, None)  # in case an audit put it back meanwhile
        return True

    def adopted_late(self, player_id: str, rating: float = 1500.0) -> None:
        """A partner handed over after this process had given up on it: it is ours now, so
        it queues here."""
        self.tickets[player_id] = Ticket(BotMode.AUTO, self.clock(), rating=rating)
        self._send_pair(player_id, "join")

    def audit(self) -> None:
        """Check that every waiting player here still has its ticket; put back what
        vanished with no hand-over (heals lost replies and a Redis that restarted empty)."""
        key = self.keys.queue(self.lobby)
        for player_id, ticket in self.tickets.items():
            if ticket.state in (State.WAITING, State.TAKEN):
                self.link.submit(("ZSCORE", key, player_id), partial(self._audited, player_id))

    def _audited(self, player_id: str, reply: Any) -> None:
        ticket = self.tickets.get(player_id)
        if ticket is None or ticket.state not in (State.WAITING, State.TAKEN):
            return
        if isinstance(reply, Exception):
            return
        if reply is not None:
            ticket.missing = 0
            return
        ticket.missing += 1
        if ticket.missing >= 2:  # two audits apart: no hand-over is coming any more
            log.info("queue_ticket_restored", player_id=player_id)
            ticket.missing = 0
            ticket.state = State.JOINING
            self._send_pair(player_id, "join")

    def sweep(self, dead_node: str) -> None:
        """Drop the tickets of a dead process from the queue."""
        self.link.submit(self._sweep(self._queue_keys, [dead_node]))

    def reassert(self) -> None:
        """Redis came back (maybe empty): every waiting player's ticket goes back in."""
        for player_id, ticket in self.tickets.items():
            if ticket.state in (State.WAITING, State.TAKEN, State.PROBING):
                ticket.state = State.JOINING
                self._send_pair(player_id, "join")


@attrs.frozen
class _Partner:
    """A partner's ticket as ``PAIR`` returned it."""

    node: str
    mode: BotMode
    seq: int
    rating: str  # exactly as stored
    joined: str

    @classmethod
    def parse(cls, raw: bytes) -> _Partner:
        node, mode, seq, rating, joined = orjson.loads(raw)
        return cls(node, BotMode(mode), int(seq), str(rating), str(joined))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
