"""Balance shards by user, matching shards by symbol (risk/core/pipeline.py): one account across shards.

The property: a random multi-symbol flow through two matching shards and two balance shards leaves
every account (cash, reserved) and every position exactly as one risk engine with all symbols and one
ledger does, command after command, with the same trades. A third twin runs the embedded default's
stages (one engine with a `LocalSettlement`: R1, the symbol's checks, R2 in one thread); it agrees
with both, and gives every order and amendment the pipeline's own answer (R1 refuses first).
"""

from __future__ import annotations

import json
import random
from copy import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from matching.engine import (
    AdvanceTime,
    AmendOrder,
    AmendRejected,
    CancelOrder,
    MatchingEngine,
    NewOrder,
    OrderAmended,
    OrderRejected,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
    Trade,
)
from risk.core import AdjustCash, AdminApplied, InstrumentRisk, RiskEngine, SetDefaultCash, SetInstrumentRisk
from risk.core.balances import BalanceShard
from risk.core.cash import LocalSettlement
from risk.core.checks import lot_unit
from risk.core.commands import REFUSED, FundedOrder
from risk.core.pipeline import Pipeline

from .conftest import ledger_errors, of

BUY, SELL = Side.BUY, Side.SELL
SHARDS = {0: ["AAPL", "T"], 1: ["MSFT", "IBM"]}
SYMBOLS = [symbol for names in SHARDS.values() for symbol in names]
CASH_PER_TICK_LOT = {"AAPL": 100, "MSFT": 100, "T": 1, "IBM": 1}
CASH = 300_000
OWNERS = 6


def configs(max_position: int | None = 40) -> list[SetInstrumentRisk]:
    return [SetInstrumentRisk(InstrumentRisk(symbol, CASH_PER_TICK_LOT[symbol], max_position=max_position,
                                             price_band_bps=1_500, reference_price=100), timestamp=1)
            for symbol in SYMBOLS]


def test_one_account_spends_across_matching_shards():
    """The issue's case: nearly all the cash on AAPL (matching shard 0), sold, and the proceeds spent on
    MSFT (matching shard 1); a deposit usable on either at once."""
    p = Pipeline(SHARDS, balance_shards=2)
    p.set_default_cash(1_000_000, 1)
    for config in configs(max_position=None):
        p.to_symbol(config.config.symbol, config)
    ts = iter(range(10, 10_000))

    def order(oid, owner, symbol, side, qty, price, **kw):
        return p.submit(NewOrder(oid, owner, symbol, side, qty, price, timestamp=next(ts), **kw))

    order(1, 2, "AAPL", SELL, 99, 100)
    assert of(order(2, 1, "AAPL", BUY, 99, 100), Trade)  # 990,000 of user 1's 1,000,000
    assert p.account(1) == (10_000, 0)
    assert of(order(3, 1, "MSFT", BUY, 1, 101), OrderRejected)[0].reason is RejectReason.INSUFFICIENT_FUNDS
    order(4, 4, "AAPL", BUY, 99, 101)
    assert of(order(5, 1, "AAPL", SELL, 99, 101, order_type=OrderType.MARKET), Trade)  # protected at 101
    assert p.account(1) == (10_000 + 99 * 101 * 100, 0)
    order(6, 3, "MSFT", SELL, 100, 110)
    assert of(order(7, 1, "MSFT", BUY, 91, 110), Trade)  # 1,001,000 of its 1,009,900
    assert p.account(1) == (8_900, 0)
    assert of(order(8, 1, "MSFT", BUY, 1, 110), OrderRejected)  # 11,000 > 8,900
    assert p.adjust(1, 2_100, next(ts))
    assert of(order(9, 1, "MSFT", BUY, 1, 110), Trade)  # the deposit, spent at once on the other shard
    assert p.account(1) == (0, 0)
    assert position(p.matching[0].position(1, "AAPL"))[0] == 0
    assert position(p.matching[1].position(1, "MSFT"))[0] == 92
    for shard in p.balances.values():
        assert shard.check() == []


def test_a_reservation_whose_order_never_arrived_is_released_by_the_fence():
    p = Pipeline(SHARDS, balance_shards=2)
    p.set_default_cash(100_000, 1)
    lost = p.reserve(NewOrder(1, 3, "T", BUY, 10, 100, timestamp=2))
    kept = p.reserve(NewOrder(2, 3, "T", BUY, 5, 100, timestamp=3))
    assert isinstance(lost, FundedOrder) and isinstance(kept, FundedOrder)
    assert p.to_symbol("T", kept) and p.account(3) == (100_000, 1_500)  # one arrived, one did not
    assert p.balance_shard(3).unconfirmed(0) == [lost.ticket]
    p.recover(1, 4)  # owner 3's balance shard restarts
    assert p.account(3) == (100_000, 500) and p.balance_shard(3).unconfirmed(0) == []
    assert p.to_symbol("T", lost) == []  # arriving after all: turned away, nothing held or traded
    assert p.matching[0].engine.books["T"].orders.keys() == {2}
    p.recover(1, 5)  # again: nothing unconfirmed, nothing changes
    assert p.account(3) == (100_000, 500)
    for shard in p.balances.values():
        assert shard.check() == []


def test_an_order_r1_refuses_is_rejected_by_its_matching_shard_under_its_own_id():
    """Refused at R1, the order still reaches its symbol's matching shard (ticket REFUSED), which rejects
    it under the order's id (in production the id that shard numbers it with): the caller gets that id,
    and the order is in the history and the audit trail like any rejection. Nothing is held or settled;
    a retried client_order_id of it settles nothing either."""
    p = Pipeline(SHARDS, balance_shards=2)
    p.set_default_cash(1_000, 1)
    for config in configs():
        p.to_symbol(config.config.symbol, config)
    applied = p.seqs[1]
    order = NewOrder(7, 1, "MSFT", BUY, 1, 101, timestamp=5)  # 10,100 of cash against 1,000
    got = p.submit(order)
    assert [(type(e), e.order_id, e.reason) for e in got] == [(OrderRejected, 7, INSUFFICIENT)]
    assert p.seqs[1] == applied + 1  # MSFT's matching shard applied it
    assert p.account(1) is None  # a refused reservation opens nothing at its balance shard
    assert p.matching[1].unfunded(FundedOrder(order, REFUSED, 0)) == []  # no ticket to give back
    for shard in p.balances.values():
        assert shard.check() == []


def test_an_amendment_that_needs_more_cash_goes_through_r1():
    p = Pipeline(SHARDS, balance_shards=2)
    p.set_default_cash(10_000, 1)
    p.submit(NewOrder(1, 3, "T", BUY, 10, 900, timestamp=2))  # 9,000 of 10,000
    record = p.matching[0].ledger.orders[1]
    up = AmendOrder(1, 3, "T", price=1_000, timestamp=3)  # needs 10,000: 1,000 more, all there is
    assert of(p.amend(up, record.ticket, 10 * 1_000), OrderAmended)
    assert p.account(3) == (10_000, 10_000)
    too_far = AmendOrder(1, 3, "T", price=1_001, timestamp=4)
    refused = p.amend(too_far, record.ticket, 10 * 1_001)
    assert [(type(e), e.reason) for e in refused] == [(AmendRejected, RejectReason.INSUFFICIENT_FUNDS)]
    assert p.account(3) == (10_000, 10_000) and record.price == 1_000
    down = AmendOrder(1, 3, "T", qty=4, timestamp=5)  # needs less: straight to the matching shard
    assert of(p.amend(down, record.ticket, 4 * 1_000), OrderAmended)
    assert p.account(3) == (10_000, 4_000) and record.reserved == 4_000
    for shard in p.balances.values():
        assert shard.check() == []


INSUFFICIENT = RejectReason.INSUFFICIENT_FUNDS

# ---- the property ---------------------------------------------------------------------------------

# (kind 0-99, owner 1-6, symbol 0-3, side 0-1, qty 1-8, price 90-110, aux 0-9999)
Op = tuple[int, int, int, int, int, int, int]
ops = st.tuples(st.integers(0, 99), st.integers(1, OWNERS), st.integers(0, 3), st.integers(0, 1),
                st.integers(1, 8), st.integers(90, 110), st.integers(0, 9_999))


class Twins:
    """The same commands through the pipeline and through one risk engine with one ledger."""

    def __init__(self) -> None:
        self.pipeline = Pipeline(SHARDS, balance_shards=2)
        self.single = RiskEngine(MatchingEngine(SYMBOLS))
        self.local = RiskEngine(MatchingEngine(SYMBOLS), stage=LocalSettlement(BalanceShard(0)))
        self.ts = 1
        self.next_id = 1
        self.placed: list[NewOrder] = []
        self.pipeline.set_default_cash(CASH, 1)
        self.single.apply(SetDefaultCash(CASH, timestamp=1))
        self.local.apply(SetDefaultCash(CASH, timestamp=1))
        for config in configs():
            self.pipeline.to_symbol(config.config.symbol, config)
            self.single.apply(config)
            self.local.apply(config)
        self.seen: set[str] = set()

    def step(self, op: Op) -> None:
        kind, owner, sym, side_no, qty, price, aux = op
        self.ts += 1 + aux % 3
        ts = self.ts
        # Time passes on every shard first. A book expires its due orders when a command reaches it, and
        # an order its balance shard refuses never reaches it: so without this the one ledger (whose
        # symbol check expires the book before the funds check) would free an expiring order's cash
        # one command earlier. The matcher applies time as it passes (AdvanceTime), so both agree.
        self.advance(ts - 1)
        symbol = SYMBOLS[sym]
        side = BUY if side_no == 0 else SELL
        if kind < 3:  # reserved, then lost on its way (a crash between R1 and ME): the shard recovers
            lost = NewOrder(self.next_id, owner, symbol, side, qty, price, timestamp=ts)
            funded = self.pipeline.reserve(lost)
            self.next_id += 1
            self.pipeline.recover(self.pipeline.balance_shard(owner).shard, ts)
            late = self.pipeline.to_symbol(symbol, funded) if isinstance(funded, FundedOrder) else []
            if isinstance(funded, FundedOrder) and funded.ticket == REFUSED:  # rejected whenever it comes
                assert [(type(e), e.reason) for e in late] == [(OrderRejected, INSUFFICIENT)]
                self.seen.add("lost refusal")
            elif isinstance(funded, FundedOrder):  # late: the fence turns it away, nothing changes
                assert late == []
                self.seen.add("lost")
        elif kind < 55:
            self.new(NewOrder(self.next_id, owner, symbol, side, qty, price, **self.options(aux, ts)))
        elif kind < 65:
            protection = price + (5 if side is BUY else -5)
            self.new(NewOrder(self.next_id, owner, symbol, side, qty, protection, OrderType.MARKET,
                              tif=TimeInForce.FOK if aux % 7 == 0 else TimeInForce.GTC, timestamp=ts))
        elif kind < 72:
            stop = price + (3 if side is BUY else -3)
            limit = None if aux % 2 else stop + (2 if side is BUY else -2)
            self.new(NewOrder(self.next_id, owner, symbol, side, qty, limit,
                              OrderType.STOP if limit is None else OrderType.STOP_LIMIT, stop_price=stop,
                              timestamp=ts))
        elif kind < 84 and self.placed:
            target = self.placed[aux % len(self.placed)]
            self.both(target.symbol, CancelOrder(target.order_id, target.owner, target.symbol, ts))
        elif kind < 90 and self.placed:
            target = self.placed[aux % len(self.placed)]
            # prices up or down (a buy's up goes through R1), quantities up or down
            change = 1 if aux % 4 < 2 else -1
            if target.price is not None and aux % 2:
                amend = AmendOrder(target.order_id, target.owner, target.symbol, price=target.price + change,
                                   timestamp=ts)
            else:
                amend = AmendOrder(target.order_id, target.owner, target.symbol,
                                   qty=max(1, target.qty + change), timestamp=ts)
            self.amend(target, amend)
        elif kind < 95:
            amount = (aux % 50 + 1) * 1_000 * (1 if side is BUY else -1)
            done = self.pipeline.adjust(owner, amount, ts)
            applied = of(self.single.apply(AdjustCash(owner, amount, timestamp=ts)), AdminApplied)
            assert done == bool(applied), (owner, amount)
            assert bool(of(self.local.apply(AdjustCash(owner, amount, timestamp=ts)), AdminApplied)) == done
            self.seen.add("adjust" if done else "adjust refused")
        else:
            self.advance(ts)
        self.compare()

    def advance(self, ts: int) -> None:
        for shard in self.pipeline.matching:
            self.pipeline.on_shard(shard, AdvanceTime(ts))
        self.single.apply(AdvanceTime(ts))
        self.local.apply(AdvanceTime(ts))

    @staticmethod
    def options(aux: int, ts: int) -> dict:
        choice = aux % 10
        if choice == 0:
            return {"tif": TimeInForce.IOC, "timestamp": ts}
        if choice == 1:
            return {"tif": TimeInForce.GTD, "expire_at": ts + 5 + aux % 20, "timestamp": ts}
        return {"timestamp": ts}

    def new(self, cmd: NewOrder) -> None:
        self.next_id += 1
        self.placed.append(cmd)
        twin = NewOrder(cmd.order_id, cmd.owner, cmd.symbol, cmd.side, cmd.qty, cmd.price, cmd.order_type,
                        cmd.tif, cmd.post_only, cmd.stop_price, cmd.expire_at, cmd.stp, cmd.timestamp)
        local = copy(cmd)
        got = self.pipeline.submit(cmd)
        want = self.single.apply(twin)
        assert trades(got) == trades(want), cmd
        answer = self.local.apply(local)
        assert trades(answer) == trades(got) and refusals(answer) == refusals(got), cmd
        rejected = of(want, OrderRejected)
        self.seen.add("rejected" if rejected else "trade" if trades(want) else "placed")

    def amend(self, target: NewOrder, cmd: AmendOrder) -> None:
        """As the web tier would: the order's ticket and what it will reserve, from what it knows of
        the order (here the matching shard's own record: no fill is in flight in one thread)."""
        engine = self.pipeline.matching[self.pipeline.shard_of[target.symbol]]
        record = engine.ledger.orders.get(cmd.order_id)
        if record is None or record.side is not BUY or record.pooled:
            got = self.pipeline.to_symbol(target.symbol, cmd)
        else:
            price = record.price if cmd.price is None else cmd.price
            unit = lot_unit(price, record.stop_price)
            remaining = record.remaining if cmd.qty is None else record.remaining + cmd.qty - record.qty
            needed = max(0, remaining) * unit * CASH_PER_TICK_LOT[target.symbol]
            through_r1 = needed > record.reserved  # read first: an accepted amendment changes it
            got = self.pipeline.amend(cmd, record.ticket, needed)
            if through_r1:
                at_r1 = of(got, AmendRejected) and not of(got, OrderAmended) and len(got) == 1
                self.seen.add("amend refused at R1" if at_r1 else "amend through R1")
        answer = self.local.apply(copy(cmd))  # R1 in the same engine: it works out the extra itself
        want = self.single.apply(cmd)
        assert trades(got) == trades(want), cmd
        assert trades(answer) == trades(got) and refusals(answer) == refusals(got), cmd
        accepted = bool(of(want, OrderAmended))
        assert accepted == bool(of(got, OrderAmended)), (cmd, got, want)
        self.seen.add("amended" if accepted else "amend refused")

    def both(self, symbol: str, cmd: CancelOrder | AmendOrder) -> None:
        got = self.pipeline.to_symbol(symbol, cmd)
        assert trades(self.local.apply(copy(cmd))) == trades(got), cmd
        want = self.single.apply(cmd)
        assert trades(got) == trades(want), cmd

    def compare(self) -> None:
        for owner in range(1, OWNERS + 1):
            single = self.single.account(owner)
            want = (CASH, 0) if single is None else (single.cash, single.reserved)
            assert (self.pipeline.account(owner) or (CASH, 0)) == want, owner
            local = self.local.account(owner)
            assert want == ((CASH, 0) if local is None else (local.cash, local.reserved)), owner
            for symbol in SYMBOLS:
                engine = self.pipeline.matching[self.pipeline.shard_of[symbol]]
                got, expected = engine.position(owner, symbol), self.single.position(owner, symbol)
                assert position(got) == position(expected), (owner, symbol)
                assert position(self.local.position(owner, symbol)) == position(expected), (owner, symbol)
        for shard in [*self.pipeline.balances.values(), self.local.balances]:
            assert shard.check() == []
        assert ledger_errors(self.single) == []


def through_json(value):
    return json.loads(json.dumps(value))


def restored_engine(risk: RiskEngine) -> RiskEngine:
    engine = MatchingEngine.from_state(through_json(risk.engine.state()))
    again = RiskEngine.from_state(through_json(risk.state()), engine)
    assert again.state_hash() == risk.state_hash() and isinstance(again.cash, LocalSettlement)
    return again


def restored(p: Pipeline) -> Pipeline:
    for shard, risk in p.matching.items():
        engine = MatchingEngine.from_state(through_json(risk.engine.state()))
        p.matching[shard] = RiskEngine.from_state(through_json(risk.state()), engine)
        assert p.matching[shard].state_hash() == risk.state_hash()
    for shard, balances in p.balances.items():
        p.balances[shard] = BalanceShard.from_state(through_json(balances.state()))
        assert p.balances[shard].state_hash() == balances.state_hash()
    return p


def refusals(events: list) -> list[tuple]:
    return [(type(e).__name__, e.order_id, e.reason) for e in events
            if type(e) in (OrderRejected, AmendRejected)]


def trades(events: list) -> list[tuple]:
    return [(t.symbol, t.trade_id, t.price, t.qty, t.taker_order_id, t.maker_order_id)
            for t in of(events, Trade)]


def position(p) -> tuple[int, int, int]:
    return (0, 0, 0) if p is None else (p.qty, p.cost, p.realised)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, min_size=1, max_size=120))
def test_a_random_flow_across_shards_matches_one_ledger(flow: list[Op]):
    twins = Twins()
    for op in flow:
        twins.step(op)


def test_long_seeded_flows_across_shards_match_one_ledger():
    seen: set[str] = set()
    for seed in range(3):
        rng = random.Random(seed)
        twins = Twins()
        for i in range(2_000):
            twins.step((rng.randrange(100), rng.randint(1, OWNERS), rng.randrange(4), rng.randrange(2),
                        rng.randint(1, 8), rng.randint(90, 110), rng.randrange(10_000)))
            if i == 1_000:  # every shard restored from its snapshot (through JSON) goes on the same
                twins.pipeline = restored(twins.pipeline)
                twins.local = restored_engine(twins.local)
        seen |= twins.seen
    assert seen >= {"placed", "trade", "rejected", "adjust", "adjust refused", "lost", "amended",
                    "amend refused", "amend through R1"}
