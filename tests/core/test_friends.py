"""Private rooms and rematches, sans-I/O: the real service and codec, a fake clock."""

from __future__ import annotations

import itertools
import random
from typing import Any

import attrs
import pytest

from game_server.core.friends import (
    CODE_ALPHABET,
    CODE_LENGTH,
    PrivateRooms,
    new_room_code,
    normalise_code,
)
from game_server.core.match import MatchRules
from game_server.core.players import PlayerState, check_invariants
from game_server.core.ports import StoreUnavailable
from game_server.core.service import GameService, ServiceConfig
from protocol import (
    DeclinedReason,
    Error,
    ErrorCode,
    Hi,
    Left,
    ProtocolError,
    Queued,
    RematchDeclined,
    RematchOffer,
    Result,
    Resume,
    RoomClosed,
    RoomClosedReason,
    RoomOpened,
    Start,
)
from tests.support.fakes import FakeClock
from tests.support.service import Client, connect


def make(**overrides: Any) -> tuple[GameService, FakeClock]:
    rules = MatchRules(best_of=1, round_seconds=5.0, round_pause=1.0)
    config = ServiceConfig(rules=rules, **{"bot_think": (0.5, 0.5), "room_ttl": 60.0, **overrides})
    clock = FakeClock()
    return GameService(config, clock, rng=random.Random(3)), clock


def hello(service: GameService, name: str) -> Client:
    client = connect(service)
    client.hello(name=name)
    return client


def check(service: GameService) -> None:
    for player in service.roster.by_id.values():
        check_invariants(player)


def open_room(service: GameService, client: Client) -> str:
    client.say(type="create_room", id=1)
    opened = client.outlet.last(RoomOpened)
    assert opened.ref == 1
    return opened.code


def play_out(a: Client, b: Client) -> str:
    """One best-of-1 match to its end; its id."""
    match_id = a.outlet.last(Start).match_id
    a.choose("rock")
    b.choose("scissors")
    assert a.outlet.last(Result).match_over
    assert b.outlet.last(Result).match_over
    return match_id


# ---------------------------------------------------------------- codes


def test_codes_use_the_alphabet_without_look_alikes() -> None:
    codes = {new_room_code() for _ in range(2000)}
    assert len(codes) == 2000  # 887 million possible: a repeat here would be a broken source
    for code in codes:
        assert len(code) == CODE_LENGTH
        assert set(code) <= set(CODE_ALPHABET)
    assert not set("0O1IL") & set(CODE_ALPHABET)
    assert normalise_code(" k7x-q2m ") == "K7XQ2M"


def test_a_code_in_use_is_never_handed_out_twice() -> None:
    draws = iter(["AAAAAA", "AAAAAA", "BBBBBB"])
    rooms = PrivateRooms(60.0, lambda invite, now: None, lambda: next(draws))
    rooms.join("p1", None, 0.0)  # type: ignore[arg-type]
    rooms.join("p2", None, 0.0)  # type: ignore[arg-type]
    assert sorted(rooms.by_code) == ["AAAAAA", "BBBBBB"]


# ---------------------------------------------------------------- rooms


def test_a_friend_joins_by_code_and_both_start() -> None:
    service, _ = make()
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    code = open_room(service, ann)
    assert ann.outlet.last(RoomOpened).expires_in == 60
    assert service.waiting == 0  # a room is not the matchmaking queue
    assert service.friends.rooms_open == 1
    bob.say(type="join", room=code.lower())
    assert ann.outlet.last(Start).opponent.name == "Bob"
    assert bob.outlet.last(Start).opponent.name == "Ann"
    assert ann.outlet.last(Start).match_id == bob.outlet.last(Start).match_id
    assert service.friends.rooms_open == 0
    check(service)


def test_the_creator_is_never_paired_by_the_queue_nor_given_a_bot() -> None:
    service, clock = make(bot_after=1.0)
    ann = hello(service, "Ann")
    open_room(service, ann)
    carol = hello(service, "Carol")
    carol.say(type="join", bot="never")
    for _ in range(20):
        clock.advance(1.0)
        service.tick()
    assert not ann.outlet.of(Start)
    assert not carol.outlet.of(Start)
    check(service)


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("unknown", ErrorCode.ROOM_NOT_FOUND),
        ("expired", ErrorCode.ROOM_NOT_FOUND),
        ("taken", ErrorCode.ROOM_FULL),
        ("own", ErrorCode.OWN_ROOM),
        ("queued", ErrorCode.ALREADY_QUEUED),
        ("playing", ErrorCode.ALREADY_IN_MATCH),
    ],
)
def test_a_room_join_that_cannot_be_says_precisely_why(setup: str, code: ErrorCode) -> None:
    service, clock = make()
    ann, bob, carol = hello(service, "Ann"), hello(service, "Bob"), hello(service, "Carol")
    room = open_room(service, ann)
    joiner = bob
    if setup == "unknown":
        room = "ZZZZZZ" if room != "ZZZZZZ" else "YYYYYY"
    elif setup == "expired":
        clock.advance(61.0)
        service.tick()
    elif setup == "taken":
        carol.say(type="join", room=room)
        assert carol.outlet.of(Start)
    elif setup == "own":
        joiner = ann
    elif setup == "queued":
        bob.say(type="join", bot="never")
    elif setup == "playing":
        bob.say(type="join", bot="now")
    joiner.say(type="join", room=room, id=9)
    error = joiner.error()
    assert (error.code, error.ref) == (code, 9)
    if setup in ("unknown", "own", "queued"):
        assert service.friends.rooms_open == 1  # the room still waits for its friend
    check(service)


def test_two_friends_with_one_code_at_once_seat_exactly_one() -> None:
    service, _ = make()
    ann, bob, carol = hello(service, "Ann"), hello(service, "Bob"), hello(service, "Carol")
    code = open_room(service, ann)
    bob.say(type="join", room=code)
    carol.say(type="join", room=code)
    assert bob.outlet.of(Start)
    assert not carol.outlet.of(Start)
    assert carol.error().code is ErrorCode.ROOM_FULL
    assert service.roster.by_id[carol.session.player.id].state is PlayerState.IDLE  # type: ignore[union-attr]
    check(service)


def test_a_room_expires_and_its_creator_is_told() -> None:
    service, clock = make()
    ann = hello(service, "Ann")
    code = open_room(service, ann)
    clock.advance(59.0)
    service.tick()
    assert not ann.outlet.of(RoomClosed)
    clock.advance(1.0)
    service.tick()
    assert ann.outlet.last(RoomClosed) == RoomClosed(code=code, reason=RoomClosedReason.EXPIRED)
    assert ann.session.player is not None
    assert ann.session.player.state is PlayerState.IDLE
    ann.say(type="join", bot="never")  # free to queue again
    assert ann.outlet.last(Queued)
    check(service)


def test_leave_cancels_the_room() -> None:
    service, _ = make()
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    code = open_room(service, ann)
    ann.say(type="leave")
    assert ann.outlet.last(Left)
    bob.say(type="join", room=code)
    assert bob.error().code is ErrorCode.ROOM_NOT_FOUND
    check(service)


def test_a_creator_who_drops_keeps_the_room_for_the_grace_and_is_told_it_again() -> None:
    service, clock = make(reconnect_grace=20.0)
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    code = open_room(service, ann)
    token = ann.outlet.last(RoomOpened) and ann.session.player and ann.outlet.sent[0].token  # type: ignore[union-attr]
    service.disconnect(ann.session)
    clock.advance(10.0)
    again = connect(service)
    again.say(type="hello", token=token)
    assert again.outlet.last(RoomOpened) == RoomOpened(code=code, expires_in=50)
    bob.say(type="join", room=code)
    assert again.outlet.last(Start).opponent.name == "Bob"
    check(service)


def test_a_creator_gone_past_the_grace_loses_the_room() -> None:
    service, clock = make(reconnect_grace=5.0)
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    code = open_room(service, ann)
    service.disconnect(ann.session)
    clock.advance(6.0)
    service.tick()
    bob.say(type="join", room=code)
    assert bob.error().code is ErrorCode.ROOM_NOT_FOUND
    check(service)


def test_wrong_codes_are_rate_limited_harder_than_right_ones() -> None:
    service, _ = make()
    guesser = hello(service, "Mallory")
    refused = None
    for attempt in range(10):
        guesser.say(type="join", room="ZZZZZ" + CODE_ALPHABET[attempt])
        if guesser.error().code is ErrorCode.RATE_LIMITED:
            refused = attempt
            break
    # Ten lookups at once, a wrong one costing three: the fifth guess is refused.
    assert refused == 4
    # An honest player on the same address is not locked out by one guesser's connection.
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    code = open_room(service, ann)
    bob.say(type="join", room=code)
    assert bob.outlet.of(Start)


def test_friend_matches_move_ratings_unless_turned_off() -> None:
    for rated in (True, False):
        service, _ = make(rate_friend_matches=rated)
        ann, bob = hello(service, "Ann"), hello(service, "Bob")
        bob.say(type="join", room=open_room(service, ann))
        play_out(ann, bob)
        change = ann.outlet.last(Result).rating_change
        assert (change != 0) is rated


# ---------------------------------------------------------------- rematches


def queue_pair(service: GameService) -> tuple[Client, Client]:
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    ann.say(type="join", bot="never")
    bob.say(type="join", bot="never")
    return ann, bob


def test_both_ask_and_a_new_match_starts() -> None:
    service, _ = make()
    ann, bob = queue_pair(service)
    first = play_out(ann, bob)
    ann.say(type="rematch", match_id=first)
    assert bob.outlet.last(RematchOffer) == RematchOffer(match_id=first)
    assert not ann.outlet.of(RematchOffer)
    bob.say(type="rematch", match_id=first)
    start = ann.outlet.last(Start)
    assert start.match_id != first
    assert start.round == 1
    assert bob.outlet.last(Start).match_id == start.match_id
    check(service)


def test_both_ask_at_once() -> None:
    service, _ = make()
    ann, bob = queue_pair(service)
    first = play_out(ann, bob)
    ann.say(type="rematch", match_id=first)
    bob.say(type="rematch", match_id=first)
    ann.say(type="rematch", match_id=first)  # a late repeat: that match is not its last now
    assert ann.error().code is ErrorCode.ALREADY_IN_MATCH
    assert len({c.outlet.last(Start).match_id for c in (ann, bob)}) == 1
    assert service.live_matches == 1
    check(service)


@pytest.mark.parametrize(
    ("move", "reason"),
    [
        ("queue", DeclinedReason.QUEUED),
        ("room", DeclinedReason.QUEUED),
        ("leave", DeclinedReason.LEFT),
        ("wait", DeclinedReason.TIMEOUT),
        ("drop", DeclinedReason.GONE),
    ],
)
def test_the_asker_is_told_why_no_rematch_came(move: str, reason: DeclinedReason) -> None:
    service, clock = make()
    ann, bob = queue_pair(service)
    first = play_out(ann, bob)
    ann.say(type="rematch", match_id=first)
    if move == "queue":
        bob.say(type="join", bot="never")
    elif move == "room":
        bob.say(type="create_room")
    elif move == "leave":
        bob.say(type="leave")
    elif move == "drop":
        service.disconnect(bob.session)
    if move in ("wait", "drop"):
        clock.advance(15.0)
        service.tick()
    declined = ann.outlet.of(RematchDeclined)
    assert declined == [RematchDeclined(match_id=first, reason=reason)]
    bob_says = bob.outlet.of(RematchDeclined)
    assert not bob_says
    # The offer is gone: Bob asking now is a new question to Ann, not an acceptance (or,
    # once the window has closed, no rematch at all).
    if move in ("queue", "room", "leave"):
        bob.say(type="leave")
        bob.say(type="rematch", match_id=first)
        assert len(ann.outlet.of(Start)) == 1
        assert ann.outlet.last(RematchOffer) == RematchOffer(match_id=first)
    elif move == "wait":
        bob.say(type="rematch", match_id=first)
        assert bob.error().code is ErrorCode.NO_REMATCH
    check(service)


def test_one_rematches_while_the_other_joins_the_queue() -> None:
    service, _ = make()
    ann, bob = queue_pair(service)
    first = play_out(ann, bob)
    bob.say(type="join", bot="never")  # Bob queues first...
    ann.say(type="rematch", match_id=first)  # ...then Ann asks: told at once
    assert ann.outlet.last(RematchDeclined).reason is DeclinedReason.QUEUED
    assert not ann.outlet.of(Start)[1:]
    check(service)


def test_the_asker_changing_its_mind_tells_the_other() -> None:
    service, _ = make()
    ann, bob = queue_pair(service)
    first = play_out(ann, bob)
    ann.say(type="rematch", match_id=first)
    ann.say(type="join", bot="never")
    assert bob.outlet.last(RematchDeclined) == RematchDeclined(
        match_id=first, reason=DeclinedReason.QUEUED
    )
    bob.say(type="rematch", match_id=first)  # Ann is queued now: declined at once
    assert bob.outlet.of(RematchDeclined)[-1] == RematchDeclined(
        match_id=first, reason=DeclinedReason.QUEUED
    )
    assert len(bob.outlet.of(RematchDeclined)) == 2
    check(service)


def test_no_rematch_for_another_match_or_after_the_window() -> None:
    service, clock = make()
    ann, bob = queue_pair(service)
    first = play_out(ann, bob)
    ann.say(type="rematch", match_id="m_not_it", id=4)
    assert (ann.error().code, ann.error().ref) == (ErrorCode.NO_REMATCH, 4)
    clock.advance(15.5)
    ann.say(type="rematch", match_id=first)
    assert ann.error().code is ErrorCode.NO_REMATCH
    fresh = hello(service, "Carol")
    fresh.say(type="rematch", match_id=first)
    assert fresh.error().code is ErrorCode.NO_REMATCH


def test_a_house_bot_accepts_after_its_think_time_with_the_same_strategy() -> None:
    service, clock = make(bot_strategy="cycle")
    ann = hello(service, "Ann")
    ann.say(type="join", bot="now")
    start = ann.outlet.last(Start)
    bot_name = start.opponent.name
    clock.advance(0.5)
    service.tick()  # the bot's choice
    ann.choose("rock")
    clock.advance(6.0)
    service.tick()
    assert ann.outlet.last(Result).match_over
    ann.say(type="rematch", match_id=start.match_id)
    assert ann.outlet.last(Start).match_id == start.match_id  # not yet: the bot thinks
    clock.advance(0.5)
    service.tick()
    again = ann.outlet.last(Start)
    assert again.match_id != start.match_id
    assert again.opponent.bot
    assert again.opponent.name == bot_name
    room = next(iter(service.rooms.by_id.values()))
    assert room.bot is not None
    assert room.bot.strategy.name == "cycle"
    check(service)


def test_a_rematch_of_a_friend_match_stays_in_the_friends_lobby() -> None:
    service, _ = make(rate_friend_matches=False)
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    bob.say(type="join", room=open_room(service, ann))
    first = play_out(ann, bob)
    ann.say(type="rematch", match_id=first)
    bob.say(type="rematch", match_id=first)
    room = next(iter(service.rooms.by_id.values()))
    assert room.lobby == "friends"
    play_out(ann, bob)
    assert ann.outlet.last(Result).rating_change == 0  # still unrated


def test_a_resumed_player_in_a_rematch_gets_resume() -> None:
    service, _ = make(reconnect_grace=20.0)
    ann, bob = queue_pair(service)
    token = ann.outlet.sent[0].token  # type: ignore[union-attr]
    first = play_out(ann, bob)
    ann.say(type="rematch", match_id=first)
    bob.say(type="rematch", match_id=first)
    service.disconnect(ann.session)
    again = connect(service)
    again.say(type="hello", token=token)
    assert again.outlet.last(Resume).match_id == bob.outlet.last(Start).match_id


def test_random_room_and_rematch_traffic_keeps_every_invariant() -> None:
    """Many players doing any of the new things in any order: nothing is seated twice,
    no state contradicts its fields, every error is a client's answer."""
    rng = random.Random(18)
    service, clock = make(reconnect_grace=3.0, room_ttl=5.0, rematch_seconds=4.0)
    clients = [hello(service, f"P{i}") for i in range(8)]
    codes: list[str] = []
    for step in itertools.count():
        if step == 3000:
            break
        client = rng.choice(clients)
        if client.session.closed:
            continue
        action = rng.randrange(8)
        if action == 0:
            client.say(type="create_room")
            opened = client.outlet.of(RoomOpened)
            if opened:
                codes.append(opened[-1].code)
        elif action == 1 and codes:
            client.say(type="join", room=rng.choice(codes))
        elif action == 2:
            starts = client.outlet.of(Start)
            if starts:
                client.say(type="rematch", match_id=starts[-1].match_id)
        elif action == 3:
            client.say(type="leave")
        elif action == 4:
            client.say(type="join", bot=rng.choice(["never", "auto", "now"]))
        elif action == 5 and client.outlet.of(Start):
            client.choose(rng.choice(["rock", "paper", "scissors"]))
        elif action == 6:
            clock.advance(rng.uniform(0.0, 2.0))
            service.tick()
        elif action == 7 and rng.random() < 0.05:
            token = client.outlet.sent[0].token  # type: ignore[union-attr]
            service.disconnect(client.session)
            fresh = connect(service)
            fresh.say(type="hello", token=token)
            clients[clients.index(client)] = fresh
        for player in service.roster.by_id.values():
            check_invariants(player)
        seated = [h.id for room in service.rooms.by_id.values() for h in room.humans]
        assert len(seated) == len(set(seated))
    # Everything ends: rooms expire, offers time out, matches finish.
    for _ in range(40):
        clock.advance(1.0)
        service.tick()
    assert service.friends.rooms_open == 0
    assert service.friends.rematches_pending == 0
    assert not service.friends.offer_of
    counts = service.friends.counts
    for kind in ("room_joined", "room_expired", "rematch_started", "rematch_declined"):
        assert counts[kind] > 0, kind  # the walk reached every outcome


def test_private_rooms_claim_raises_protocol_errors_only() -> None:
    rooms = PrivateRooms(10.0, lambda invite, now: None)
    with pytest.raises(ProtocolError):
        rooms.claim("nope", "p", 0.0)


# ---------------------------------------------------------------- in a cluster


class RecordingDirectory:
    """The ``FriendsDirectory`` port as a test sees it: what was asked, answered by hand
    (a code is held at once unless ``hold`` is None)."""

    def __init__(self, movable: bool = True) -> None:
        self.rooms: dict[str, tuple[float, Any]] = {}  # code -> (ttl, its answer)
        self.hold: bool | None = True
        self.gone: list[str] = []
        self.asked: list[tuple[str, Any]] = []
        self.asked_where: list[tuple[str, Any]] = []
        self.moved: list[tuple[str, str, Any]] = []
        self.movable = movable

    def published(self, code: str, ttl: float, done: Any) -> None:
        self.rooms[code] = (ttl, done)
        if self.hold is not None:
            done(self.hold)

    def withdrawn(self, code: str) -> None:
        self.gone.append(code)

    def locate(self, code: str, done: Any) -> None:
        self.asked.append((code, done))

    def where(self, player_id: str, done: Any) -> None:
        self.asked_where.append((player_id, done))

    def move(self, node: str, player_id: str, join: Any) -> bool:
        if self.movable:
            self.moved.append((node, player_id, join))
        return self.movable


def clustered(**overrides: Any) -> tuple[GameService, FakeClock, RecordingDirectory]:
    service, clock = make(**overrides)
    directory = RecordingDirectory()
    service.friends.directory = directory
    return service, clock, directory


def test_a_room_is_published_for_its_ttl_and_withdrawn_unless_a_friend_took_it() -> None:
    service, clock, directory = clustered()
    ann, bob, cat = (hello(service, name) for name in ("Ann", "Bob", "Cat"))
    code = open_room(service, ann)
    assert directory.rooms[code][0] == 60.0
    ann.say(type="leave")
    assert directory.gone == [code]  # its creator left
    code = open_room(service, ann)
    clock.advance(61)
    service.tick()
    assert directory.gone[-1] == code  # it expired
    code = open_room(service, bob)
    cat.say(type="join", room=code)
    assert cat.outlet.of(Start)
    # Taken: it stays published until it would expire, so that a second friend is sent
    # here and told ``room_full``.
    assert code not in directory.gone


def test_a_code_held_elsewhere_moves_the_friend_there_with_its_join() -> None:
    service, _, directory = clustered()
    bob = hello(service, "Bob")
    bob.say(type="join", room="abc-def", id=4)
    assert not bob.outlet.of(Error)
    assert not bob.outlet.of(Start)  # not yet: asked where the room is
    [(code, done)] = directory.asked
    assert code == "ABCDEF"
    done("node-2")
    [(node, player_id, join)] = directory.moved
    assert (node, player_id) == ("node-2", bob.outlet.last(Hi).player_id)
    assert (join.room, join.id) == ("abc-def", 4)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (None, ErrorCode.ROOM_NOT_FOUND),
        (StoreUnavailable("redis is down"), ErrorCode.UNAVAILABLE),
        ("refuses", ErrorCode.UNAVAILABLE),  # the player could not be handed over
    ],
)
def test_a_look_up_that_finds_no_room_answers_the_join(answer: Any, code: ErrorCode) -> None:
    service, _, directory = clustered()
    directory.movable = answer != "refuses"
    bob = hello(service, "Bob")
    bob.say(type="join", room="ABCDEF", id=5)
    directory.asked[0][1]("node-2" if answer == "refuses" else answer)
    error = bob.outlet.last(Error)
    assert (error.code, error.ref) == (code, 5)
    assert bob.session.player is not None
    assert bob.session.player.state is PlayerState.IDLE


def test_a_friend_moved_to_a_room_elsewhere_ends_its_rematch_offer_here() -> None:
    service, _, directory = clustered()
    ann, bob = queue_pair(service)
    match_id = play_out(ann, bob)
    ann.say(type="rematch", match_id=match_id)
    assert bob.outlet.last(RematchOffer)
    bob.say(type="join", room="ABCDEF")  # a room on another process instead
    directory.asked[0][1]("node-2")
    assert directory.moved
    declined = ann.outlet.last(RematchDeclined)
    assert declined == RematchDeclined(match_id=match_id, reason=DeclinedReason.QUEUED)
    assert service.friends.rematches_pending == 0


def test_a_look_up_answered_after_the_friend_moved_on_does_nothing() -> None:
    service, _, directory = clustered()
    bob, gone = hello(service, "Bob"), hello(service, "Gone")
    bob.say(type="join", room="ABCDEF")
    gone.say(type="join", room="ABCDEF")
    bob.say(type="join", bot="never")  # the queue instead
    service.disconnect(gone.session, keep_seat=False)
    for _, done in directory.asked:
        done("node-2")
    assert directory.moved == []
    assert not bob.outlet.of(Error)
    assert bob.outlet.last(Queued)


def test_the_code_is_given_out_once_held_and_a_clash_draws_another() -> None:
    service, _, directory = clustered()
    directory.hold = None  # answered by hand below
    codes = iter(["AAAAAA", "BBBBBB", "CCCCCC"])
    service.friends.private.new_code = lambda: next(codes)
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    ann.say(type="create_room", id=1)
    assert not ann.outlet.of(RoomOpened)  # not before every process can find it
    directory.rooms["AAAAAA"][1](False)  # another process holds AAAAAA
    assert not ann.outlet.of(RoomOpened)
    directory.rooms["BBBBBB"][1](True)
    [opened] = ann.outlet.of(RoomOpened)
    assert (opened.code, opened.ref) == ("BBBBBB", 1)
    bob.say(type="join", room="BBBBBB")
    assert bob.outlet.of(Start)
    directory.rooms["BBBBBB"][1](False)  # too late: taken already, nothing changes
    assert len(ann.outlet.of(RoomOpened)) == 1


def test_a_room_that_cannot_be_published_still_opens_for_this_process() -> None:
    service, _, directory = clustered()
    directory.hold = None
    ann, bob = hello(service, "Ann"), hello(service, "Bob")
    ann.say(type="create_room", id=1)
    code = next(iter(directory.rooms))
    directory.rooms[code][1](StoreUnavailable("redis is down"))
    assert ann.outlet.last(RoomOpened).code == code
    bob.say(type="join", room=code)
    assert bob.outlet.of(Start)


def test_a_republished_code_another_process_took_meanwhile_is_replaced_and_told() -> None:
    service, _, directory = clustered()
    codes = iter(["AAAAAA", "BBBBBB"])
    service.friends.private.new_code = lambda: next(codes)
    ann = hello(service, "Ann")
    assert open_room(service, ann) == "AAAAAA"
    directory.hold = None  # answered by hand below
    service.friends.republish()
    directory.rooms["AAAAAA"][1](False)  # Redis restarted empty; another drew AAAAAA
    again = ann.outlet.last(RoomOpened)
    assert (again.code, again.ref) == ("BBBBBB", None)  # told at once: it had a code
    directory.rooms["BBBBBB"][1](True)
    assert len(ann.outlet.of(RoomOpened)) == 2


def apart_after_a_match() -> tuple[GameService, FakeClock, RecordingDirectory, Client, str]:
    """Ann and Bob played a queue match; then Bob went home to another process (the
    cluster handed him over): Ann and the match id."""
    service, clock, directory = clustered()
    ann, bob = queue_pair(service)
    match_id = play_out(ann, bob)
    bob_id = bob.outlet.last(Hi).player_id
    assert service.presence.export(bob_id, new_owner="node-2") is not None
    return service, clock, directory, ann, match_id


def test_a_rematch_whose_opponent_is_elsewhere_moves_the_asker_there() -> None:
    service, _, directory, ann, match_id = apart_after_a_match()
    bob_id = ann.outlet.last(Start).opponent.id
    ann.say(type="rematch", match_id=match_id, id=3)
    [(asked, done)] = directory.asked_where
    assert asked == bob_id
    assert not directory.moved  # not before the answer
    done("node-2")
    [(node, player_id, message)] = directory.moved
    assert (node, player_id) == ("node-2", ann.outlet.last(Hi).player_id)
    assert (message.match_id, message.id) == (match_id, 3)
    assert not ann.outlet.of(RematchDeclined)
    assert service.friends.rematches_pending == 0  # the offer is made there, not here


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, DeclinedReason.GONE),  # no live process holds it
        (StoreUnavailable("redis is down"), DeclinedReason.UNAVAILABLE),
        ("refuses", DeclinedReason.UNAVAILABLE),  # moved here a moment ago
    ],
)
def test_a_rematch_whose_opponent_cannot_be_reached_is_declined(
    answer: Any, reason: DeclinedReason
) -> None:
    service, _, directory, ann, match_id = apart_after_a_match()
    directory.movable = answer != "refuses"
    ann.say(type="rematch", match_id=match_id)
    directory.asked_where[0][1]("node-2" if answer == "refuses" else answer)
    assert ann.outlet.last(RematchDeclined) == RematchDeclined(match_id=match_id, reason=reason)
    assert not directory.moved
    assert service.friends.counts["rematch_declined"] == 1


def test_a_rematch_look_up_answered_after_the_asker_moved_on_does_nothing() -> None:
    _, _, directory, ann, match_id = apart_after_a_match()
    ann.say(type="rematch", match_id=match_id)
    ann.say(type="join", bot="never")  # the queue instead
    directory.asked_where[0][1]("node-2")
    assert not directory.moved
    assert not ann.outlet.of(RematchDeclined)


def test_a_rematch_look_up_finding_the_opponent_come_here_meanwhile_asks_here() -> None:
    service, clock, directory = clustered()
    ann, bob = queue_pair(service)
    match_id = play_out(ann, bob)
    bob_id = bob.outlet.last(Hi).player_id
    snapshot = service.presence.export(bob_id, new_owner="node-2")
    assert snapshot is not None
    ann.say(type="rematch", match_id=match_id)
    service.presence.adopt(snapshot, bob.session, clock())  # Bob came back meanwhile
    directory.asked_where[0][1]("node-2")
    assert not directory.moved
    assert bob.outlet.last(RematchOffer) == RematchOffer(match_id=match_id)
    bob.say(type="rematch", match_id=match_id)
    assert ann.outlet.last(Start).match_id != match_id
    check(service)


def test_a_player_handed_over_keeps_its_last_match_on_the_other_clock() -> None:
    """Each process's clock is its own: the snapshot says how long ago the match ended."""
    here, clock = make()
    ann, bob = queue_pair(here)
    match_id = play_out(ann, bob)
    clock.advance(4.0)
    ann_id = ann.outlet.last(Hi).player_id
    snapshot = here.presence.export(ann_id, new_owner="node-2")
    assert snapshot is not None
    there, other_clock = make()
    other_clock.advance(5000.0)
    moved = there.presence.adopt(snapshot, None, other_clock())
    assert moved.last_match is not None
    assert moved.last_match.match_id == match_id
    assert moved.last_match.ended_at == other_clock() - snapshot.last_match_age
    assert 4.0 <= snapshot.last_match_age < 5.0


def test_a_player_handed_over_replaces_an_offline_copy_remembered_here() -> None:
    """A process may still remember a player offline (it left here a while ago) when
    another process hands the same player over with newer totals: the snapshot wins."""
    here, clock = make()
    ann = hello(here, "Ann")
    ann_id = ann.outlet.last(Hi).player_id
    here.disconnect(ann.session, keep_seat=False)  # remembered offline here
    assert here.roster.get(ann_id) is not None
    there, _ = make()
    other = hello(there, "Ann")
    newer = there.presence.export(other.outlet.last(Hi).player_id, new_owner="node-1")
    assert newer is not None
    stats = attrs.evolve(newer.record.stats, total_score=7, win_streak=2)
    record = attrs.evolve(newer.record, id=ann_id, stats=stats)
    adopted = here.presence.adopt(attrs.evolve(newer, record=record), None, clock())
    assert here.roster.get(ann_id) is adopted
    assert (adopted.stats.total_score, adopted.stats.win_streak) == (7, 2)
    check(here)
