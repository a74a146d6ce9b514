"""Replies to bytes and back, for the production transport (the matcher process answers a web process).

A reply is a MessagePack array `[1, seq, order_id, duplicate, command, events]`: `1` is the format
version, `command` is the applied command as `codec.encode_command` bytes (or nil), and each event
is `[class name, field values...]` with enums as their values. Events are encoded generically from
their named-tuple fields, so a new event type needs only `register(cls)` (every type in
`matching.engine.events.Event` and `risk.core.RiskEvent` is registered); decoding rebuilds the same
named-tuple classes, turning enum-typed fields back into their enums, and raises `CodecError` on
anything malformed.

On a web process's shared reply list (the production transport: one list per process, one reader)
each reply travels addressed: `address(request_id, encoded)` is the MessagePack array
`[request id, encoded reply]`, so the reader hands the reply, still encoded, to the caller waiting on
that id (who decodes it in its own thread or event loop) without decoding it itself.
"""

from __future__ import annotations

import typing
from enum import Enum
from types import NoneType, UnionType
from typing import Any, cast

import msgpack  # type: ignore[import-not-found]

from matching.engine.events import Event
from matching.worker.codec import CodecError, decode_command, encode_command
from matching.worker.matcher import Reply
from risk.core import RiskEvent

FORMAT = 1

# class name -> (class, one converter per field: an Enum class or None)
_REGISTRY: dict[str, tuple[type, tuple[type[Enum] | None, ...]]] = {}
# class name -> (class, number of fields, (index, {value: member}, Enum class) per enum-typed field)
_DECODERS: dict[str, tuple[type, int, tuple[tuple[int, dict, type[Enum]], ...]]] = {}


def _enum_of(hint: Any) -> type[Enum] | None:
    """The Enum class a field holds (`Side` or `Side | None`), or None for plain values."""
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        enums = [a for a in typing.get_args(hint) if a is not NoneType and isinstance(a, type)
                 and issubclass(a, Enum)]
        if len(enums) == 1:
            return enums[0]
    return None


def register(cls: type) -> type:
    """Make a NamedTuple event class encodable and decodable by its class name."""
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise TypeError(f"{cls!r} is not a NamedTuple class")
    existing = _REGISTRY.get(cls.__name__)
    if existing is not None and existing[0] is not cls:
        raise ValueError(f"another event class is already registered as {cls.__name__}")
    hints = typing.get_type_hints(cls)
    converters = tuple(_enum_of(hints.get(name)) for name in cls._fields)
    _REGISTRY[cls.__name__] = (cls, converters)
    enums = tuple((index, {member.value: member for member in conv}, conv)
                  for index, conv in enumerate(converters) if conv is not None)
    _DECODERS[cls.__name__] = (cls, len(converters), enums)
    return cls


def registered() -> dict[str, type]:
    return {name: cls for name, (cls, _) in _REGISTRY.items()}


for _cls in (*typing.get_args(Event), *typing.get_args(RiskEvent)):
    register(_cls)


def _plain(value: object) -> object:
    """msgpack's fallback: enums that are not already str/int subclasses travel as their values."""
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_reply(reply: Reply) -> bytes:
    events = [[type(event).__name__, *event] for event in reply.events]
    command = encode_command(reply.command) if reply.command is not None else None
    return msgpack.packb([FORMAT, reply.seq, reply.order_id, reply.duplicate, command, events],
                         default=_plain)


def _decode_event(item: object) -> tuple:
    if type(item) is not list or not item or type(item[0]) is not str:
        raise CodecError(f"malformed event: {item!r}")
    entry = _DECODERS.get(item[0])
    if entry is None:
        raise CodecError(f"unknown event type {item[0]!r}")
    cls, size, enums = entry
    values = item[1:]
    if len(values) != size:
        raise CodecError(f"{item[0]} takes {size} fields, got {len(values)}")
    for index, members, conv in enums:  # a dict lookup per enum field, not an Enum call
        value = values[index]
        if value is not None:
            try:
                values[index] = members[value]
            except (KeyError, TypeError):
                try:
                    values[index] = conv(value)  # an alias, or a value the enum's _missing_ takes
                except (ValueError, TypeError) as exc:
                    raise CodecError(f"{item[0]}: {exc}") from exc
    return tuple.__new__(cls, values)


def decode_reply(data: bytes) -> Reply:
    try:
        fields = msgpack.unpackb(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable reply: {exc}") from exc
    if not isinstance(fields, list) or len(fields) != 6 or fields[0] != FORMAT:
        raise CodecError("unknown reply shape")
    _, seq, order_id, duplicate, command, events = fields
    if type(seq) is not int or type(order_id) is not int or type(duplicate) is not bool:
        raise CodecError("reply seq and order_id must be integers, duplicate a boolean")
    if not (command is None or isinstance(command, bytes)) or not isinstance(events, list):
        raise CodecError("malformed reply command or events")
    return Reply(seq, order_id, cast("list[Event | RiskEvent]", [_decode_event(e) for e in events]),
                 duplicate, decode_command(command) if command is not None else None)



def _bin(data: bytes) -> bytes:
    """MessagePack's bin header for `data` (what packb writes for bytes)."""
    size = len(data)
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def address(request_id: bytes, encoded: bytes) -> bytes:
    """An encoded reply for a shared reply list: `[request id, encoded reply]` (MessagePack, built
    by hand: the reply is already encoded)."""
    return b"".join((b"\x92", _bin(request_id), request_id, _bin(encoded), encoded))


def unaddress(data: bytes) -> tuple[bytes, bytes]:
    """(request id, encoded reply) of an addressed reply; `CodecError` if it is not one."""
    try:
        fields = msgpack.unpackb(data, use_list=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable addressed reply: {exc}") from exc
    if type(fields) is not tuple or len(fields) != 2 or type(fields[0]) is not bytes \
            or type(fields[1]) is not bytes:
        raise CodecError("an addressed reply is [request id, encoded reply]")
    return fields
