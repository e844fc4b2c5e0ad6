"""Every message of wire protocol v1 as a frozen attrs class.

Attribute names are the wire names. Each field's metadata carries the validator the codec
runs on decode (``parse``), whether ``None`` is left out on encode (``omit_none``) and,
for nested objects, the class to build (``nested``). ``protocol/README.md`` is the prose
version of this file; keep both true together.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import attrs

from protocol import fields as f
from protocol.choices import Choice, Outcome
from protocol.errors import ErrorCode, MessageId

PROTOCOL_VERSION = 1


def wire(
    parse: f.Parser | None = None,
    *,
    omit_none: bool = False,
    nested: type | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """``key`` is the wire name where the attribute's cannot be it (``from`` is Python's)."""
    return {"parse": parse, "omit_none": omit_none, "nested": nested, "key": key}


_ID = wire(f.message_id, omit_none=True)
_REF = wire(f.message_id, omit_none=True)


class BotMode(enum.StrEnum):
    """How a ``join`` treats bots: fall back after a wait, play one at once, or never."""

    AUTO = "auto"
    NOW = "now"
    NEVER = "never"


class MovementKind(enum.StrEnum):
    CHOICE = "choice"
    FACE = "face"
    LEFT = "left"  # the opponent's connection dropped; its seat is kept for a grace window
    BACK = "back"  # ... and it came back


class Winner(enum.StrEnum):
    YOU = "you"
    OPPONENT = "opponent"
    DRAW = "draw"


class EndReason(enum.StrEnum):
    ROUNDS = "rounds"
    FORFEIT = "forfeit"
    OPPONENT_LEFT = "opponent_left"
    AFK = "afk"


# ---------------------------------------------------------------- client to server


@attrs.frozen(kw_only=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    name: str | None = attrs.field(default=None, metadata=wire(f.player_name, omit_none=True))
    avatar: str | None = attrs.field(default=None, metadata=wire(f.avatar_url, omit_none=True))
    token: str | None = attrs.field(default=None, metadata=wire(f.token, omit_none=True))
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


@attrs.frozen(kw_only=True)
class Join:
    TYPE: ClassVar[str] = "join"
    bot: BotMode = attrs.field(default=BotMode.AUTO, metadata=wire(f.one_of(BotMode)))
    # A friend's room code (``room``): join that room instead of the queue (``bot`` is
    # then ignored). Any case; a code that is not one is ``room_not_found``.
    room: str | None = attrs.field(
        default=None, metadata=wire(f.text(f.ROOM_CODE_MAX), omit_none=True)
    )
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


@attrs.frozen(kw_only=True)
class MakeChoice:
    TYPE: ClassVar[str] = "choice"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    round: int = attrs.field(metadata=wire(f.integer_in(1, f.ROUND_MAX)))
    choice: Choice = attrs.field(metadata=wire(f.choice))
    final: bool = attrs.field(default=True, metadata=wire(f.boolean))
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


@attrs.frozen(kw_only=True)
class Face:
    TYPE: ClassVar[str] = "face"
    face: int = attrs.field(metadata=wire(f.integer_in(f.FACE_MIN, f.FACE_MAX)))
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


@attrs.frozen(kw_only=True)
class Leave:
    TYPE: ClassVar[str] = "leave"
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


@attrs.frozen(kw_only=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    t: int | float | None = attrs.field(default=None, metadata=wire(f.ping_time, omit_none=True))
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


@attrs.frozen(kw_only=True)
class CreateRoom:
    """Open a private room: the server answers ``room`` with a code to give a friend."""

    TYPE: ClassVar[str] = "create_room"
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


@attrs.frozen(kw_only=True)
class Rematch:
    """Ask for (or accept) another match against the opponent of ``match_id``."""

    TYPE: ClassVar[str] = "rematch"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    id: MessageId | None = attrs.field(default=None, metadata=_ID)


ClientMessage = Hello | Join | MakeChoice | Face | Leave | Ping | CreateRoom | Rematch
CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    Hello,
    Join,
    MakeChoice,
    Face,
    Leave,
    Ping,
    CreateRoom,
    Rematch,
)


# ---------------------------------------------------------------- server to client


@attrs.frozen(kw_only=True)
class Opponent:
    id: str = attrs.field(metadata=wire(f.text()))
    name: str = attrs.field(metadata=wire(f.text()))
    avatar: str | None = attrs.field(default=None, metadata=wire(f.nullable(f.text(f.AVATAR_MAX))))
    bot: bool = attrs.field(default=False, metadata=wire(f.boolean))
    # Its Glicko-2 rating when the match began (a house bot's is fixed); omitted only by
    # servers older than ratings.
    rating: int | None = attrs.field(default=None, metadata=wire(f.integer, omit_none=True))


@attrs.frozen(kw_only=True)
class Score:
    you: int = attrs.field(metadata=wire(f.non_negative))
    opponent: int = attrs.field(metadata=wire(f.non_negative))

    @property
    def mirrored(self) -> Score:
        return Score(you=self.opponent, opponent=self.you)


@attrs.frozen(kw_only=True)
class Hi:
    TYPE: ClassVar[str] = "hi"
    player_id: str = attrs.field(metadata=wire(f.text()))
    name: str = attrs.field(metadata=wire(f.text()))
    token: str = attrs.field(metadata=wire(f.token))
    online: int = attrs.field(metadata=wire(f.non_negative))
    # Your Glicko-2 rating (§6.8); omitted only by servers older than ratings.
    rating: int | None = attrs.field(default=None, metadata=wire(f.integer, omit_none=True))
    protocol: int = attrs.field(default=PROTOCOL_VERSION, metadata=wire(f.non_negative))
    ref: MessageId | None = attrs.field(default=None, metadata=_REF)


@attrs.frozen(kw_only=True)
class Queued:
    TYPE: ClassVar[str] = "queued"
    waiting: int = attrs.field(metadata=wire(f.non_negative))
    ref: MessageId | None = attrs.field(default=None, metadata=_REF)


@attrs.frozen(kw_only=True)
class Start:
    TYPE: ClassVar[str] = "start"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    round: int = attrs.field(metadata=wire(f.integer_in(1, f.ROUND_MAX)))
    best_of: int = attrs.field(metadata=wire(f.integer_in(1, f.ROUND_MAX)))
    round_ms: int = attrs.field(metadata=wire(f.non_negative))
    opponent: Opponent = attrs.field(metadata=wire(nested=Opponent))
    score: Score = attrs.field(metadata=wire(nested=Score))


@attrs.frozen(kw_only=True)
class Movement:
    TYPE: ClassVar[str] = "movement"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    round: int = attrs.field(metadata=wire(f.integer_in(1, f.ROUND_MAX)))
    kind: MovementKind = attrs.field(metadata=wire(f.one_of(MovementKind)))
    face: int | None = attrs.field(
        default=None, metadata=wire(f.integer_in(f.FACE_MIN, f.FACE_MAX), omit_none=True)
    )


@attrs.frozen(kw_only=True)
class Result:
    TYPE: ClassVar[str] = "result"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    round: int = attrs.field(metadata=wire(f.integer_in(1, f.ROUND_MAX)))
    you: Choice | None = attrs.field(metadata=wire(f.optional_choice))
    opponent: Choice | None = attrs.field(metadata=wire(f.optional_choice))
    outcome: Outcome = attrs.field(metadata=wire(f.one_of(Outcome)))
    score: Score = attrs.field(metadata=wire(nested=Score))
    match_over: bool = attrs.field(default=False, metadata=wire(f.boolean))
    winner: Winner | None = attrs.field(
        default=None, metadata=wire(f.one_of(Winner), omit_none=True)
    )
    reason: EndReason | None = attrs.field(
        default=None, metadata=wire(f.one_of(EndReason), omit_none=True)
    )
    total_score: int | None = attrs.field(
        default=None, metadata=wire(f.non_negative, omit_none=True)
    )
    win_streak: int | None = attrs.field(
        default=None, metadata=wire(f.non_negative, omit_none=True)
    )
    # On the final result only: the rating after the match, and what the match changed
    # (shown before + change = shown after).
    rating: int | None = attrs.field(default=None, metadata=wire(f.integer, omit_none=True))
    rating_change: int | None = attrs.field(default=None, metadata=wire(f.integer, omit_none=True))


@attrs.frozen(kw_only=True)
class Resume:
    """Where the match stands, for a player who reconnected (or replaced its connection)."""

    TYPE: ClassVar[str] = "resume"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    round: int = attrs.field(metadata=wire(f.integer_in(1, f.ROUND_MAX)))
    best_of: int = attrs.field(metadata=wire(f.integer_in(1, f.ROUND_MAX)))
    round_ms: int = attrs.field(metadata=wire(f.non_negative))
    deadline_ms: int = attrs.field(metadata=wire(f.non_negative))  # 0 between rounds
    opponent: Opponent = attrs.field(metadata=wire(nested=Opponent))
    opponent_away: bool = attrs.field(metadata=wire(f.boolean))
    score: Score = attrs.field(metadata=wire(nested=Score))
    choice: Choice | None = attrs.field(
        default=None, metadata=wire(f.optional_choice, omit_none=True)
    )
    final: bool = attrs.field(default=False, metadata=wire(f.boolean))


@attrs.frozen(kw_only=True)
class Left:
    TYPE: ClassVar[str] = "left"
    ref: MessageId | None = attrs.field(default=None, metadata=_REF)


@attrs.frozen(kw_only=True)
class Pong:
    TYPE: ClassVar[str] = "pong"
    t: int | float = attrs.field(metadata=wire(f.number))
    ref: MessageId | None = attrs.field(default=None, metadata=_REF)


@attrs.frozen(kw_only=True)
class Bye:
    TYPE: ClassVar[str] = "bye"
    reason: str = attrs.field(metadata=wire(f.text()))


@attrs.frozen(kw_only=True)
class Error:
    TYPE: ClassVar[str] = "error"
    code: ErrorCode = attrs.field(metadata=wire(f.one_of(ErrorCode)))
    message: str = attrs.field(metadata=wire(f.text(1024)))
    ref: MessageId | None = attrs.field(default=None, metadata=_REF)


class RoomClosedReason(enum.StrEnum):
    EXPIRED = "expired"  # nobody came with the code within ``expires_in``


class RematchFrom(enum.StrEnum):
    OPPONENT = "opponent"


class DeclinedReason(enum.StrEnum):
    QUEUED = "queued"  # the opponent joined the queue or opened a room instead
    LEFT = "left"  # it sent ``leave``
    GONE = "gone"  # its connection went and did not come back in time
    TIMEOUT = "timeout"  # the rematch window closed before both asked
    UNAVAILABLE = "unavailable"  # a cluster's players held by two processes (§6.9)


@attrs.frozen(kw_only=True)
class RoomOpened:
    """Your private room: give ``code`` to a friend, who sends ``join {room: code}``."""

    TYPE: ClassVar[str] = "room"
    code: str = attrs.field(metadata=wire(f.text(f.ROOM_CODE_MAX)))
    expires_in: int = attrs.field(metadata=wire(f.non_negative))  # seconds
    ref: MessageId | None = attrs.field(default=None, metadata=_REF)


@attrs.frozen(kw_only=True)
class RoomClosed:
    """Your room closed without a friend: you are no longer waiting."""

    TYPE: ClassVar[str] = "room_closed"
    code: str = attrs.field(metadata=wire(f.text(f.ROOM_CODE_MAX)))
    reason: RoomClosedReason = attrs.field(metadata=wire(f.one_of(RoomClosedReason)))


@attrs.frozen(kw_only=True)
class RematchOffer:
    """Your last opponent asks for a rematch: send ``rematch {match_id}`` to accept."""

    TYPE: ClassVar[str] = "rematch"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    from_: RematchFrom = attrs.field(
        default=RematchFrom.OPPONENT, metadata=wire(f.one_of(RematchFrom), key="from")
    )


@attrs.frozen(kw_only=True)
class RematchDeclined:
    TYPE: ClassVar[str] = "rematch_declined"
    match_id: str = attrs.field(metadata=wire(f.text(f.MATCH_ID_MAX)))
    reason: DeclinedReason = attrs.field(metadata=wire(f.one_of(DeclinedReason)))


ServerMessage = (
    Hi
    | Queued
    | Start
    | Movement
    | Result
    | Resume
    | Left
    | Pong
    | Bye
    | Error
    | RoomOpened
    | RoomClosed
    | RematchOffer
    | RematchDeclined
)
SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (
    Hi,
    Queued,
    Start,
    Movement,
    Result,
    Resume,
    Left,
    Pong,
    Bye,
    Error,
    RoomOpened,
    RoomClosed,
    RematchOffer,
    RematchDeclined,
)
