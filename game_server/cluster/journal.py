"""A match outlives its host: checkpoints in Redis, and their takeover by a survivor.

The host writes each running match to ``m:{match}`` (a hash) and lists it in
``hosted:{host}``. What is kept is what the rules need to carry the match on from the last
resolved round: at its start what does not change (``static``: its rules, its seats, each
human's profile and totals, the house bot's strategy), and at every resolved round and
whenever a player's connection comes, goes or moves, what does (``state``: the rounds
resolved with their hands and outcomes, the score, rounds missed in a row, and where each
human's connection is).

When a host dies, any survivor may take its matches over (``TAKEOVER``: one script that
checks the host is dead and makes itself the host, so exactly one survivor wins each
match). The survivor seats both players with itself as their owner, re-points their
connections (a connection on a live process keeps its socket: that process forwards to
the new host from now on) and opens the round after the last one resolved, with a fresh
deadline; connected players are sent ``resume``. A player whose connection died with the
host gets the reconnect grace, and ``resume`` when it comes back to any process. The
match then ends as any other, and is recorded once, by whoever finishes it.

A host that finds its checkpoint taken (it was cut off from Redis for longer than a
heartbeat's lifetime and a survivor took over) abandons its copy of the match silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from game_server.cluster.link import LinkDown, Op
from game_server.core.match import Match, MatchRules, MatchState, RoundRecord, Seat
from game_server.core.rating import Rating
from game_server.core.records import MatchRecord, PlayerRecord
from game_server.core.rooms import Room
from game_server.core.scoring import PlayerStats
from protocol import Choice, MovementKind, Outcome

if TYPE_CHECKING:
    from game_server.cluster.node import Cluster

log = structlog.get_logger("game_server.cluster")

# What the journal has for Redis, as one script per batch of the link (a script per
# checkpoint cost Redis and this process a fixed price each, for a few bytes of work).
# KEYS: hosted:{me}, then m:{match} of each entry. ARGV: me, then six per entry: its kind
# ("c": keep the match, "s": storage has it, forget it), the match id, its state, its
# humans (comma-separated), what does not change, its record once it is over; "" for what
# the entry does not carry. Returns the ids of the matches another process hosts now (a
# survivor took them over while this one was cut off): this one stops hosting them.
#
# A match's hash is written only by its host (what does not change comes first and makes
# this process the host): the state of a match whose first entry never arrived (a lost
# batch) is of no use to a survivor, and a record is kept only where a survivor could
# find it.
JOURNAL = """
local taken = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local at = (i - 2) * 6 + 1
  local match = ARGV[at + 2]
  if ARGV[at + 1] == 's' then
    if redis.call('HGET', key, 'host') == ARGV[1] then redis.call('DEL', key) end
    redis.call('SREM', KEYS[1], match)
  else
    local host = redis.call('HGET', key, 'host')
    if host and host ~= ARGV[1] then
      taken[#taken + 1] = match
    else
      if ARGV[at + 5] ~= '' then
        redis.call('HSET', key, 'host', ARGV[1], 'humans', ARGV[at + 4], 'static', ARGV[at + 5])
        redis.call('SADD', KEYS[1], match)
        host = ARGV[1]
      end
      if host then
        if ARGV[at + 3] ~= '' then redis.call('HSET', key, 'state', ARGV[at + 3]) end
        if ARGV[at + 6] ~= '' then redis.call('HSET', key, 'over', ARGV[at + 6]) end
      end
    end
  end
end
return taken
"""

# A checkpoint waits at most this long, riding with whatever batch leaves first (a
# relayed result takes its round's checkpoint with it: see RedisLink._drain). A host
# killed in that moment after its own players saw a result costs a replay of that round
# (protocol/README.md says what a client sees); waiting longer would save little more.
# A match's first entry does not wait (``checkpoint``).
JOURNAL_SECONDS = 0.01


class _Entry:
    """What the journal has yet to send about one match: the latest state replaces an
    earlier one still waiting, so a busy match costs one entry per batch."""

    __slots__ = ("humans", "over", "room", "state", "static")

    def __init__(self, room: Room) -> None:
        self.room = room
        self.state: bytes | str = ""
        self.humans = ""
        self.static = ""
        self.over = ""


# KEYS: m:{match}, hosted:{dead}, hosted:{me}. ARGV: me, match id, the prefix of process
# keys, the prefix of owner keys. The checkpoint's data if this process took it over.
TAKEOVER = """
local host = redis.call('HGET', KEYS[1], 'host')
if not host then
  redis.call('SREM', KEYS[2], ARGV[2])
  return false
end
if host == ARGV[1] or redis.call('EXISTS', ARGV[3] .. host) == 1 then return false end
redis.call('HSET', KEYS[1], 'host', ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
if redis.call('HEXISTS', KEYS[1], 'over') == 0 then
  local humans = redis.call('HGET', KEYS[1], 'humans')
  for id in string.gmatch(humans or '', '[^,]+') do
    redis.call('SET', ARGV[4] .. id, ARGV[1])
  end
end
return redis.call('HMGET', KEYS[1], 'static', 'state', 'over')
"""


class MatchJournal:
    """The ``Journal`` port in cluster mode; see the module docstring."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.takeovers = 0  # matches this process took over
        self.abandoned = 0  # matches it stopped hosting because another took them
        self.recovered = 0  # finished matches of dead processes this one stored for them
        self._journal = cluster.link.lua(JOURNAL)
        self._takeover = cluster.link.lua(TAKEOVER)
        self._described: set[str] = set()  # matches whose static part is written
        # What waits for the link's next batch: entries by match, then matches to forget.
        self._entries: dict[str, _Entry] = {}
        self._forget: list[str] = []
        cluster.link.gatherers.append(self._gathered)
        cluster.link.on_reconnect.append(self._rewrite)
        # Finished matches handed to storage whose commit is not confirmed yet, and the
        # task confirming them (one at a time: a flush covers every write before it).
        self._unconfirmed: list[str] = []
        self._confirming: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ Journal

    def checkpoint(self, room: Room) -> None:
        match_id = room.match.match_id
        entry = self._entry(room)
        entry.state = orjson.dumps(self._state(room))
        if match_id not in self._described:
            self._described.add(match_id)
            entry.humans = ",".join(human.id for human in room.humans)
            entry.static = orjson.dumps(self._static(room)).decode()
            # A match its players have seen start must be in Redis at once: until it is,
            # this process's death loses it (a later checkpoint lost costs only a replay
            # of a round). Starts come in batches, after the queue's replies: one round
            # trip each.
            self.cluster.link.flush_within(0.0)

    def finished(self, room: Room, record: MatchRecord) -> None:
        """The match is over and its record on its way to storage: the checkpoint keeps
        the record until storage confirms the commit (a process killed in between would
        otherwise lose a finished match: gone from Redis, never in the database)."""
        match_id = room.match.match_id
        self._described.discard(match_id)
        self._entry(room).over = orjson.dumps(record.to_json()).decode()
        self._confirm(match_id)

    def _rewrite(self) -> None:
        """Redis is back, perhaps restarted empty: every running match is written again,
        whole, so a survivor could still take it over if this process died now."""
        self._described.clear()
        service = self.cluster.service
        if service is not None:
            for room in list(service.rooms.by_id.values()):
                if not room.closed:
                    self.checkpoint(room)

    def _entry(self, room: Room) -> _Entry:
        match_id = room.match.match_id
        entry = self._entries.get(match_id)
        if entry is None:
            entry = self._entries[match_id] = _Entry(room)
            if len(self._entries) == 1:
                self.cluster.link.flush_within(JOURNAL_SECONDS)
        return entry

    def _gathered(self) -> list[Op]:
        """The link makes a batch: everything waiting goes as one script."""
        entries, forget = self._entries, self._forget
        if not entries and not forget:
            return []
        self._entries, self._forget = {}, []
        cluster = self.cluster
        match_key = cluster.keys.match
        redis_keys = [cluster.keys.hosted(cluster.node_id)]
        args: list[Any] = [cluster.node_id]
        for match_id, entry in entries.items():
            redis_keys.append(match_key(match_id))
            args += ("c", match_id, entry.state, entry.humans, entry.static, entry.over)
        for match_id in forget:
            redis_keys.append(match_key(match_id))
            args += ("s", match_id, "", "", "", "")
        return [((self._journal(redis_keys, args),), partial(self._written, entries))]

    def _written(self, entries: dict[str, _Entry], reply: Any) -> None:
        if isinstance(reply, Exception):
            if not isinstance(reply, LinkDown):  # an outage is logged by the link
                log.error("journal_write_failed", matches=len(entries), error=repr(reply))
            # Lost with the batch: a running match describes itself again next time.
            for match_id, entry in entries.items():
                if entry.static:
                    self._described.discard(match_id)
            return
        for match_id in reply:
            entry = entries[_text(match_id)]
            room = entry.room
            if not room.closed:
                self.abandoned += 1
                log.warning("match_taken_over_elsewhere", match_id=room.match.match_id)
                self.cluster.abandon(room)

    def _confirm(self, match_id: str) -> None:
        self._unconfirmed.append(match_id)
        if self._confirming is None:
            self._confirming = asyncio.get_running_loop().create_task(self._confirm_stored())

    async def close(self, within: float = 2.0) -> None:
        """Confirm what storage has committed by now (a closing process drains its store
        first), for at most ``within`` seconds; what is left stays in Redis, harmlessly:
        storage adds nothing for a match it has, when a survivor stores it again."""
        task = self._confirming
        if task is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), within)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _confirm_stored(self) -> None:
        """Wait until storage has committed the finished matches, then drop their
        checkpoints; one wait covers every match finished before it began, and rides with
        storage's own batches (a flush would hand each match over on its own)."""
        storage = self.cluster.storage
        assert storage is not None, "attach() the cluster first"
        cluster = self.cluster
        try:
            while self._unconfirmed:
                batch, self._unconfirmed = self._unconfirmed, []
                try:
                    await storage.committed()
                except Exception as exc:
                    # The batch failed: storage counted and logged the lost writes. The
                    # checkpoints go anyway; a storage failure is not a process's death.
                    log.error("match_store_unconfirmed", matches=len(batch), error=repr(exc))
                self._forget += batch
                cluster.link.flush_within(JOURNAL_SECONDS)
        finally:
            self._confirming = None

    def _static(self, room: Room) -> dict[str, Any]:
        """What does not change in a match: written once, at its start."""
        match = room.match
        rules = match.rules
        wall_clock = self.cluster.wall_clock()
        return {
            "id": match.match_id,
            "lobby": room.lobby,
            "rules": [rules.best_of, rules.round_seconds, rules.round_pause, rules.afk_rounds],
            "started_at": room.started_at,
            "seats": [
                {
                    "id": seat.player_id,
                    "name": seat.name,
                    "avatar": seat.avatar,
                    "bot": seat.bot,
                    "rating": seat.rating.to_json(),  # as the match began: it is rated so
                }
                for seat in match.seats
            ],
            "bot_strategy": None if room.bot is None else room.bot.strategy.name,
            "humans": [human.record(wall_clock).to_json() for human in room.humans],
        }

    def _state(self, room: Room) -> dict[str, Any]:
        """What changes: the rounds resolved, and where the players' connections are."""
        state = room.match.state()
        return {
            "round": state.round,
            "wins": state.wins,
            "missed": state.missed,
            "history": [
                [
                    r.round,
                    None if r.choices[0] is None else r.choices[0].value,
                    None if r.choices[1] is None else r.choices[1].value,
                    r.outcome.value,
                    r.seconds,
                ]
                for r in state.history
            ],
            "gateways": {human.id: self.cluster.gateway_of(human.session) for human in room.humans},
        }

    # ------------------------------------------------------------ taking over

    def take_over(self, dead: str, then: Callable[[], None] | None = None) -> None:
        """Try to take over every match ``dead`` hosted; ``then`` once all were tried."""
        cluster = self.cluster
        hosted = cluster.keys.hosted(dead)

        def listed(reply: Any) -> None:
            if isinstance(reply, Exception):
                if then is not None:
                    then()
                return
            match_ids = sorted(_text(m) for m in reply)
            if not match_ids:
                if then is not None:
                    then()
                return
            for index, match_id in enumerate(match_ids):
                last = index == len(match_ids) - 1
                redis_keys = [
                    cluster.keys.match(match_id),
                    hosted,
                    cluster.keys.hosted(cluster.node_id),
                ]
                args = [
                    cluster.node_id,
                    match_id,
                    cluster.keys.node_prefix,
                    cluster.keys.owner_prefix,
                ]
                cluster.link.submit(
                    self._takeover(redis_keys, args),
                    partial(self._claimed, dead, then if last else None),
                )

        cluster.link.submit(("SMEMBERS", hosted), listed)

    def _claimed(self, dead: str, then: Callable[[], None] | None, reply: Any) -> None:
        try:
            if reply is not None and not isinstance(reply, Exception):
                static, state, over = reply
                if over is not None:
                    self._store_for(dead, orjson.loads(over))
                else:
                    self._carry_on({**orjson.loads(static), **orjson.loads(state)}, dead)
        except Exception:
            log.exception("takeover_failed")
        if then is not None:
            then()

    def _store_for(self, dead: str, raw: dict[str, Any]) -> None:
        """A match ``dead`` finished but may not have stored: store it (once: storage
        adds nothing for a match it has). Its players were the dead process's, and are
        claimed by whichever process they come back to, which loads them after this."""
        record = MatchRecord.from_json(raw)
        assert self.cluster.storage is not None, "attach() the cluster first"
        self.cluster.storage.record_match(record)
        self.recovered += 1
        log.warning("match_record_recovered", match_id=record.id, host=dead)
        self._confirm(record.id)

    def _carry_on(self, data: dict[str, Any], dead: str) -> None:
        cluster = self.cluster
        service = cluster.service
        assert service is not None
        now = service.clock()
        lobby = service.lobbies[data["lobby"]]
        rules = MatchRules(*data["rules"])
        humans = {human["id"]: human for human in data["humans"]}
        stats: dict[str, PlayerStats] = {}
        seats = []
        for seat in data["seats"]:
            human = humans.get(seat["id"])
            stats[seat["id"]] = PlayerStats(**human["stats"]) if human else PlayerStats()
            rating = Rating.from_json(seat.get("rating"))  # absent: a node older than ratings
            seats.append(
                Seat(
                    seat["id"], seat["name"], stats[seat["id"]], seat["avatar"], seat["bot"], rating
                )
            )
        state = MatchState(
            round=data["round"],
            wins=(data["wins"][0], data["wins"][1]),
            missed=(data["missed"][0], data["missed"][1]),
            history=tuple(
                RoundRecord(
                    r[0],
                    (
                        None if r[1] is None else Choice(r[1]),
                        None if r[2] is None else Choice(r[2]),
                    ),
                    Outcome(r[3]),
                    r[4],
                )
                for r in data["history"]
            ),
        )
        match = Match.carried_on(data["id"], (seats[0], seats[1]), rules, state, now)
        room = service.rooms.carry_on(lobby, match, data["started_at"], data["bot_strategy"], now)
        connected = []
        for seat in data["seats"]:
            human = humans.get(seat["id"])
            if human is None:
                continue
            session = cluster.reattach(data["gateways"].get(human["id"]), data["lobby"], dead)
            grace = service.config.reconnect_grace
            player = service.presence.adopt_seated(
                PlayerRecord.from_json(human), session, room, grace, now
            )
            player.stats = stats[player.id]
            if session is not None:
                connected.append(player)
        self.takeovers += 1
        log.warning("match_taken_over", match_id=match.match_id, round=match.round)
        for player in connected:
            assert player.session is not None
            player.session.outlet.send(service.rooms.resume_for(player, now))
        for player in room.humans:
            if player.away:
                service.rooms.tell_opponent(player, MovementKind.LEFT)
        self.checkpoint(room)


def _hand(value: str | None) -> Choice | None:
    return None if value is None else Choice(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
