"""Pre-trade risk latency: the whole check of each new order, and what risk adds per command.

    python bench/risk_bench.py [--commands 260000] [--runs 5] [--seed 7]

A seeded stream over AAPL, GOOGL, MSFT and TSLA (every limit configured: order size, position,
price band, hold rule, circuit breaker; 2,000 owners, a quarter of the orders from 20 of them; 1% block
orders of 300-1,500 lots) is generated once, untimed, with a risk engine as the oracle for what is
resting: about 55% passive limit orders around a random-walk mid, 15% marketable (half market
orders, half crossing limits), 5% stop and stop-limit orders, 20% cancels and 5% amends.

Each run drives the stream through a fresh `RiskEngine` and times `RiskEngine.check_new(cmd)` for
every NewOrder: checks 1-6, the reservation it computes (a market buy walks the asks), nothing
changed; then applies the command untimed. Reported: p50 / p99 / p99.9 of those checks (market buys
alone too), medians over the runs. Then whole-command throughput, `RiskEngine.apply` against
`MatchingEngine.apply` alone on the same stream: the difference is everything risk adds (checks,
reservations, settlement, updates), and the same with the exchange's stages (LocalSettlement: each
order funded first, a market buy at its protection price, its cash settled after). The cyclic garbage
collector is off while timing, as in engine_bench.py (and the matcher).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import gc_off, parse_args, percentile, print_header, timer_overhead_ns
from matching.engine import (
    AmendOrder,
    CancelOrder,
    MatchingEngine,
    NewOrder,
    OrderRejected,
    OrderType,
    Side,
    Trade,
)
from risk.core import (
    InstrumentRisk,
    OrderHeld,
    RiskEngine,
    SetDefaultCash,
    SetInstrumentRisk,
)
from risk.core import engine as risk_engine_module
from risk.core.balances import BalanceShard
from risk.core.cash import LocalSettlement

SYMBOLS = ("AAPL", "GOOGL", "MSFT", "TSLA")
START_MID = 10_000  # ticks: 100.00 at tick 0.01
OWNERS = 2_000
ACTIVE_OWNERS = 20  # a quarter of the orders come from these, so positions and open orders build up
STEP_NS = 1_000_000  # one command a millisecond of engine time


def setup_commands() -> list:
    """Seed-like limits: AAPL 10,000 / 1,000, GOOGL 5,000 / 500, MSFT and TSLA like AAPL; a 10% band,
    orders above 5% of 10,000 lots a day held, a 10% move within a minute halts for 5 minutes."""
    commands: list = [SetDefaultCash(10**12, timestamp=1)]
    for symbol in SYMBOLS:
        max_position, max_qty = (5_000, 500) if symbol == "GOOGL" else (10_000, 1_000)
        commands.append(SetInstrumentRisk(InstrumentRisk(
            symbol, 100, max_position=max_position, max_order_qty=max_qty, price_band_bps=1_000,
            hold_volume_bps=500, reference_daily_volume=10_000, reference_price=START_MID,
            circuit_move_bps=1_000, circuit_window_ns=60 * 10**9, circuit_halt_ns=300 * 10**9), timestamp=2))
    return commands


class StreamBuilder:
    """Generates the stream with a risk engine as the oracle for what is resting (untimed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.risk = RiskEngine(MatchingEngine(SYMBOLS))
        for cmd in setup_commands():
            self.risk.apply(cmd)
        self.mid = dict.fromkeys(SYMBOLS, START_MID)
        self.live: dict[str, list[int]] = {s: [] for s in SYMBOLS}
        self.next_id = 0
        self.commands: list = []

    def build(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            symbol = rng.choice(SYMBOLS)
            if rng.random() < 0.3:
                self.mid[symbol] += rng.choice((-1, 1))
            roll = rng.random()
            if roll < 0.20 and self.live[symbol]:
                self._cancel(symbol)
            elif roll < 0.25 and self.live[symbol]:
                self._amend(symbol)
            elif roll < 0.30:
                self._stop(symbol)
            elif not (roll < 0.45 and self._marketable(symbol)):
                self._passive(symbol)

    def _apply(self, cmd) -> None:
        self.commands.append(cmd)
        self.risk.apply(cmd)

    def _order(self, symbol: str, side: Side, qty: int, price: int | None, **kw) -> None:
        self.next_id += 1
        rng = self.rng
        owner = rng.randint(1, ACTIVE_OWNERS) if rng.random() < 0.25 else rng.randint(1, OWNERS)
        cmd = NewOrder(self.next_id, owner, symbol, side, qty, price, timestamp=self._ts(), **kw)
        self._apply(cmd)
        if cmd.order_id in self.risk.engine.books[symbol].orders:
            self.live[symbol].append(cmd.order_id)

    def _ts(self) -> int:
        return (len(self.commands) + 10) * STEP_NS

    def _qty(self, mean: int) -> int:
        if self.rng.random() < 0.01:  # the odd block order: held, or beyond the order size limit
            return self.rng.randint(300, 1_500)
        return 1 + min(int(self.rng.expovariate(1 / mean)), 1_200)

    def _passive(self, symbol: str) -> None:
        rng, book = self.rng, self.risk.engine.books[symbol]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        offset = 1 + min(int(rng.expovariate(1 / 6)), 60)
        if side is Side.BUY:
            price = self.mid[symbol] - offset
            ask = book.best_ask()
            price = price if ask is None else min(price, ask - 1)
        else:
            price = self.mid[symbol] + offset
            bid = book.best_bid()
            price = price if bid is None else max(price, bid + 1)
        self._order(symbol, side, self._qty(20), price)

    def _marketable(self, symbol: str) -> bool:
        rng, book = self.rng, self.risk.engine.books[symbol]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        best = book.best_ask() if side is Side.BUY else book.best_bid()
        if best is None:
            return False
        if rng.random() < 0.5:
            self._order(symbol, side, self._qty(40), None, order_type=OrderType.MARKET)
        else:
            price = best + rng.randint(0, 3) if side is Side.BUY else best - rng.randint(0, 3)
            self._order(symbol, side, self._qty(40), price)
        return True

    def _stop(self, symbol: str) -> None:
        rng = self.rng
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        away = 5 + rng.randint(0, 40)
        stop = self.mid[symbol] + away if side is Side.BUY else self.mid[symbol] - away
        limit = None if rng.random() < 0.5 else stop + (2 if side is Side.BUY else -2)
        otype = OrderType.STOP if limit is None else OrderType.STOP_LIMIT
        last = self.risk.engine.books[symbol].last_price
        if last is not None and (stop <= last if side is Side.BUY else stop >= last):
            return self._passive(symbol)
        self._order(symbol, side, self._qty(20), limit, order_type=otype, stop_price=stop)

    def _pick(self, symbol: str):
        ids, orders = self.live[symbol], self.risk.engine.books[symbol].orders
        while ids:
            index = self.rng.randrange(len(ids))
            order = orders.get(ids[index])
            if order is not None:
                return index, order
            ids[index] = ids[-1]
            ids.pop()
        return None

    def _cancel(self, symbol: str) -> None:
        picked = self._pick(symbol)
        if picked is None:
            return self._passive(symbol)
        index, order = picked
        ids = self.live[symbol]
        ids[index] = ids[-1]
        ids.pop()
        self._apply(CancelOrder(order.order_id, order.owner, symbol, self._ts()))

    def _amend(self, symbol: str) -> None:
        picked = self._pick(symbol)
        if picked is None:
            return self._passive(symbol)
        order = picked[1]
        if order.price is not None and self.rng.random() < 0.5:
            step = -1 if order.side is Side.BUY else 1  # away from the spread: no crossing
            self._apply(AmendOrder(order.order_id, order.owner, symbol, price=order.price + step,
                                   timestamp=self._ts()))
        else:
            qty = max(order.qty - order.remaining + 1, order.qty - self.rng.randint(1, 5))
            self._apply(AmendOrder(order.order_id, order.owner, symbol, qty=qty, timestamp=self._ts()))


def check_run(commands: list) -> tuple[list[int], list[int]]:
    """One run: every NewOrder's check_new timed (ns), market buys apart; commands applied untimed."""
    risk = RiskEngine(MatchingEngine(SYMBOLS))
    for cmd in setup_commands():
        risk.apply(cmd)
    check, apply, clock = risk.check_new, risk.apply, time.perf_counter_ns
    latencies: list[int] = []
    market_buys: list[int] = []
    record = latencies.append
    for cmd in commands:
        if type(cmd) is NewOrder:
            t0 = clock()
            check(cmd)
            elapsed = clock() - t0
            record(elapsed)
            if cmd.order_type is OrderType.MARKET and cmd.side is Side.BUY:
                market_buys.append(elapsed)
        apply(cmd)
    return latencies, market_buys


def throughput_run(commands: list, with_risk: bool, funded: bool = False) -> float:
    """Seconds to apply the stream, through RiskEngine.apply (`funded`: with the exchange's stages, R1
    before the checks and R2 after: LocalSettlement) or MatchingEngine.apply alone."""
    engine = MatchingEngine(SYMBOLS)
    if with_risk:
        risk = RiskEngine(engine, stage=LocalSettlement(BalanceShard(0)) if funded else None)
        for cmd in setup_commands():
            risk.apply(cmd)
        apply: Callable = risk.apply
    else:
        apply = engine.apply
    t0 = time.perf_counter()
    for cmd in commands:
        apply(cmd)
    return time.perf_counter() - t0


def describe(commands: list, oracle: RiskEngine) -> str:
    n = len(commands)
    new = [c for c in commands if type(c) is NewOrder]
    market = sum(1 for c in new if c.order_type is OrderType.MARKET)
    stops = sum(1 for c in new if c.order_type in (OrderType.STOP, OrderType.STOP_LIMIT))
    cancels = sum(1 for c in commands if type(c) is CancelOrder)
    amends = sum(1 for c in commands if type(c) is AmendOrder)
    return (f"{n} commands: {len(new)} new orders ({market} market, {stops} stop), {cancels} cancels, "
            f"{amends} amends; {len(oracle.held)} held at the end")


def outcome_counts(commands: list) -> str:
    risk = RiskEngine(MatchingEngine(SYMBOLS))
    for cmd in setup_commands():
        risk.apply(cmd)
    rejected: dict[str, int] = {}
    trades = held = 0
    for cmd in commands:
        for event in risk.apply(cmd):
            if type(event) is OrderRejected:
                rejected[event.reason.value] = rejected.get(event.reason.value, 0) + 1
            elif type(event) is Trade:
                trades += 1
            elif type(event) is OrderHeld:
                held += 1
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items()))
    return f"{trades} trades, {held} held, rejected: {reasons or 'none'}"


def main() -> int:
    args = parse_args(__doc__, commands=260_000, runs=5)
    print_header()
    compiled = risk_engine_module.__file__ is not None and not risk_engine_module.__file__.endswith(".py")
    print(f"risk:    {'compiled by mypyc' if compiled else 'interpreted'} ({risk_engine_module.__file__})")
    t0 = time.perf_counter()
    builder = StreamBuilder(args.seed)
    builder.build(args.commands)
    commands = builder.commands
    built = time.perf_counter() - t0
    print(f"stream:  seed {args.seed}, built in {built:.1f}s; {describe(commands, builder.risk)}")
    print(f"         {outcome_counts(commands)}")
    del builder

    quantiles = (0.5, 0.99, 0.999)
    per_run, market_runs = [], []
    for _ in range(args.runs):
        latencies, market_buys = gc_off(check_run, commands)
        latencies.sort()
        market_buys.sort()
        per_run.append([percentile(latencies, q) for q in quantiles] + [statistics.fmean(latencies) / 1000])
        market_runs.append([percentile(market_buys, q) for q in quantiles])
    p50, p99, p999, mean = (statistics.median(column) for column in zip(*per_run, strict=True))
    print(f"\ncheck_new per new order (us), medians over {args.runs} runs of {len(latencies)} checks; "
          f"includes the clock's own {timer_overhead_ns() / 1000:.2f} us a reading:")
    print(f"  all orders   p50 {p50:6.2f}  p99 {p99:6.2f}  p99.9 {p999:6.2f}  mean {mean:6.2f}")
    m50, m99, m999 = (statistics.median(column) for column in zip(*market_runs, strict=True))
    print(f"  market buys  p50 {m50:6.2f}  p99 {m99:6.2f}  p99.9 {m999:6.2f}  ({len(market_buys)} a run)")

    plain, wrapped, staged = [], [], []
    for _ in range(args.runs):
        plain.append(gc_off(throughput_run, commands, False))
        wrapped.append(gc_off(throughput_run, commands, True))
        staged.append(gc_off(throughput_run, commands, True, True))
    engine_us = statistics.median(plain) / len(commands) * 1e6
    risk_us = statistics.median(wrapped) / len(commands) * 1e6
    staged_us = statistics.median(staged) / len(commands) * 1e6
    print(f"\nwhole commands, median of {args.runs} runs (us a command):")
    print(f"  MatchingEngine.apply alone    {engine_us:6.2f}")
    print(f"  RiskEngine.apply              {risk_us:6.2f}   (risk adds {risk_us - engine_us:.2f})")
    print(f"  RiskEngine.apply, R1/ME/R2    {staged_us:6.2f}   (risk adds {staged_us - engine_us:.2f}; "
          f"{staged_us / risk_us:.2f}x the line above: the embedded default's funded stages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
