"""Raw frames to typed messages and back. Pure functions: no I/O, no clock, no state.

``decode_client`` is the server's gate: whatever bytes arrive, it returns a typed message
or raises ``ProtocolError`` with a precise code, and nothing else. ``decode_server`` is
the same for clients (bots, tests) reading what the server sends.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import orjson

from protocol.errors import ErrorCode, MessageId, ProtocolError
from protocol.fields import message_id
from protocol.messages import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    ClientMessage,
    ServerMessage,
)

M = TypeVar("M")

_CLIENT_BY_TYPE: dict[str, type[ClientMessage]] = {cls.TYPE: cls for cls in CLIENT_MESSAGES}
_SERVER_BY_TYPE: dict[str, type[ServerMessage]] = {cls.TYPE: cls for cls in SERVER_MESSAGES}
_CLIENT_TYPES = ", ".join(_CLIENT_BY_TYPE)


@attrs.frozen
class _FieldPlan:
    name: str  # the attribute
    key: str  # the wire name: the attribute's, unless it is a Python keyword (``from_``)
    parse: Any
    nested: type | None
    omit_none: bool
    required: bool


def _plan(cls: type) -> tuple[_FieldPlan, ...]:
    return tuple(
        _FieldPlan(
            name=a.name,
            key=a.metadata.get("key") or a.name,
            parse=a.metadata.get("parse"),
            nested=a.metadata.get("nested"),
            omit_none=a.metadata.get("omit_none", False),
            required=a.default is attrs.NOTHING,
        )
        for a in attrs.fields(cls)
    )


_PLANS: dict[type, tuple[_FieldPlan, ...]] = {}


def _plan_of(cls: type) -> tuple[_FieldPlan, ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _plan(cls)
    return plan


# ---------------------------------------------------------------- decode


def _compile_decoder(cls: type, *, envelope: bool) -> Callable[[dict[str, Any], str, Any], Any]:
    """Generate ``cls``'s validating constructor as straight-line code, like the encoders.

    Rules, the same for every field: absent or ``null`` on an optional field means the
    default (JavaScript clients send null for "not set"); absent on a required field is
    "needs the field"; anything else goes through the field's parser, whose ``ValueError``
    names the field. On an envelope (a whole message), ``id`` is the already-read ``ref``.
    """
    namespace: dict[str, Any] = {
        "cls": cls,
        "ProtocolError": ProtocolError,
        "INVALID": ErrorCode.INVALID_FIELD,
    }
    lines = ["def decode(obj, where, ref):", "    get = obj.get"]
    arguments = []
    for index, field in enumerate(_plan_of(cls)):
        name = field.name
        if envelope and name == "id":
            arguments.append("id=ref")
            continue
        value = f"v{index}"
        arguments.append(f"{name}={value}")
        lines.append(f"    {value} = get({field.key!r})")
        if field.required:
            lines.append(f"    if {value} is None and {field.key!r} not in obj:")
            namespace[f"missing_{name}"] = f" needs the field '{field.key}'"
            lines.append(f"        raise ProtocolError(INVALID, where + missing_{name}, ref)")
        else:
            namespace[f"default_{name}"] = attrs.fields_dict(cls)[name].default
            lines.append(f"    if {value} is None:")
            lines.append(f"        {value} = default_{name}")
            lines.append("    else:")
        indent = "    " if field.required else "        "
        if field.nested is not None:
            namespace[f"nested_{name}"] = _decoder_of(field.nested, envelope=False)
            lines.append(f"{indent}if not isinstance({value}, dict):")
            namespace[f"not_object_{name}"] = f".{field.key} must be an object"
            lines.append(
                f"{indent}    raise ProtocolError(INVALID, where + not_object_{name}, ref)"
            )
            lines.append(
                f"{indent}{value} = nested_{name}({value}, where + {'.' + field.key!r}, ref)"
            )
        else:
            namespace[f"parse_{name}"] = field.parse
            lines.append(f"{indent}try:")
            lines.append(f"{indent}    {value} = parse_{name}({value})")
            lines.append(f"{indent}except ValueError as exc:")
            namespace[f"field_{name}"] = f".{field.key} "
            lines.append(
                f"{indent}    raise ProtocolError(INVALID, where + field_{name} + str(exc), ref) "
                "from None"
            )
    lines.append(f"    return cls({', '.join(arguments)})")
    exec("\n".join(lines), namespace)  # the source is built above from attrs metadata only
    decoder: Callable[[dict[str, Any], str, Any], Any] = namespace["decode"]
    return decoder


_DECODERS: dict[tuple[type, bool], Callable[[dict[str, Any], str, Any], Any]] = {}


def _decoder_of(cls: type, *, envelope: bool) -> Callable[[dict[str, Any], str, Any], Any]:
    decoder = _DECODERS.get((cls, envelope))
    if decoder is None:
        decoder = _DECODERS[cls, envelope] = _compile_decoder(cls, envelope=envelope)
    return decoder


def _load_object(data: bytes | str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_JSON, "the frame is not valid UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(
            ErrorCode.NOT_AN_OBJECT, "every frame must hold one JSON object with a 'type'"
        )
    return obj


def _read_ref(obj: dict[str, Any], key: str) -> MessageId | None:
    raw = obj.get(key)
    if raw is None:
        return None
    try:
        return message_id(raw)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' {exc}") from None


def _read_type(obj: dict[str, Any], ref: MessageId | None) -> str:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "every message needs a string field 'type'", ref
        )
    return kind


def decode_client(data: bytes | str) -> ClientMessage:
    """Decode one client frame or raise ``ProtocolError``; never anything else."""
    obj = _load_object(data)
    ref = _read_ref(obj, "id")
    kind = _read_type(obj, ref)
    cls = _CLIENT_BY_TYPE.get(kind)
    if cls is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind[:40]!r}; expected one of {_CLIENT_TYPES}",
            ref,
        )
    message: ClientMessage = _CLIENT_DECODERS[kind](obj, kind, ref)
    return message


def decode_server(data: bytes | str) -> ServerMessage:
    """Decode one server frame for a client; raises ``ProtocolError`` on anything off-spec."""
    obj = _load_object(data)
    kind = _read_type(obj, None)
    cls = _SERVER_BY_TYPE.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown server message type {kind[:40]!r}")
    message: ServerMessage = _decoder_of(cls, envelope=True)(obj, kind, None)
    return message


_CLIENT_DECODERS = {kind: _decoder_of(cls, envelope=True) for kind, cls in _CLIENT_BY_TYPE.items()}


# ---------------------------------------------------------------- encode


def _to_wire(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in _plan_of(type(message)):
        value = getattr(message, field.name)
        if value is None:
            if field.omit_none:
                continue
        elif field.nested is not None:
            value = _to_wire(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        out[field.key] = value
    return out


def to_wire(message: ClientMessage | ServerMessage) -> dict[str, Any]:
    """The JSON object for ``message``, ``type`` first."""
    return {"type": message.TYPE, **_to_wire(message)}


def _compile_encoder(cls: type) -> Callable[[Any], dict[str, Any]]:
    """Generate ``cls``'s encoder as straight-line code, the way attrs builds ``__init__``.

    It is the server's hottest path after the socket writes: no loop over fields, no
    ``getattr``, and enums go to orjson as they are (it writes their values natively).
    """
    namespace: dict[str, Any] = {}
    envelope = f"'type': {cls.TYPE!r}" if hasattr(cls, "TYPE") else ""
    lines = ["def encode(m):", f"    d = {{{envelope}}}"]
    for field in _plan_of(cls):
        value = f"m.{field.name}"
        if field.nested is not None:
            namespace[f"nested_{field.name}"] = _encoder_of(field.nested)
            value = f"nested_{field.name}({value})"
        if field.omit_none:
            lines.append(f"    if m.{field.name} is not None:\n        d[{field.key!r}] = {value}")
        else:
            lines.append(f"    d[{field.key!r}] = {value}")
    lines.append("    return d")
    exec("\n".join(lines), namespace)  # the source is built above from attrs metadata only
    encoder: Callable[[Any], dict[str, Any]] = namespace["encode"]
    return encoder


_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _encoder_of(cls: type) -> Callable[[Any], dict[str, Any]]:
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        encoder = _ENCODERS[cls] = _compile_encoder(cls)
    return encoder


def encode(message: ClientMessage | ServerMessage) -> bytes:
    """UTF-8 JSON for one text frame. Encode once, send to as many sockets as need it."""
    encoder = _ENCODERS.get(type(message)) or _encoder_of(type(message))
    return orjson.dumps(encoder(message))
