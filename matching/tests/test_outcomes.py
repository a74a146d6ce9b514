"""The outcome interpreter (matching/outcomes.py): what a reply's events did to each order."""

from __future__ import annotations

import pytest

from matching.engine import (
    AmendOrder,
    CancelOrder,
    CancelReason,
    CancelRejected,
    MatchingEngine,
    NewOrder,
    OrderAmended,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from matching.outcomes import LIVE, Liquidity, OrderOutcome, outcomes
from matching.tests.conftest import random_commands

SYMBOLS = ("T", "U")


def new(order_id: int, owner: int, side: Side, qty: int, price: int | None, **kw) -> NewOrder:
    return NewOrder(order_id, owner, "T", side, qty, price, **kw)


def test_a_taker_that_fills_one_maker_and_cancels_its_rest():
    eng = MatchingEngine(SYMBOLS)
    eng.apply(new(1, 10, Side.SELL, 3, 100))
    found = outcomes(eng.apply(new(2, 20, Side.BUY, 5, 100, tif=TimeInForce.IOC)))
    assert list(found) == [2, 1]  # in the order the events name them
    taker, maker = found[2], found[1]
    assert (taker.status, taker.remaining, taker.filled, taker.taken_away) == (OrderStatus.CANCELED, 0, 3, 2)
    assert taker.cancel_reason is not None and taker.accepted is not None and taker.owner == 20
    assert [(f.side, f.liquidity, f.price, f.qty) for f in taker.fills] == [
        (Side.BUY, Liquidity.TAKER, 100, 3)]
    assert (maker.status, maker.remaining, maker.accepted) == (OrderStatus.FILLED, 0, None)
    assert [(f.side, f.liquidity) for f in maker.fills] == [(Side.SELL, Liquidity.MAKER)]
    assert taker.notional == 300 and taker.live is False


def test_resting_partial_fill_stop_pending_amend_and_refusals():
    eng = MatchingEngine(SYMBOLS)
    eng.apply(new(1, 10, Side.SELL, 2, 100))
    rest = outcomes(eng.apply(new(2, 20, Side.BUY, 5, 100)))[2]
    assert (rest.status, rest.remaining, rest.live) == (OrderStatus.PARTIALLY_FILLED, 3, True)
    stop = outcomes(eng.apply(new(3, 20, Side.SELL, 1, None, order_type=OrderType.STOP, stop_price=90)))[3]
    assert stop.status is OrderStatus.PENDING and stop.status in LIVE
    refused = outcomes(eng.apply(CancelOrder(2, 99, "T")))[2]  # not the owner: refused, status unchanged
    assert refused.status is None and isinstance(refused.refused, CancelRejected) and refused.live is None
    assert refused.refused.reason is RejectReason.UNKNOWN_ORDER
    changed = outcomes(eng.apply(AmendOrder(2, 20, "T", qty=4)))[2]
    assert changed.status is None and isinstance(changed.amended, OrderAmended) and changed.remaining == 2
    gone = outcomes(eng.apply(CancelOrder(2, 20, "T")))[2]
    assert (gone.status, gone.remaining, gone.taken_away, gone.cancel_reason) == (
        OrderStatus.CANCELED, 0, 2, CancelReason.USER)


def test_a_rejection_and_events_of_no_order():
    eng = MatchingEngine(SYMBOLS)
    found = outcomes(eng.apply(new(1, 10, Side.BUY, 0, 100)))
    assert found[1].status is OrderStatus.REJECTED and found[1].reject_reason is not None
    assert outcomes([]) == {}


@pytest.mark.parametrize("seed", range(4))
def test_outcomes_account_for_every_lot_over_random_streams(seed):
    """Folded over every reply, each order's outcomes account for its quantity exactly:
    qty = filled + remaining + taken away (amendments change qty), and the last status agrees with it."""
    eng = MatchingEngine(SYMBOLS)
    seen: dict[int, dict] = {}
    for cmd in random_commands(seed, 1500, SYMBOLS):
        for order_id, outcome in outcomes(eng.apply(cmd)).items():
            state = seen.setdefault(order_id, {"qty": None, "filled": 0, "taken": 0, "status": None,
                                               "remaining": None})
            _fold(state, outcome)
    checked = 0
    for order_id, state in seen.items():
        if state["qty"] is None or state["status"] is OrderStatus.REJECTED:
            continue
        checked += 1
        assert state["qty"] == state["filled"] + state["remaining"] + state["taken"], (order_id, state)
        live = state["status"] in LIVE or state["status"] is None
        assert live == (state["remaining"] > 0), (order_id, state)
        if state["status"] is OrderStatus.FILLED:
            assert state["remaining"] == 0 and state["filled"] > 0
    assert checked > 100


def _fold(state: dict, outcome: OrderOutcome) -> None:
    if outcome.accepted is not None:
        state["qty"] = outcome.accepted.qty
    if outcome.amended is not None:  # the new total: what filled or left before still counts in it
        state["qty"] = outcome.amended.qty
    state["filled"] += outcome.filled
    state["taken"] += outcome.taken_away
    if outcome.remaining is not None:
        state["remaining"] = outcome.remaining
    if outcome.status is not None:
        state["status"] = outcome.status
