"""Commands to bytes and back, for the command log and the transport.

MessagePack of a flat array (a tag, then the fields in declaration order, enums as their
values): compact, fast, and safe to decode (no code runs, unlike pickle). Decoding checks the
shape and types and raises `CodecError` on anything else, so a malformed entry cannot crash
the worker. A batch (one journal record per group commit) is an array of such arrays, packed
in one call.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]

from matching.engine import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    Command,
    NewOrder,
    OrderType,
    Side,
    STPMode,
    TimeInForce,
)


class CodecError(ValueError):
    pass


_NEW, _CANCEL, _AMEND, _TIME = 1, 2, 3, 4
_pack = msgpack.Packer().pack  # one reusable packer: msgpack.packb builds a new one per call
_SIDES = {s.value: s for s in Side}
_TYPES = {t.value: t for t in OrderType}
_TIFS = {t.value: t for t in TimeInForce}
_STPS = {m.value: m for m in STPMode}


def encode_command(cmd: Command) -> bytes:
    return _pack(_fields(cmd))


def encode_batch(cmds: list[Command]) -> bytes:
    return _pack([_fields(cmd) for cmd in cmds])


def _fields(cmd: Command) -> tuple:
    fields: tuple
    if type(cmd) is NewOrder:
        # the enums are str subclasses: packed as their string values
        fields = (_NEW, cmd.order_id, cmd.owner, cmd.symbol, cmd.side, cmd.qty, cmd.price,
                  cmd.order_type, cmd.tif, cmd.post_only, cmd.stop_price, cmd.expire_at,
                  cmd.stp, cmd.timestamp, cmd.client_order_id)
    elif isinstance(cmd, CancelOrder):
        fields = (_CANCEL, cmd.order_id, cmd.owner, cmd.symbol, cmd.timestamp)
    elif isinstance(cmd, AmendOrder):
        fields = (_AMEND, cmd.order_id, cmd.owner, cmd.symbol, cmd.qty, cmd.price, cmd.stop_price,
                  cmd.timestamp)
    elif isinstance(cmd, AdvanceTime):
        fields = (_TIME, cmd.timestamp)
    else:
        raise CodecError(f"not a command: {type(cmd).__name__}")
    return fields


def decode_command(data: bytes) -> Command:
    try:
        fields = msgpack.unpackb(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable command: {exc}") from exc
    return _command(fields)


def decode_batch(data: bytes) -> list[Command | CodecError]:
    """The commands of a batch, each decoded alone: one bad entry spoils only its own seq."""
    try:
        entries = msgpack.unpackb(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable batch: {exc}") from exc
    if not isinstance(entries, list):
        raise CodecError(f"a batch is an array, not {type(entries).__name__}")
    out: list[Command | CodecError] = []
    for fields in entries:
        try:
            out.append(_command(fields))
        except CodecError as exc:
            out.append(exc)
    return out


def _command(fields: Any) -> Command:  # whatever msgpack produced: checked below
    try:
        tag = fields[0]
        if tag == _NEW and len(fields) == 15:
            (_, order_id, owner, symbol, side, qty, price, order_type, tif, post_only, stop_price,
             expire_at, stp, timestamp, client_order_id) = fields
            cmd: Command = NewOrder(order_id, owner, symbol, _SIDES[side], qty, price, _TYPES[order_type],
                                    _TIFS[tif], post_only, stop_price, expire_at, _STPS[stp], timestamp,
                                    client_order_id)
        elif tag == _CANCEL and len(fields) == 5:
            cmd = CancelOrder(*fields[1:])
        elif tag == _AMEND and len(fields) == 8:
            cmd = AmendOrder(*fields[1:])
        elif tag == _TIME and len(fields) == 2:
            cmd = AdvanceTime(fields[1])
        else:
            raise CodecError(f"unknown command shape: tag {tag!r}, {len(fields)} fields")
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise CodecError(f"undecodable command: {exc}") from exc
    _check_types(cmd)
    return cmd


_INT_FIELDS = ("order_id", "owner", "timestamp")


def _check_types(cmd: Command) -> None:
    if isinstance(cmd, AdvanceTime):
        if type(cmd.timestamp) is not int:
            raise CodecError("timestamp must be an integer")
        return
    if not isinstance(cmd.symbol, str):
        raise CodecError("symbol must be a string")
    for name in _INT_FIELDS:
        if type(getattr(cmd, name)) is not int:
            raise CodecError(f"{name} must be an integer")
    coid = cmd.client_order_id if isinstance(cmd, NewOrder) else None
    if not (coid is None or isinstance(coid, str)):
        raise CodecError("client_order_id must be a string")
