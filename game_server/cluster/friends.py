"""Friends across a cluster: which process holds each room's code, and each player
(``FriendsDirectory``).

A room lives in its creator's process (``core/friends.py``), as on one process; Redis
keeps ``room:{code}`` -> that process, expiring with the room. The key is set only if no
other process holds it, so a code is never two rooms at once: a process whose fresh code
is already another's draws again (with 31**6 codes that is about one room in 89,000 with
10,000 rooms open); the creator is given the code once Redis has it. A friend whose code
is not held where it is connected is looked up here and then moved, with its ``join``, to
the room's process (``Cluster.move_idle``: its player handed over as to a match's host),
which seats it as if the join had been sent there.

A room taken by a friend keeps its key until it would have expired, so a second friend
with the code is sent to the room's process too and told ``room_full`` there; a room whose
creator left, or that expired, is withdrawn at once. When Redis comes back, perhaps
restarted empty, each process publishes its open rooms again (``Friends.republish``).

Rematches the same way: after a queue match each player goes home to the process its
connection is on, so the two may be held apart; a player asking for a rematch whose last
opponent is elsewhere (``where``: its owner, read, never claimed) is moved there with its
``rematch``, carrying the match it finished (``PlayerSnapshot.last_match``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from game_server.cluster.scripts import DELETE_IF_MINE, LIVE_OTHER
from game_server.core.ports import NodeDone, StoreUnavailable
from protocol import ClientMessage, encode

if TYPE_CHECKING:
    from game_server.cluster.node import Cluster

# KEYS: room:{code}. ARGV: this process, the room's time to live in ms. Holds the code for
# this process (again: a re-publish refreshes it) unless another holds it: 1, or 0.
PUBLISH_ROOM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class ClusterFriends:
    """The cluster's ``FriendsDirectory`` (see the module docstring)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.link = cluster.link
        self.keys = cluster.keys
        self._publish = self.link.lua(PUBLISH_ROOM)
        self._live_other = self.link.lua(LIVE_OTHER)
        self._withdraw = self.link.lua(DELETE_IF_MINE)

    def published(
        self, code: str, ttl: float, done: Callable[[bool | StoreUnavailable], None]
    ) -> None:
        def answered(reply: Any) -> None:
            if isinstance(reply, Exception):
                done(StoreUnavailable(f"the cluster cannot be asked: {reply}"))
            else:
                done(int(reply) == 1)

        if not self.link.available:
            done(StoreUnavailable("the cluster cannot be asked right now"))
            return
        milliseconds = str(max(1, round(ttl * 1000)))
        keys = [self.keys.room(code)]
        self.link.submit(self._publish(keys, [self.cluster.node_id, milliseconds]), answered)

    def withdrawn(self, code: str) -> None:
        self.link.submit(self._withdraw([self.keys.room(code)], [self.cluster.node_id]))

    def locate(self, code: str, done: NodeDone) -> None:
        self._ask(self.keys.room(code), done)

    def where(self, player_id: str, done: NodeDone) -> None:
        # Handed over from here a moment ago (it went home after the match): its new
        # owner's key may not be in Redis yet, but this process knows where it went.
        node = self.cluster.handed_to(player_id)
        if node is not None:
            done(node)
            return
        self._ask(self.keys.owner(player_id), done)

    def move(self, node: str, player_id: str, message: ClientMessage) -> bool:
        return self.cluster.move_idle(node, player_id, encode(message))

    def _ask(self, key: str, done: NodeDone) -> None:
        """Which live process, other than this one, ``key`` names (read, never claimed)."""

        def answered(reply: Any) -> None:
            if isinstance(reply, Exception):
                done(StoreUnavailable(f"the cluster cannot be asked: {reply}"))
            elif reply is None:
                done(None)
            else:
                done(reply.decode() if isinstance(reply, bytes) else str(reply))

        if not self.link.available:
            done(StoreUnavailable("the cluster cannot be asked right now"))
            return
        args = [self.cluster.node_id, self.keys.node_prefix]
        self.link.submit(self._live_other([key], args), answered)
