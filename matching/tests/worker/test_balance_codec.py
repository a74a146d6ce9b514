"""Balance shard commands survive encode/decode exactly; anything malformed is a CodecError, never a crash."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import msgpack
import pytest

from matching.engine import AmendOrder, CancelOrder, NewOrder, OrderType, Side, STPMode, TimeInForce
from matching.worker.balance_codec import (
    BALANCE_FORMAT,
    BalanceStreamCommand,
    Place,
    PlaceAmend,
    balance_entry,
    balance_stream_key,
    decode_balance_command,
    encode_balance_command,
)
from matching.worker.codec import CodecError, encode_command
from risk.core.balances import Adjust, Reserve, Settle, SettleLine, Void
from risk.core.commands import SetDefaultCash

T = 10**12  # balance shard 1's first ticket is T + 1
ORDER = NewOrder(0, 7, "AAPL", Side.BUY, 10, 10_050, OrderType.STOP_LIMIT, TimeInForce.GTD, False, 10_000,
                 5_000, STPMode.DECREMENT, 99, "client-1")
AMEND = AmendOrder(5, 7, "AAPL", 20, 10_100, None, 12)

COMMANDS: list[BalanceStreamCommand] = [
    Place(ORDER, 2, 1_005_000),
    Place(NewOrder(0, 8, "MSFT", Side.SELL, 1, None, OrderType.MARKET, TimeInForce.IOC), 0, 0),
    PlaceAmend(AMEND, 2, T + 1, 2_020_000),
    Settle(3, 41, [SettleLine(7, T + 1, -1_000, 1_000, 5, False), SettleLine(8, None, 250, 0, None, True)],
           9),
    Settle(3, 42, [], 0),
    Void(2, [T + 1, T + 4], 11),
    Void(2, [], 0),
    Adjust(7, -500, "transfer-9", 13),
    Adjust(7, 500),
    SetDefaultCash(1_000_000, 14),
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_round_trip(cmd):
    decoded = decode_balance_command(encode_balance_command(cmd))
    assert decoded == cmd
    assert type(decoded) is type(cmd)


def test_the_order_travels_as_the_matching_codec_wrote_it():
    fields = msgpack.unpackb(encode_balance_command(Place(ORDER, 2, 5)))
    assert fields[1] == encode_command(ORDER)


def test_stream_key_and_entry_fields():
    assert balance_stream_key("exchange", 3) == "exchange:balances:3"
    assert balance_entry(b"x") == {"v": BALANCE_FORMAT, "c": b"x"}
    assert balance_entry(b"x", "reply") == {"v": BALANCE_FORMAT, "c": b"x", "r": "reply"}
    assert balance_entry(b"x", "reply", b"7") == {"v": BALANCE_FORMAT, "c": b"x", "r": "reply", "i": b"7"}


@pytest.mark.parametrize("cmd", [ORDER, Reserve(1, 2, 3), object()], ids=lambda c: type(c).__name__)
def test_only_balance_stream_commands_encode(cmd: Any):
    with pytest.raises(CodecError):
        encode_balance_command(cmd)


_ORDER_BYTES = encode_command(ORDER)
_AMEND_BYTES = encode_command(AMEND)
_LINE = [7, T + 1, -1, 1, 5, False]


@pytest.mark.parametrize("data", [
    b"",
    b"\xc1",  # never used in msgpack
    msgpack.packb(5),
    msgpack.packb([]),
    msgpack.packb(["101", _ORDER_BYTES, 2, 5]),  # tag not an integer
    msgpack.packb([100, 1, 2]),  # unknown tag
    encode_command(ORDER),  # a matching command on a balance stream
    encode_command(AMEND),
    msgpack.packb([101, _ORDER_BYTES, 2]),  # a Place cut short
    msgpack.packb([101, _ORDER_BYTES, 2, 5, 0]),  # one field too many
    msgpack.packb([101, _AMEND_BYTES, 2, 5]),  # a Place carrying an amendment
    msgpack.packb([101, encode_command(CancelOrder(1, 7, "AAPL")), 2, 5]),
    msgpack.packb([101, b"\xc1", 2, 5]),  # embedded garbage
    msgpack.packb([101, "not bytes", 2, 5]),
    msgpack.packb([101, _ORDER_BYTES, -1, 5]),  # negative matching shard
    msgpack.packb([101, _ORDER_BYTES, 2, -5]),  # negative amount
    msgpack.packb([101, _ORDER_BYTES, True, 5]),  # a bool is not a shard
    msgpack.packb([101, _ORDER_BYTES, 2, 5.0]),
    msgpack.packb([102, _ORDER_BYTES, 2, T + 1, 5]),  # a PlaceAmend carrying an order
    msgpack.packb([102, _AMEND_BYTES, 2, 0, 5]),  # ticket 0
    msgpack.packb([102, _AMEND_BYTES, 2, T + 1, None]),
    msgpack.packb([103, 3, 41, "lines", 9]),
    msgpack.packb([103, 3, 41, [_LINE[:5]], 9]),  # a line cut short
    msgpack.packb([103, 3, 41, [[*_LINE[:5], 1]], 9]),  # done not a bool
    msgpack.packb([103, 3, 41, [["7", *_LINE[1:]]], 9]),  # owner not an integer
    msgpack.packb([103, 3, 41, [[7, "T", *_LINE[2:]]], 9]),  # ticket neither integer nor nil
    msgpack.packb([103, 3, None, [_LINE], 9]),  # seq nil
    msgpack.packb([103, 3, 41, [_LINE], None]),  # timestamp nil
    msgpack.packb([104, 2, T + 1, 11]),  # tickets not an array
    msgpack.packb([104, 2, [T + 1, None], 11]),
    msgpack.packb([105, 7, 500, None, 13]),  # ref not a string
    msgpack.packb([105, 7, False, "", 13]),
    msgpack.packb([106, "1000", 14]),
    msgpack.packb([106, 1000]),
])
def test_malformed_input_is_a_codec_error(data):
    with pytest.raises(CodecError):
        decode_balance_command(data)


def test_mangled_encodings_only_ever_raise_codec_errors():
    """Flip, cut and extend valid encodings: each decodes to a command or raises CodecError."""
    rng = random.Random(13)
    encoded = [encode_balance_command(cmd) for cmd in COMMANDS]
    for _ in range(3_000):
        data = bytearray(rng.choice(encoded))
        for _ in range(rng.randint(1, 3)):
            action = rng.randrange(3)
            if action == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif action == 1 and data:
                del data[rng.randrange(len(data)):]
            else:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        with contextlib.suppress(CodecError):
            decode_balance_command(bytes(data))
