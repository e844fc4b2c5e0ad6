"""One process of a cluster: its heartbeat, the players it owns, and its mailbox.

Every player is owned by exactly one process at a time: the one whose game service holds
its state (``owner:{player}`` in Redis says which). A player's connection may live on
another process (its gateway): the gateway forwards the player's frames to the owner, and
the owner's messages for it come back through a ``RemoteOutlet``. So the game service
runs every match with local players only, and the cluster moves players, not matches:

- **hello** with a token for a player this process does not own: ``locate`` asks Redis
  (one script: the live owner, or this process claims it); elsewhere, the session starts
  forwarding (``Forwarder``).
- **pairing** across processes: the joiner's process hosts the match; the partner's
  process hands the partner over (``handover?`` / ``handover``), and its connection's
  gateway is re-pointed at the new owner.
- **a process dies** (its heartbeat key expires): the others sweep its queue tickets,
  give its players' connections here back to the players (closed with 1012, so they
  reconnect and are located afresh), and give players whose gateway it was their grace.
  Match takeover from checkpoints is ``cluster/journal.py``'s.
- **Redis goes away**: matches between players of one process play on; joins answer
  ``unavailable``; when Redis is back, this process re-asserts what it owns (heartbeat,
  owner keys, queue tickets, room codes) in case it restarted empty, and judges nobody
  dead until a whole heartbeat TTL has passed with Redis reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import orjson
import structlog

from game_server.cluster.friends import ClusterFriends
from game_server.cluster.journal import MatchJournal
from game_server.cluster.keys import HEARTBEAT, NODE_TTL, Keys
from game_server.cluster.link import Command, RedisLink
from game_server.cluster.mailbox import Mailbox
from game_server.cluster.queue import SharedQueue
from game_server.cluster.scripts import DELETE_IF_MINE
from game_server.core.lobbies import DEFAULT_LOBBY
from game_server.core.players import LastMatch, Player
from game_server.core.ports import LocateDone, Storage, StoreUnavailable
from game_server.core.presence import PlayerSnapshot
from game_server.core.records import PlayerRecord
from game_server.core.rooms import Room
from game_server.core.service import GameService, ServiceConfig
from game_server.core.sessions import Session
from protocol import CloseCode, ServerMessage, encode

log = structlog.get_logger("game_server.cluster")

HANDOVER_PATIENCE = 5.0  # seconds between checks that a hand-over's process still lives
MOVED_KEEP = 30.0  # seconds frames for a handed-over connection are passed on
# A player moved here to a friend (``move_idle``) is not moved on again for this long: two
# players asking for a rematch of each other at once, each moving to the other's process,
# must not chase each other round (each is declined ``unavailable`` instead).
MOVE_SETTLE = 2.0

# KEYS: owner:{player}. ARGV: this process, the prefix of process keys, and "1" once the
# dead owner's matches were tried. {owner, 1} if another live process owns the player;
# {owner, 0} if a dead one did (its matches must be taken over first: the player may be in
# one); otherwise, or once they were tried, this process claims it: nil.
LOCATE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  local alive = redis.call('EXISTS', ARGV[2] .. owner)
  if alive == 1 or ARGV[3] ~= '1' then return {owner, alive} end
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"""

# KEYS: owner:{player}. ARGV: this process, the prefix of process keys. Claims the player
# unless another live process owns it (then this process only holds a copy: a login).
CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def default_node_id() -> str:
    """Readable and unique on a host: the host name and the process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RemoteOutlet:
    """A session's outlet on the owner when the connection lives on another process."""

    __slots__ = ("cluster", "node", "session_id")

    def __init__(self, cluster: Cluster, node: str, session_id: int) -> None:
        self.cluster = cluster
        self.node = node
        self.session_id = session_id

    def send(self, message: ServerMessage) -> None:
        self.cluster.observer_out(message.TYPE)
        self.cluster.mailbox.post(self.node, ["out", self.session_id], encode(message))

    def send_encoded(self, data: bytes) -> None:
        self.cluster.mailbox.post(self.node, ["out", self.session_id], data)

    def close(self, code: int, reason: str) -> None:
        self.cluster.mailbox.post(self.node, ["close", self.session_id, int(code), reason])


class Cluster:
    """This process's part in a cluster; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        prefix: str = "rps:",
        public: dict[str, Any] | None = None,
        heartbeat: float = HEARTBEAT,
        node_ttl: float = NODE_TTL,
    ) -> None:
        """``heartbeat`` and ``node_ttl``: how often this process says it lives, and how
        long a silent one is given before it counts as dead (tests shorten both)."""
        self.node_id = node_id or default_node_id()
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self.keys = Keys(prefix)
        self.link = RedisLink(url)
        self.mailbox = Mailbox(self.link, self.node_id, self.keys.inbox)
        self.public = public or {}  # what the heartbeat says about this process
        self.service: GameService | None = None
        self.storage: Storage | None = None  # the service's, from attach()
        self.queues: dict[str, SharedQueue] = {}
        # Owner side: sessions whose connection lives elsewhere, by (gateway, its session).
        self.remote: dict[tuple[str, int], Session] = {}
        self._remote_key: dict[int, tuple[str, int]] = {}  # our session id -> (gateway, id)
        # Connections handed over lately: (gateway, id) -> (new owner, until).
        self._moved: dict[tuple[str, int], tuple[str, float]] = {}
        self._handovers: dict[int, tuple[str, Callable[[bool], None]]] = {}
        self._handover_ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._reachable_since = 0.0  # monotonic: Redis reachable without a break since
        self.dead_nodes_seen = 0
        self._started = time.time()
        self.resets = 0
        self.friends_in = 0  # players moved here to a friend's room or last opponent
        # Players moved here lately (``move_idle``), with the process they came from.
        self._moved_in = Recent(MOVE_SETTLE)
        # Players this process handed to another lately, with that process. Its owner key
        # in Redis says so a round trip later; a look-up meanwhile asks here.
        self._handed = Recent(MOVED_KEEP)
        self.observer_out: Callable[[str], None] = lambda kind: None
        self.journal = MatchJournal(self)
        self.wall_clock: Callable[[], float] = time.time
        self._dead_handled: dict[str, float] = {}  # dead process -> when it was handled
        self._known: set[str] = set()  # the other processes this one has heard of
        self._locate = self.link.lua(LOCATE)
        self._claim = self.link.lua(CLAIM)
        self._release = self.link.lua(DELETE_IF_MINE)  # owner:{player}, if ours
        handlers = self.mailbox.handlers
        handlers["open"] = self._on_open
        handlers["in"] = self._on_in
        handlers["fwd"] = self._on_fwd
        handlers["gone"] = self._on_gone
        handlers["out"] = self._on_out
        handlers["close"] = self._on_close
        handlers["repoint"] = self._on_repoint
        handlers["handover?"] = self._on_handover_request
        handlers["handover"] = self._on_handover
        handlers["handover-refused"] = self._on_handover_refused
        handlers["home"] = self._on_home
        handlers["moved"] = self._on_moved
        self.mailbox.on_gap = self.reset_link
        self.mailbox.on_lost = self.reset_link
        self.link.on_reconnect.append(self._reassert)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.link.start()
        self._reachable_since = time.monotonic()
        await self.link.call(self._announce())
        await self.mailbox.start()
        self._tasks = [
            asyncio.create_task(self._every(self.heartbeat, self._beat), name="cluster-heartbeat"),
            asyncio.create_task(self._every(self.heartbeat, self._scan), name="cluster-scan"),
        ]
        log.info("cluster_joined", node=self.node_id)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.journal.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.link.call(self._retire()), 2.0)
        await self.mailbox.close()
        await self.link.close()

    def attach(self, service: GameService, storage: Storage) -> None:
        """Plug into the game service made with ``service_options``, storing in ``storage``."""
        self.service = service
        self.storage = storage
        self.observer_out = service.observer.message_out
        service.roster.on_added = self._owned
        service.roster.on_removed = self._released
        service.rooms.journal = self.journal
        service.on_match_over = self.send_home
        service.friends.directory = ClusterFriends(self)
        self.wall_clock = service.context.wall_clock

    def service_options(self, config: ServiceConfig, clock: Callable[[], float]) -> dict[str, Any]:
        """The game service's shared queue (the native lobby's; the 2016 dialect's lobby
        stays this process's own), locator and forwarder."""
        queue = self.queues[DEFAULT_LOBBY] = SharedQueue(
            self, DEFAULT_LOBBY, config.bot_after, clock, config.match_window, config.match_widen
        )
        return {"matchmaker": queue, "locator": self, "forwarder": self}

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(delay, callback)

    @property
    def ready(self) -> bool:
        return self.link.available

    def health(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "redis": "ok" if self.link.available else "unreachable",
            "relayed_out": self.mailbox.sent,
            "relayed_in": self.mailbox.received,
            "relay_gaps": self.mailbox.gaps,
            "remote_sessions": len(self.remote),
            "handovers": sum(queue.handovers for queue in self.queues.values()),
            "friends_in": self.friends_in,
            "links_reset": self.resets,
            "takeovers": self.journal.takeovers,
            "matches_recovered": self.journal.recovered,
            "matches_abandoned": self.journal.abandoned,
            "dead_nodes_seen": self.dead_nodes_seen,
        }

    def metrics(self) -> list[tuple[str, str, str, float, dict[str, str]]]:
        node = {"node": self.node_id}
        return [
            ("rps_cluster_node", "This process's name in the cluster", "gauge", 1, node),
            (
                "rps_cluster_redis_up",
                "1 while Redis answers, 0 while it does not",
                "gauge",
                int(self.link.available),
                {},
            ),
            (
                "rps_cluster_redis_outages",
                "Times Redis stopped answering",
                "counter",
                self.link.failures,
                {},
            ),
            (
                "rps_cluster_relayed_out",
                "Messages sent to other processes",
                "counter",
                self.mailbox.sent,
                {},
            ),
            (
                "rps_cluster_relayed_in",
                "Messages read from other processes",
                "counter",
                self.mailbox.received,
                {},
            ),
            (
                "rps_cluster_relay_gaps",
                "Messages from other processes found missing",
                "counter",
                self.mailbox.gaps,
                {},
            ),
            (
                "rps_cluster_links_reset",
                "Times this process reset what it shared with another",
                "counter",
                self.resets,
                {},
            ),
            (
                "rps_cluster_remote_sessions",
                "Players owned here whose connection is elsewhere",
                "gauge",
                len(self.remote),
                {},
            ),
            (
                "rps_cluster_handovers",
                "Queued players handed over here by other processes",
                "counter",
                sum(queue.handovers for queue in self.queues.values()),
                {},
            ),
            (
                "rps_cluster_friends_in",
                "Players moved here by other processes, to a private room or their last opponent",
                "counter",
                self.friends_in,
                {},
            ),
            (
                "rps_cluster_takeovers",
                "Matches of dead processes taken over here",
                "counter",
                self.journal.takeovers,
                {},
            ),
            (
                "rps_cluster_matches_recovered",
                "Finished matches of dead processes stored here (they died before storing)",
                "counter",
                self.journal.recovered,
                {},
            ),
            (
                "rps_cluster_matches_abandoned",
                "Matches dropped here because another took them",
                "counter",
                self.journal.abandoned,
                {},
            ),
            (
                "rps_cluster_dead_nodes",
                "Processes this one has seen die",
                "counter",
                self.dead_nodes_seen,
                {},
            ),
            (
                "rps_cluster_ops_dropped",
                "Redis operations given up while it was away",
                "counter",
                self.link.dropped,
                {},
            ),
        ]

    def _announce(self) -> list[Command]:
        info = orjson.dumps({"started": self._started, **self.public})
        return [
            ("SET", self.keys.node(self.node_id), info, "PX", int(self.node_ttl * 1000)),
            ("SADD", self.keys.nodes, self.node_id),
        ]

    def _retire(self) -> list[Command]:
        return [("DEL", self.keys.node(self.node_id)), ("SREM", self.keys.nodes, self.node_id)]

    async def _every(self, seconds: float, job: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                job()
            except Exception:
                log.exception("cluster_job_failed")

    def _beat(self) -> None:
        self.link.submit(self._announce())
        for queue in self.queues.values():
            queue.audit()
        now = time.monotonic()
        for key, (_, until) in list(self._moved.items()):
            if until < now:
                del self._moved[key]

    # ------------------------------------------------------------ owning players

    def locate(self, player_id: str, done: LocateDone, *, dead_tried: bool = False) -> None:
        """The ``Locator`` port: the live owner, or None once this process claimed it.
        ``dead_tried``: the dead owner's matches were taken over (by whoever could), so a
        player it still owns was in none of them: this process claims it."""
        keys = [self.keys.owner(player_id)]
        args = [self.node_id, self.keys.node_prefix, "1" if dead_tried else ""]

        def located(reply: Any) -> None:
            if isinstance(reply, Exception):
                done(StoreUnavailable(f"the cluster cannot be asked: {reply}"))
            elif reply is None:
                done(None)
            elif int(reply[1]) == 1:
                done(_text(reply[0]))
            elif not self._may_judge():
                done(StoreUnavailable("the player's process is not answering; try again"))
            else:
                # Its owner died: take its matches over (the player may be in one), then ask
                # again: the player is a new host's now, or this process claims it.
                self._dead(
                    _text(reply[0]), then=lambda: self.locate(player_id, done, dead_tried=True)
                )

        if not self.link.available:
            done(StoreUnavailable("the cluster cannot be asked right now"))
            return
        self.link.submit(self._locate(keys, args), located)

    def _owned(self, player: Player) -> None:
        """A player came into this process's roster: it owns it, unless a live process
        does (a WeChat login here of a player playing elsewhere: a copy, not the player)."""
        keys = [self.keys.owner(player.id)]
        args = [self.node_id, self.keys.node_prefix]
        self.link.submit(self._claim(keys, args))

    def _own(self, player_id: str) -> None:
        """This process took the player over (a hand-over, a return home): it owns it."""
        key = self.keys.owner(player_id)
        self.link.submit(("SET", key, self.node_id))

    def _released(self, player: Player) -> None:
        keys = [self.keys.owner(player.id)]
        args = [self.node_id]
        self.link.submit(self._release(keys, args))

    # ------------------------------------------------------------ Forwarder (gateway side)

    def begin(self, session: Session, owner: str, frames: list[bytes]) -> None:
        post = self.mailbox.post
        post(owner, ["open", session.id, session.lobby.name, session.address])
        for frame in frames:
            post(owner, ["in", session.id], frame)

    def forward(self, session: Session, data: bytes) -> None:
        assert session.owner is not None
        self.mailbox.post(session.owner, ["in", session.id], data)

    def closed(self, session: Session) -> None:
        assert session.owner is not None
        self.mailbox.post(session.owner, ["gone", session.id])

    def _on_out(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        session = self._service.sessions.by_id.get(message[1])
        if session is not None and session.owner == sender and frame is not None:
            session.outlet.send_encoded(frame)

    def _on_close(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        _, session_id, code, reason = message
        session = self._service.sessions.by_id.get(session_id)
        if session is not None and session.owner == sender:
            session.outlet.close(code, reason)

    def _on_repoint(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        session = self._service.sessions.by_id.get(message[1])
        if session is not None and session.owner is not None:
            session.owner = message[2]

    # ------------------------------------------------------------ the owner's side

    def _remote_session(self, gateway: str, session_id: int, lobby: str, address: Any) -> Session:
        service = self._service
        session = service.connect(RemoteOutlet(self, gateway, session_id), lobby)
        session.address = address
        self.remote[gateway, session_id] = session
        self._remote_key[session.id] = (gateway, session_id)
        return session

    def _on_open(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        _, session_id, lobby, address = message
        self._remote_session(sender, session_id, lobby, address)

    def _on_in(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        self._incoming(sender, message[1], frame)

    def _on_fwd(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        _, gateway, session_id = message
        if frame is None:
            self._gone(gateway, session_id)
        else:
            self._incoming(gateway, session_id, frame)

    def _incoming(self, gateway: str, session_id: int, frame: bytes | None) -> None:
        if gateway == self.node_id:  # passed back to us: the connection is ours again
            session = self._service.sessions.by_id.get(session_id)
            if session is not None and frame is not None:
                self._service.receive(session, frame)
            return
        key = (gateway, session_id)
        session = self.remote.get(key)
        if session is not None and frame is not None:
            self._service.receive(session, frame)
            return
        moved = self._moved.get(key)
        if moved is not None:  # handed over a moment ago: pass it on
            self.mailbox.post(moved[0], ["fwd", gateway, session_id], frame)

    def _on_gone(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        self._gone(sender, message[1])

    def _gone(self, gateway: str, session_id: int) -> None:
        if gateway == self.node_id:
            return  # its connection is here, and the handler there already said so
        key = (gateway, session_id)
        session = self.remote.pop(key, None)
        if session is not None:
            self._remote_key.pop(session.id, None)
            self._service.disconnect(session)
            return
        moved = self._moved.get(key)
        if moved is not None:
            self.mailbox.post(moved[0], ["fwd", gateway, session_id], None)

    def gateway_of(self, session: Session | None) -> list[Any] | None:
        """Where a session's connection is: [process, its session id there]."""
        if session is None:
            return None
        remote = self._remote_key.get(session.id)
        return list(remote) if remote is not None else [self.node_id, session.id]

    def reattach(self, gateway: list[Any] | None, lobby: str, dead: str) -> Session | None:
        """A taken-over player's connection, as a session here: still open here, or on a
        live process (re-pointed at this one); None if it died with ``dead``."""
        if gateway is None:
            return None
        node, session_id = gateway
        if node == self.node_id:
            session = self._service.sessions.by_id.get(session_id)
            return session if session is not None and session.player is None else None
        if node == dead:
            return None
        session = self._remote_session(node, session_id, lobby, None)
        self.mailbox.post(node, ["repoint", session_id, self.node_id])
        return session

    def send_home(self, room: Room) -> None:
        """A match hosted here ended: each player whose connection is on another process
        goes back to that process, so that its next match is hosted there (players meet
        where they are connected, and the work spreads with the connections)."""
        service = self._service
        for human in room.humans:
            session = human.session
            if session is None or human.room is not None:
                continue
            remote = self._remote_key.get(session.id)
            if remote is None:
                continue
            snapshot = service.presence.export(human.id, new_owner=remote[0])
            if snapshot is None:
                continue
            self._handed.put(human.id, remote[0])
            self._let_go(session, remote, remote[0])
            self.mailbox.post(remote[0], ["home", _snapshot_json(snapshot), remote[1]])

    def _let_go(self, session: Session, remote: tuple[str, int], to: str) -> None:
        """A remote session whose player moved on: closed here; frames still on their way
        to it are passed to ``to`` for a while."""
        del self._remote_key[session.id]
        self.remote.pop(remote, None)
        self._service.sessions.close(session)
        self._moved[remote] = (to, time.monotonic() + MOVED_KEEP)

    def _on_home(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        _, raw, session_id = message
        service = self._service
        session = service.sessions.by_id.get(session_id)
        snapshot = _snapshot_from(raw)
        if session is None or session.owner != sender:
            # The connection went meanwhile: the player is ours, offline.
            service.presence.adopt(snapshot, None, service.clock())
        else:
            service.presence.adopt(snapshot, session, service.clock())
        self._own(snapshot.record.id)

    def abandon(self, room: Room) -> None:
        """Another process took this match over: drop this copy; its players' connections
        are closed, and they reconnect to the new host (``resume``)."""
        service = self._service
        for human in service.rooms.abandon(room):
            session = human.session
            if session is not None:
                session.outlet.close(CloseCode.SERVICE_RESTART, "reconnect")
            service.roster.remove(human)

    # ------------------------------------------------------------ hand-overs

    def request_handover(
        self, node: str, player_id: str, lobby: str, done: Callable[[bool], None]
    ) -> None:
        """Ask ``node`` for a queued player this process paired; ``done(True)`` once it is
        adopted here, ``done(False)`` if the node refused (or died)."""
        request = next(self._handover_ids)
        self._handovers[request] = (node, done)
        self.mailbox.post(node, ["handover?", request, player_id, lobby])
        self.later(HANDOVER_PATIENCE, lambda: self._handover_patience(request))

    def _handover_patience(self, request: int) -> None:
        pending = self._handovers.get(request)
        if pending is None:
            return
        node, _ = pending
        key = self.keys.node(node)

        def checked(reply: Any) -> None:
            if request not in self._handovers:
                return
            if reply == 1 or isinstance(reply, Exception):
                self.later(HANDOVER_PATIENCE, lambda: self._handover_patience(request))
            else:
                _, done = self._handovers.pop(request)
                done(False)  # its process died: the partner is gone with it

        self.link.submit(("EXISTS", key), checked)

    def _on_handover_request(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        _, request, player_id, lobby = message
        queue = self.queues.get(lobby)
        given = None
        if queue is not None and queue.hand_over(player_id):
            given = self._give(player_id, sender)
        if given is None:
            self.mailbox.post(sender, ["handover-refused", request])
            return
        self.mailbox.post(sender, ["handover", request, *given])

    def move_idle(self, to: str, player_id: str, frame: bytes) -> bool:
        """Hand an idle, connected player over to ``to`` unasked, and have it handle
        ``frame`` there as if its connection had sent it (a friend going to the process
        of its room or of its last opponent: ``cluster/friends.py``). False if the player
        cannot be handed over, or was moved here less than ``MOVE_SETTLE`` seconds ago."""
        if self._moved_in.get(player_id) is not None:
            return False
        given = self._give(player_id, to)
        if given is None:
            return False
        self.mailbox.post(to, ["moved", *given], frame)
        return True

    def _give(self, player_id: str, to: str) -> list[Any] | None:
        """Export a player to ``to``: [its snapshot, its gateway, its address], or None
        if it cannot be handed over now (``Presence.export``)."""
        service = self._service
        snapshot = service.presence.export(player_id, new_owner=to)
        if snapshot is None:
            return None
        self._handed.put(player_id, to)
        gateway: list[Any] | None = None
        address = None
        if snapshot.session_id is not None:
            session = service.sessions.by_id[snapshot.session_id]
            address = session.address
            remote = self._remote_key.get(session.id)
            if remote is None:
                gateway = [self.node_id, session.id]  # its connection is here
            else:
                # Its connection is on a third process: that one is re-pointed by the new
                # owner; what it sends here meanwhile is passed on.
                self._let_go(session, remote, to)
                gateway = list(remote)
        return [_snapshot_json(snapshot), gateway, address]

    def handed_to(self, player_id: str) -> str | None:
        """The process this one handed ``player_id`` to within ``MOVED_KEEP`` seconds."""
        return self._handed.get(player_id)

    def _take(
        self, sender: str, raw: dict[str, Any], gateway: Any, address: Any
    ) -> tuple[PlayerSnapshot, Session | None]:
        """Adopt a player ``sender`` handed over (``_give``), with its session here if it
        is connected."""
        snapshot = _snapshot_from(raw)
        service = self._service
        session: Session | None = None
        if gateway is not None:
            node, session_id = gateway
            if node == self.node_id:
                session = service.sessions.by_id.get(session_id)
                if session is not None:
                    session.owner = None  # its connection is here: a local session again
            else:
                lobby = snapshot.lobby or DEFAULT_LOBBY
                session = self._remote_session(node, session_id, lobby, address)
                if node != sender:
                    self.mailbox.post(node, ["repoint", session_id, self.node_id])
        service.presence.adopt(snapshot, session, service.clock())
        self._own(snapshot.record.id)
        return snapshot, session

    def _on_moved(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        _, raw, gateway, address = message
        snapshot, session = self._take(sender, raw, gateway, address)
        self.friends_in += 1
        self._moved_in.put(snapshot.record.id, sender)
        if session is not None and frame is not None:
            self._service.receive(session, frame)

    def _on_handover(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        _, request, raw, gateway, address = message
        pending = self._handovers.pop(request, None)
        snapshot, _ = self._take(sender, raw, gateway, address)
        if pending is not None:
            pending[1](True)
        else:
            # We had given up on it (its process seemed dead): it queues here again.
            queue = self.queues[snapshot.lobby or DEFAULT_LOBBY]
            queue.adopted_late(snapshot.record.id, snapshot.record.rating.rating)

    def _on_handover_refused(self, sender: str, message: list[Any], frame: bytes | None) -> None:
        pending = self._handovers.pop(message[1], None)
        if pending is not None:
            pending[1](False)

    # ------------------------------------------------------------ failures

    def reset_link(self, node: str, *, grace: float = 0.0) -> None:
        """Messages between this process and ``node`` were lost (or it died): what they
        shared starts over. Sessions whose connection is there get their grace. Connections
        here that forward to it are closed (their players reconnect and get the truth:
        ``hi``, then ``resume``) after ``grace`` seconds, unless a new owner re-pointed
        them meanwhile (a takeover)."""
        self.resets += 1
        log.warning("cluster_link_reset", node=node)
        service = self._service
        for key, session in list(self.remote.items()):
            if key[0] == node:
                del self.remote[key]
                self._remote_key.pop(session.id, None)
                service.disconnect(session)
        forwarding = [session for session in service.sessions if session.owner == node]
        if grace <= 0:
            self._close_forwarding(node, forwarding)
        else:
            self.later(grace, lambda: self._close_forwarding(node, forwarding))

    @staticmethod
    def _close_forwarding(node: str, sessions: list[Session]) -> None:
        for session in sessions:
            if session.owner == node and not session.closed:
                session.outlet.close(CloseCode.SERVICE_RESTART, "reconnect")

    def _scan(self) -> None:
        """Find processes whose heartbeat stopped, and clean up after them.

        Every process judges for itself every process it knows of (the shared set, and
        those its sessions lead to), since each has its own connections and sessions to
        let go of: the first to see a death removes it from the shared set, and the others
        must still see it."""
        if not self._may_judge():
            return

        def members(reply: Any) -> None:
            if isinstance(reply, Exception):
                return
            listed = {_text(node) for node in reply}
            self._known |= listed
            self._known |= {gateway for gateway, _ in self.remote}
            self._known |= {s.owner for s in self._service.sessions if s.owner is not None}
            self._known -= set(self._dead_handled)
            self._known.discard(self.node_id)
            for node in self._known:
                self.link.submit(("EXISTS", self.keys.node(node)), partial(self._judge, node))

        self.link.submit(("SMEMBERS", self.keys.nodes), members)

    def _judge(self, node: str, alive: Any) -> None:
        if alive == 0 and node not in self._dead_handled:
            self._dead(node)

    def _may_judge(self) -> bool:
        """Whether a missing heartbeat means death: not until Redis has been reachable for
        a whole heartbeat lifetime (after an outage every heartbeat looks stale)."""
        return self.link.available and time.monotonic() - self._reachable_since >= self.node_ttl

    def _dead(self, node: str, then: Callable[[], None] | None = None) -> None:
        """``node`` died: sweep its tickets, take its matches over, and let go of what this
        process shared with it. Done once per node (a second call only waits for the
        takeovers to be tried)."""
        if node in self._dead_handled:
            if then is not None:
                self.journal.take_over(node, then)
            return
        self._dead_handled[node] = time.monotonic()
        self.dead_nodes_seen += 1
        log.warning("cluster_node_dead", node=node)
        for queue in self.queues.values():
            queue.sweep(node)
        # Connections here forwarding to it wait for a takeover to re-point them.
        self.reset_link(node, grace=2 * self.heartbeat)
        self.journal.take_over(node, then)
        self.link.submit(("SREM", self.keys.nodes, node))

    def _reassert(self) -> None:
        """Redis is back, perhaps restarted empty: say again what this process owns."""
        self._reachable_since = time.monotonic()
        log.info("cluster_reassert", players=len(self._service.roster))
        self.link.submit(self._announce())
        for player in list(self._service.roster.by_id.values()):
            self._owned(player)
        for queue in self.queues.values():
            queue.reassert()
        self._service.friends.republish()

    @property
    def _service(self) -> GameService:
        assert self.service is not None, "attach() the cluster to the service first"
        return self.service


class Recent:
    """Processes remembered by player for ``seconds`` each. One lifetime for all, so the
    insertion order is the expiry order, and a new entry drops the stale ones in front."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[str, tuple[str, float]] = {}  # player -> (process, until)

    def put(self, player_id: str, node: str) -> None:
        now, entries = self.clock(), self._entries
        entries.pop(player_id, None)
        entries[player_id] = (node, now + self.seconds)
        while entries:
            first = next(iter(entries))
            if entries[first][1] > now:
                break
            del entries[first]

    def get(self, player_id: str) -> str | None:
        entry = self._entries.get(player_id)
        return entry[0] if entry is not None and entry[1] > self.clock() else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _snapshot_json(snapshot: PlayerSnapshot) -> dict[str, Any]:
    last = snapshot.last_match
    return {
        **snapshot.record.to_json(),
        "lobby": snapshot.lobby,
        "away_left": snapshot.away_left,
        "last_match": None if last is None else attrs.asdict(last),
        "last_match_age": snapshot.last_match_age,
    }


def _snapshot_from(raw: dict[str, Any]) -> PlayerSnapshot:
    lobby, away_left = raw.pop("lobby"), raw.pop("away_left")
    last, age = raw.pop("last_match", None), raw.pop("last_match_age", 0.0)
    last_match = None if last is None else LastMatch(**last)
    return PlayerSnapshot(PlayerRecord.from_json(raw), lobby, None, away_left, last_match, age)
