"""The 2016 demo's Socket.IO dialect, without sockets: packets, translation, scoring."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game_server.core.scoring import PlayerStats, settle
from protocol import (
    Bye,
    Choice,
    Error,
    ErrorCode,
    Face,
    Hello,
    Hi,
    Join,
    Leave,
    Left,
    MakeChoice,
    Movement,
    MovementKind,
    Opponent,
    Outcome,
    Pong,
    ProtocolError,
    Queued,
    Result,
    Score,
    Start,
    Winner,
)
from protocol.legacy import (
    EnginePacket,
    EngineType,
    LegacyPeer,
    LegacyUser,
    RobotNumbers,
    SocketPacket,
    SocketType,
    Standing,
    ack_frame,
    event_frame,
    namespace_error_frame,
    open_frame,
    parse_frame,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ME, THEM = "p_me", "p_them"
ROBOT = "robot-1"  # how a fresh peer shows its first robot (``start()``'s opponent)


def event_of(frame: bytes) -> tuple[str, Any]:
    assert frame.startswith(b"42"), frame
    name, data = orjson.loads(frame[2:])
    return name, data


def greeted(uid: Any = "u-ann", lookup: Any = None, **user: Any) -> LegacyPeer:
    """A peer whose hello was accepted as ``ME``."""
    peer = LegacyPeer(lookup=lookup) if lookup else LegacyPeer()
    inbound = peer.receive(b"42" + orjson.dumps(["hello", {"user": {"uid": uid, **user}}]))
    assert isinstance(inbound.message, Hello)
    peer.on_server(Hi(player_id=ME, name=inbound.message.name or "Player 1", token="t", online=2))
    return peer


def start(opponent: Opponent | None = None, round_ms: int = 3000) -> Start:
    return Start(
        match_id="m_1",
        round=1,
        best_of=1,
        round_ms=round_ms,
        opponent=opponent or Opponent(id=THEM, name="Robo", avatar=None, bot=True),
        score=Score(you=0, opponent=0),
    )


def final(
    you: Choice | None, theirs: Choice | None, winner: Winner, total: int, streak: int
) -> Result:
    outcome = {Winner.YOU: Outcome.WIN, Winner.OPPONENT: Outcome.LOSE, Winner.DRAW: Outcome.DRAW}
    return Result(
        match_id="m_1",
        round=1,
        you=you,
        opponent=theirs,
        outcome=outcome[winner],
        score=Score(you=0, opponent=0),
        match_over=True,
        winner=winner,
        reason=None,
        total_score=total,
        win_streak=streak,
    )


# ---------------------------------------------------------------- packets


@pytest.mark.parametrize(
    ("frame", "packet"),
    [
        (b"2", EnginePacket(EngineType.PING)),
        (b"2probe", EnginePacket(EngineType.PING, "probe")),
        (b"3", EnginePacket(EngineType.PONG)),
        (b"1", EnginePacket(EngineType.CLOSE)),
        (b"5", EnginePacket(EngineType.UPGRADE)),
        (b"6", EnginePacket(EngineType.NOOP)),
        (b"40", SocketPacket(SocketType.CONNECT)),
        (b"40/admin,", SocketPacket(SocketType.CONNECT, "/admin")),
        (b"40/admin", SocketPacket(SocketType.CONNECT, "/admin")),
        (b"41", SocketPacket(SocketType.DISCONNECT)),
        (b'42["join"]', SocketPacket(SocketType.EVENT, data=["join"])),
        (
            b'42["choice",{"choice":2}]',
            SocketPacket(SocketType.EVENT, data=["choice", {"choice": 2}]),
        ),
        (b'4217["join"]', SocketPacket(SocketType.EVENT, ack=17, data=["join"])),
        (b'42/chat,3["x",1]', SocketPacket(SocketType.EVENT, "/chat", 3, ["x", 1])),
        ('42["hello",{"user":{"uname":"小明"}}]', None),
    ],
)
def test_parse_frame(frame: bytes | str, packet: EnginePacket | SocketPacket | None) -> None:
    parsed = parse_frame(frame)
    if packet is None:
        assert parsed == SocketPacket(SocketType.EVENT, data=["hello", {"user": {"uname": "小明"}}])
    else:
        assert parsed == packet


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        (b"", ErrorCode.UNKNOWN_TYPE, "empty"),
        (b"x", ErrorCode.UNKNOWN_TYPE, "Engine.IO packet type 'x'"),
        (b"7", ErrorCode.UNKNOWN_TYPE, "Engine.IO packet type '7'"),
        ("٣".encode(), ErrorCode.UNKNOWN_TYPE, "Engine.IO"),  # a digit, but not 0-9 ASCII
        (b"4", ErrorCode.UNKNOWN_TYPE, "Socket.IO packet type 'nothing'"),
        (b"49", ErrorCode.UNKNOWN_TYPE, "Socket.IO packet type '9'"),
        (b'451-["x",{"_placeholder":true,"num":0}]', ErrorCode.UNSUPPORTED_FRAME, "binary"),
        (b"46", ErrorCode.UNSUPPORTED_FRAME, "binary"),
        (b'42["join"', ErrorCode.BAD_JSON, "not valid JSON"),
        (b"42join", ErrorCode.BAD_JSON, "not valid JSON"),
        (b"\xff\xfe", ErrorCode.BAD_JSON, "UTF-8"),
        ("42\ud800", ErrorCode.BAD_JSON, "UTF-8"),
        (b'4299999999999999999["x"]', ErrorCode.INVALID_FIELD, "ack id"),
        (b'42/a\x01b,["x"]', ErrorCode.INVALID_FIELD, "namespace"),
    ],
)
def test_parse_frame_refuses_precisely(frame: bytes | str, code: ErrorCode, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(frame)
    assert caught.value.code is code
    assert words in caught.value.message


def test_frames_out() -> None:
    assert orjson.loads(open_frame("abc")[1:]) == {
        "sid": "abc",
        "upgrades": [],
        "pingInterval": 25000,
        "pingTimeout": 60000,
    }
    assert open_frame("abc").startswith(b'0{"sid":"abc"')
    assert event_frame("hi", {"nearby": 1}) == b'42["hi",{"nearby":1}]'
    assert ack_frame(12, [None]) == b"4312[null]"
    assert namespace_error_frame("/admin") == b'44/admin,"Invalid namespace"'


# ---------------------------------------------------------------- engine-level answers


@pytest.mark.parametrize(
    ("frame", "replies", "disconnect"),
    [
        (b"2", (b"3",), False),
        (b"2probe", (b"3probe",), False),
        (b"3", (), False),
        (b"6", (), False),
        (b"40", (b"40",), False),
        (b"40/admin,", (b'44/admin,"Invalid namespace"',), False),
        (b"41", (), True),
        (b"41/admin,", (), False),
        (b"1", (), True),
    ],
)
def test_engine_and_connect_packets(
    frame: bytes, replies: tuple[bytes, ...], disconnect: bool
) -> None:
    inbound = LegacyPeer().receive(frame)
    assert inbound.replies == replies
    assert inbound.disconnect is disconnect
    assert inbound.message is None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b'0{"sid":"x"}', "unknown_type"),
        (b'43["late ack"]', "unsupported_frame"),
        (b'44"oops"', "unsupported_frame"),
        (b'42/chat,["join"]', "invalid_field"),
        (b'42{"type":"join"}', "invalid_field"),
        (b"42[]", "invalid_field"),
        (b"42[1,2]", "invalid_field"),
        (b"42", "invalid_field"),
        (b'42["dance",{}]', "unknown_type"),
        (b'42["hello","Ann"]', "invalid_field"),
        (b'42["hello",{"user":"Ann"}]', "invalid_field"),
        (b'42["hello",{"user":{"uid":true}}]', "invalid_field"),
        (b'42["hello",{"user":{"uid":""}}]', "invalid_field"),
        (b'42["hello",{"user":{"uid":1.5}}]', "invalid_field"),
        (b'42["hello",{"user":{"uname":7}}]', "invalid_field"),
        (b'42["hello",{"user":{"uavatar":["x"]}}]', "invalid_field"),
        (b'42["choice",{"choice":2}]', "not_in_match"),  # no game yet
        (b'42["face",{"face":0}]', "invalid_field"),
        (b'42["face",{"face":"1"}]', "invalid_field"),
        (b'42["face",3]', "invalid_field"),
    ],
)
def test_mistakes_become_error_events(frame: bytes, code: str) -> None:
    inbound = LegacyPeer().receive(frame)
    assert inbound.message is None
    assert not inbound.disconnect
    (reply,) = inbound.replies
    name, data = event_of(reply)
    assert name == "error"
    assert data["code"] == code
    assert data["message"]


def test_a_mistake_in_an_acked_event_is_answered_in_the_ack() -> None:
    peer = LegacyPeer()
    assert peer.receive(b'427["dance"]').replies[0].startswith(b'437[{"code":"unknown_type"')
    assert peer.receive(b"428[oops").replies[0].startswith(b'438[{"code":"bad_json"')
    # A client's own ack packet is not an event: its mistake is an error event.
    assert event_of(peer.receive(b"439[oops").replies[0])[1]["code"] == "bad_json"
    assert event_of(peer.receive(b'439["x"]').replies[0])[1]["code"] == "unsupported_frame"


# ---------------------------------------------------------------- events to native messages


def test_hello_declares_the_user_and_the_native_player_gets_what_its_rules_accept() -> None:
    peer = LegacyPeer()
    inbound = peer.receive(
        '42["hello",{"user":{"uid":"oX1","uname":" Wei\\u0007 ","uavatar":"https://wx.qlogo.cn/a"}}]'
    )
    assert inbound.message == Hello(name="Wei", avatar="https://wx.qlogo.cn/a")
    assert peer.user is None  # applied only once the service says hi
    (frame,) = peer.on_server(Hi(player_id=ME, name="Wei", token="t", online=5))
    assert event_of(frame) == ("hi", {"message": "welcome", "nearby": 5})
    assert peer.user == LegacyUser(uid="oX1", uname="Wei", uavatar="https://wx.qlogo.cn/a")
    assert peer.player_id == ME


@pytest.mark.parametrize(
    ("data", "native", "declared"),
    [
        (None, Hello(), LegacyUser(uid=ME, uname="Player 1")),
        ({}, Hello(), LegacyUser(uid=ME, uname="Player 1")),
        ({"user": {"uid": 42}}, Hello(), LegacyUser(uid=42, uname="Player 1")),
        (
            {"user": {"uid": "u", "uname": "x" * 40, "uavatar": "http://insecure/a.png"}},
            Hello(name="x" * 32),
            LegacyUser(uid="u", uname="x" * 32),
        ),
        ({"user": {"uid": "u", "uname": "\x00\x01"}}, Hello(), LegacyUser("u", "Player 1")),
        (
            {"user": {"uid": "u", "uname": "Mallory\u202e\u0000\u0007<img src=x>"}},
            Hello(name="Mallory<img src=x>"),
            LegacyUser("u", "Mallory<img src=x>"),
        ),
        (
            {"user": {"uid": "u", "uname": "Z" + "\u0301" * 30, "uavatar": "http://t.example/"}},
            Hello(name="Z\u0301\u0301\u0301"),
            LegacyUser("u", "Z\u0301\u0301\u0301"),
        ),
    ],
)
def test_hello_variants(data: Any, native: Hello, declared: LegacyUser) -> None:
    peer = LegacyPeer()
    message = peer.translate("hello", data, ack=None)
    assert message == native
    peer.on_server(Hi(player_id=ME, name="Player 1", token="t", online=1))
    assert peer.user == declared


def test_a_refused_second_hello_does_not_change_the_identity() -> None:
    peer = greeted("first")
    peer.translate("hello", {"user": {"uid": "second"}})
    # The service answers already_hello, not hi: the identity stays.
    peer.on_server(Error(code=ErrorCode.ALREADY_HELLO, message="you already said hello"))
    assert peer.user is not None
    assert peer.user.uid == "first"


def test_join_leave_face_and_acks_become_ids() -> None:
    peer = LegacyPeer()
    assert peer.translate("join", None) == Join()
    assert peer.receive(b'423["join",{"anything":1}]').message == Join(id=3)
    assert peer.translate("leave", None, ack=9) == Leave(id=9)
    assert peer.translate("face", {"face": 4}) == Face(face=4)


def test_choices_go_to_the_current_round_and_stay_changeable() -> None:
    peer = greeted()
    peer.on_server(start(), [Standing(ME, 0, 0), Standing(THEM, 0, 0)])
    for raw, choice in (
        (1, Choice.SCISSORS),
        (2, Choice.ROCK),
        (3, Choice.PAPER),
        ("rock", Choice.ROCK),
    ):
        message = peer.translate("choice", {"choice": raw})
        assert message == MakeChoice(match_id="m_1", round=1, choice=choice, final=False)
    for bad in ({"choice": 4}, {"choice": True}, {"choice": None}, {}, 2):
        with pytest.raises(ProtocolError) as caught:
            peer.translate("choice", bad)
        assert caught.value.code is ErrorCode.INVALID_FIELD


# ---------------------------------------------------------------- native messages to events


def test_start_lists_both_players_in_seat_order_with_their_totals() -> None:
    peer = greeted("u-ann", uname="Ann", uavatar="https://a/1.png")
    (frame,) = peer.on_server(start(), [Standing(THEM, 7, 2), Standing(ME, 3, 1)])
    name, data = event_of(frame)
    assert name == "start"
    assert data == {
        "gameTime": 3,
        "roomUsers": [
            {
                "uid": ROBOT,
                "uname": "Robo",
                "uavatar": None,
                "choice": None,
                "roundScore": 0,
                "totalScore": 7,
                "winStreak": 2,
            },
            {
                "uid": "u-ann",
                "uname": "Ann",
                "uavatar": "https://a/1.png",
                "choice": None,
                "roundScore": 0,
                "totalScore": 3,
                "winStreak": 1,
            },
        ],
    }
    (frame,) = peer.on_server(start(round_ms=2500), None)  # no seats known: this player first
    users = event_of(frame)[1]["roomUsers"]
    assert [u["uid"] for u in users] == ["u-ann", ROBOT]
    assert event_of(frame)[1]["gameTime"] == 2.5


def test_another_legacy_player_shows_its_declared_uid_unless_it_took_ours() -> None:
    bob = LegacyUser(uid="u-bob", uname="Bob", uavatar="https://b/1.png")
    human = Opponent(id=THEM, name="Bob", avatar=None, bot=False)
    seats = [Standing(ME, 0, 0), Standing(THEM, 0, 0)]
    peer = greeted("u-ann", lookup={THEM: bob}.get)
    users = event_of(peer.on_server(start(human), seats)[0])[1]["roomUsers"]
    assert [(u["uid"], u["uname"], u["uavatar"]) for u in users] == [
        ("u-ann", "Player 1", None),
        ("u-bob", "Bob", "https://b/1.png"),
    ]
    (movement,) = peer.on_server(Movement(match_id="m_1", round=1, kind=MovementKind.CHOICE))
    assert event_of(movement) == ("movement", {"uid": "u-bob", "movement": "choice"})

    clash = greeted("u-bob", lookup={THEM: bob}.get)
    users = event_of(clash.on_server(start(human), seats)[0])[1]["roomUsers"]
    assert [u["uid"] for u in users] == ["u-bob", THEM]


def test_a_robot_shows_as_the_demos_robots_did() -> None:
    """robot-N (numbered across the app's connections) with a picture; the same robot
    keeps its number through its match; a player who declared a robot's uid never meets
    a robot of that uid (the page would take the robot's entries for its own)."""
    numbers = RobotNumbers()
    picture = "https://game.example.com/applet/avatars/robot.png"
    seats = [Standing(ME, 0, 0), Standing(THEM, 0, 0)]

    def robot_of(peer: LegacyPeer, opponent: Opponent | None = None) -> dict[str, Any]:
        assert peer.user is not None
        users = event_of(peer.on_server(start(opponent), seats)[0])[1]["roomUsers"]
        (entry,) = [u for u in users if u["uid"] != peer.user.uid]
        return dict(entry)

    ann = greeted("u-ann")
    ann.robot_number, ann.robot_avatar = numbers, picture
    first = robot_of(ann)
    assert (first["uid"], first["uname"], first["uavatar"]) == ("robot-1", "Robo", picture)
    assert robot_of(ann)["uid"] == "robot-1"  # the same bot: another round of its match
    (face,) = ann.on_server(Movement(match_id="m_1", round=1, kind=MovementKind.FACE, face=2))
    assert event_of(face)[1]["uid"] == "robot-1"

    bob = greeted("robot-2")
    bob.robot_number, bob.robot_avatar = numbers, picture
    assert robot_of(bob)["uid"] == "robot-3"  # robot-2 is bob's own uid
    other_bot = Opponent(id="bot_2", name="Pebble", avatar="https://cdn.example/p.png", bot=True)
    assert robot_of(ann, other_bot)["uid"] == "robot-4"
    assert robot_of(ann, other_bot)["uavatar"] == "https://cdn.example/p.png"  # its own
    human = Opponent(id=THEM, name="Cy", avatar=None, bot=False)
    assert robot_of(ann, human)["uid"] == THEM  # a native player is no robot
    assert LegacyPeer().robot_avatar is None  # without a picture to give, none


def test_movements() -> None:
    peer = greeted()
    assert peer.on_server(Movement(match_id="m_1", round=1, kind=MovementKind.CHOICE)) == []
    peer.on_server(start(), [Standing(ME, 0, 0), Standing(THEM, 0, 0)])
    (face,) = peer.on_server(Movement(match_id="m_1", round=1, kind=MovementKind.FACE, face=3))
    assert event_of(face) == ("movement", {"uid": ROBOT, "movement": "face", "face": 3})
    for kind in (MovementKind.LEFT, MovementKind.BACK):
        assert peer.on_server(Movement(match_id="m_1", round=1, kind=kind)) == []


@pytest.mark.parametrize(
    ("winner", "mine", "theirs", "seats", "expected"),
    [
        # A win: the winner's round score is its new streak (here 3), the loser's 0.
        (
            Winner.YOU,
            Choice.PAPER,
            Choice.ROCK,
            [Standing(ME, 6, 3), Standing(THEM, 4, 0)],
            [("u-ann", 3, 6, 3, 3), (ROBOT, 0, 4, 0, 2)],
        ),
        (
            Winner.OPPONENT,
            None,
            Choice.SCISSORS,
            [Standing(ME, 5, 0), Standing(THEM, 1, 1)],
            [("u-ann", 0, 5, 0, None), (ROBOT, 1, 1, 1, 1)],
        ),
        (
            Winner.DRAW,
            Choice.ROCK,
            Choice.ROCK,
            [Standing(THEM, 2, 2), Standing(ME, 5, 1)],
            [(ROBOT, 0, 2, 2, 2), ("u-ann", 0, 5, 1, 2)],
        ),
    ],
)
def test_result_entries(
    winner: Winner,
    mine: Choice | None,
    theirs: Choice | None,
    seats: list[Standing],
    expected: list[tuple[Any, ...]],
) -> None:
    peer = greeted()
    peer.on_server(start(), seats)
    own = next(s for s in seats if s.player_id == ME)
    (frame,) = peer.on_server(final(mine, theirs, winner, own.total_score, own.win_streak), seats)
    name, data = event_of(frame)
    assert name == "result"
    assert [
        (e["uid"], e["roundScore"], e["totalScore"], e["winStreak"], e["choice"])
        for e in data["result"]
    ] == expected
    # The game is over: the next choice has no round to go to.
    with pytest.raises(ProtocolError) as caught:
        peer.translate("choice", {"choice": 1})
    assert caught.value.code is ErrorCode.NOT_IN_MATCH


def test_result_without_seats_uses_its_own_totals_and_the_opponents_from_the_start() -> None:
    peer = greeted()
    peer.on_server(start(), [Standing(ME, 1, 1), Standing(THEM, 9, 4)])
    (frame,) = peer.on_server(final(Choice.ROCK, Choice.SCISSORS, Winner.YOU, 3, 2), None)
    assert [
        (e["uid"], e["roundScore"], e["totalScore"], e["winStreak"])
        for e in event_of(frame)[1]["result"]
    ] == [("u-ann", 2, 3, 2), (ROBOT, 0, 9, 4)]


def test_a_round_that_does_not_end_the_match_scores_nothing() -> None:
    peer = greeted()
    seats = [Standing(ME, 0, 0), Standing(THEM, 0, 0)]
    peer.on_server(start(), seats)
    result = Result(
        match_id="m_1",
        round=1,
        you=Choice.ROCK,
        opponent=Choice.SCISSORS,
        outcome=Outcome.WIN,
        score=Score(you=1, opponent=0),
    )
    entries = event_of(peer.on_server(result, seats)[0])[1]["result"]
    assert [e["roundScore"] for e in entries] == [0, 0]
    assert isinstance(peer.translate("choice", {"choice": 2}), MakeChoice)  # still playing


def test_errors_byes_and_messages_the_demo_never_had() -> None:
    peer = greeted()
    (frame,) = peer.on_server(Error(code=ErrorCode.NOT_IN_MATCH, message="you are not in a match"))
    assert event_of(frame) == (
        "error",
        {"code": "not_in_match", "message": "you are not in a match"},
    )
    (frame,) = peer.on_server(Bye(reason="shutdown"))
    assert event_of(frame) == ("bye", {"reason": "shutdown"})
    for silent in (Queued(waiting=1), Left(), Pong(t=1)):
        assert peer.on_server(silent) == []


def test_acks_carry_the_outcome_and_swallow_their_error_event() -> None:
    peer = greeted()
    peer.await_ack(5)
    assert peer.on_server(Error(code=ErrorCode.ALREADY_QUEUED, message="queued", ref=5)) == []
    other = peer.on_server(Error(code=ErrorCode.RATE_LIMITED, message="slow down"))
    assert event_of(other[0])[0] == "error"  # not this message's error: an event as usual
    assert peer.settle_ack() == [b'435[{"code":"already_queued","message":"queued"}]']
    peer.await_ack(6)
    assert peer.settle_ack() == [b"436[null]"]
    peer.await_ack(None)
    assert peer.settle_ack() == []


# ---------------------------------------------------------------- the demo's scoring


def demo_scoring(outcomes: list[Outcome]) -> list[tuple[int, int, int]]:
    """The 2016 demo's arithmetic, as written down in the seed notes: (roundScore,
    totalScore, winStreak) after each game for one player."""
    total = streak = 0
    out = []
    for outcome in outcomes:
        round_score = {Outcome.WIN: 1, Outcome.LOSE: -1, Outcome.DRAW: 0}[outcome]
        if round_score > 0:
            streak += 1
            round_score *= streak
        elif round_score < 0:
            round_score = 0
            streak = 0
        total += round_score
        out.append((round_score, total, streak))
    return out


@given(st.lists(st.sampled_from(list(Outcome)), max_size=30))
def test_settle_is_the_demos_arithmetic(outcomes: list[Outcome]) -> None:
    mine, theirs = PlayerStats(), PlayerStats()
    seen = []
    for outcome in outcomes:
        if outcome is Outcome.DRAW:
            settle(mine, theirs, draw=True)
        elif outcome is Outcome.WIN:
            settle(mine, theirs)
        else:
            settle(theirs, mine)
        # The adapter's round score: the new streak for the winner, else 0.
        round_score = mine.win_streak if outcome is Outcome.WIN else 0
        seen.append((round_score, mine.total_score, mine.win_streak))
    assert seen == demo_scoring(outcomes)


# ---------------------------------------------------------------- properties

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
prefixes = st.sampled_from(["", "2", "3", "4", "40", "41", "42", "43", "44", "45", "42/x,", "4212"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
events = st.sampled_from(["hello", "join", "leave", "choice", "face", "dance", ""])


@FUZZ
@given(prefixes, any_text)
def test_any_text_parses_or_raises_protocol_error(prefix: str, text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_frame(prefix + text)


@FUZZ
@given(st.binary(max_size=60))
def test_any_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_frame(data)


@FUZZ
@given(st.booleans(), events, json_values)
def test_any_event_translates_or_raises_protocol_error(
    in_game: bool, event: str, data: Any
) -> None:
    peer = greeted()
    if in_game:
        peer.on_server(start(), [Standing(ME, 0, 0), Standing(THEM, 0, 0)])
    error: ProtocolError | None = None
    try:
        peer.translate(event, data, ack=1)
    except ProtocolError as exc:
        error = exc
    assert error is None or error.ref == 1  # errors name the acked message


@FUZZ
@given(
    st.one_of(prefixes.map(str.encode), st.just(b"42")),
    st.binary(max_size=40) | json_values.map(lambda value: json.dumps(value).encode()),
)
def test_receive_never_raises_and_answers_in_packets(prefix: bytes, rest: bytes) -> None:
    inbound = LegacyPeer().receive(prefix + rest)
    for reply in inbound.replies:
        parse_frame(reply)  # whatever the server answers is itself a well-formed packet
