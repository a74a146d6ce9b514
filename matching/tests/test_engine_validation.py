"""Rejections of new orders (every RejectReason), cancels and amends of unknown symbols."""

import pytest

from matching.engine import (
    MAX_UNITS,
    AmendRejected,
    CancelRejected,
    NewOrder,
    OrderRejected,
    OrderType,
    RejectReason,
    STPMode,
    TimeInForce,
)
from matching.tests.conftest import BUY, SELL, SYM, refused_at_construction

R = RejectReason
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTD = TimeInForce.GTD

# (description, NewOrder keyword arguments, expected reason); defaults: limit buy 1 @ 100, GTC
CASES = [
    ("qty zero", {"qty": 0}, R.INVALID_QUANTITY),
    ("qty negative", {"qty": -5}, R.INVALID_QUANTITY),
    ("qty huge", {"qty": MAX_UNITS + 1}, R.INVALID_QUANTITY),
    ("qty float", {"qty": 1.0}, R.INVALID_QUANTITY),
    ("qty str", {"qty": "1"}, R.INVALID_QUANTITY),
    ("qty bool", {"qty": True}, R.INVALID_QUANTITY),
    ("qty None", {"qty": None}, R.INVALID_QUANTITY),
    ("market qty zero", {"qty": 0, "order_type": MARKET, "price": None}, R.INVALID_QUANTITY),
    ("limit without price", {"price": None}, R.INVALID_PRICE),
    ("price zero", {"price": 0}, R.INVALID_PRICE),
    ("price negative", {"price": -100}, R.INVALID_PRICE),
    ("price huge", {"price": MAX_UNITS + 1}, R.INVALID_PRICE),
    ("price float", {"price": 100.0}, R.INVALID_PRICE),
    ("price bool", {"price": True}, R.INVALID_PRICE),
    ("zero protection on market", {"order_type": MARKET, "price": 0}, R.INVALID_PRICE),
    ("float protection on market", {"order_type": MARKET, "price": 100.0}, R.INVALID_PRICE),
    ("price on stop", {"order_type": STOP, "stop_price": 90}, R.INVALID_PRICE),
    ("stop limit without price", {"order_type": STOP_LIMIT, "price": None, "stop_price": 90},
     R.INVALID_PRICE),
    ("stop price on limit", {"stop_price": 90}, R.INVALID_STOP_PRICE),
    ("stop price on market", {"order_type": MARKET, "price": None, "stop_price": 90}, R.INVALID_STOP_PRICE),
    ("stop without stop price", {"order_type": STOP, "price": None}, R.INVALID_STOP_PRICE),
    ("stop limit without stop price", {"order_type": STOP_LIMIT}, R.INVALID_STOP_PRICE),
    ("stop price zero", {"order_type": STOP, "price": None, "stop_price": 0}, R.INVALID_STOP_PRICE),
    ("stop price huge", {"order_type": STOP_LIMIT, "stop_price": MAX_UNITS + 1}, R.INVALID_STOP_PRICE),
    ("stop price float", {"order_type": STOP_LIMIT, "stop_price": 90.0}, R.INVALID_STOP_PRICE),
    ("day without expire_at", {"tif": TimeInForce.DAY}, R.INVALID_EXPIRY),
    ("gtd expire_at in the past", {"tif": GTD, "expire_at": 5, "timestamp": 10}, R.INVALID_EXPIRY),
    ("gtd expire_at == timestamp", {"tif": GTD, "expire_at": 10, "timestamp": 10}, R.INVALID_EXPIRY),
    ("gtc with expire_at", {"expire_at": 100}, R.INVALID_EXPIRY),
    ("post only ioc", {"post_only": True, "tif": TimeInForce.IOC}, R.INVALID_OPTIONS),
    ("post only fok", {"post_only": True, "tif": TimeInForce.FOK}, R.INVALID_OPTIONS),
    ("post only market", {"post_only": True, "order_type": MARKET, "price": None}, R.INVALID_OPTIONS),
    ("market day", {"order_type": MARKET, "price": None, "tif": TimeInForce.DAY, "expire_at": 100},
     R.INVALID_OPTIONS),
    ("stop gtd", {"order_type": STOP, "price": None, "stop_price": 200, "tif": TimeInForce.GTD,
                  "expire_at": 100}, R.INVALID_OPTIONS),
    ("post only stop limit", {"order_type": STOP_LIMIT, "stop_price": 200, "post_only": True},
     R.INVALID_OPTIONS),
    ("duplicate of resting", {"order_id": 500}, R.DUPLICATE_ORDER_ID),
    ("duplicate of pending stop", {"order_id": 501}, R.DUPLICATE_ORDER_ID),
    ("duplicate, other owner and side", {"order_id": 500, "owner": 9, "side": SELL, "price": 120},
     R.DUPLICATE_ORDER_ID),
    ("post only crossing", {"price": 110, "post_only": True}, R.POST_ONLY_WOULD_TAKE),
    ("buy stop at last", {"order_type": STOP, "price": None, "stop_price": 105}, R.STOP_WOULD_TRIGGER),
    ("sell stop above last", {"side": SELL, "order_type": STOP_LIMIT, "stop_price": 106},
     R.STOP_WOULD_TRIGGER),
    ("unknown symbol", {"symbol": "NOPE"}, R.UNKNOWN_SYMBOL),
]


@pytest.fixture
def seeded(h):
    """Last trade 105; resting ask 500 @ 110 (owner 7); pending sell stop 501 @ 50 (owner 7)."""
    h.sell(1, 1, 105, owner=8)
    h.buy(2, 1, 105, owner=9)
    h.sell(500, 5, 110, owner=7)
    h.stop(501, SELL, 5, stop_price=50, owner=7)
    return h


@pytest.mark.parametrize(("kw", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_new_order_rejected(seeded, kw, reason):
    h = seeded
    args = {"order_id": 1000, "owner": 1, "symbol": SYM, "side": BUY, "qty": 1, "price": 100,
            "order_type": LIMIT, "timestamp": 10, **kw}
    if refused_at_construction(NewOrder, **args):
        return
    before = h.engine.state_hash()
    ev = h.apply(NewOrder(**args))
    assert ev == [OrderRejected(args["order_id"], args["owner"], args["symbol"], reason, 10)]
    assert h.engine.state_hash() == before
    h.check()


def test_every_new_order_reason_is_covered():
    not_for_new_orders = {R.UNKNOWN_ORDER, R.NOT_AMENDABLE}
    # Decided by the risk stage before an order reaches the engine (risk/tests cover them).
    risk_stage = {R.POSITION_LIMIT, R.ORDER_SIZE, R.PRICE_BAND, R.INSUFFICIENT_FUNDS, R.HALTED,
                  R.HELD_REJECTED}
    assert {c[2] for c in CASES} == set(R) - not_for_new_orders - risk_stage


@pytest.mark.parametrize("otype", [LIMIT, STOP_LIMIT])
def test_max_units_accepted(h, otype):
    stop = MAX_UNITS if otype is STOP_LIMIT else None
    ev = h.new(1, BUY, MAX_UNITS, MAX_UNITS, order_type=otype, stop_price=stop)
    assert type(ev[0]).__name__ == "OrderAccepted"


def test_order_id_reusable_once_gone(h):
    h.sell(1, 1, 100)
    h.buy(2, 1, 100, owner=2)  # order 1 filled
    assert type(h.sell(1, 1, 101)[0]).__name__ == "OrderAccepted"
    h.cancel(1)
    assert type(h.buy(1, 1, 90)[0]).__name__ == "OrderAccepted"
    h.buy(3, 1, 100, tif=TimeInForce.IOC)
    assert type(h.buy(3, 1, 90)[0]).__name__ == "OrderAccepted"  # an IOC never became live


def test_rejected_order_id_not_live(h):
    h.buy(1, 0, 100)
    assert type(h.buy(1, 1, 100)[0]).__name__ == "OrderAccepted"


def test_cancel_unknown_symbol(h):
    ev = h.cancel(1, symbol="NOPE", ts=3)
    assert ev == [CancelRejected(1, 1, "NOPE", R.UNKNOWN_SYMBOL, 3)]


def test_amend_unknown_symbol(h):
    ev = h.amend(1, symbol="NOPE", ts=3, qty=2)
    assert ev == [AmendRejected(1, 1, "NOPE", R.UNKNOWN_SYMBOL, 3)]


def test_stp_value_accepted_for_every_mode(h):
    for i, mode in enumerate(STPMode):
        assert type(h.buy(i + 1, 1, 100, stp=mode)[0]).__name__ == "OrderAccepted"
