"""Average-cost positions, against an independent reference in exact Fractions, and the cash and
positions of a whole random flow against a simple recomputation from its trades."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching.engine import Side, Trade
from risk.core import AdjustCash, AdminApplied, Position

from .flow import CASH_PER_TICK_LOT, DEFAULT_CASH, Flow, new_engines, random_ops, setup_commands


class ExactPosition:
    """The textbook average-cost position in Fractions: no rounding at all."""

    def __init__(self) -> None:
        self.qty = 0
        self.cost = Fraction(0)
        self.realised = Fraction(0)
        self.partial_reductions = 0  # since the position was last flat: bounds the integer rounding

    def fill(self, lots: int, lot_value: int) -> None:
        for _ in range(abs(lots)):  # one lot at a time: a different route to the same numbers
            step = 1 if lots > 0 else -1
            if self.qty == 0 or (self.qty > 0) == (step > 0):
                self.qty += step
                self.cost += step * lot_value
            else:
                average = self.cost / self.qty
                self.realised += (lot_value - average) * (-step)
                self.cost -= average * (-step)
                self.qty += step
        if self.qty == 0:
            self.partial_reductions = 0


def test_open_add_reduce_close():
    p = Position("X")
    p.fill(10, 100)
    p.fill(10, 130)
    assert (p.qty, p.cost, p.realised) == (20, 2_300, 0)  # average 115
    p.fill(-5, 120)
    assert (p.qty, p.cost, p.realised) == (15, 1_725, 25)
    p.fill(-15, 100)
    assert (p.qty, p.cost, p.realised) == (0, 0, 25 - 225)


def test_flip_through_zero_opens_the_rest_at_the_fill_price():
    p = Position("X")
    p.fill(4, 100)
    p.fill(-10, 90)
    assert (p.qty, p.cost, p.realised) == (-6, -540, -40)
    p.fill(8, 80)  # closes the short at a 60 profit, opens 2 long at 80
    assert (p.qty, p.cost, p.realised) == (2, 160, 20)


def test_rounding_stays_in_the_open_cost_and_disappears_when_flat():
    p = Position("X")
    p.fill(3, 100)
    p.fill(1, 101)  # cost 401 over 4 lots
    p.fill(-1, 100)  # releases floor(401 / 4) = 100
    assert (p.cost, p.realised) == (301, 0)
    p.fill(-3, 100)
    assert (p.qty, p.cost, p.realised) == (0, 0, -1)
    q = Position("Y")
    q.fill(-3, 100)
    q.fill(-1, 101)  # cost -401
    q.fill(1, 100)  # releases floor(-401 / 4) = -101
    assert (q.cost, q.realised) == (-300, 1)


@given(st.lists(st.tuples(st.integers(-25, 25).filter(bool), st.integers(1, 10_000)), max_size=60))
def test_integer_positions_track_the_exact_reference(fills):
    p, exact = Position("X"), ExactPosition()
    spent = 0
    for lots, lot_value in fills:
        reduces = p.qty != 0 and (p.qty > 0) != (lots > 0) and abs(lots) < abs(p.qty)
        p.fill(lots, lot_value)
        exact.fill(lots, lot_value)
        exact.partial_reductions += reduces
        spent += lots * lot_value
        assert p.qty == exact.qty
        assert p.cost - p.realised == spent  # exact, whatever the rounding
        assert abs(p.cost - exact.cost) <= exact.partial_reductions
        assert abs(p.realised - exact.realised) <= exact.partial_reductions


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_random_flow_matches_a_recomputation_from_its_trades(seed):
    risk = new_engines()
    for cmd in setup_commands():
        risk.apply(cmd)
    flow = Flow(risk)
    cash: dict[int, int] = defaultdict(int)
    exact: dict[tuple[int, str], ExactPosition] = defaultdict(ExactPosition)
    for op in random_ops(seed, 3_000):
        cmd = flow.command(op)
        events = risk.apply(cmd)
        if isinstance(cmd, AdjustCash) and any(isinstance(e, AdminApplied) for e in events):
            cash[cmd.owner] += cmd.amount
        for t in (e for e in events if isinstance(e, Trade)):
            lot_value = t.price * CASH_PER_TICK_LOT[t.symbol]
            buyer, seller = ((t.taker_owner, t.maker_owner) if t.taker_side is Side.BUY
                             else (t.maker_owner, t.taker_owner))
            cash[buyer] -= lot_value * t.qty
            cash[seller] += lot_value * t.qty
            for owner, lots in ((buyer, t.qty), (seller, -t.qty)):
                position = exact[(owner, t.symbol)]
                before = position.qty
                position.fill(lots, lot_value)
                if before and (before > 0) != (lots > 0) and abs(lots) < abs(before):
                    position.partial_reductions += 1
    traded = 0
    for owner in risk.ledger.accounts:
        account = risk.account(owner)
        assert account is not None and account.cash == DEFAULT_CASH + cash[owner]
        for symbol, p in account.positions.items():
            reference = exact[(owner, symbol)]
            traded += reference.qty != 0
            assert p.qty == reference.qty
            assert abs(p.cost - reference.cost) <= reference.partial_reductions
            assert abs(p.realised - reference.realised) <= reference.partial_reductions
    assert traded
