"""Property tests for the protocol codec: decode never fails with anything but ProtocolError."""

from __future__ import annotations

import json
from typing import Any

import attrs
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    BotMode,
    Choice,
    ClientMessage,
    ErrorCode,
    Face,
    Hello,
    Join,
    Leave,
    MakeChoice,
    Ping,
    ProtocolError,
    ServerMessage,
    decode_client,
    decode_server,
    encode,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=150, deadline=None)

SAFE_INT = 2**53 - 1

# Every text, surrogates included (orjson must refuse those, not crash).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-10, max_value=10)
    | st.integers()
    | st.integers(min_value=2**60, max_value=2**80)
    | st.integers(min_value=-(2**80), max_value=-(2**60))
    | st.floats()
    | st.text(max_size=40)
)

json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

CLIENT_TYPES = [cls.TYPE for cls in CLIENT_MESSAGES]
SERVER_TYPES = [cls.TYPE for cls in SERVER_MESSAGES]
FIELD_NAMES = sorted(
    {a.name for cls in (*CLIENT_MESSAGES, *SERVER_MESSAGES) for a in attrs.fields(cls)}
    | {"id", "type", "ref"}
)

# Values that look right for some field, to get past the first validator more often.
plausible_values = st.sampled_from(
    [
        "rock",
        "paper",
        "scissors",
        1,
        2,
        3,
        4,
        0,
        -1,
        10_000,
        10_001,
        "auto",
        "now",
        "never",
        True,
        False,
        None,
        "m-1",
        "x" * 64,
        "x" * 65,
        "https://example.com/a.png",
        "http://example.com/a.png",
        "  Bob  ",
        " ",
        "",
        1.5,
        2**53,
        -(2**53) + 1,
    ]
)

field_values = plausible_values | json_values

message_dicts = st.builds(
    lambda kind, rest: {"type": kind, **rest},
    st.sampled_from(CLIENT_TYPES) | st.sampled_from(SERVER_TYPES) | json_values,
    st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), field_values, max_size=7),
)


def _is_valid_id(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 64
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= SAFE_INT


def _serialise(value: Any) -> str:
    # The stdlib writes ints of any size and NaN/Infinity; orjson must cope with both.
    return json.dumps(value, ensure_ascii=False)


def _try_client(data: bytes | str) -> ClientMessage | ProtocolError:
    """``decode_client``'s result or the ProtocolError it raised; anything else propagates."""
    try:
        return decode_client(data)
    except ProtocolError as exc:
        return exc


def _try_server(data: bytes | str) -> ServerMessage | ProtocolError:
    try:
        return decode_server(data)
    except ProtocolError as exc:
        return exc


DECODE_CODES = {
    ErrorCode.BAD_JSON,
    ErrorCode.NOT_AN_OBJECT,
    ErrorCode.INVALID_FIELD,
    ErrorCode.UNKNOWN_TYPE,
}


def _check_client(data: bytes | str) -> ClientMessage | ProtocolError:
    outcome = _try_client(data)
    if isinstance(outcome, ProtocolError):
        assert isinstance(outcome.code, ErrorCode)
        assert outcome.code in DECODE_CODES
        assert outcome.ref is None or _is_valid_id(outcome.ref)
        return outcome
    assert isinstance(outcome, CLIENT_MESSAGES)
    # Whatever decodes must encode again and decode to the same message.
    assert decode_client(encode(outcome)) == outcome
    return outcome


def _check_server(data: bytes | str) -> None:
    outcome = _try_server(data)
    if isinstance(outcome, ProtocolError):
        assert isinstance(outcome.code, ErrorCode)
        assert outcome.code in DECODE_CODES
        return
    assert isinstance(outcome, SERVER_MESSAGES)
    assert decode_server(encode(outcome)) == outcome


# ---------------------------------------------------------------- raw input


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    _check_client(data)
    _check_server(data)


@FUZZ
@given(any_text)
def test_arbitrary_text(data: str) -> None:
    _check_client(data)
    _check_server(data)
    _check_client(data.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=60), st.binary(max_size=60))
def test_bytes_spliced_into_a_real_frame(head: bytes, tail: bytes) -> None:
    frame = b'{"type":"choice","match_id":"m","round":1,"choice":"rock","id":"x"}'
    cut = len(head) % len(frame)
    _check_client(frame[:cut] + head + frame[cut:] + tail)


# ---------------------------------------------------------------- JSON input


@FUZZ
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    text = _serialise(value)
    _check_client(text)
    _check_client(text.encode())
    _check_server(text)
    if not isinstance(value, dict):
        outcome = _check_client(text)
        assert isinstance(outcome, ProtocolError)
        assert outcome.code in {ErrorCode.NOT_AN_OBJECT, ErrorCode.BAD_JSON}


@FUZZ
@given(message_dicts)
def test_message_shaped_dicts(obj: dict[str, Any]) -> None:
    text = _serialise(obj)
    outcome = _check_client(text)
    _check_server(text)
    if isinstance(outcome, ProtocolError):
        if outcome.code is ErrorCode.BAD_JSON:
            return  # NaN, Infinity or a float too large: not JSON
        parsed = orjson.loads(text)
        raw_id = parsed.get("id")
        if raw_id is not None and _is_valid_id(raw_id):
            assert outcome.ref == raw_id
        else:
            assert outcome.ref is None
        if outcome.code is ErrorCode.UNKNOWN_TYPE:
            assert parsed["type"] not in CLIENT_TYPES
    else:
        assert obj["type"] == outcome.TYPE
        assert outcome.id == obj.get("id")


# ---------------------------------------------------------------- valid messages

ids = st.none() | st.text(max_size=64) | st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)

names = st.text(
    st.characters(exclude_categories=("C", "Z"), include_characters=" "),
    min_size=1,
    max_size=32,
).filter(lambda s: s == s.strip() and s.isprintable())

hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,10}){1,3}", fullmatch=True)
paths = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~/%", max_size=200
)
avatars = st.builds(lambda host, path: f"https://{host}/{path}", hosts, paths)

tokens = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=512)

# What ping.t accepts: any finite number of magnitude below 2^63 (echoed exactly).
numbers = (
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    | st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)
    | st.floats(
        min_value=-(2.0**63), max_value=2.0**63, exclude_min=True, exclude_max=True, allow_nan=False
    )
)

client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.builds(
        Hello,
        name=st.none() | names,
        avatar=st.none() | avatars,
        token=st.none() | tokens,
        id=ids,
    ),
    st.builds(Join, bot=st.sampled_from(BotMode), id=ids),
    st.builds(
        MakeChoice,
        match_id=st.text(min_size=1, max_size=64),
        round=st.integers(min_value=1, max_value=10_000),
        choice=st.sampled_from(Choice),
        final=st.booleans(),
        id=ids,
    ),
    st.builds(Face, face=st.integers(min_value=1, max_value=4), id=ids),
    st.builds(Leave, id=ids),
    st.builds(Ping, t=st.none() | numbers, id=ids),
)


@ROUND_TRIP
@given(client_messages)
def test_valid_client_messages_round_trip(message: ClientMessage) -> None:
    data = encode(message)
    assert decode_client(data) == message
    assert decode_client(data.decode()) == message


@ROUND_TRIP
@given(client_messages, st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_unknown_fields_never_change_a_valid_message(
    message: ClientMessage, extra: dict[str, Any]
) -> None:
    known = {a.name for a in attrs.fields(type(message))} | {"type"}
    obj = orjson.loads(encode(message))
    obj.update({k: v for k, v in extra.items() if k not in known})
    text = _serialise(obj)
    decoded = _try_client(text)
    if isinstance(decoded, ProtocolError):
        # Only an unparseable extra value (NaN, Infinity, 1e400) may spoil the frame.
        assert decoded.code is ErrorCode.BAD_JSON
    else:
        assert decoded == message
