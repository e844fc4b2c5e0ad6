"""Two or three nodes play as one server: pairing, relaying, resuming and replacing
across nodes, on a real redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from game_server.core.ports import Storage
from game_server.core.rating import NEW_RATING, Rating, rate
from game_server.core.records import MatchRecord
from game_server.store.sqlite import SqliteStore
from protocol import (
    Bye,
    Error,
    ErrorCode,
    Hi,
    Movement,
    MovementKind,
    Queued,
    RematchDeclined,
    RematchOffer,
    Result,
    Resume,
    RoomOpened,
    Start,
)
from tests.support.waiting import until, until_answers


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


async def pair_across(nodes: Any) -> tuple[Any, Any, Any, Any]:
    """Bob waits on b, Ann joins on a: their match runs on a. Returns a, b, ann, bob."""
    a, b = await nodes("a"), await nodes("b")
    ann, bob = await pair_on(a, b)
    return a, b, ann, bob


async def pair_on(a: Any, b: Any) -> tuple[Any, Any]:
    """Bob waits on node b, Ann joins on node a: their match runs on a. Returns ann, bob."""
    bob = b.client()
    bob.hello(name="Bob")
    bob.say(type="join", bot="never")
    bob_id = bob.outlet.last(Hi).player_id
    queue = b.cluster.queues["native"]
    await until(lambda: bob_id in queue.tickets and queue.tickets[bob_id].state.value == "waiting")
    ann = a.client()
    ann.hello(name="Ann")
    ann.say(type="join", bot="never")
    await until(lambda: ann.outlet.of(Start) and bob.outlet.of(Start))
    return ann, bob


async def test_faces_and_movements_cross_nodes(nodes: Any) -> None:
    _, _, ann, bob = await pair_across(nodes)
    bob.say(type="face", face=3)
    await until(lambda: any(m.kind is MovementKind.FACE for m in ann.outlet.of(Movement)))
    face = next(m for m in ann.outlet.of(Movement) if m.kind is MovementKind.FACE)
    assert face.face == 3
    ann.say(type="face", face=2)
    await until(lambda: any(m.kind is MovementKind.FACE for m in bob.outlet.of(Movement)))
    ann.choose("paper")
    await until(lambda: any(m.kind is MovementKind.CHOICE for m in bob.outlet.of(Movement)))


async def test_a_player_resumes_on_a_third_node(nodes: Any) -> None:
    a, b, ann, bob = await pair_across(nodes)
    c = await nodes("c")
    token = bob.outlet.last(Hi).token
    match_id = bob.outlet.last(Start).match_id
    b.service.disconnect(bob.session)  # its socket on b is gone
    await until(lambda: any(m.kind is MovementKind.LEFT for m in ann.outlet.of(Movement)))
    again = c.client()
    again.say(type="hello", token=token)
    await until(lambda: again.outlet.of(Resume))
    assert again.outlet.sent[0].player_id == bob.outlet.last(Hi).player_id  # hi, then resume
    assert again.outlet.last(Resume).match_id == match_id
    await until(lambda: any(m.kind is MovementKind.BACK for m in ann.outlet.of(Movement)))
    # Bob plays on from c: his choice reaches the match on a.
    again.say(type="choice", match_id=match_id, round=1, choice="rock")
    await until(lambda: sum(m.kind is MovementKind.CHOICE for m in ann.outlet.of(Movement)) == 1)
    assert a.cluster.remote  # bob's connection on c, seen from a


async def test_a_second_connection_on_another_node_replaces_the_first(nodes: Any) -> None:
    _, _, ann, bob = await pair_across(nodes)
    c = await nodes("c")
    token = bob.outlet.last(Hi).token
    second = c.client()
    second.say(type="hello", token=token)
    await until(lambda: second.outlet.of(Resume))
    await until(lambda: bob.outlet.closed is not None)
    assert bob.outlet.last(Bye).reason == "replaced"
    assert bob.outlet.closed[0] == 1000
    # Replaced, not gone: the opponent never saw Bob leave.
    assert not any(m.kind is MovementKind.LEFT for m in ann.outlet.of(Movement))


async def test_a_lone_waiter_gets_a_house_bot_after_the_wait(nodes: Any) -> None:
    a = await nodes("a", bot_after=0.2)
    ann = a.client()
    ann.hello(name="Ann")
    ann.say(type="join")
    await until(lambda: ann.outlet.of(Start))
    assert ann.outlet.last(Start).opponent.bot


async def test_players_far_apart_meet_across_nodes_once_their_windows_widen(
    nodes: Any,
) -> None:
    """Bob (1900) waits on b, Ann (1500) joins on a: 400 apart, no match at once. Their
    windows widen (here 1,000 points a second) on Redis's clock, and a probe of Ann's
    ticket pairs them across the nodes."""
    a = await nodes("a", match_widen=1000.0)
    b = await nodes("b", match_widen=1000.0)
    bob = b.client()
    bob.hello(name="Bob")
    bob_id = bob.outlet.last(Hi).player_id
    b.service.roster.by_id[bob_id].rating = Rating(1900.0, 100.0)
    bob.say(type="join", bot="never")
    queue = b.cluster.queues["native"]
    await until(lambda: bob_id in queue.tickets and queue.tickets[bob_id].state.value == "waiting")
    ann = a.client()
    ann.hello(name="Ann")
    ann_id = ann.outlet.last(Hi).player_id
    a.service.roster.by_id[ann_id].rating = Rating(1500.0, 100.0)
    ann.say(type="join", bot="never")
    await until(lambda: ann.outlet.of(Queued))
    await asyncio.sleep(0.05)
    assert not ann.outlet.of(Start)  # 400 apart: not yet
    await until(lambda: ann.outlet.of(Start) and bob.outlet.of(Start), within=3.0)
    assert ann.outlet.last(Start).opponent.rating == 1900


async def test_leaving_the_queue_takes_the_ticket_out_for_every_node(nodes: Any) -> None:
    a, b = await nodes("a"), await nodes("b")
    bob = b.client()
    bob.hello(name="Bob")
    bob.say(type="join", bot="never")
    bob_id = bob.outlet.last(Hi).player_id
    queue = b.cluster.queues["native"]
    await until(lambda: bob_id in queue.tickets and queue.tickets[bob_id].state.value == "waiting")
    bob.say(type="leave")
    await until(lambda: not queue.tickets)
    await asyncio.sleep(0.05)  # the LEAVE script ran
    ann = a.client()
    ann.hello(name="Ann")
    ann.say(type="join", bot="never")
    await until(lambda: ann.outlet.of(Queued))
    await asyncio.sleep(0.2)
    assert not ann.outlet.of(Start)  # nobody to play: Bob left
    assert a.cluster.queues["native"].size == 1  # Ann alone in the shared queue


async def test_the_host_dies_and_a_survivor_finishes_the_match(nodes: Any) -> None:
    a, b, ann, bob = await pair_across(nodes)  # hosted on a; Bob's connection on b
    c = await nodes("c")
    match_id = ann.outlet.last(Start).match_id
    # Round 1 is played on a and resolved (and checkpointed) there.
    ann.choose("rock")
    bob.choose("scissors")
    await until(lambda: len(bob.outlet.of(Result)) == 1)
    await until(lambda: bob.outlet.last(Start).round == 2)
    ann_token = ann.outlet.last(Hi).token
    await a.crash()  # Ann's connection dies with it
    # A survivor takes the match over: Bob, still connected, is told where it stands.
    await until(lambda: bob.outlet.of(Resume), within=5.0)
    resume = bob.outlet.last(Resume)
    assert (resume.match_id, resume.round) == (match_id, 2)
    assert resume.score.opponent == 1  # round 1 was Ann's
    assert resume.opponent_away
    host = next(node for node in (b, c) if match_id in node.service.rooms.by_id)
    assert sum(match_id in node.service.rooms.by_id for node in (b, c)) == 1
    # Ann comes back on c within the grace, and plays on.
    again = c.client()
    again.say(type="hello", token=ann_token)
    await until(lambda: again.outlet.of(Resume))
    assert again.outlet.last(Resume).round == 2
    again.say(type="choice", match_id=match_id, round=2, choice="paper")
    bob.say(type="choice", match_id=match_id, round=2, choice="rock")
    await until(lambda: any(r.match_over for r in again.outlet.of(Result)))
    final = next(r for r in again.outlet.of(Result) if r.match_over)
    assert final.score.you == 2
    # Bob's copy of the final result may come over Redis (the host is b or c): a moment later.
    await until(lambda: any(r.match_over for r in bob.outlet.of(Result)))
    assert host.cluster.journal.takeovers == 1
    assert not host.service.rooms.by_id  # over, and recorded by the host that finished it


async def test_redis_restarts_empty_then_the_host_dies_and_the_match_goes_on(
    nodes: Any, redis_server: Any
) -> None:
    """A restart quicker than any batch (no command failed: the link only finds its
    connection gone) still counts as an outage: the host writes its running match again,
    whole, so a survivor can take it over when the host dies next."""
    a, b, ann, bob = await pair_across(nodes)
    c = await nodes("c")
    match_id = ann.outlet.last(Start).match_id
    redis_server.stop()
    redis_server.restart()  # empty, on the same port
    await until(lambda: a.cluster.link.failures == 1 and a.cluster.link.available, within=5.0)
    await until(lambda: b.cluster.link.available and c.cluster.link.available, within=5.0)
    # The match written again, with its host's list naming it.
    await until_answers(lambda: redis_holds(a, match_id), (True, True))
    ann.choose("rock")
    bob.choose("scissors")
    await until(lambda: bob.outlet.last(Start).round == 2)
    await asyncio.sleep(0.7)  # the survivors have had Redis back for a whole TTL
    await a.crash()
    await until(lambda: bob.outlet.of(Resume), within=5.0)
    resume = bob.outlet.last(Resume)
    assert (resume.match_id, resume.round) == (match_id, 2)
    assert resume.score.opponent == 1


async def test_ratings_cross_nodes_and_ride_the_checkpoint_through_a_takeover(
    nodes: Any,
) -> None:
    """Bob (1400) is handed over from b to a, Ann (1700) hosts; a dies after round 1. The
    survivor knows both ratings from the checkpoint: the resume shows them and the end
    rates each against the other as they began, not as new players."""
    # 300 apart: windows widening 1,000 points a second pair them at once, not in 4 s.
    a, b, c = [await nodes(name, match_widen=1000.0) for name in "abc"]
    ann_rating, bob_rating = Rating(1700.0, 80.0), Rating(1400.0, 120.0)
    bob = b.client()
    bob.hello(name="Bob")
    bob_id = bob.outlet.last(Hi).player_id
    b.service.roster.by_id[bob_id].rating = bob_rating
    bob.say(type="join", bot="never")
    queue = b.cluster.queues["native"]
    await until(lambda: bob_id in queue.tickets and queue.tickets[bob_id].state.value == "waiting")
    ann = a.client()
    ann.hello(name="Ann")
    ann_id = ann.outlet.last(Hi).player_id
    a.service.roster.by_id[ann_id].rating = ann_rating
    ann.say(type="join", bot="never")
    await until(lambda: ann.outlet.of(Start) and bob.outlet.of(Start))
    assert ann.outlet.last(Start).opponent.rating == 1400  # Bob's came with the hand-over
    assert bob.outlet.last(Start).opponent.rating == 1700
    match_id = ann.outlet.last(Start).match_id
    ann.choose("rock")
    bob.choose("scissors")
    await until(lambda: len(bob.outlet.of(Result)) == 1)
    await until(lambda: bob.outlet.last(Start).round == 2)
    ann_token = ann.outlet.last(Hi).token
    await a.crash()
    await until(lambda: bob.outlet.of(Resume), within=5.0)
    assert bob.outlet.last(Resume).opponent.rating == 1700
    again = c.client()
    again.say(type="hello", token=ann_token)
    await until(lambda: again.outlet.of(Resume))
    assert again.outlet.last(Resume).opponent.rating == 1400
    again.say(type="choice", match_id=match_id, round=2, choice="paper")
    bob.say(type="choice", match_id=match_id, round=2, choice="rock")
    await until(lambda: any(r.match_over for r in again.outlet.of(Result)))
    await until(lambda: any(r.match_over for r in bob.outlet.of(Result)))
    ann_final = next(r for r in again.outlet.of(Result) if r.match_over)
    bob_final = next(r for r in bob.outlet.of(Result) if r.match_over)
    ann_after, bob_after = rate(ann_rating, bob_rating, 1.0), rate(bob_rating, ann_rating, 0.0)
    assert (ann_final.rating, ann_final.rating_change) == (ann_after.shown, ann_after.shown - 1700)
    assert (bob_final.rating, bob_final.rating_change) == (bob_after.shown, bob_after.shown - 1400)
    assert ann_after.shown != rate(NEW_RATING, NEW_RATING, 1.0).shown


async def play_to_the_end(ann: Any, bob: Any) -> str:
    """Ann wins two rounds; the match id."""
    match_id: str = ann.outlet.last(Start).match_id
    for round_number in (1, 2):
        await until(lambda n=round_number: bob.outlet.last(Start).round == n)
        await until(lambda n=round_number: ann.outlet.last(Start).round == n)
        ann.choose("rock")
        bob.choose("scissors")
        await until(lambda n=round_number: len(ann.outlet.of(Result)) == n)
    assert ann.outlet.last(Result).match_over
    return match_id


async def redis_holds(node: Any, match_id: str) -> tuple[bool, bool]:
    """Whether Redis still has the match's checkpoint, and its host's list names it."""
    cluster = node.cluster
    keys = cluster.keys
    exists = await cluster.link.call(("EXISTS", keys.match(match_id)))
    listed = await cluster.link.call(("SISMEMBER", keys.hosted(cluster.node_id), match_id))
    return bool(exists), bool(listed)


async def test_a_finished_match_leaves_redis_once_storage_has_it(nodes: Any) -> None:
    a, _, ann, bob = await pair_across(nodes)
    match_id = await play_to_the_end(ann, bob)
    ann_id = ann.outlet.last(Hi).player_id
    await a.storage.flush()
    recent = await a.storage.recent_matches(ann_id, 5)
    assert [m["id"] for m in recent] == [match_id]
    gone = (False, False)
    for _ in range(200):
        if await redis_holds(a, match_id) == gone:
            break
        await asyncio.sleep(0.01)
    assert await redis_holds(a, match_id) == gone


class StoreThatNeverCommits:
    """A store as a process killed before its writer committed sees it: finished matches
    are taken and never written, and a flush never comes back."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.held: list[MatchRecord] = []

    def record_match(self, record: MatchRecord) -> None:
        self.held.append(record)

    async def flush(self) -> None:
        await asyncio.Event().wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_the_host_dies_before_storing_a_finished_match_and_a_survivor_stores_it(
    nodes: Any, tmp_path: Path
) -> None:
    b = await nodes("b")
    dying = StoreThatNeverCommits(
        await asyncio.to_thread(SqliteStore, str(tmp_path / "cluster.db"))
    )
    a = await nodes("a", storage=dying)
    ann, bob = await pair_on(a, b)
    match_id = await play_to_the_end(ann, bob)  # hosted on a, which never stores it
    ann_id = ann.outlet.last(Hi).player_id
    assert [record.id for record in dying.held] == [match_id]
    assert await redis_holds(a, match_id) == (True, True)  # kept: storage has not said yes
    await a.crash()
    await until(lambda: b.cluster.journal.recovered == 1, within=5.0)
    assert b.cluster.journal.takeovers == 0  # stored, not played again
    await b.storage.flush()
    recent = await b.storage.recent_matches(ann_id, 5)
    assert [(m["id"], m["winner"]) for m in recent] == [(match_id, ann_id)]
    player = await b.storage.get_player(ann_id)
    assert player is not None
    assert (player.stats.wins, player.stats.total_score) == (1, 1)
    # Ann comes back on b and is herself, with the match counted once.
    again = b.client()
    again.say(type="hello", token=ann.outlet.last(Hi).token)
    await until(lambda: again.outlet.of(Hi), within=5.0)
    assert again.outlet.last(Hi).player_id == ann_id


async def open_room(client: Any, ref: int = 1) -> str:
    """``create_room``, and its code once the server gives it out (once Redis has it)."""
    client.say(type="create_room", id=ref)
    await until(lambda: any(m.ref == ref for m in client.outlet.of(RoomOpened)))
    code: str = client.outlet.last(RoomOpened).code
    return code


async def test_a_friend_on_another_node_takes_the_room_plays_and_rematches(nodes: Any) -> None:
    """A room's code is found from any node: the friend is moved with its join to the
    room's process and the match runs there; after it the friend goes home, and its
    rematch moves it back (a rematch needs both players in one process)."""
    a, b = await nodes("a"), await nodes("b")
    ann, bob = a.client(), b.client()
    ann.hello(name="Ann")
    bob_id = bob.hello(name="Bob").player_id
    code = await open_room(ann)
    key = a.cluster.keys.room(code)
    assert await a.cluster.link.call(("GET", key)) == b"a"  # given out once Redis has it
    assert 0 < await a.cluster.link.call(("PTTL", key)) <= 600_000
    bob.say(type="join", room=code.lower(), id=2)  # typed as a person would
    await until(lambda: ann.outlet.of(Start) and bob.outlet.of(Start))
    match_id = ann.outlet.last(Start).match_id
    assert bob.outlet.last(Start).match_id == match_id
    assert bob.outlet.last(Start).opponent.name == "Ann"
    assert match_id in a.service.rooms.by_id
    assert bob_id in a.service.roster.by_id
    assert bob_id not in b.service.roster.by_id
    assert bob.session.owner == "a"  # Bob's connection stays on b and forwards to a
    assert (a.cluster.health()["friends_in"], b.cluster.health()["friends_in"]) == (1, 0)
    assert not bob.outlet.of(Error)
    await play_to_the_end(ann, bob)
    await until(lambda: bob.outlet.last(Result).match_over)
    await until(lambda: bob_id in b.service.roster.by_id)  # home, where it is connected
    bob.say(type="rematch", match_id=match_id)
    await until(lambda: bool(ann.outlet.of(RematchOffer)))
    ann.say(type="rematch", match_id=match_id)
    await until(lambda: ann.outlet.last(Start).match_id != match_id)
    await until(lambda: bob.outlet.last(Start).match_id == ann.outlet.last(Start).match_id)
    assert not ann.outlet.of(RematchDeclined)
    assert not bob.outlet.of(RematchDeclined)


async def test_room_codes_from_another_node_fail_as_on_one(nodes: Any) -> None:
    """A wrong code, a room its creator left and a room already taken answer as on one
    process: ``room_not_found`` from the friend's node, ``room_full`` from the room's."""
    a, b, c = await nodes("a"), await nodes("b"), await nodes("c")
    ann, bob, cat = a.client(), b.client(), c.client()
    for client, name in ((ann, "Ann"), (bob, "Bob"), (cat, "Cat")):
        client.hello(name=name)
    bob.say(type="join", room="ZZZZZZ", id=7)
    await until(lambda: bool(bob.outlet.of(Error)))
    error = bob.outlet.last(Error)
    assert (error.code, error.ref) == (ErrorCode.ROOM_NOT_FOUND, 7)
    assert bob.session.owner is None  # looked up, not moved

    left_code = await open_room(ann)
    key = a.cluster.keys.room(left_code)
    assert await a.cluster.link.call(("EXISTS", key)) == 1
    ann.say(type="leave", id=2)
    await until_answers(lambda: a.cluster.link.call(("EXISTS", key)), 0)  # withdrawn at once
    bob.say(type="join", room=left_code, id=8)
    await until(lambda: len(bob.outlet.of(Error)) == 2)
    assert bob.outlet.last(Error).code is ErrorCode.ROOM_NOT_FOUND

    code = await open_room(ann, 3)
    bob.say(type="join", room=code, id=9)
    await until(lambda: bool(bob.outlet.of(Start)))
    cat.say(type="join", room=code, id=4)
    await until(lambda: bool(cat.outlet.of(Error)))
    error = cat.outlet.last(Error)
    assert (error.code, error.ref) == (ErrorCode.ROOM_FULL, 4)  # told by a, Cat's now
    assert cat.session.owner == "a"


async def test_a_code_another_node_holds_is_drawn_again(nodes: Any) -> None:
    """Codes are unique across the cluster: a process whose fresh code another holds
    draws again before it gives the code out; the first room keeps its own."""
    a, b = await nodes("a"), await nodes("b")
    a.service.friends.private.new_code = lambda: "AAAAAA"
    b.service.friends.private.new_code = iter(["AAAAAA", "BBBBBB"]).__next__
    ann, bob, dan = a.client(), b.client(), b.client()
    for client, name in ((ann, "Ann"), (bob, "Bob"), (dan, "Dan")):
        client.hello(name=name)
    assert await open_room(ann) == "AAAAAA"
    assert await open_room(bob) == "BBBBBB"
    assert len(bob.outlet.of(RoomOpened)) == 1  # only the code it could give out
    assert await b.cluster.link.call(("GET", b.cluster.keys.room("BBBBBB"))) == b"b"
    assert await a.cluster.link.call(("GET", a.cluster.keys.room("AAAAAA"))) == b"a"
    dan.say(type="join", room="AAAAAA", id=2)  # on b, but the code is Ann's
    await until(lambda: bool(dan.outlet.of(Start)))
    assert dan.outlet.last(Start).opponent.name == "Ann"


async def test_rooms_are_published_again_when_redis_restarts_empty(
    nodes: Any, redis_server: Any
) -> None:
    a, b = await nodes("a"), await nodes("b")
    ann, bob = a.client(), b.client()
    ann.hello(name="Ann")
    bob.hello(name="Bob")
    code = await open_room(ann)
    key = a.cluster.keys.room(code)
    await until_answers(lambda: a.cluster.link.call(("GET", key)), b"a")
    redis_server.stop()
    redis_server.restart()  # empty, on the same port
    await until(lambda: a.cluster.link.failures == 1 and a.cluster.link.available, within=5.0)
    await until_answers(lambda: a.cluster.link.call(("GET", key)), b"a")
    assert 0 < await a.cluster.link.call(("PTTL", key)) <= 600_000
    assert len(ann.outlet.of(RoomOpened)) == 1  # its own code again: no clash
    await until(lambda: b.cluster.link.available, within=5.0)
    bob.say(type="join", room=code, id=2)
    await until(lambda: bool(ann.outlet.of(Start) and bob.outlet.of(Start)))


async def test_a_rematch_after_a_queue_match_across_nodes_moves_the_asker(nodes: Any) -> None:
    """After a queue match each player goes home to the node its connection is on; a
    rematch then moves the asker, with the match it finished, to its opponent's node."""
    a, b, ann, bob = await pair_across(nodes)
    ann_id = ann.outlet.last(Hi).player_id
    match_id = await play_to_the_end(ann, bob)
    # Each player is home again, on its own node.
    await until(lambda: bob.session.player is not None and bob.session.owner is None)
    assert ann_id in a.service.roster.by_id
    ann.say(type="rematch", match_id=match_id)
    await until(lambda: bool(bob.outlet.of(RematchOffer)))
    assert ann_id in b.service.roster.by_id  # moved to Bob's node, its last match with it
    assert ann.session.owner == "b"
    bob.say(type="rematch", match_id=match_id)
    await until(lambda: ann.outlet.last(Start).match_id != match_id)
    await until(lambda: bob.outlet.last(Start).match_id == ann.outlet.last(Start).match_id)
    assert ann.outlet.last(Start).match_id in b.service.rooms.by_id
    assert not ann.outlet.of(RematchDeclined)


async def test_two_players_asking_each_other_at_once_do_not_chase_each_other(
    nodes: Any,
) -> None:
    """Both ask at once from two nodes. Either one arrives while the other is still home
    and the rematch starts there, or each crosses over, finds the other gone and is
    declined rather than moved on again; then a later ask starts it."""
    _, _, ann, bob = await pair_across(nodes)
    match_id = await play_to_the_end(ann, bob)
    await until(lambda: bob.session.player is not None and bob.session.owner is None)
    ann.say(type="rematch", match_id=match_id)
    bob.say(type="rematch", match_id=match_id)

    def started() -> bool:
        first = ann.outlet.last(Start).match_id
        return first != match_id and bob.outlet.last(Start).match_id == first

    def declined() -> bool:
        return bool(ann.outlet.of(RematchDeclined) and bob.outlet.of(RematchDeclined))

    await until(lambda: started() or declined())
    if started():
        assert not ann.outlet.of(RematchDeclined)
        assert not bob.outlet.of(RematchDeclined)
        return
    await asyncio.sleep(2.1)  # MOVE_SETTLE: moved a moment ago, not moved on at once
    assert len(ann.outlet.of(RematchDeclined)) == len(bob.outlet.of(RematchDeclined)) == 1
    assert not started()
    ann.say(type="rematch", match_id=match_id)
    await until(lambda: bool(bob.outlet.of(RematchOffer)))
    bob.say(type="rematch", match_id=match_id)
    await until(started)
