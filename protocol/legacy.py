"""The 2016 demo's dialect: Socket.IO (protocol 4) over Engine.IO 3 text frames. Pure.

Mini-programs built on the 2016 Tencent demo speak Socket.IO through a ~100-line class
that writes ``42["event", data]`` frames on a plain WebSocket. This module turns those
frames into native ``ClientMessage`` objects and native ``ServerMessage`` objects into
their frames, so the server can serve such clients unmodified over the same matches.
No sockets, no clock, no asyncio: ``LegacyPeer`` is one connection's state machine, fed
frames and server messages, returning the frames to send. ``protocol/LEGACY.md`` is the
prose version.

Frame grammar (text only; the binary Socket.IO packets are refused)::

    engine.io  <type digit><payload>
               0 open, 1 close, 2 ping, 3 pong, 4 message, 5 upgrade, 6 noop
    socket.io  4<type digit>[</namespace>,][<ack id digits>][<JSON>]
               0 connect, 1 disconnect, 2 event, 3 ack, 4 error, 5 binary event, 6 binary ack
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import orjson

from protocol import fields as f
from protocol.choices import Choice
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Bye,
    ClientMessage,
    Error,
    Face,
    Hello,
    Hi,
    Join,
    Leave,
    MakeChoice,
    Movement,
    MovementKind,
    Opponent,
    Result,
    ServerMessage,
    Start,
    Winner,
)

# Engine.IO 3's heartbeat: the client pings every interval and gives up after the timeout.
PING_INTERVAL_MS = 25_000
PING_TIMEOUT_MS = 60_000
DEFAULT_NAMESPACE = "/"
UID_MAX = f.ID_MAX
UNAME_MAX = 64  # the longest accepted; the name shown is this, cleaned, cut to 32
ACK_ID_MAX = 2**53 - 1  # acks ride as native message ids, which are safe integers
EVENTS = ("hello", "join", "leave", "choice", "face")
# The demo's robots were "robot-1", "robot-2"... (its ``nextRobotId``), and its page finds
# the opponent's entries by uid, so a robot needs one of its own, never a player's.
ROBOT_UID_PREFIX = "robot-"

CONNECT_FRAME = b"40"


class EngineType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class SocketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@attrs.frozen
class EnginePacket:
    """An Engine.IO packet other than a message; ``data`` is a ping's or pong's payload."""

    type: EngineType
    data: str = ""


@attrs.frozen
class SocketPacket:
    """A Socket.IO packet (an Engine.IO message); ``data`` is the decoded JSON, if any."""

    type: SocketType
    namespace: str = DEFAULT_NAMESPACE
    ack: int | None = None
    data: Any = None


# ---------------------------------------------------------------- frames in


def parse_frame(frame: bytes | str) -> EnginePacket | SocketPacket:
    """Parse one client text frame, or raise ``ProtocolError``; never anything else.

    Like the demo's ``^(\\d)(\\d?)(.*)$`` but strict about what follows the digits:
    namespaces (``/x,``), ack ids and the JSON payload are each checked.
    """
    text = _text_of(frame)
    if not text:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "an empty frame is not an Engine.IO packet")
    kind = text[0]
    if not ("0" <= kind <= "6"):
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown Engine.IO packet type {kind!r}; expected a digit from 0 to 6",
        )
    engine_type = EngineType(int(kind))
    if engine_type is not EngineType.MESSAGE:
        return EnginePacket(engine_type, text[1:])
    return _parse_socket(text[1:])


def _text_of(frame: bytes | str) -> str:
    try:
        return frame.decode() if isinstance(frame, bytes) else frame.encode().decode()
    except UnicodeError:
        raise ProtocolError(ErrorCode.BAD_JSON, "the frame is not valid UTF-8") from None


def _parse_socket(text: str) -> SocketPacket:
    if not text or not ("0" <= text[0] <= "6"):
        shown = text[:1] or "nothing"
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown Socket.IO packet type {shown!r}; expected a digit from 0 to 6",
        )
    socket_type = SocketType(int(text[0]))
    if socket_type in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK):
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FRAME, "binary Socket.IO packets are not supported; send JSON"
        )
    rest = text[1:]
    namespace = DEFAULT_NAMESPACE
    if rest.startswith("/"):
        end = rest.find(",")
        namespace, rest = (rest, "") if end < 0 else (rest[:end], rest[end + 1 :])
        if len(namespace) > 128 or not namespace.isprintable():
            raise ProtocolError(ErrorCode.INVALID_FIELD, "the namespace is not a printable path")
    digits = 0
    while digits < len(rest) and rest[digits].isascii() and rest[digits].isdigit():
        digits += 1
    ack: int | None = None
    if digits:
        if digits > 16 or int(rest[:digits]) > ACK_ID_MAX:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "the ack id must be a safe integer")
        ack, rest = int(rest[:digits]), rest[digits:]
    data: Any = None
    if rest:
        try:
            data = orjson.loads(rest)
        except orjson.JSONDecodeError:
            ref = ack if socket_type is SocketType.EVENT else None
            raise ProtocolError(
                ErrorCode.BAD_JSON, "the Socket.IO packet's payload is not valid JSON", ref
            ) from None
    return SocketPacket(socket_type, namespace, ack, data)


# ---------------------------------------------------------------- frames out


def open_frame(sid: str) -> bytes:
    """Engine.IO's handshake: the session id, no upgrades (WebSocket only), the heartbeat."""
    return b"0" + orjson.dumps(
        {
            "sid": sid,
            "upgrades": [],
            "pingInterval": PING_INTERVAL_MS,
            "pingTimeout": PING_TIMEOUT_MS,
        }
    )


def pong_frame(payload: str) -> bytes:
    """The answer to ``2<payload>`` (``2probe`` gets ``3probe``)."""
    return b"3" + payload.encode()


def event_frame(name: str, data: Any) -> bytes:
    return b"42" + orjson.dumps([name, data])


def ack_frame(ack: int, args: Sequence[Any]) -> bytes:
    return b"43" + str(ack).encode() + orjson.dumps(list(args))


def namespace_error_frame(namespace: str) -> bytes:
    """What a Socket.IO 2 server answers a connect to a namespace it does not serve."""
    return b"44" + namespace.encode() + b"," + orjson.dumps("Invalid namespace")


def error_frame(error: ProtocolError | Error) -> bytes:
    return event_frame("error", {"code": error.code.value, "message": error.message})


# ---------------------------------------------------------------- one connection


@attrs.frozen
class LegacyUser:
    """A player as the demo's events show it; ``uid`` keeps the JSON type it was declared as."""

    uid: str | int
    uname: str
    uavatar: str | None = None


@attrs.frozen
class _Declared:
    """What ``hello`` declared, applied once ``hi`` says the hello was accepted."""

    uid: str | int | None
    uname: str
    uavatar: str | None


@attrs.frozen
class Standing:
    """One seat's live totals, read from the match by the adapter when it delivers."""

    player_id: str
    total_score: int
    win_streak: int


@attrs.frozen
class Inbound:
    """What one client frame asks for: frames to send back now, a message for the game
    (``ack`` set when the client wants the outcome acknowledged), or the session's end."""

    replies: tuple[bytes, ...] = ()
    message: ClientMessage | None = None
    ack: int | None = None
    disconnect: bool = False


Lookup = Callable[[str], LegacyUser | None]


def _no_lookup(player_id: str) -> LegacyUser | None:
    return None


class RobotNumbers:
    """Hands out the N of ``robot-N`` in the order robots sit down, as the demo's server
    numbered them (one counter per process there; one per app here, shared by its
    connections, so two players never see the same robot number at once)."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last += 1
        return self.last


@attrs.define
class LegacyPeer:
    """One legacy connection: its declared identity, its current match, a pending ack.

    ``lookup`` finds the declared identity of another legacy player by native player id,
    so two legacy players see each other's own uids; a native player shows as its native
    id, name and avatar. A house bot shows as the demo's robots did: a uid ``robot-N``
    (N from ``robot_number``) and a picture, ``robot_avatar`` (the demo's page shows the
    opponent's ``uavatar`` as an image: without one the robot is a blank square).
    """

    lookup: Lookup = _no_lookup
    robot_number: Callable[[], int] = attrs.Factory(RobotNumbers)
    robot_avatar: str | None = None
    user: LegacyUser | None = None  # set by ``hi``
    player_id: str | None = None
    match_id: str | None = None
    round: int = 0
    opponent: LegacyUser | None = None
    opponent_id: str | None = None
    _declared: _Declared | None = None
    _snapshot: dict[str, Standing] = attrs.Factory(dict)  # totals as the match started
    _awaiting: int | None = None
    _ack_error: Error | None = None

    # ------------------------------------------------------------ client to server

    def receive(self, frame: bytes | str) -> Inbound:
        """One client frame; mistakes come back as error frames, never as exceptions."""
        ack: int | None = None
        try:
            packet = parse_frame(frame)
            if isinstance(packet, EnginePacket):
                return self._engine(packet)
            if packet.type is SocketType.EVENT:
                ack = packet.ack  # only events are acknowledged
            return self._socket(packet)
        except ProtocolError as exc:
            if ack is None and isinstance(exc.ref, int):
                ack = exc.ref
            if ack is not None:
                return Inbound(replies=(ack_frame(ack, [_error_body(exc)]),))
            return Inbound(replies=(error_frame(exc),))

    def _engine(self, packet: EnginePacket) -> Inbound:
        if packet.type is EngineType.PING:
            return Inbound(replies=(pong_frame(packet.data),))
        if packet.type is EngineType.CLOSE:
            return Inbound(disconnect=True)
        if packet.type is EngineType.OPEN:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE, "the open packet (0) is the server's, not the client's"
            )
        return Inbound()  # pong, upgrade, noop: nothing to do on a WebSocket-only session

    def _socket(self, packet: SocketPacket) -> Inbound:
        default = packet.namespace == DEFAULT_NAMESPACE
        if packet.type is SocketType.CONNECT:
            return Inbound(
                replies=(CONNECT_FRAME if default else namespace_error_frame(packet.namespace),)
            )
        if packet.type is SocketType.DISCONNECT:
            return Inbound(disconnect=default)
        if packet.type is not SocketType.EVENT:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FRAME,
                f"Socket.IO {packet.type.name.lower()} packets are not expected from clients",
            )
        if not default:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"only the namespace '/' is served, not {packet.namespace[:64]!r}",
                packet.ack,
            )
        data = packet.data
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, 'an event must be a JSON array ["name", data]', packet.ack
            )
        payload = data[1] if len(data) > 1 else None
        message = self.translate(data[0], payload, packet.ack)
        return Inbound(message=message, ack=packet.ack)

    def translate(self, event: str, data: Any, ack: int | None = None) -> ClientMessage:
        """One legacy event as a native message (``ack`` becomes its id), or ``ProtocolError``."""
        if event == "hello":
            return self._hello(data, ack)
        if event == "join":
            return Join(id=ack)
        if event == "leave":
            return Leave(id=ack)
        if event == "choice":
            if self.match_id is None:
                raise ProtocolError(ErrorCode.NOT_IN_MATCH, "you are not in a game", ack)
            choice = _field(data, "choice", "choice", f.choice, ack)
            # Changeable until the deadline, as in the demo: the round resolves at the end.
            return MakeChoice(
                match_id=self.match_id, round=self.round, choice=choice, final=False, id=ack
            )
        if event == "face":
            face = _field(data, "face", "face", f.integer_in(f.FACE_MIN, f.FACE_MAX), ack)
            return Face(face=face, id=ack)
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown event {event[:40]!r}; expected one of {', '.join(EVENTS)}",
            ack,
        )

    def _hello(self, data: Any, ack: int | None) -> Hello:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "hello's data must be an object", ack)
        user = data.get("user")
        if user is None:
            user = {}
        if not isinstance(user, dict):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "hello.user must be an object", ack)
        uid = user.get("uid")
        if uid is not None and not _is_uid(uid):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"hello.user.uid must be a string of 1-{UID_MAX} characters or a safe integer",
                ack,
            )
        uname = user.get("uname")
        if uname is not None and (not isinstance(uname, str) or len(uname) > UNAME_MAX):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"hello.user.uname must be a string of at most {UNAME_MAX} characters",
                ack,
            )
        uavatar = user.get("uavatar")
        if uavatar is not None and (not isinstance(uavatar, str) or len(uavatar) > f.AVATAR_MAX):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"hello.user.uavatar must be a string of at most {f.AVATAR_MAX} characters",
                ack,
            )
        # The name and avatar as the native hello's rules accept them, for the player and
        # for whoever is shown this one (never control or bidi characters, never a
        # tracker's http:// image); the uid as declared, as the demo's clients match on it.
        name, avatar = _native_name(uname), _native_avatar(uavatar)
        self._declared = _Declared(uid=uid, uname=name or "", uavatar=avatar)
        return Hello(name=name, avatar=avatar, id=ack)

    # ------------------------------------------------------------ the game's answer to an ack

    def await_ack(self, ack: int | None) -> None:
        """The game is about to handle the message acked as ``ack``: hold its error back."""
        self._awaiting, self._ack_error = ack, None

    def settle_ack(self) -> list[bytes]:
        """The ack once the game handled the message: ``[null]``, or ``[{code, message}]``."""
        ack, error = self._awaiting, self._ack_error
        self._awaiting, self._ack_error = None, None
        if ack is None:
            return []
        return [ack_frame(ack, [None if error is None else _error_body(error)])]

    # ------------------------------------------------------------ server to client

    def on_server(
        self, message: ServerMessage, standings: Sequence[Standing] | None = None
    ) -> list[bytes]:
        """The frames for one native message (maybe none: the demo had no such event).

        ``standings`` are both seats' live totals in seat order, for ``start`` and ``result``.
        """
        if isinstance(message, Hi):
            return self._hi(message)
        if isinstance(message, Start):
            return self._start(message, standings)
        if isinstance(message, Movement):
            return self._movement(message)
        if isinstance(message, Result):
            return self._result(message, standings)
        if isinstance(message, Error):
            if self._awaiting is not None and message.ref == self._awaiting:
                self._ack_error = message
                return []
            return [error_frame(message)]
        if isinstance(message, Bye):
            return [event_frame("bye", {"reason": message.reason})]
        return []  # queued, left, resume, pong: nothing in the demo's protocol

    def _hi(self, hi: Hi) -> list[bytes]:
        declared = self._declared
        self.player_id = hi.player_id
        self.user = LegacyUser(
            uid=hi.player_id if declared is None or declared.uid is None else declared.uid,
            uname=declared.uname if declared is not None and declared.uname else hi.name,
            uavatar=None if declared is None else declared.uavatar,
        )
        return [event_frame("hi", {"message": "welcome", "nearby": hi.online})]

    def _me(self) -> LegacyUser:
        return self.user or LegacyUser(uid=self.player_id or "", uname="")

    def _start(self, start: Start, standings: Sequence[Standing] | None) -> list[bytes]:
        opponent = start.opponent
        known: LegacyUser | None
        if opponent.bot:
            # The same robot keeps its number for the whole match (a round's start).
            known = self.opponent if opponent.id == self.opponent_id else None
            known = known or self._robot(opponent)
        else:
            known = self.lookup(opponent.id)
            if known is None or known.uid == self._me().uid:
                # A native player, or a legacy one that declared our uid: its own id.
                known = LegacyUser(uid=opponent.id, uname=opponent.name, uavatar=opponent.avatar)
        self.match_id, self.round = start.match_id, start.round
        self.opponent, self.opponent_id = known, opponent.id
        self._snapshot = {s.player_id: s for s in standings or ()}
        users = [
            {
                "uid": user.uid,
                "uname": user.uname,
                "uavatar": user.uavatar,
                "choice": None,
                "roundScore": 0,
                "totalScore": standing.total_score,
                "winStreak": standing.win_streak,
            }
            for user, standing in self._seated(standings)
        ]
        game_time = start.round_ms / 1000
        return [
            event_frame(
                "start",
                {
                    "gameTime": int(game_time) if game_time.is_integer() else game_time,
                    "roomUsers": users,
                },
            )
        ]

    def _robot(self, opponent: Opponent) -> LegacyUser:
        """A house bot as the demo's robots were: ``robot-N``, with a picture."""
        mine = self._me().uid
        uid = f"{ROBOT_UID_PREFIX}{self.robot_number()}"
        while uid == mine:  # a player who declared "robot-7" never meets a robot-7
            uid = f"{ROBOT_UID_PREFIX}{self.robot_number()}"
        return LegacyUser(
            uid=uid, uname=opponent.name, uavatar=opponent.avatar or self.robot_avatar
        )

    def _seated(self, standings: Sequence[Standing] | None) -> list[tuple[LegacyUser, Standing]]:
        """Both players with their totals: in seat order (the same list for both players,
        like the demo's room), or this player first when the seats are unknown."""
        me, them = self.player_id or "", self.opponent_id or ""
        users = {me: self._me(), them: self.opponent or LegacyUser(uid=them, uname="")}
        by_id = {s.player_id: s for s in standings or ()}
        order = [s.player_id for s in standings or ()]
        if sorted(order) != sorted(users):
            order = [me, them]
        return [
            (users[pid], by_id.get(pid) or self._snapshot.get(pid) or Standing(pid, 0, 0))
            for pid in order
        ]

    def _movement(self, movement: Movement) -> list[bytes]:
        if self.opponent is None or movement.kind not in (MovementKind.CHOICE, MovementKind.FACE):
            return []  # left/back: the demo knew no reconnecting players
        body: dict[str, Any] = {"uid": self.opponent.uid, "movement": movement.kind.value}
        if movement.kind is MovementKind.FACE:
            body["face"] = movement.face
        return [event_frame("movement", body)]

    def _result(self, result: Result, standings: Sequence[Standing] | None) -> list[bytes]:
        me = self.player_id or ""
        choices = {me: result.you, self.opponent_id or "": result.opponent}
        # The demo's round score: the winner's is its new win streak, everyone else's 0.
        scorer = None
        if result.match_over and result.winner is Winner.YOU:
            scorer = me
        elif result.match_over and result.winner is Winner.OPPONENT:
            scorer = self.opponent_id
        if standings is None and result.total_score is not None:
            own = Standing(me, result.total_score, result.win_streak or 0)
            standings = [own, *(s for s in self._snapshot.values() if s.player_id != me)]
        entries = []
        for user, standing in self._seated(standings):
            pid = standing.player_id
            entries.append(
                {
                    "uid": user.uid,
                    "roundScore": standing.win_streak if pid == scorer else 0,
                    "totalScore": standing.total_score,
                    "winStreak": standing.win_streak,
                    "choice": _legacy_choice(choices.get(pid)),
                }
            )
        if result.match_over:
            self.match_id, self.round = None, 0
        return [event_frame("result", {"result": entries})]


# ---------------------------------------------------------------- helpers


def _error_body(error: ProtocolError | Error) -> dict[str, str]:
    return {"code": error.code.value, "message": error.message}


def _field(data: Any, event: str, name: str, parse: f.Parser, ack: int | None) -> Any:
    if not isinstance(data, dict) or data.get(name) is None:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{event} needs an object with the field '{name}'", ack
        )
    try:
        return parse(data[name])
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{event}.{name} {exc}", ack) from None


def _is_uid(uid: Any) -> bool:
    if isinstance(uid, str):
        return 1 <= len(uid) <= UID_MAX
    return isinstance(uid, int) and not isinstance(uid, bool) and abs(uid) <= ACK_ID_MAX


def _native_name(uname: str | None) -> str | None:
    """The declared name cleaned to what a native name may be (printable: no control or
    bidi characters; few combining marks on a character; 1-32 characters), or None for
    a guest's."""
    if uname is None:
        return None
    printable = "".join(c for c in uname if c.isprintable())
    name = f.limit_marks(printable).strip()[: f.NAME_MAX].strip()
    return name or None


def _native_avatar(uavatar: str | None) -> str | None:
    """The avatar if it is a URL the native protocol accepts (https); the demo's could be any."""
    if uavatar is None:
        return None
    try:
        return f.avatar_url(uavatar)
    except ValueError:
        return None


def _legacy_choice(choice: Choice | None) -> int | None:
    return None if choice is None else choice.legacy_number
