"""Replies survive encode/decode exactly (every event type, enums back as enums); malformed bytes are a
CodecError, never a crash."""

from __future__ import annotations

import typing

import msgpack
import pytest

from matching.engine import (
    AdvanceTime,
    AmendOrder,
    AmendRejected,
    BookDelta,
    CancelOrder,
    CancelReason,
    CancelRejected,
    Event,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    OrderType,
    RejectReason,
    Side,
    StopTriggered,
    STPMode,
    TimeInForce,
    Trade,
)
from matching.tests.conftest import random_commands
from matching.worker.codec import CodecError, WorkerCommand
from matching.worker.matcher import Matcher, Reply
from matching.worker.replies import decode_reply, encode_reply, register, registered
from risk.core import (
    AccountUpdate,
    AdjustCash,
    AdminApplied,
    AdminKind,
    AdminRejected,
    AdminRejectReason,
    AlertKind,
    Fence,
    FundedAmend,
    FundedOrder,
    HaltInstrument,
    HeldOrderReleased,
    InstrumentHalted,
    InstrumentResumed,
    InstrumentRisk,
    OrderHeld,
    PositionUpdate,
    RejectHeld,
    ReleaseHeld,
    ResumeInstrument,
    RiskAlert,
    RiskEvent,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
    UserLimit,
)

EVENTS: list[Event | RiskEvent] = [
    OrderAccepted(1, 2, "AAPL", Side.BUY, OrderType.STOP_LIMIT, 10_050, 7, 99),
    OrderAccepted(1, 2, "AAPL", Side.SELL, OrderType.MARKET, None, 7, 99),
    OrderRejected(3, 4, "MSFT", RejectReason.POST_ONLY_WOULD_TAKE, 100),
    Trade(5, "AAPL", 10_000, 3, 11, 2, Side.SELL, 0, 9, 4, 2, 101),
    OrderCanceled(9, 4, "AAPL", 2, CancelReason.SELF_TRADE, 102),
    OrderExpired(9, 4, "AAPL", 2, 103),
    OrderReduced(9, 4, "AAPL", 1, 1, CancelReason.SELF_TRADE, 104),
    OrderAmended(9, 4, "AAPL", None, 5, 3, 9_990, False, 105),
    CancelRejected(9, 4, "AAPL", RejectReason.UNKNOWN_ORDER, 106),
    AmendRejected(9, 4, "AAPL", RejectReason.NOT_AMENDABLE, 107),
    StopTriggered(12, 4, "AAPL", 9_990, 9_985, 108),
    BookDelta("AAPL", Side.SELL, 10_010, 0),
    # the risk stage's
    OrderHeld(13, 4, "AAPL", Side.BUY, 5_000, 10_000, 109),
    HeldOrderReleased(13, 4, "AAPL", 110),
    AccountUpdate(4, 10**12, 5 * 10**6, 111),
    PositionUpdate(4, "AAPL", -30, -3 * 10**6, 12_345, 112),
    RiskAlert(4, "AAPL", AlertKind.POSITION_LIMIT, "position 10001 > 10000", 113),
    InstrumentHalted("AAPL", "circuit_breaker", 10**18, 114),
    InstrumentHalted("MSFT", "news pending", None, 115),
    InstrumentResumed("AAPL", 116),
    AdminApplied(AdminKind.SET_INSTRUMENT_RISK, "AAPL", 117),
    AdminRejected(AdminKind.ADJUST_CASH, "4", AdminRejectReason.BELOW_RESERVED, "", 118),
]

COMMANDS = [
    NewOrder(7, 3, "AAPL", Side.SELL, 12, 10_050, OrderType.STOP_LIMIT, TimeInForce.GTD, False, 10_000,
             5_000, STPMode.DECREMENT, 99, "client-1"),
    CancelOrder(7, 3, "AAPL", 100),
    AmendOrder(7, 3, "AAPL", 10, None, 9_999, 101),
    AdvanceTime(10**18),
    SetInstrumentRisk(InstrumentRisk("AAPL", 100, 10_000, 1_000, 1_000, 500, 100_000, None, 1_000,
                                     300 * 10**9, 300 * 10**9), 7),
    SetUserLimit(UserLimit(4, "AAPL", 50, None), 8),
    SetDefaultCash(10**10, 9),
    AdjustCash(4, -500, 10),
    HaltInstrument("AAPL", "news", 11),
    ResumeInstrument("AAPL", 12),
    ReleaseHeld(13, 13),
    RejectHeld(13, 14),
    FundedOrder(NewOrder(8, 5, "AAPL", Side.BUY, 3, 10_000, timestamp=15, client_order_id="c2"),
                2 * 10**12 + 7, 30_000),
    FundedAmend(AmendOrder(8, 5, "AAPL", None, 10_100, None, 16), 2 * 10**12 + 7, 300),
    Fence(2, [2 * 10**12 + 9, 2 * 10**12 + 11], 17),
    None,
]


def test_every_event_type_is_covered():
    every = set(typing.get_args(Event)) | set(typing.get_args(RiskEvent))
    assert {type(e) for e in EVENTS} == every
    assert set(registered().values()) == every


def test_every_command_type_is_covered():
    assert {type(c) for c in COMMANDS} - {type(None)} == set(typing.get_args(WorkerCommand))


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trip(event):
    (decoded,) = decode_reply(encode_reply(Reply(1, 0, [event]))).events
    assert decoded == event
    assert type(decoded) is type(event)
    for value, original in zip(decoded, event, strict=True):
        assert type(value) is type(original)  # enums come back as enums, not strings


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_reply_round_trip(command):
    reply = Reply(42, 7, list(EVENTS), duplicate=command is None, command=command)
    decoded = decode_reply(encode_reply(reply))
    assert decoded == reply
    assert type(decoded.command) is type(command)


def test_real_engine_replies_round_trip():
    matcher = Matcher(["T"])
    for n, cmd in enumerate(random_commands(7, 400), start=1):
        if isinstance(cmd, NewOrder):
            cmd.client_order_id = f"c{n % 350}"  # some retries: duplicate replies
        reply = matcher.apply(n, n, cmd)
        assert decode_reply(encode_reply(reply)) == reply


def test_enums_travel_as_their_values():
    raw = msgpack.unpackb(encode_reply(Reply(1, 0, [BookDelta("T", Side.BUY, 1, 2)])))
    assert raw[5] == [["BookDelta", "T", "buy", 1, 2]]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([2, 1, 0, False, None, []]),  # unknown format
        msgpack.packb([1, 1, 0, False, None]),  # short
        msgpack.packb([1, "1", 0, False, None, []]),  # seq not an int
        msgpack.packb([1, 1, 0, 0, None, []]),  # duplicate not a bool
        msgpack.packb([1, 1, 0, False, b"\x93", []]),  # bad command
        msgpack.packb([1, 1, 0, False, None, [["Nope", 1]]]),  # unknown event
        msgpack.packb([1, 1, 0, False, None, [["BookDelta", "T", "buy", 1]]]),  # missing field
        msgpack.packb([1, 1, 0, False, None, [["BookDelta", "T", "up", 1, 2]]]),  # bad enum value
        msgpack.packb([1, 1, 0, False, None, [[]]]),
        msgpack.packb([1, 1, 0, False, None, "events"]),
        msgpack.packb({"seq": 1}),
    ],
)
def test_malformed_is_a_codec_error(data):
    with pytest.raises(CodecError):
        decode_reply(data)


def test_register_refuses_a_second_class_under_one_name():
    class BookDelta(typing.NamedTuple):  # same name, another class
        symbol: str

    with pytest.raises(ValueError, match="already registered"):
        register(BookDelta)
    with pytest.raises(TypeError):
        register(dict)
