"""One queue for the whole cluster: a Redis sorted set, paired by Lua scripts.

First come, first served, as the in-memory queue: a player who joins is paired with
whoever has waited longest, on any process, or waits at the back. ``PAIR`` does it in one
atomic step (pop the oldest live ticket, or enqueue the joiner), so no player is ever
seated twice and none is lost between two processes. Tickets of dead processes are
skipped and swept as they come up.

The joiner's process hosts the match. When the partner waits on another process, that
process hands the partner over (``cluster/node.py``: its state, and its connection's
frames from then on) before the match starts here. Until then both stay queued.

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
from game_server.core.ports import Pairing, PairingsDone
from protocol import BotMode, ErrorCode, ProtocolError

if TYPE_CHECKING:
    from game_server.cluster.node import Cluster

log = structlog.get_logger("game_server.cluster")

# A join or a leave waits at most this long for others to share its round trip to Redis:
# a few milliseconds more before a match starts, where each round trip saved is CPU in
# this process and in Redis (docs/cluster.md, "What a node costs").
QUEUE_SECONDS = 0.01

# KEYS: queue, tickets, arrival counter. ARGV: player, its process, its mode, the prefix of
# process keys, and its arrival number ("" for a new one).
PAIR = """
local q, t = KEYS[1], KEYS[2]
local me = ARGV[1]
local mine = redis.call('HGET', t, me)
if mine then
  local ticket = cjson.decode(mine)
  if ticket[1] == ARGV[2] then
    return {'queued', redis.call('ZCARD', q), ticket[3]}
  end
  -- A ticket another process left behind (it died, the player came back here): gone.
  redis.call('HDEL', t, me)
  redis.call('ZREM', q, me)
end
while true do
  local head = redis.call('ZRANGE', q, 0, 0)
  if #head == 0 then break end
  local other = head[1]
  redis.call('ZREM', q, other)
  local raw = redis.call('HGET', t, other)
  redis.call('HDEL', t, other)
  if raw and other ~= me then
    local ticket = cjson.decode(raw)
    if redis.call('EXISTS', ARGV[4] .. ticket[1]) == 1 then
      return {'paired', other, raw}
    end
  end
end
local seq = ARGV[5]
if seq == '' then seq = redis.call('INCR', KEYS[3]) end
redis.call('ZADD', q, seq, me)
redis.call('HSET', t, me, cjson.encode({ARGV[2], ARGV[3], tonumber(seq)}))
return {'queued', redis.call('ZCARD', q), tonumber(seq)}
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
    JOINING = "joining"  # PAIR sent, no answer yet
    WAITING = "waiting"  # its ticket is in the queue
    PAIRING = "pairing"  # it found a partner on another process: the hand-over is under way
    TAKEN = "taken"  # another process paired it: its hand-over request is on the way
    BOT = "bot"  # waited long enough: LEAVE sent to take it back for a house bot


@attrs.define(eq=False)
class Ticket:
    mode: BotMode
    joined_at: float  # monotonic
    state: State = State.JOINING
    seq: int | None = None  # its arrival number in the shared queue
    missing: int = 0  # audits that did not find its ticket in the queue


class SharedQueue:
    """A lobby's ``Matchmaker`` in cluster mode (see the module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        lobby: str,
        bot_after: float,
        clock: Callable[[], float],
    ) -> None:
        self.cluster = cluster
        self.link: RedisLink = cluster.link
        self.keys: Keys = cluster.keys
        self.lobby = lobby
        self.bot_after = bot_after
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

    def join(self, player_id: str, mode: BotMode, now: float) -> list[Pairing]:
        if player_id in self.tickets:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already in the queue")
        if mode is BotMode.NOW:
            return [Pairing(player_id, None)]
        if not self.link.available:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                "matchmaking is unavailable right now; join again in a moment",
            )
        self.tickets[player_id] = Ticket(mode, now)
        self._send_pair(player_id, None)
        return []

    def leave(self, player_id: str) -> bool:
        ticket = self.tickets.pop(player_id, None)
        if ticket is None:
            return False
        if ticket.state in (State.WAITING, State.JOINING, State.TAKEN):
            self._send_leave(player_id, None)
        return True

    def tick(self, now: float) -> list[Pairing]:
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
        due = [
            ticket.joined_at + self.bot_after
            for ticket in self.tickets.values()
            if ticket.state is State.WAITING and ticket.mode is BotMode.AUTO
        ]
        return min(due, default=None)

    def __len__(self) -> int:
        return max(self.size, len(self.tickets))

    def __contains__(self, player_id: object) -> bool:
        return player_id in self.tickets

    # ------------------------------------------------------------ the shared queue

    def _send_pair(self, player_id: str, seq: int | None) -> None:
        ticket = self.tickets[player_id]
        args = [
            player_id,
            self.cluster.node_id,
            ticket.mode.value,
            self.keys.node_prefix,
            "" if seq is None else str(seq),
        ]
        keys = [*self._queue_keys, self.keys.queue_seq(self.lobby)]
        self.link.submit(
            self._pair(keys, args),
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
            return
        outcome = _text(reply[0])
        if outcome == "queued":
            self.size = int(reply[1])
            if ticket is None:  # it left while the script ran
                self._send_leave(player_id, None)
                return
            ticket.state = State.WAITING
            ticket.seq = int(reply[2])
            self._on_pairings([])  # its house-bot deadline is due from now on
            return
        other, raw = _text(reply[1]), reply[2]
        partner_node, partner_mode, partner_seq = orjson.loads(raw)
        if ticket is None:
            # It left while the script ran: the partner goes back where it was.
            self._restore(other, raw, partner_seq)
            return
        if partner_node == self.cluster.node_id:
            partner = self.tickets.get(other)
            if partner is None or partner.state is not State.WAITING:
                self._retry(player_id)  # it left here meanwhile; look again
                return
            del self.tickets[other]
            del self.tickets[player_id]
            self._on_pairings([Pairing(other, player_id)])
            return
        ticket.state = State.PAIRING
        self.cluster.request_handover(
            partner_node,
            other,
            self.lobby,
            lambda adopted: self._handed_over(
                player_id, other, BotMode(partner_mode), partner_seq, adopted
            ),
        )

    def _retry(self, player_id: str) -> None:
        ticket = self.tickets.get(player_id)
        if ticket is not None:
            ticket.state = State.JOINING
            self._send_pair(player_id, ticket.seq)

    def _restore(self, player_id: str, raw: bytes, seq: int) -> None:
        """Put a ticket back at its place in the queue (a pairing that did not happen)."""
        node, mode, _ = orjson.loads(raw)
        args = [player_id, node, mode, self.keys.node_prefix, str(seq)]
        keys = [*self._queue_keys, self.keys.queue_seq(self.lobby)]
        self.link.submit(self._pair(keys, args))

    def _handed_over(
        self, player_id: str, partner: str, mode: BotMode, seq: int, adopted: bool
    ) -> None:
        """The partner's process answered: it is ours now (queued in this lobby), or not."""
        ticket = self.tickets.get(player_id)
        if adopted:
            self.handovers += 1
            if ticket is not None and ticket.state is State.PAIRING:
                del self.tickets[player_id]
                self._on_pairings([Pairing(partner, player_id)])
            else:
                # Ours left meanwhile: the partner (ours now) queues again, at its place.
                self.tickets[partner] = Ticket(mode, self.clock(), State.JOINING, seq)
                self._send_pair(partner, seq)
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
        if ticket is None or ticket.state not in (State.WAITING, State.TAKEN, State.BOT):
            return False
        del self.tickets[player_id]
        self._send_leave(player_id, None)  # in case an audit put it back meanwhile
        return True

    def adopted_late(self, player_id: str) -> None:
        """A partner handed over after this process had given up on it: it is ours now, so
        it queues here."""
        self.tickets[player_id] = Ticket(BotMode.AUTO, self.clock())
        self._send_pair(player_id, None)

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
            self._send_pair(player_id, ticket.seq)

    def sweep(self, dead_node: str) -> None:
        """Drop the tickets of a dead process from the queue."""
        self.link.submit(self._sweep(self._queue_keys, [dead_node]))

    def reassert(self) -> None:
        """Redis came back (maybe empty): every waiting player's ticket goes back in."""
        for player_id, ticket in self.tickets.items():
            if ticket.state in (State.WAITING, State.TAKEN):
                ticket.state = State.JOINING
                self._send_pair(player_id, ticket.seq)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
