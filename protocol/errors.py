"""Stable error codes. Clients branch on these strings: extend the list, never rename."""

from __future__ import annotations

import enum

MessageId = str | int


class ErrorCode(enum.StrEnum):
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    HELLO_REQUIRED = "hello_required"
    ALREADY_HELLO = "already_hello"
    ALREADY_QUEUED = "already_queued"
    ALREADY_IN_MATCH = "already_in_match"
    NOT_IN_MATCH = "not_in_match"
    WRONG_ROUND = "wrong_round"
    CHOICE_LOCKED = "choice_locked"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED_FRAME = "unsupported_frame"
    INVALID_TOKEN = "invalid_token"
    UNAVAILABLE = "unavailable"
    ROOM_NOT_FOUND = "room_not_found"  # no open room has that code (unknown or expired)
    ROOM_FULL = "room_full"  # a friend already took that room
    OWN_ROOM = "own_room"  # the code of the room you opened yourself
    NO_REMATCH = "no_rematch"  # not a match you just finished, or its window has closed


class CloseCode(enum.IntEnum):
    """The WebSocket close codes the server uses (RFC 6455 section 7.4.1)."""

    NORMAL = 1000  # a goodbye: replaced by a newer connection, or the client asked
    GOING_AWAY = 1001  # the server is shutting down: connect again (elsewhere)
    PROTOCOL_ERROR = 1002  # a frame that breaks RFC 6455 itself
    POLICY_VIOLATION = 1008  # flooding, or silence where a message was due
    TOO_BIG = 1009  # a frame over the size limit
    SERVICE_RESTART = 1012  # a cluster lost what it shared with the player's process: reconnect
    TRY_AGAIN_LATER = 1013  # the client read too slowly to keep up; reconnect


class ProtocolError(Exception):
    """A client mistake, answered with an ``error`` message; never fatal to the connection.

    ``ref`` is the offending message's ``id`` when it could be read, so the client can tell
    which of its messages failed.
    """

    def __init__(self, code: ErrorCode, message: str, ref: MessageId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r}, ref={self.ref!r})"
