"""Commands to bytes and back, for the command log and the transport.

MessagePack of a flat array (a tag, then the fields in declaration order, enums as their
values): compact, fast, and safe to decode (no code runs, unlike pickle). Decoding checks the
shape and types and raises `CodecError` on anything else, so a malformed entry cannot crash
the worker. A batch (one journal record per group commit) is an array of such arrays, packed
in one call. The risk stage's admin commands (limits, halts, cash, held orders) travel the same
way, so the log holds every input the worker's state depends on.

This encoding is command format `formats.COMMAND_FORMAT`, which the journal's file header and each
stream entry (`v`) carry; readers refuse a format they do not know (`formats.UnsupportedFormat`)
before anything is decoded. Any change to a command's tag or fields is a new format: bump it.
"""

from __future__ import annotations

from typing import Any, TypeAlias

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
from risk.core import (
    AdjustCash,
    AdminCommand,
    Fence,
    FundedAmend,
    FundedOrder,
    HaltInstrument,
    InstrumentRisk,
    RejectHeld,
    ReleaseHeld,
    ResumeInstrument,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
    UserLimit,
)

# Everything the matcher's log holds: the engine's commands, the risk stage's admin commands, and what
# balance shards send a matching shard (funded orders and amendments, fences; docs/ARCHITECTURE.md).
WorkerCommand: TypeAlias = Command | AdminCommand | FundedOrder | FundedAmend | Fence


class CodecError(ValueError):
    pass


_NEW, _CANCEL, _AMEND, _TIME = 1, 2, 3, 4
_SET_RISK, _SET_USER_LIMIT, _SET_CASH, _ADJUST_CASH, _HALT, _RESUME, _RELEASE, _REJECT = range(5, 13)
_FUNDED_NEW, _FUNDED_AMEND, _FENCE = 13, 14, 15  # command format 2
_pack = msgpack.Packer().pack  # one reusable packer: msgpack.packb builds a new one per call
_SIDES = {s.value: s for s in Side}
_TYPES = {t.value: t for t in OrderType}
_TIFS = {t.value: t for t in TimeInForce}
_STPS = {m.value: m for m in STPMode}


def encode_command(cmd: WorkerCommand) -> bytes:
    return _pack(_fields(cmd))


def encode_batch(cmds: list[WorkerCommand]) -> bytes:
    return _pack([_fields(cmd) for cmd in cmds])


def _fields(cmd: WorkerCommand) -> tuple:
    fields: tuple
    if isinstance(cmd, NewOrder):
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
    elif isinstance(cmd, FundedOrder):
        fields = (_FUNDED_NEW, *_fields(cmd.order)[1:], cmd.ticket, cmd.reserved)
    elif isinstance(cmd, FundedAmend):
        fields = (_FUNDED_AMEND, *_fields(cmd.amend)[1:], cmd.ticket, cmd.extra)
    elif isinstance(cmd, Fence):
        fields = (_FENCE, cmd.balance_shard, list(cmd.tickets), cmd.timestamp)
    else:
        fields = _admin_fields(cmd)
    return fields


def _admin_fields(cmd: AdminCommand) -> tuple:
    if isinstance(cmd, SetInstrumentRisk):
        return (_SET_RISK, *cmd.config.state(), cmd.timestamp)
    if isinstance(cmd, SetUserLimit):
        return (_SET_USER_LIMIT, *cmd.limit.state(), cmd.timestamp)
    if isinstance(cmd, SetDefaultCash):
        return (_SET_CASH, cmd.amount, cmd.timestamp)
    if isinstance(cmd, AdjustCash):
        return (_ADJUST_CASH, cmd.owner, cmd.amount, cmd.timestamp)
    if isinstance(cmd, HaltInstrument):
        return (_HALT, cmd.symbol, cmd.reason, cmd.timestamp)
    if isinstance(cmd, ResumeInstrument):
        return (_RESUME, cmd.symbol, cmd.timestamp)
    if isinstance(cmd, ReleaseHeld):
        return (_RELEASE, cmd.order_id, cmd.timestamp)
    if isinstance(cmd, RejectHeld):
        return (_REJECT, cmd.order_id, cmd.timestamp)
    raise CodecError(f"not a command: {type(cmd).__name__}")


def decode_command(data: bytes) -> WorkerCommand:
    try:
        fields = msgpack.unpackb(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable command: {exc}") from exc
    return _command(fields)


def decode_batch(data: bytes) -> list[WorkerCommand | CodecError]:
    """The commands of a batch, each decoded alone: one bad entry spoils only its own seq."""
    try:
        entries = msgpack.unpackb(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable batch: {exc}") from exc
    if not isinstance(entries, list):
        raise CodecError(f"a batch is an array, not {type(entries).__name__}")
    out: list[WorkerCommand | CodecError] = []
    for fields in entries:
        try:
            out.append(_command(fields))
        except CodecError as exc:
            out.append(exc)
    return out


def _command(fields: Any) -> WorkerCommand:  # whatever msgpack produced: checked below
    if not isinstance(fields, list) or not fields:
        raise CodecError(f"a command is a non-empty array, not {type(fields).__name__}")
    try:
        tag = fields[0]
        if tag == _FUNDED_NEW and len(fields) == 17:
            order = _command([_NEW, *fields[1:15]])
            assert isinstance(order, NewOrder)
            return FundedOrder(order, as_int(fields[15]), as_int(fields[16]))
        if tag == _FUNDED_AMEND and len(fields) == 10:
            amend = _command([_AMEND, *fields[1:8]])
            assert isinstance(amend, AmendOrder)
            return FundedAmend(amend, as_int(fields[8]), as_int(fields[9]))
        if tag == _FENCE and len(fields) == 4:
            if not isinstance(fields[2], list):
                raise CodecError("fence tickets must be an array")
            return Fence(as_int(fields[1]), [as_int(t) for t in fields[2]], as_int(fields[3]))
        if tag >= _SET_RISK:
            return _admin_command(tag, fields)
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


# tag -> field count (the tag and timestamp included); each field is type-checked below
_ADMIN_SHAPES: dict[int, int] = {
    _SET_RISK: 13, _SET_USER_LIMIT: 6, _SET_CASH: 3, _ADJUST_CASH: 4, _HALT: 4, _RESUME: 3,
    _RELEASE: 3, _REJECT: 3,
}


def _admin_command(tag: int, fields: list) -> AdminCommand:
    if _ADMIN_SHAPES.get(tag) != len(fields) or type(fields[-1]) is not int:
        raise CodecError(f"unknown command shape: tag {tag!r}, {len(fields)} fields")
    ts = fields[-1]
    cmd: AdminCommand
    if tag == _SET_RISK:
        config = InstrumentRisk.from_state(fields[1:-1])
        if config.error() is not None:
            raise CodecError(f"instrument risk: bad {config.error()}")
        cmd = SetInstrumentRisk(config, ts)
    elif tag == _SET_USER_LIMIT:
        limit = UserLimit.from_state(fields[1:-1])
        if limit.error() is not None:
            raise CodecError(f"user limit: bad {limit.error()}")
        cmd = SetUserLimit(limit, ts)
    elif tag == _SET_CASH:
        cmd = SetDefaultCash(as_int(fields[1]), ts)
    elif tag == _ADJUST_CASH:
        cmd = AdjustCash(as_int(fields[1]), as_int(fields[2]), ts)
    elif tag == _HALT:
        cmd = HaltInstrument(_str(fields[1]), _str(fields[2]), ts)
    elif tag == _RESUME:
        cmd = ResumeInstrument(_str(fields[1]), ts)
    elif tag == _RELEASE:
        cmd = ReleaseHeld(as_int(fields[1]), ts)
    else:
        cmd = RejectHeld(as_int(fields[1]), ts)
    return cmd


def as_int(value: object) -> int:
    """A decoded field that must be an integer (a bool is not): the value, or CodecError."""
    if type(value) is not int:
        raise CodecError(f"expected an integer, got {type(value).__name__}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise CodecError(f"expected a string, got {type(value).__name__}")
    return value


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
