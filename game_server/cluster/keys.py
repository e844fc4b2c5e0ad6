"""The names of everything a cluster keeps in Redis, under one prefix.

| key | type | what |
| --- | --- | --- |
| ``node:{id}`` | string, expires | a live process (its heartbeat: refreshed every ``HEARTBEAT``) |
| ``nodes`` | set | every process that has announced itself (dead ones are swept) |
| ``inbox:{id}`` | stream | messages for a process (``cluster/mailbox.py``) |
| ``q:{lobby}`` | sorted set | the queue: player ids by order of arrival |
| ``t:{lobby}`` | hash | each queued player's ticket: its process, its bot mode |
| ``qseq:{lobby}`` | counter | arrival numbers for the queue |
| ``owner:{player}`` | string | the process that owns a player now |
| ``m:{match}`` | string | a running match's checkpoint, updated at every resolved round |
| ``hosted:{id}`` | set | the matches a process hosts (for a takeover when it dies) |
| ``room:{code}`` | string, expires | the process holding a private room's code |
"""

from __future__ import annotations

import attrs

HEARTBEAT = 2.5  # seconds between a process's heartbeats
NODE_TTL = 10.0  # a process whose heartbeat is this old is dead


@attrs.frozen
class Keys:
    prefix: str = "rps:"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    @property
    def node_prefix(self) -> str:
        return f"{self.prefix}node:"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes"

    def inbox(self, node_id: str) -> str:
        return f"{self.prefix}inbox:{node_id}"

    def queue(self, lobby: str) -> str:
        return f"{self.prefix}q:{lobby}"

    def tickets(self, lobby: str) -> str:
        return f"{self.prefix}t:{lobby}"

    def queue_seq(self, lobby: str) -> str:
        return f"{self.prefix}qseq:{lobby}"

    def owner(self, player_id: str) -> str:
        return f"{self.prefix}owner:{player_id}"

    @property
    def owner_prefix(self) -> str:
        return f"{self.prefix}owner:"

    def match(self, match_id: str) -> str:
        return f"{self.prefix}m:{match_id}"

    @property
    def match_prefix(self) -> str:
        return f"{self.prefix}m:"

    def hosted(self, node_id: str) -> str:
        return f"{self.prefix}hosted:{node_id}"

    def room(self, code: str) -> str:
        return f"{self.prefix}room:{code}"
