"""Unit tests for the wire protocol: round-trips, exact wire shapes, every decode error."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from protocol import (
    CLIENT_MESSAGES,
    LEGACY_NUMBERS,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    BotMode,
    Bye,
    Choice,
    ClientMessage,
    CreateRoom,
    DeclinedReason,
    EndReason,
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
    Ping,
    Pong,
    ProtocolError,
    Queued,
    Rematch,
    RematchDeclined,
    RematchOffer,
    Result,
    Resume,
    RoomClosed,
    RoomClosedReason,
    RoomOpened,
    Score,
    ServerMessage,
    Start,
    Winner,
    decode_client,
    decode_server,
    encode,
    judge,
    to_wire,
)

ROCK, PAPER, SCISSORS = Choice.ROCK, Choice.PAPER, Choice.SCISSORS

# ---------------------------------------------------------------- sample messages

CLIENT_SAMPLES: list[ClientMessage] = [
    Hello(),
    Hello(name="Alice", avatar="https://cdn.example.com/a.png", token="tok-123", id="h1"),
    Hello(name="名字 with spaces", id=7),
    Join(),
    Join(bot=BotMode.NOW, id="j"),
    Join(bot=BotMode.NEVER),
    MakeChoice(match_id="m-1", round=1, choice=ROCK),
    MakeChoice(match_id="m-1", round=10_000, choice=SCISSORS, final=False, id=-(2**53) + 1),
    MakeChoice(match_id="x" * 64, round=3, choice=PAPER, id="i" * 64),
    Face(face=1),
    Face(face=4, id=0),
    Leave(),
    Leave(id=""),
    Ping(),
    Ping(t=0),
    Ping(t=1_700_000_000_123, id="p"),
    Ping(t=12.5),
    Ping(t=-9.0e18),
    Join(room="K7XQ2M", id="j2"),
    CreateRoom(),
    CreateRoom(id=3),
    Rematch(match_id="m-1"),
    Rematch(match_id="m-1", id="r"),
]

OPPONENT = Opponent(id="p-2", name="Bob", avatar="https://x.example/b.png", bot=False)
BOT_OPPONENT = Opponent(id="bot-1", name="Robo", bot=True)

SERVER_SAMPLES: list[ServerMessage] = [
    Hi(player_id="p-1", name="Alice", token="secret", online=0),
    Hi(player_id="p-1", name="Alice", token="secret", online=42, protocol=1, ref="h1"),
    Queued(waiting=0),
    Queued(waiting=3, ref=9),
    Start(
        match_id="m-1",
        round=1,
        best_of=3,
        round_ms=10_000,
        opponent=OPPONENT,
        score=Score(you=0, opponent=0),
    ),
    Start(
        match_id="m-2",
        round=2,
        best_of=5,
        round_ms=0,
        opponent=BOT_OPPONENT,
        score=Score(you=1, opponent=0),
    ),
    Movement(match_id="m-1", round=1, kind=MovementKind.CHOICE),
    Movement(match_id="m-1", round=2, kind=MovementKind.FACE, face=3),
    Movement(match_id="m-1", round=2, kind=MovementKind.LEFT),
    Movement(match_id="m-1", round=3, kind=MovementKind.BACK),
    Resume(
        match_id="m-1",
        round=2,
        best_of=3,
        round_ms=5000,
        deadline_ms=3120,
        opponent=OPPONENT,
        opponent_away=False,
        score=Score(you=1, opponent=0),
        choice=ROCK,
        final=True,
    ),
    Resume(
        match_id="m-1",
        round=3,
        best_of=3,
        round_ms=5000,
        deadline_ms=0,
        opponent=BOT_OPPONENT,
        opponent_away=True,
        score=Score(you=1, opponent=1),
    ),
    Result(
        match_id="m-1",
        round=1,
        you=ROCK,
        opponent=SCISSORS,
        outcome=Outcome.WIN,
        score=Score(you=1, opponent=0),
    ),
    Result(
        match_id="m-1",
        round=2,
        you=None,
        opponent=None,
        outcome=Outcome.DRAW,
        score=Score(you=1, opponent=0),
    ),
    Result(
        match_id="m-1",
        round=3,
        you=PAPER,
        opponent=None,
        outcome=Outcome.WIN,
        score=Score(you=2, opponent=0),
        match_over=True,
        winner=Winner.YOU,
        reason=EndReason.ROUNDS,
        total_score=120,
        win_streak=4,
    ),
    Result(
        match_id="m-9",
        round=1,
        you=None,
        opponent=ROCK,
        outcome=Outcome.LOSE,
        score=Score(you=0, opponent=1),
        match_over=True,
        winner=Winner.OPPONENT,
        reason=EndReason.AFK,
    ),
    Left(),
    Left(ref="l"),
    Pong(t=5),
    Pong(t=1.25, ref=3),
    Bye(reason="server shutting down"),
    Error(code=ErrorCode.WRONG_ROUND, message="round 3 is over"),
    Error(code=ErrorCode.INVALID_FIELD, message="face.face must be 1-4", ref="x"),
    RoomOpened(code="K7XQ2M", expires_in=600, ref=3),
    RoomClosed(code="K7XQ2M", reason=RoomClosedReason.EXPIRED),
    RematchOffer(match_id="m-1"),
    RematchDeclined(match_id="m-1", reason=DeclinedReason.TIMEOUT),
]


def _id(message: object) -> str:
    return type(message).__name__


def decode_error(data: bytes | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client(data)
    return info.value


def client_error(obj: Any) -> ProtocolError:
    return decode_error(json.dumps(obj))


# ---------------------------------------------------------------- round-trips


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in CLIENT_SAMPLES} == set(CLIENT_MESSAGES)
    assert {type(m) for m in SERVER_SAMPLES} == set(SERVER_MESSAGES)


@pytest.mark.parametrize("message", CLIENT_SAMPLES, ids=_id)
def test_client_message_round_trips(message: ClientMessage) -> None:
    data = encode(message)
    assert isinstance(data, bytes)
    assert decode_client(data) == message
    assert decode_client(data.decode()) == message
    assert orjson.loads(data) == to_wire(message)


@pytest.mark.parametrize("message", SERVER_SAMPLES, ids=_id)
def test_server_message_round_trips(message: ServerMessage) -> None:
    data = encode(message)
    assert decode_server(data) == message
    assert decode_server(data.decode()) == message
    assert orjson.loads(data) == to_wire(message)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ('{"type": "hello"}', Hello()),
        (
            '{"type":"hello","name":"  Alice ","avatar":"https://img.example.com/a.png?s=64",'
            '"token":"abc.DEF-123","id":"h-1"}',
            Hello(
                name="Alice",
                avatar="https://img.example.com/a.png?s=64",
                token="abc.DEF-123",
                id="h-1",
            ),
        ),
        ('{"type":"join"}', Join(bot=BotMode.AUTO)),
        ('{"type":"join","bot":"now","id":2}', Join(bot=BotMode.NOW, id=2)),
        ('{"type":"join","bot":"never"}', Join(bot=BotMode.NEVER)),
        (
            '{"type":"choice","match_id":"m-42","round":2,"choice":"paper"}',
            MakeChoice(match_id="m-42", round=2, choice=PAPER, final=True),
        ),
        (
            '{"type":"choice","match_id":"m-42","round":1,"choice":"rock","final":false,"id":"c"}',
            MakeChoice(match_id="m-42", round=1, choice=ROCK, final=False, id="c"),
        ),
        (
            '{"type":"choice","match_id":"m","round":5,"choice":1}',
            MakeChoice(match_id="m", round=5, choice=SCISSORS),
        ),
        ('{"type":"face","face":2}', Face(face=2)),
        ('{"type":"leave"}', Leave()),
        ('{"type":"leave","id":"bye-now"}', Leave(id="bye-now")),
        ('{"type":"ping"}', Ping()),
        ('{"type":"ping","t":1700000000123}', Ping(t=1_700_000_000_123)),
        ('{"type":"ping","t":0.5,"id":99}', Ping(t=0.5, id=99)),
        (' \n{"type" : "ping" }\n ', Ping()),
    ],
)
def test_decode_hand_written_client_literal(literal: str, expected: ClientMessage) -> None:
    message = decode_client(literal)
    assert message == expected
    assert decode_client(literal.encode()) == expected


def test_decoded_literal_has_typed_fields() -> None:
    message = decode_client('{"type":"choice","match_id":"m","round":3,"choice":2,"id":"q"}')
    assert isinstance(message, MakeChoice)
    assert message.choice is Choice.ROCK
    assert message.round == 3
    assert message.final is True
    assert message.id == "q"

    join = decode_client(b'{"type":"join","bot":"never"}')
    assert isinstance(join, Join)
    assert join.bot is BotMode.NEVER

    ping = decode_client('{"type":"ping","t":1.5}')
    assert isinstance(ping, Ping)
    assert ping.t == 1.5
    assert isinstance(ping.t, float)


def test_decode_server_literal() -> None:
    message = decode_server(
        '{"type":"result","match_id":"m","round":1,"you":null,"opponent":3,'
        '"outcome":"lose","score":{"you":0,"opponent":1},"match_over":false,"extra":1}'
    )
    assert message == Result(
        match_id="m",
        round=1,
        you=None,
        opponent=PAPER,
        outcome=Outcome.LOSE,
        score=Score(you=0, opponent=1),
    )
    assert isinstance(message, Result)
    assert message.opponent is Choice.PAPER


# ---------------------------------------------------------------- wire shapes


def test_result_mid_match_wire_shape() -> None:
    message = Result(
        match_id="m-1",
        round=2,
        you=None,
        opponent=ROCK,
        outcome=Outcome.LOSE,
        score=Score(you=0, opponent=2),
    )
    wire = to_wire(message)
    assert wire == {
        "type": "result",
        "match_id": "m-1",
        "round": 2,
        "you": None,
        "opponent": "rock",
        "outcome": "lose",
        "score": {"you": 0, "opponent": 2},
        "match_over": False,
    }
    assert next(iter(wire)) == "type"
    for key in ("winner", "reason", "total_score", "win_streak"):
        assert key not in wire
    assert wire["match_over"] is False
    assert type(wire["opponent"]) is str
    assert type(wire["outcome"]) is str
    assert encode(message) == (
        b'{"type":"result","match_id":"m-1","round":2,"you":null,"opponent":"rock",'
        b'"outcome":"lose","score":{"you":0,"opponent":2},"match_over":false}'
    )


def test_result_match_over_wire_shape() -> None:
    message = Result(
        match_id="m-1",
        round=3,
        you=PAPER,
        opponent=ROCK,
        outcome=Outcome.WIN,
        score=Score(you=2, opponent=1),
        match_over=True,
        winner=Winner.YOU,
        reason=EndReason.ROUNDS,
        total_score=150,
        win_streak=2,
    )
    wire = to_wire(message)
    assert list(wire) == [
        "type",
        "match_id",
        "round",
        "you",
        "opponent",
        "outcome",
        "score",
        "match_over",
        "winner",
        "reason",
        "total_score",
        "win_streak",
    ]
    assert wire == {
        "type": "result",
        "match_id": "m-1",
        "round": 3,
        "you": "paper",
        "opponent": "rock",
        "outcome": "win",
        "score": {"you": 2, "opponent": 1},
        "match_over": True,
        "winner": "you",
        "reason": "rounds",
        "total_score": 150,
        "win_streak": 2,
    }
    assert wire["match_over"] is True
    for key in ("you", "opponent", "outcome", "winner", "reason"):
        assert type(wire[key]) is str, key


def test_the_rematch_offer_says_from_on_the_wire() -> None:
    # ``from`` is a Python keyword: the attribute is ``from_``, the wire name is not.
    assert to_wire(RematchOffer(match_id="m")) == {
        "type": "rematch",
        "match_id": "m",
        "from": "opponent",
    }
    assert decode_server('{"type":"rematch","match_id":"m","from":"opponent"}') == (
        RematchOffer(match_id="m")
    )
    with pytest.raises(ProtocolError, match=r"rematch\.from"):
        decode_server('{"type":"rematch","match_id":"m","from":"me"}')


def test_client_wire_shapes() -> None:
    assert to_wire(Leave()) == {"type": "leave"}
    assert to_wire(Hello()) == {"type": "hello"}
    assert to_wire(Ping()) == {"type": "ping"}
    assert to_wire(Join()) == {"type": "join", "bot": "auto"}
    choice = to_wire(MakeChoice(match_id="m", round=1, choice=SCISSORS, id=4))
    assert choice == {
        "type": "choice",
        "match_id": "m",
        "round": 1,
        "choice": "scissors",
        "final": True,
        "id": 4,
    }
    assert choice["final"] is True
    assert type(choice["choice"]) is str
    assert encode(Face(face=2, id="f")) == b'{"type":"face","face":2,"id":"f"}'


def test_server_wire_shapes() -> None:
    start = to_wire(
        Start(
            match_id="m",
            round=1,
            best_of=3,
            round_ms=8000,
            opponent=BOT_OPPONENT,
            score=Score(you=0, opponent=0),
        )
    )
    assert next(iter(start)) == "type"
    assert start["opponent"] == {"id": "bot-1", "name": "Robo", "avatar": None, "bot": True}
    assert start["opponent"]["bot"] is True
    hi = to_wire(Hi(player_id="p", name="n", token="t", online=1))
    assert hi == {
        "type": "hi",
        "player_id": "p",
        "name": "n",
        "token": "t",
        "online": 1,
        "protocol": PROTOCOL_VERSION,
    }
    assert to_wire(Movement(match_id="m", round=1, kind=MovementKind.CHOICE)) == {
        "type": "movement",
        "match_id": "m",
        "round": 1,
        "kind": "choice",
    }
    error = to_wire(Error(code=ErrorCode.BAD_JSON, message="nope", ref=5))
    assert error == {"type": "error", "code": "bad_json", "message": "nope", "ref": 5}
    assert type(error["code"]) is str
    assert to_wire(Left()) == {"type": "left"}
    assert to_wire(Pong(t=1, ref="r")) == {"type": "pong", "t": 1, "ref": "r"}


# ---------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    "data",
    [
        b"",
        "",
        "{",
        "not json",
        '{"type":"ping",}',
        "{'type':'ping'}",
        '{"type":"ping"} {"type":"ping"}',
        '{"type":"ping","t":NaN}',
        '{"type":"ping","t":Infinity}',
        '{"type":"ping","t":1e400}',
        b'{"type":"hello","name":"\xff"}',
        b"\xc3\x28",
        b'{"type":"leave","id":"\xed\xa0\x80"}',
        '{"type":"leave","id":"\ud800"}',
        '{"type":"leave","id":"\\ud800"}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_bad_json(data: bytes | str) -> None:
    error = decode_error(data)
    assert error.code is ErrorCode.BAD_JSON
    assert error.ref is None


@pytest.mark.parametrize("data", ["[]", '[{"type":"ping"}]', "1", "-2.5", '"ping"', "null", "true"])
def test_not_an_object(data: str) -> None:
    error = decode_error(data)
    assert error.code is ErrorCode.NOT_AN_OBJECT
    assert error.ref is None


@pytest.mark.parametrize(
    ("obj", "ref"),
    [
        ({"type": "dance"}, None),
        ({"type": "dance", "id": 5}, 5),
        ({"type": "", "id": "e"}, "e"),
        ({"type": "Hello"}, None),
        ({"type": "hi", "id": "s"}, "s"),  # a server message type is unknown to the server
        ({"type": "result"}, None),
    ],
)
def test_unknown_type(obj: dict[str, Any], ref: object) -> None:
    error = client_error(obj)
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.ref == ref
    assert type(error.ref) is type(ref)


@pytest.mark.parametrize(
    ("obj", "ref"),
    [
        # the type itself
        ({}, None),
        ({"id": "x"}, "x"),
        ({"type": None, "id": 1}, 1),
        ({"type": 1}, None),
        ({"type": ["ping"], "id": "l"}, "l"),
        ({"type": {"ping": 1}}, None),
        # required fields
        ({"type": "face", "id": "x"}, "x"),
        ({"type": "choice", "round": 1, "choice": "rock", "id": 3}, 3),
        ({"type": "choice", "match_id": "m", "choice": "rock"}, None),
        ({"type": "choice", "match_id": "m", "round": 1}, None),
        # wrong type or range
        ({"type": "face", "face": 9, "id": "x"}, "x"),
        ({"type": "face", "face": 0}, None),
        ({"type": "face", "face": 5}, None),
        ({"type": "face", "face": "1"}, None),
        ({"type": "face", "face": 1.0}, None),
        ({"type": "face", "face": True, "id": "b"}, "b"),
        ({"type": "choice", "match_id": "m", "round": True, "choice": "rock", "id": "r"}, "r"),
        ({"type": "choice", "match_id": "m", "round": 0, "choice": "rock"}, None),
        ({"type": "choice", "match_id": "m", "round": -1, "choice": "rock"}, None),
        ({"type": "choice", "match_id": "m", "round": 10_001, "choice": "rock"}, None),
        ({"type": "choice", "match_id": "m", "round": 1.5, "choice": "rock"}, None),
        ({"type": "choice", "match_id": "m", "round": "1", "choice": "rock"}, None),
        ({"type": "choice", "match_id": "", "round": 1, "choice": "rock"}, None),
        ({"type": "choice", "match_id": "m" * 65, "round": 1, "choice": "rock"}, None),
        ({"type": "choice", "match_id": 12, "round": 1, "choice": "rock"}, None),
        ({"type": "choice", "match_id": "m", "round": 1, "choice": "lizard"}, None),
        ({"type": "choice", "match_id": "m", "round": 1, "choice": None}, None),
        ({"type": "choice", "match_id": "m", "round": 1, "choice": "rock", "final": 1}, None),
        ({"type": "choice", "match_id": "m", "round": 1, "choice": "rock", "final": "no"}, None),
        ({"type": "join", "bot": "sometimes", "id": 8}, 8),
        ({"type": "join", "bot": True}, None),
        ({"type": "join", "bot": ["auto"]}, None),
        ({"type": "ping", "t": "now", "id": "t"}, "t"),
        ({"type": "ping", "t": True}, None),
        ({"type": "ping", "t": [1]}, None),
        ({"type": "hello", "name": 5, "id": "n"}, "n"),
        ({"type": "hello", "token": 5}, None),
        ({"type": "hello", "token": ""}, None),
        ({"type": "hello", "token": "t" * 513}, None),
        ({"type": "hello", "token": "tök"}, None),
        ({"type": "hello", "token": "a\nb"}, None),
    ],
)
def test_invalid_field(obj: dict[str, Any], ref: object) -> None:
    error = client_error(obj)
    assert error.code is ErrorCode.INVALID_FIELD
    assert error.ref == ref
    assert type(error.ref) is type(ref)
    assert error.message


@pytest.mark.parametrize(
    "bad_id",
    [[], ["x"], {"a": 1}, "i" * 65, True, False, 1.5, 1.0, 2**53, -(2**53), 2**70],
)
@pytest.mark.parametrize("kind", ["leave", "ping", "dance"])
def test_bad_id_is_invalid_field(bad_id: object, kind: str) -> None:
    error = client_error({"type": kind, "id": bad_id})
    assert error.code is ErrorCode.INVALID_FIELD
    assert error.ref is None


@pytest.mark.parametrize(
    "good_id", ["", "i" * 64, "😀" * 64, 0, -1, 2**53 - 1, -(2**53) + 1, "id with spaces"]
)
def test_good_ids_are_carried(good_id: str | int) -> None:
    assert decode_client(json.dumps({"type": "leave", "id": good_id})) == Leave(id=good_id)
    error = client_error({"type": "face", "face": 0, "id": good_id})
    assert error.code is ErrorCode.INVALID_FIELD
    assert error.ref == good_id


def test_null_id_is_no_id() -> None:
    assert decode_client('{"type":"leave","id":null}') == Leave()
    assert client_error({"type": "dance", "id": None}).ref is None


@pytest.mark.parametrize(
    ("raw", "expected"), [(1, SCISSORS), (2, ROCK), (3, PAPER)] + [(c.value, c) for c in Choice]
)
def test_choice_values_accepted(raw: object, expected: Choice) -> None:
    message = decode_client(
        json.dumps({"type": "choice", "match_id": "m", "round": 1, "choice": raw})
    )
    assert isinstance(message, MakeChoice)
    assert message.choice is expected


@pytest.mark.parametrize("raw", [0, 4, -1, True, False, 1.0, 2.0, "1", "Rock", "ROCK", "", [1]])
def test_choice_values_rejected(raw: object) -> None:
    error = client_error({"type": "choice", "match_id": "m", "round": 1, "choice": raw, "id": 1})
    assert error.code is ErrorCode.INVALID_FIELD
    assert error.ref == 1


def test_legacy_numbers_table() -> None:
    assert LEGACY_NUMBERS == {1: SCISSORS, 2: ROCK, 3: PAPER}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A", "A"),
        ("n" * 32, "n" * 32),
        ("  " + "n" * 32 + "\t\n ", "n" * 32),
        ("  Bob  ", "Bob"),
        ("Anne Marie", "Anne Marie"),
        ("小明", "小明"),
        ("émile 😀", "émile 😀"),
        ("Nguye\u0302\u0303n", "Nguye\u0302\u0303n"),  # Vietnamese, decomposed: two marks
        ("\u0e01\u0e35\u0e49", "\u0e01\u0e35\u0e49"),  # Thai: a vowel and a tone mark
    ],
)
def test_name_accepted(raw: str, expected: str) -> None:
    message = decode_client(json.dumps({"type": "hello", "name": raw}))
    assert message == Hello(name=expected)


@pytest.mark.parametrize(
    "raw",
    [
        "n" * 33,
        "",
        " ",
        "   \t\n  ",
        "\u3000",
        "bad\x00name",
        "bell\x07",
        "two\nlines",
        "tab\there",
        "zero\u200bwidth",
        "nb\u00a0sp",
        "Mallory\u202ereversed",  # bidi override
        "Z" + "\u0301" * 4,  # four combining marks on one letter
        "\u0301" * 32,  # nothing but marks
        ["Bob"],
    ],
)
def test_name_rejected(raw: object) -> None:
    error = client_error({"type": "hello", "name": raw, "id": "h"})
    assert error.code is ErrorCode.INVALID_FIELD
    assert error.ref == "h"


@pytest.mark.parametrize(
    "raw",
    [
        "https://example.com",
        "https://example.com/a.png",
        "https://cdn.example.com:8443/u/1/avatar.jpg?size=64#x",
        "https://example.com/" + "a" * (512 - len("https://example.com/")),
    ],
)
def test_avatar_accepted(raw: str) -> None:
    assert decode_client(json.dumps({"type": "hello", "avatar": raw})) == Hello(avatar=raw)


@pytest.mark.parametrize(
    "raw",
    [
        "http://example.com/a.png",
        "https://example.com/" + "a" * (513 - len("https://example.com/")),
        "ftp://example.com/a.png",
        "//example.com/a.png",
        "example.com/a.png",
        "https://",
        "https:///path",
        "https://exa mple.com/a.png",
        "https://example.com/a b.png",
        "https://example.com/\x00",
        " https://example.com/a.png",
        "https://[::1",
        "javascript:alert(1)",
        "",
        5,
    ],
)
def test_avatar_rejected(raw: object) -> None:
    error = client_error({"type": "hello", "avatar": raw, "id": 2})
    assert error.code is ErrorCode.INVALID_FIELD
    assert error.ref == 2


def test_avatar_length_limit_is_exact() -> None:
    base = "https://example.com/"
    ok = base + "a" * (512 - len(base))
    too_long = ok + "a"
    assert len(ok) == 512
    assert len(too_long) == 513
    assert decode_client(json.dumps({"type": "hello", "avatar": ok})) == Hello(avatar=ok)
    assert client_error({"type": "hello", "avatar": too_long}).code is ErrorCode.INVALID_FIELD


def test_unknown_fields_ignored() -> None:
    message = decode_client(
        '{"type":"face","face":3,"colour":"blue","nested":{"a":[1,2,{}]},"FACE":9,"final":7}'
    )
    assert message == Face(face=3)
    assert decode_client('{"type":"leave","x":null,"ref":"r"}') == Leave()


def test_defaults() -> None:
    choice = decode_client('{"type":"choice","match_id":"m","round":1,"choice":"rock"}')
    assert isinstance(choice, MakeChoice)
    assert choice.final is True
    assert choice.id is None
    join = decode_client('{"type":"join"}')
    assert isinstance(join, Join)
    assert join.bot is BotMode.AUTO
    assert MakeChoice(match_id="m", round=1, choice=ROCK).final is True
    assert Join().bot is BotMode.AUTO


def test_error_is_only_protocol_error() -> None:
    error = decode_error("{")
    assert isinstance(error, Exception)
    assert isinstance(error.code, ErrorCode)
    assert "ProtocolError('bad_json'" in repr(error)


def test_decode_server_errors() -> None:
    cases: list[tuple[str, ErrorCode]] = [
        ("{", ErrorCode.BAD_JSON),
        ("[]", ErrorCode.NOT_AN_OBJECT),
        ("{}", ErrorCode.INVALID_FIELD),
        ('{"type":"hello"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"queued"}', ErrorCode.INVALID_FIELD),
        ('{"type":"queued","waiting":-1}', ErrorCode.INVALID_FIELD),
        ('{"type":"pong","t":true}', ErrorCode.INVALID_FIELD),
        ('{"type":"left","ref":[1]}', ErrorCode.INVALID_FIELD),
        ('{"type":"error","code":"nope","message":"m"}', ErrorCode.INVALID_FIELD),
        (
            '{"type":"start","match_id":"m","round":1,"best_of":3,"round_ms":1,'
            '"opponent":"bob","score":{"you":0,"opponent":0}}',
            ErrorCode.INVALID_FIELD,
        ),
        (
            '{"type":"start","match_id":"m","round":1,"best_of":3,"round_ms":1,'
            '"opponent":{"id":"b","name":"B"},"score":{"you":0}}',
            ErrorCode.INVALID_FIELD,
        ),
        (
            '{"type":"result","match_id":"m","round":1,"opponent":"rock",'
            '"outcome":"win","score":{"you":1,"opponent":0}}',
            ErrorCode.INVALID_FIELD,
        ),
    ]
    for data, code in cases:
        with pytest.raises(ProtocolError) as info:
            decode_server(data)
        assert info.value.code is code, data


# ---------------------------------------------------------------- choices


JUDGE_TABLE: list[tuple[Choice | None, Choice | None, Outcome]] = [
    (ROCK, ROCK, Outcome.DRAW),
    (ROCK, PAPER, Outcome.LOSE),
    (ROCK, SCISSORS, Outcome.WIN),
    (ROCK, None, Outcome.WIN),
    (PAPER, ROCK, Outcome.WIN),
    (PAPER, PAPER, Outcome.DRAW),
    (PAPER, SCISSORS, Outcome.LOSE),
    (PAPER, None, Outcome.WIN),
    (SCISSORS, ROCK, Outcome.LOSE),
    (SCISSORS, PAPER, Outcome.WIN),
    (SCISSORS, SCISSORS, Outcome.DRAW),
    (SCISSORS, None, Outcome.WIN),
    (None, ROCK, Outcome.LOSE),
    (None, PAPER, Outcome.LOSE),
    (None, SCISSORS, Outcome.LOSE),
    (None, None, Outcome.DRAW),
]


@pytest.mark.parametrize(("mine", "theirs", "expected"), JUDGE_TABLE)
def test_judge_table(mine: Choice | None, theirs: Choice | None, expected: Outcome) -> None:
    assert judge(mine, theirs) is expected
    assert judge(theirs, mine) is expected.mirrored


def test_judge_table_is_complete() -> None:
    hands = [*Choice, None]
    assert {(m, t) for m, t, _ in JUDGE_TABLE} == {(m, t) for m in hands for t in hands}


def test_choice_relations() -> None:
    assert ROCK.beats is SCISSORS
    assert PAPER.beats is ROCK
    assert SCISSORS.beats is PAPER
    assert ROCK.beaten_by is PAPER
    assert PAPER.beaten_by is SCISSORS
    assert SCISSORS.beaten_by is ROCK
    for hand in Choice:
        assert hand.beats.beaten_by is hand
        assert hand.beaten_by.beats is hand
        assert hand.beats is not hand
        assert hand.beaten_by is not hand
        assert judge(hand, hand.beats) is Outcome.WIN
        assert judge(hand.beaten_by, hand) is Outcome.WIN


def test_choice_legacy_numbers() -> None:
    assert SCISSORS.legacy_number == 1
    assert ROCK.legacy_number == 2
    assert PAPER.legacy_number == 3
    for hand in Choice:
        assert LEGACY_NUMBERS[hand.legacy_number] is hand


def test_choice_wire_words() -> None:
    assert [c.value for c in Choice] == ["rock", "paper", "scissors"]
    assert orjson.dumps(list(Choice)) == b'["rock","paper","scissors"]'


def test_outcome_mirrored() -> None:
    assert Outcome.WIN.mirrored is Outcome.LOSE
    assert Outcome.LOSE.mirrored is Outcome.WIN
    assert Outcome.DRAW.mirrored is Outcome.DRAW
    for outcome in Outcome:
        assert outcome.mirrored.mirrored is outcome


def test_score_mirrored() -> None:
    assert Score(you=2, opponent=1).mirrored == Score(you=1, opponent=2)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type":"hello","name":null,"avatar":null,"token":null}', Hello()),
        ('{"type":"join","bot":null}', Join()),
        ('{"type":"ping","t":null}', Ping()),
        (
            '{"type":"choice","match_id":"m","round":1,"choice":"rock","final":null}',
            MakeChoice(match_id="m", round=1, choice=Choice.ROCK),
        ),
    ],
)
def test_null_on_an_optional_field_means_absent(frame: str, expected: object) -> None:
    assert decode_client(frame) == expected


def test_null_on_a_required_field_is_refused() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client('{"type":"face","face":null}')
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert "face.face" in caught.value.message


def test_lower_bound_only_error_reads_well() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_server('{"type":"queued","waiting":-1}')
    assert caught.value.message == "queued.waiting must be an integer of at least 0"


@pytest.mark.parametrize("t", [0, -1, 1.5, 2**53 + 1, 2**63 - 1, -(2**63) + 1, 1.7e12, 9.2e18])
def test_ping_t_is_echoed_exactly(t: float) -> None:
    message = decode_client(json.dumps({"type": "ping", "t": t}))
    assert message == Ping(t=t)
    assert json.loads(encode(Pong(t=message.t)))["t"] == t


@pytest.mark.parametrize("t", [2**63, 2**64 + 1, -(2**63), 10**30, 1e300])
def test_ping_t_that_cannot_come_back_exactly_is_refused(t: float) -> None:
    error = client_error({"type": "ping", "t": t, "id": "p"})
    assert (error.code, error.ref) == (ErrorCode.INVALID_FIELD, "p")


def test_null_means_absent_on_optional_fields_and_is_invalid_on_required_ones() -> None:
    assert decode_client('{"type": "join", "bot": null, "id": null}') == Join()
    assert decode_client('{"type": "ping", "t": null}') == Ping()
    error = client_error({"type": "choice", "match_id": "m", "round": None, "choice": "rock"})
    assert error.code is ErrorCode.INVALID_FIELD
    assert "choice.round" in error.message
