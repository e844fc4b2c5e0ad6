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
    name: str
    parse: Any
    nested: type | None
    omit_none: bool
    required: bool


def _plan(cls: type) -> tuple[_FieldPlan, ...]:
    return tuple(
        _FieldPlan(
            name=a.name,
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


def _build(
    cls: type[M], obj: dict[str, Any], where: str, ref: MessageId | None, *, envelope: bool
) -> M:
    """Validate ``obj`` into ``cls``; on an envelope (a whole message) ``id`` is the ref."""
    kwargs: dict[str, Any] = {}
    for field in _plan_of(cls):
        if envelope and field.name == "id":
            kwargs["id"] = ref
            continue
        # JavaScript clients send null for "not set"; on an optional field it means absent.
        if obj.get(field.name) is None and (field.name not in obj or not field.required):
            if field.required:
                raise ProtocolError(
                    ErrorCode.INVALID_FIELD, f"{where} needs the field '{field.name}'", ref
                )
            continue
        raw = obj[field.name]
        if field.nested is not None:
            if not isinstance(raw, dict):
                raise ProtocolError(
                    ErrorCode.INVALID_FIELD, f"{where}.{field.name} must be an object", ref
                )
            kwargs[field.name] = _build(
                field.nested, raw, f"{where}.{field.name}", ref, envelope=False
            )
            continue
        try:
            kwargs[field.name] = field.parse(raw)
        except ValueError as exc:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"{where}.{field.name} {exc}", ref
            ) from None
    return cls(**kwargs)


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
    return _build(cls, obj, kind, ref, envelope=True)


def decode_server(data: bytes | str) -> ServerMessage:
    """Decode one server frame for a client; raises ``ProtocolError`` on anything off-spec."""
    obj = _load_object(data)
    kind = _read_type(obj, None)
    cls = _SERVER_BY_TYPE.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown server message type {kind[:40]!r}")
    return _build(cls, obj, kind, None, envelope=True)


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
        out[field.name] = value
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
            lines.append(f"    if m.{field.name} is not None:\n        d[{field.name!r}] = {value}")
        else:
            lines.append(f"    d[{field.name!r}] = {value}")
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
