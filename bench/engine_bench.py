"""Engine throughput and latency, side by side with two PyPI order books.

    python bench/engine_bench.py [--commands 1000000] [--runs 5] [--seed 7]

A seeded, realistic stream over 4 symbols (about 60% passive limit orders around a random-walk
mid, 25% cancels of resting orders, 15% marketable orders: market orders and crossing limits) is
generated once, untimed, then driven straight into each engine in one process:

- ours: `MatchingEngine.apply(command)` with every feature on (STP checks, stops, expiry, events);
- `lightmatchingengine` and `cython-orderbook`, given the same stream translated to their APIs.

Runs alternate between engines so drift on a noisy machine hits all alike; the ratio is taken
pair by pair within each run. The cyclic garbage collector is off during every timed run, for
every engine alike (the matcher process runs that way too: nothing in a book forms a cycle).
After the runs the final books are compared level by level.
The peers need `pip install -r requirements-bench.txt`; a missing peer is reported and skipped.
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
    CancelOrder,
    MatchingEngine,
    NewOrder,
    OrderType,
    Side,
    Trade,
)

SYMBOLS = ("AAPL", "GOOGL", "MSFT", "TSLA")
START_MID = 10_000  # ticks
PASSIVE_OWNERS = 500
TAKER_OWNER_BASE = 1_000_000  # each marketable order gets its own owner, so no self-trades occur

# One translated command: (op, symbol, side, price, qty, order_id); op is "L", "M" or "C".
Op = tuple[str, str, Side, int, int, int]


class StreamBuilder:
    """Generates the stream with our engine as the oracle for what is resting (untimed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.engine = MatchingEngine(SYMBOLS)
        self.mid = dict.fromkeys(SYMBOLS, START_MID)
        self.live: dict[str, list[int]] = {s: [] for s in SYMBOLS}
        self.live_pos: dict[int, tuple[str, int]] = {}
        self.next_id = 0
        self.commands: list[NewOrder | CancelOrder] = []
        self.ops: list[Op] = []

    def build(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            symbol = rng.choice(SYMBOLS)
            if rng.random() < 0.3:
                self.mid[symbol] += rng.choice((-1, 1))
            roll = rng.random()
            if roll < 0.25 and self.live[symbol]:
                self._cancel(symbol)
            elif not (0.25 <= roll < 0.40 and self._marketable(symbol)):
                self._passive(symbol)

    def _apply(self, cmd: NewOrder | CancelOrder, op: Op) -> None:
        self.commands.append(cmd)
        self.ops.append(op)
        for event in self.engine.apply(cmd):
            if type(event) is Trade and event.maker_remaining == 0:
                self._forget(event.maker_order_id)
        if type(cmd) is NewOrder and cmd.order_id in self.engine.books[cmd.symbol].orders:
            self._remember(cmd.symbol, cmd.order_id)

    def _remember(self, symbol: str, order_id: int) -> None:
        ids = self.live[symbol]
        self.live_pos[order_id] = (symbol, len(ids))
        ids.append(order_id)

    def _forget(self, order_id: int) -> None:
        symbol, pos = self.live_pos.pop(order_id)
        ids = self.live[symbol]
        last = ids.pop()
        if last != order_id:
            ids[pos] = last
            self.live_pos[last] = (symbol, pos)

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _passive(self, symbol: str) -> None:
        rng, book = self.rng, self.engine.books[symbol]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        offset = 1 + min(int(rng.expovariate(1 / 6)), 60)
        if side is Side.BUY:
            price = self.mid[symbol] - offset
            ask = book.best_ask()
            if ask is not None:
                price = min(price, ask - 1)
        else:
            price = self.mid[symbol] + offset
            bid = book.best_bid()
            if bid is not None:
                price = max(price, bid + 1)
        qty = 1 + min(int(rng.expovariate(1 / 20)), 500)
        owner = rng.randint(1, PASSIVE_OWNERS)
        order_id = self._new_id()
        self._apply(NewOrder(order_id, owner, symbol, side, qty, price, timestamp=order_id),
                    ("L", symbol, side, price, qty, order_id))

    def _marketable(self, symbol: str) -> bool:
        rng, book = self.rng, self.engine.books[symbol]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        opposite = book.asks if side is Side.BUY else book.bids
        if not opposite.levels:
            return False
        qty = 1 + min(int(rng.expovariate(1 / 40)), 1000)
        order_id = self._new_id()
        owner = TAKER_OWNER_BASE + order_id
        if rng.random() < 0.5:
            # market orders never outsize the book: lightmatchingengine would rest the rest at price 0
            qty = min(qty, sum(level.qty for level in opposite.levels.values()))
            self._apply(NewOrder(order_id, owner, symbol, side, qty, None, OrderType.MARKET,
                                 timestamp=order_id),
                        ("M", symbol, side, 0, qty, order_id))
        else:
            level = opposite.best()
            assert level is not None  # the side has levels (checked above)
            best = level.price
            price = best + rng.randint(0, 3) if side is Side.BUY else best - rng.randint(0, 3)
            self._apply(NewOrder(order_id, owner, symbol, side, qty, price, timestamp=order_id),
                        ("L", symbol, side, price, qty, order_id))
        return True

    def _cancel(self, symbol: str) -> None:
        ids = self.live[symbol]
        order_id = ids[self.rng.randrange(len(ids))]
        order = self.engine.books[symbol].orders[order_id]
        self._forget(order_id)
        self._apply(CancelOrder(order_id, order.owner, symbol, timestamp=self.next_id),
                    ("C", symbol, order.side, 0, 0, order_id))


# ---- drivers: each returns (run(timed: bool) -> (seconds, latencies_ns), final_book()) --------


def levels_of(pairs) -> dict[int, int]:
    return {price: qty for price, qty in pairs if qty}


def ours(commands: list) -> tuple[Callable, Callable]:
    state = {}

    def run(timed: bool) -> tuple[float, list[int]]:
        engine = state["engine"] = MatchingEngine(SYMBOLS)
        apply = engine.apply
        latencies: list[int] = []
        if timed:
            clock, record = time.perf_counter_ns, latencies.append
            for cmd in commands:
                t0 = clock()
                apply(cmd)
                record(clock() - t0)
            return 0.0, latencies
        start = time.perf_counter()
        for cmd in commands:
            apply(cmd)
        return time.perf_counter() - start, latencies

    def final() -> dict:
        books = state["engine"].books
        return {s: (levels_of((lv.price, lv.qty) for lv in books[s].bids.levels.values()),
                    levels_of((lv.price, lv.qty) for lv in books[s].asks.levels.values())) for s in SYMBOLS}

    return run, final


def light(ops: list[Op]) -> tuple[Callable, Callable]:
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine
    from lightmatchingengine.lightmatchingengine import Side as LSide

    sides = {Side.BUY: LSide.BUY, Side.SELL: LSide.SELL}
    # Its ids count 1, 2, 3 ... per engine instance, in order of add_order calls: translate up front.
    theirs: dict[int, int] = {}
    stream = []
    for op, symbol, side, price, qty, order_id in ops:
        if op == "C":
            stream.append((False, symbol, 0, 0, theirs[order_id]))
        else:
            theirs[order_id] = len(theirs) + 1
            stream.append((True, symbol, price, qty, sides[side]))
    state = {}

    def run(timed: bool) -> tuple[float, list[int]]:
        engine = state["engine"] = LightMatchingEngine()
        add, cancel = engine.add_order, engine.cancel_order
        latencies: list[int] = []
        clock, record = time.perf_counter_ns, latencies.append
        start = time.perf_counter()
        for is_add, symbol, price, qty, arg in stream:
            if timed:
                t0 = clock()
            if is_add:
                add(symbol, price, qty, arg)
            else:
                cancel(arg, symbol)
            if timed:
                record(clock() - t0)
        return time.perf_counter() - start, latencies

    def final() -> dict:
        books = state["engine"].order_books
        return {s: (levels_of((p, sum(o.leaves_qty for o in q)) for p, q in books[s].bids.items()),
                    levels_of((p, sum(o.leaves_qty for o in q)) for p, q in books[s].asks.items()))
                for s in SYMBOLS}

    return run, final


def cython_ob(ops: list[Op]) -> tuple[Callable, Callable]:
    from cython_orderbook import Order, OrderBook, OrderSide
    from cython_orderbook import orderbook as module

    sides = {Side.BUY: OrderSide.BID, Side.SELL: OrderSide.ASK}
    state = {}

    def run(timed: bool) -> tuple[float, list[int]]:
        # Its ids are str(global counter) assigned at Order creation: translate up front.
        base = module._order_counter
        theirs: dict[int, str] = {}
        stream: list[tuple[str, str, object, int, int | str]] = []  # cancels: no side, their order id
        for op, symbol, side, price, qty, order_id in ops:
            if op == "C":
                stream.append((op, symbol, None, 0, theirs[order_id]))
            else:
                theirs[order_id] = str(base + len(theirs) + 1)
                stream.append((op, symbol, sides[side], price, qty))
        books = state["books"] = {s: OrderBook() for s in SYMBOLS}
        latencies: list[int] = []
        clock, record = time.perf_counter_ns, latencies.append
        start = time.perf_counter()
        for op, symbol, their_side, price, arg in stream:
            if timed:
                t0 = clock()
            if op == "L":
                books[symbol].add_limit_order(Order(their_side, arg, price))
            elif op == "M":
                books[symbol].add_market_order(Order(their_side, arg))
            else:
                books[symbol].cancel_order(arg)
            if timed:
                record(clock() - t0)
        return time.perf_counter() - start, latencies

    def final() -> dict:
        books = state["books"]
        # Summed from the orders: its own level totals drift (they miss some partial fills).
        def side(levels) -> dict[int, int]:
            return levels_of((price, sum(o.remaining_quantity for o in level.queue.values()))
                             for price, level in levels.items())

        return {s: (side(books[s].bids), side(books[s].asks)) for s in SYMBOLS}

    return run, final


def main() -> int:
    args = parse_args(__doc__, commands=1_000_000, runs=5)
    print_header()
    t0 = time.perf_counter()
    builder = StreamBuilder(args.seed)
    builder.build(args.commands)
    kinds = {"L": 0, "M": 0, "C": 0}
    for op in builder.ops:
        kinds[op[0]] += 1
    n = len(builder.commands)
    marketable = sum(1 for c in builder.commands
                     if isinstance(c, NewOrder) and c.owner >= TAKER_OWNER_BASE)
    print(f"stream:  {n} commands, seed {args.seed}, built in {time.perf_counter() - t0:.1f}s: "
          f"{(kinds['L'] - marketable) / n:.0%} passive limit, {kinds['C'] / n:.0%} cancel, "
          f"{marketable / n:.0%} marketable ({kinds['M'] / n:.0%} market)")
    del builder.engine

    engines: dict[str, tuple[Callable, Callable]] = {"ours": ours(builder.commands)}
    for name, make in (("lightmatchingengine", light), ("cython-orderbook", cython_ob)):
        try:
            engines[name] = make(builder.ops)
        except ImportError as exc:
            print(f"peer {name} skipped: {exc} (pip install -r requirements-bench.txt)")

    seconds: dict[str, list[float]] = {name: [] for name in engines}
    ratios: list[float] = []
    for _ in range(args.runs):
        for name, (run, _final) in engines.items():
            seconds[name].append(gc_off(run, False)[0])
        peers = [seconds[name][-1] for name in engines if name != "ours"]
        if peers:
            ratios.append(min(peers) / seconds["ours"][-1])

    reference = engines["ours"][1]()
    print(f"\nthroughput, median of {args.runs} runs (commands/second):")
    for name, (_run, final) in engines.items():
        same = "" if name == "ours" else ("  final book matches ours" if final() == reference
                                          else "  FINAL BOOK DIFFERS FROM OURS")
        med = statistics.median(seconds[name])
        print(f"  {name:20s} {n / med:>12,.0f}   ({min(seconds[name]):.2f}-{max(seconds[name]):.2f}s){same}")
    if ratios:
        print(f"  ours / faster peer, paired per run: median {statistics.median(ratios):.2f}x "
              f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})")

    quantiles = (0.5, 0.99, 0.999)
    print(f"\nper-command latency (us), medians over {args.runs} timed runs; includes the clock's own cost "
          f"of {timer_overhead_ns() / 1000:.2f} us a reading:")
    for name, (run, _final) in engines.items():
        per_run = []
        for _ in range(args.runs):
            latencies = sorted(gc_off(run, True)[1])
            per_run.append([percentile(latencies, q) for q in quantiles])
        p50, p99, p999 = (statistics.median(column) for column in zip(*per_run, strict=True))
        print(f"  {name:20s} p50 {p50:6.2f}  p99 {p99:6.2f}  p99.9 {p999:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
