"""Two or three nodes play as one server: pairing, relaying, resuming and replacing
across nodes, on a real redis-server."""

from __future__ import annotations

from typing import Any

from protocol import Hi, Movement, MovementKind, Queued, Result, Start
from tests.cluster.conftest import until


async def test_players_on_two_nodes_are_paired_and_play_a_full_match(nodes: Any) -> None:
    a, b = await nodes("a"), await nodes("b")
    bob = b.client()
    bob.hello(name="Bob")
    bob.say(type="join", bot="never")
    await until(lambda: bob.outlet.of(Queued))
    queue = b.cluster.queues["native"]
    bob_id = bob.outlet.last(Hi).player_id
    await until(lambda: queue.tickets[bob_id].state.value == "waiting")
    ann = a.client()
    ann.hello(name="Ann")
    ann.say(type="join", bot="never")
    await until(lambda: ann.outlet.of(Start) and bob.outlet.of(Start))
    start_ann, start_bob = ann.outlet.last(Start), bob.outlet.last(Start)
    assert start_ann.match_id == start_bob.match_id
    assert start_ann.opponent.name == "Bob"
    assert start_bob.opponent.name == "Ann"
    # The match runs on the joiner's node; Bob's frames go there and back through b.
    assert start_ann.match_id in a.service.rooms.by_id
    assert not b.service.rooms.by_id
    for round_number in (1, 2):
        await until(lambda n=round_number: bob.outlet.last(Start).round == n)
        ann.choose("rock")
        await until(
            lambda n=round_number: (
                sum(m.kind is MovementKind.CHOICE for m in bob.outlet.of(Movement)) == n
            )
        )
        bob.choose("scissors")
        await until(
            lambda n=round_number: (
                len(ann.outlet.of(Result)) == n and len(bob.outlet.of(Result)) == n
            )
        )
    final = ann.outlet.last(Result)
    assert final.match_over
    assert final.total_score == 1
    assert bob.outlet.last(Result).winner is not None
