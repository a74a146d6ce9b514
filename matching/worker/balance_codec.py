"""A balance shard's commands to bytes and back, and the entries of its Redis Stream.

The stream `{prefix}:balances:{shard}` (`balance_stream_key`) is one balance shard's durable,
ordered command log, read by its `BalanceRunner` alone. Two kinds of writer XADD to it, each entry
`{v: BALANCE_FORMAT, c: encoded command, r: reply list, i: request id}` (`balance_entry`; `r` and `i`
only when a caller waits for the answer, exactly as on a matching shard's stream):

    the web tier       Place (a new order and the cash to hold for it), PlaceAmend (an amendment of a
                       buy), Adjust (a deposit or withdrawal), SetDefaultCash
    matching runners   Settle (one matching seq's lines for this shard's owners), Void (the answer to
                       a Fence); no reply address

Encoding: MessagePack of a flat array, a tag first, then the fields in declaration order, like the
matching codec (codec.py). The tags (101...) share no value with the matching codec's, so a command
sent to the wrong kind of stream is undecodable rather than misread. A Place or PlaceAmend embeds the
order or amendment as the matching codec's bytes, so the order travels on exactly as the web wrote
it. Decoding checks every shape and type and raises `codec.CodecError` on anything else.

This layout is `BALANCE_FORMAT`: any change to a tag or a field is a new format (bump it; a runner
stops at an entry whose `v` it does not read, see formats.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgpack  # type: ignore[import-untyped]

from matching.engine import AmendOrder, NewOrder
from matching.worker.codec import CodecError, as_int, decode_command, encode_command
from matching.worker.entries import stream_entry
from risk.core.balances import Adjust, Settle, SettleLine, Void
from risk.core.commands import SetDefaultCash

BALANCE_FORMAT: Final = 1
BALANCE_FORMATS_READ: Final = (1,)


@dataclass(slots=True)
class Place:
    """A new order from the web (R1): hold `amount` cash units of its owner for it (0 for a sell, see
    risk.core.checks.funding), then send it on to `matching_shard`, its symbol's shard."""

    order: NewOrder
    matching_shard: int
    amount: int


@dataclass(slots=True)
class PlaceAmend:
    """An amendment of a buy (R1): the order's `ticket` must hold `needed` cash units afterwards, so it
    is extended by whatever it holds less, then the amendment goes on to `matching_shard`."""

    amend: AmendOrder
    matching_shard: int
    ticket: int
    needed: int


BalanceStreamCommand: TypeAlias = Place | PlaceAmend | Settle | Void | Adjust | SetDefaultCash

_PLACE, _PLACE_AMEND, _SETTLE, _VOID, _ADJUST, _SET_CASH = range(101, 107)
_pack = msgpack.Packer().pack


def balance_stream_key(prefix: str, shard: int) -> str:
    return f"{prefix}:balances:{shard}"


def balance_entry(payload: bytes, reply_key: str | bytes | None = None,
                  request_id: bytes | None = None) -> dict[Any, Any]:
    """The fields of a balance stream entry (entries.stream_entry, in BALANCE_FORMAT)."""
    return stream_entry(BALANCE_FORMAT, payload, reply_key, request_id)


def encode_balance_command(cmd: BalanceStreamCommand) -> bytes:
    fields: tuple
    if isinstance(cmd, Place):
        fields = (_PLACE, encode_command(cmd.order), cmd.matching_shard, cmd.amount)
    elif isinstance(cmd, PlaceAmend):
        fields = (_PLACE_AMEND, encode_command(cmd.amend), cmd.matching_shard, cmd.ticket, cmd.needed)
    elif isinstance(cmd, Settle):
        lines = [[ln.owner, ln.ticket, ln.cash, ln.release, ln.order_id, ln.done] for ln in cmd.lines]
        fields = (_SETTLE, cmd.matching_shard, cmd.seq, lines, cmd.timestamp)
    elif isinstance(cmd, Void):
        fields = (_VOID, cmd.matching_shard, list(cmd.tickets), cmd.timestamp)
    elif isinstance(cmd, Adjust):
        fields = (_ADJUST, cmd.owner, cmd.amount, cmd.ref, cmd.timestamp)
    elif isinstance(cmd, SetDefaultCash):
        fields = (_SET_CASH, cmd.amount, cmd.timestamp)
    else:
        raise CodecError(f"not a balance command: {type(cmd).__name__}")
    return _pack(fields)


def decode_balance_command(data: bytes) -> BalanceStreamCommand:
    try:
        fields = msgpack.unpackb(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable balance command: {exc}") from exc
    if not isinstance(fields, list) or not fields:
        raise CodecError(f"a balance command is a non-empty array, not {type(fields).__name__}")
    try:
        return _command(fields)
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # a compiled class refusing a type
        raise CodecError(f"undecodable balance command: {exc}") from exc


# tag -> number of fields, the tag included
_SHAPES: Final = {_PLACE: 4, _PLACE_AMEND: 5, _SETTLE: 5, _VOID: 4, _ADJUST: 5, _SET_CASH: 3}


def _command(fields: list) -> BalanceStreamCommand:
    tag = fields[0]
    if type(tag) is not int or _SHAPES.get(tag) != len(fields):
        raise CodecError(f"unknown balance command shape: tag {tag!r}, {len(fields)} fields")
    if tag == _PLACE:
        order = decode_command(_bytes(fields[1]))
        if not isinstance(order, NewOrder):
            raise CodecError(f"a Place carries a NewOrder, not {type(order).__name__}")
        return Place(order, _shard(fields[2]), _amount(fields[3]))
    if tag == _PLACE_AMEND:
        amend = decode_command(_bytes(fields[1]))
        if not isinstance(amend, AmendOrder):
            raise CodecError(f"a PlaceAmend carries an AmendOrder, not {type(amend).__name__}")
        ticket = as_int(fields[3])
        if ticket <= 0:
            raise CodecError(f"ticket must be positive, got {ticket}")
        return PlaceAmend(amend, _shard(fields[2]), ticket, _amount(fields[4]))
    if tag == _SETTLE:
        _, matching_shard, seq, lines, ts = fields
        if not isinstance(lines, list):
            raise CodecError("settle lines must be an array")
        return Settle(_shard(matching_shard), as_int(seq), [_line(line) for line in lines], as_int(ts))
    if tag == _VOID:
        _, matching_shard, tickets, ts = fields
        if not isinstance(tickets, list):
            raise CodecError("void tickets must be an array")
        return Void(_shard(matching_shard), [as_int(t) for t in tickets], as_int(ts))
    if tag == _ADJUST:
        _, owner, amount, ref, ts = fields
        if not isinstance(ref, str):
            raise CodecError(f"ref must be a string, got {type(ref).__name__}")
        return Adjust(as_int(owner), as_int(amount), ref, as_int(ts))
    return SetDefaultCash(as_int(fields[1]), as_int(fields[2]))


def _line(value: object) -> SettleLine:
    if not isinstance(value, list) or len(value) != 6:
        raise CodecError(f"a settle line is an array of 6 fields, not {value!r}")
    owner, ticket, cash, release, order_id, done = value
    if type(done) is not bool:
        raise CodecError(f"done must be a boolean, got {type(done).__name__}")
    return SettleLine(as_int(owner), _int_or_none(ticket), as_int(cash), as_int(release),
                      _int_or_none(order_id), done)


def _int_or_none(value: object) -> int | None:
    return None if value is None else as_int(value)


def _shard(value: object) -> int:
    shard = as_int(value)
    if shard < 0:
        raise CodecError(f"a shard number is not negative, got {shard}")
    return shard


def _amount(value: object) -> int:
    # the web computes these (checks.funding): a negative one is a bug, not a request to refuse
    amount = as_int(value)
    if amount < 0:
        raise CodecError(f"an amount to hold is not negative, got {amount}")
    return amount


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise CodecError(f"expected the matching codec's bytes, got {type(value).__name__}")
    return value
