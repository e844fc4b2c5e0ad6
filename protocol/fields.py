"""Field validators: each turns a raw JSON value into a typed one or raises ``ValueError``.

The message says what was expected in words a client developer can act on; the codec
prefixes it with the message type and field name.
"""

from __future__ import annotations

import enum
import math
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from protocol.choices import LEGACY_NUMBERS, Choice

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
Parser = Callable[[Any], Any]

NAME_MAX = 32
MARKS_MAX = 3  # combining marks on one character (Vietnamese and Thai stack two)
AVATAR_MAX = 512
TOKEN_MAX = 512
ID_MAX = 64
MATCH_ID_MAX = 64
ROUND_MAX = 10_000
FACE_MIN, FACE_MAX = 1, 4
TEXT_MAX = 256
ROOM_CODE_MAX = 16  # a room code as sent (codes are 6 characters; more is simply not one)


def integer(value: Any, low: int | None = None, high: int | None = None) -> int:
    # bool is an int subclass in Python but never one on the wire.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("must be an integer")
    if high is None:
        if low is not None and value < low:
            raise ValueError(f"must be an integer of at least {low}")
    elif (low is not None and value < low) or value > high:
        raise ValueError(f"must be an integer from {low} to {high}")
    return value


def integer_in(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        # The common case in one test; anything else gets integer()'s precise message.
        if type(value) is int and low <= value <= high:
            return value
        return integer(value, low, high)

    return parse


def non_negative(value: Any) -> int:
    return integer(value, 0, None)


def number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


PING_T_MAX = 2**63  # |ping.t| below this: an integer past 64 bits cannot come back exactly


def ping_time(value: Any) -> int | float:
    """A finite number of magnitude below 2^63: one that is echoed back exactly (JSON
    integers past 64 bits would be read, and echoed, as the nearest float)."""
    number_value = number(value)
    if not -PING_T_MAX < number_value < PING_T_MAX:
        raise ValueError("must be a number between -2^63 and 2^63 (exclusive)")
    return number_value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def text(max_len: int = TEXT_MAX) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not 1 <= len(value) <= max_len:
            raise ValueError(f"must be 1-{max_len} characters")
        return value

    return parse


def limit_marks(text: str) -> str:
    """``text`` with at most ``MARKS_MAX`` combining marks on each character."""
    kept, run = [], 0
    for c in text:
        if unicodedata.combining(c):
            run += 1
            if run > MARKS_MAX:
                continue
        else:
            run = 0
        kept.append(c)
    return "".join(kept)


def player_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    name = value.strip()
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise ValueError(f"must be 1-{NAME_MAX} printable characters")
    if limit_marks(name) != name:
        # A tower of combining marks ("Zalgo" text) spills over the lines above and below.
        raise ValueError(f"must have at most {MARKS_MAX} combining marks on a character")
    return name


def avatar_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if len(value) > AVATAR_MAX:
        raise ValueError(f"must be at most {AVATAR_MAX} characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ValueError("must be an https:// URL")
    return value


def token(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= TOKEN_MAX or not value.isascii():
        raise ValueError(f"must be an ASCII string of 1-{TOKEN_MAX} characters")
    if not value.isprintable():
        raise ValueError("must be printable")
    return value


def message_id(value: Any) -> str | int:
    if isinstance(value, str) and len(value) <= ID_MAX:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and -(2**53) < value < 2**53:
        return value
    raise ValueError(f"must be a string of at most {ID_MAX} characters or a safe integer")


_CHOICE_WORDS: dict[str, Choice] = {hand.value: hand for hand in Choice}


def choice(value: Any) -> Choice:
    """Accept the words and the 2016 demo's numbers (1 = scissors, 2 = rock, 3 = paper)."""
    if isinstance(value, str):
        hand = _CHOICE_WORDS.get(value)
        if hand is not None:
            return hand
    elif isinstance(value, int) and not isinstance(value, bool) and value in LEGACY_NUMBERS:
        return LEGACY_NUMBERS[value]
    raise ValueError('must be "rock", "paper" or "scissors" (or 1, 2, 3)')


def optional_choice(value: Any) -> Choice | None:
    return None if value is None else choice(value)


def one_of(enum_type: type[E]) -> Callable[[Any], E]:
    allowed = ", ".join(f'"{member.value}"' for member in enum_type)
    # A dict, not enum_type(value): the enum machinery costs a microsecond per field.
    members: dict[Any, E] = {member.value: member for member in enum_type}

    def parse(value: Any) -> E:
        if isinstance(value, str | int) and not isinstance(value, bool):
            member = members.get(value)
            if member is not None:
                return member
        raise ValueError(f"must be one of {allowed}")

    return parse


def nullable(parse: Callable[[Any], T]) -> Callable[[Any], T | None]:
    return lambda value: None if value is None else parse(value)
