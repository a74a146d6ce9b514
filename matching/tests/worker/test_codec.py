"""Commands survive encode/decode exactly; anything malformed is a CodecError, never a crash."""

import msgpack
import pytest

from matching.engine import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    NewOrder,
    OrderType,
    Side,
    STPMode,
    TimeInForce,
)
from matching.worker.codec import (
    CodecError,
    WorkerCommand,
    decode_batch,
    decode_command,
    encode_batch,
    encode_command,
)
from risk.core import Fence, FundedAmend, FundedOrder

COMMANDS = [
    NewOrder(7, 3, "AAPL", Side.SELL, 12, 10_050, OrderType.STOP_LIMIT, TimeInForce.GTD, False, 10_000,
             5_000, STPMode.DECREMENT, 99, "client-1"),
    NewOrder(8, 4, "MSFT", Side.BUY, 1, None, OrderType.MARKET, TimeInForce.IOC),
    NewOrder(9, 4, "MSFT", Side.BUY, 1, 100, post_only=True),
    CancelOrder(7, 3, "AAPL", 100),
    AmendOrder(7, 3, "AAPL", 10, None, 9_999, 101),
    AdvanceTime(10**18),
    FundedOrder(NewOrder(9, 4, "MSFT", Side.BUY, 2, 100, timestamp=5), 10**12 + 3, 200),
    FundedAmend(AmendOrder(9, 4, "MSFT", None, 101, None, 6), 10**12 + 3, 2),
    Fence(1, [10**12 + 4, 10**12 + 6], 7),
]


@pytest.mark.parametrize("fields", [
    [13, 9, 4, "MSFT", "buy", 2, 100],  # a funded order cut short
    [13, 9, 4, "MSFT", "buy", 2, 100, "limit", "gtc", False, None, None, "cancel_newest", 5, None, "x", 200],
    [14, 9, 4, "MSFT", None, 101, None, 6, 1, 2.5],  # a float extra
    [15, 1, "tickets", 7],  # tickets not an array
    [15, 1, [1, "2"], 7],  # a ticket not an integer
    [13],
])
def test_malformed_funded_commands_are_codec_errors(fields):
    with pytest.raises(CodecError):
        decode_command(msgpack.packb(fields))


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_round_trip(cmd):
    decoded = decode_command(encode_command(cmd))
    assert decoded == cmd
    assert type(decoded) is type(cmd)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        msgpack.packb(5),
        msgpack.packb([]),
        msgpack.packb([9, 1, 2]),  # unknown tag
        msgpack.packb([2, 1, 2]),  # cancel with too few fields
        msgpack.packb([2, "1", 2, "AAPL", 0]),  # order id not an integer
        msgpack.packb([2, 1, 2, 5, 0]),  # symbol not a string
        msgpack.packb([4, "soon"]),
        msgpack.packb([1, 1, 1, "AAPL", "up", 1, 1, "limit", "gtc", False, None, None, "none", 0, None]),
        msgpack.packb([1, 1, 1, "AAPL", "buy", 1, 1, "limit", "gtc", False, None, None, "none", 0, 5]),
    ],
)
def test_malformed_input_is_a_codec_error(data):
    with pytest.raises(CodecError):
        decode_command(data)


def test_encoding_something_else_is_refused():
    # Compiled, the codec checks its argument's type on entry (TypeError); interpreted, CodecError.
    with pytest.raises((CodecError, TypeError)):
        encode_command("not a command")  # type: ignore[arg-type]


def test_batch_round_trip_and_a_bad_entry_spoils_only_itself():
    cmds: list[WorkerCommand] = [CancelOrder(7, 1, "AAPL", 5), AdvanceTime(9), CancelOrder(8, 2, "MSFT", 6)]
    assert decode_batch(encode_batch(cmds)) == cmds
    entries = msgpack.unpackb(encode_batch(cmds))
    entries[1] = [99]
    decoded = decode_batch(msgpack.packb(entries))
    assert decoded[0] == cmds[0] and decoded[2] == cmds[2]
    assert isinstance(decoded[1], CodecError)
    for not_a_batch in (b"\xc1", msgpack.packb({"a": 1}), msgpack.packb(5)):
        with pytest.raises(CodecError):
            decode_batch(not_a_batch)


@pytest.mark.parametrize(
    "fields",
    [
        [5, "AAPL", 0, None, None, None, None, 0, None, None, 0, 0, 1],  # cash_per_tick_lot 0
        [5, "AAPL", 100],  # short
        [6, "four", "AAPL", 1, None, 1],  # owner not an int
        [7, "lots", 1],
        [8, 1, 2.5, 1],
        [9, "AAPL", None, 1],
        [10, 7, 1],
        [11, "1", 1],
        [12, 1, "now"],
        [13, 1, 1],  # no such tag
    ],
)
def test_malformed_admin_commands_are_codec_errors(fields):
    with pytest.raises(CodecError):
        decode_command(msgpack.packb(fields))
