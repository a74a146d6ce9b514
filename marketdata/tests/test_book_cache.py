"""MarketDataCache driven by a real matcher: its depth, trades and ticker against the engine and an
independent computation from the events; restart (seed) equals an uninterrupted run; concurrent
readers never see a torn snapshot."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import pytest

from marketdata.book_cache import MINUTE_NS, MarketDataCache, RollingWindow, Snapshot, TradeTick
from matching.engine import AdvanceTime, BookDelta, NewOrder, Side, Trade
from matching.tests.conftest import random_commands
from matching.tests.worker.load import LoadGenerator
from matching.worker.embedded import EmbeddedBus
from matching.worker.matcher import Matcher, Reply

SYMBOLS = ("AAA", "BBB")
SPAN = 24 * 60  # minute buckets in the 24h window


def run(matcher: Matcher, commands, seed: int = 0, max_batch: int = 20, scale: int = 1):
    """Apply `commands` in random-sized batches, engine time = the stream's time * scale; yield replies."""
    rnd = random.Random(seed)
    i = 0
    while i < len(commands):
        batch = commands[i:i + rnd.randint(1, max_batch)]
        i += len(batch)
        replies = []
        for cmd in batch:
            if getattr(cmd, "expire_at", None) is not None:
                cmd.expire_at *= scale
            replies.append(matcher.apply(matcher.seq + 1, cmd.timestamp * scale, cmd))
        yield replies


def engine_depth(matcher: Matcher, symbol: str, n: int) -> tuple[list, list]:
    depth = matcher.engine.books[symbol].depth(n)
    return [(p, q) for p, q, _ in depth["bids"]], [(p, q) for p, q, _ in depth["asks"]]


def assert_depth_equals_engine(cache: Any, matcher: Matcher, levels: int) -> None:
    """`cache`: anything with the reader API (the in-memory cache or the Redis reader)."""
    for symbol in SYMBOLS:
        got = cache.depth(symbol, 10**6)
        assert (got["bids"], got["asks"]) == engine_depth(matcher, symbol, levels), symbol


def changed_symbols(reply: Reply) -> set[str]:
    return {e.symbol for e in reply.events if isinstance(e, BookDelta | Trade)}


@pytest.mark.parametrize(("seed", "levels"), [(1, 50), (2, 3), (3, 1)])
def test_depth_and_seq_follow_the_engine(seed, levels):
    matcher, cache = Matcher(SYMBOLS), MarketDataCache(depth_levels=levels)
    expected_seq = dict.fromkeys(SYMBOLS, 0)
    deepest = 0
    for replies in run(matcher, random_commands(seed, 3000, SYMBOLS), seed):
        before = {s: cache.depth(s)["seq"] for s in SYMBOLS}
        assert cache.apply(replies) == set().union(*map(changed_symbols, replies))
        for reply in replies:
            for symbol in changed_symbols(reply):
                expected_seq[symbol] = reply.seq
        assert_depth_equals_engine(cache, matcher, levels)
        for symbol in SYMBOLS:
            depth = cache.depth(symbol, 2)
            assert depth["seq"] == expected_seq[symbol] >= before[symbol]
            assert (depth["bids"], depth["asks"]) == engine_depth(matcher, symbol, min(2, levels))
            deepest = max(deepest, len(cache.depth(symbol)["bids"]))
    assert deepest == min(levels, deepest) >= min(levels, 5)  # deep books, truncated to `levels`


def test_depth_follows_a_deeper_book():
    matcher, cache = Matcher(SYMBOLS), MarketDataCache(depth_levels=6)
    load, deepest = LoadGenerator(5, SYMBOLS), 0
    for _ in range(150):
        commands = load.batch(matcher.engine, 40)
        replies = [matcher.apply(matcher.seq + 1, matcher.seq + 1, cmd) for cmd in commands]
        cache(replies)
        assert_depth_equals_engine(cache, matcher, 6)
        deepest = max(deepest, *(len(side) for s in SYMBOLS for side in engine_depth(matcher, s, 100)))
    assert deepest > 10  # deeper than what is published: truncation ran


def test_trades_are_the_last_trade_events_newest_first():
    matcher, cache = Matcher(SYMBOLS), MarketDataCache(trades_kept=7)
    seen: dict[str, list[Trade]] = {s: [] for s in SYMBOLS}
    for replies in run(matcher, random_commands(11, 2000, SYMBOLS), 11):
        cache.apply(replies)
        for reply in replies:
            for event in reply.events:
                if isinstance(event, Trade):
                    seen[event.symbol].append(event)
        for symbol in SYMBOLS:
            want = [TradeTick(t.trade_id, t.price, t.qty, t.taker_side.value, t.timestamp)
                    for t in reversed(seen[symbol][-7:])]
            assert cache.trades(symbol) == want
            assert cache.trades(symbol, 3) == want[:3]
            assert cache.ticker(symbol).last == (seen[symbol][-1].price if seen[symbol] else None)
    assert all(len(seen[s]) > 100 for s in SYMBOLS)


def window_stats(trades: list[Trade], now: int) -> tuple:
    """Open, high, low, volume of the trades in the current minute and the 1439 before it."""
    inside = [t for t in trades if t.timestamp // MINUTE_NS > now // MINUTE_NS - SPAN]
    if not inside:
        return None, None, None, 0
    prices = [t.price for t in inside]
    return prices[0], max(prices), min(prices), sum(t.qty for t in inside)


def test_ticker_rolls_over_24h_of_engine_time():
    scale = 4 * MINUTE_NS + 7 * 10**9  # ~12 engine minutes a command: 4,000 commands span ~34 days
    matcher, cache = Matcher(SYMBOLS), MarketDataCache()
    seen: dict[str, list[Trade]] = {s: [] for s in SYMBOLS}
    last_volume, roll_offs, now = dict.fromkeys(SYMBOLS, 0), 0, 0

    def check() -> None:
        nonlocal roll_offs
        for symbol in SYMBOLS:
            ticker, book = cache.ticker(symbol), matcher.engine.books[symbol]
            assert (ticker.open, ticker.high, ticker.low, ticker.volume) == window_stats(seen[symbol], now)
            assert (ticker.bid, ticker.ask) == (book.best_bid(), book.best_ask())
            assert ticker.last == book.last_price and ticker.ts <= now
            roll_offs += ticker.volume < last_volume[symbol]
            last_volume[symbol] = ticker.volume

    def feed(replies: list[Reply]) -> None:
        nonlocal now
        cache.apply(replies)
        stamps = [r.command.timestamp for r in replies if r.command is not None]
        assert len(stamps) == len(replies)
        now = max([now, *stamps])
        for reply in replies:
            seen_trades = (e for e in reply.events if isinstance(e, Trade))
            for trade in seen_trades:
                seen[trade.symbol].append(trade)
        check()

    for replies in run(matcher, random_commands(21, 4000, SYMBOLS), 21, scale=scale):
        feed(replies)
    assert now > 30 * SPAN * MINUTE_NS and roll_offs > 100
    assert all(cache.ticker(s).volume > 0 for s in SYMBOLS)
    for _ in range(50):  # then nothing but the clock for 25h: every window empties, quiet or not
        feed([matcher.apply(matcher.seq + 1, matcher.last_timestamp + 30 * MINUTE_NS, AdvanceTime(0))])
    assert all(cache.ticker(s)[5:9] == (None, None, None, 0) for s in SYMBOLS)
    # one symbol trades again, the other stays quiet past its window: both right (checked in feed)
    feed([matcher.apply(matcher.seq + 1, matcher.last_timestamp + MINUTE_NS,
                        NewOrder(0, 9, "AAA", Side.BUY, 1, 10**6, timestamp=0))])
    assert cache.ticker("AAA").volume > 0 and cache.ticker("BBB").volume == 0


def test_rolling_window_equals_brute_force():
    rnd, window = random.Random(3), RollingWindow(window_ns=5 * MINUTE_NS)
    trades: list[tuple[int, int, int]] = []
    ts = 0
    for _ in range(5000):
        ts += rnd.choice([0, 1, 10**9, 20 * 10**9, MINUTE_NS, 4 * MINUTE_NS])
        price, qty = rnd.randint(1, 30), rnd.randint(1, 5)
        window.add(ts, price, qty)
        window.expire(ts)
        inside = trades = [t for t in [*trades, (ts, price, qty)] if t[0] // MINUTE_NS > ts // MINUTE_NS - 5]
        assert window.stats() == (inside[0][1], max(t[1] for t in inside), min(t[1] for t in inside),
                                  sum(t[2] for t in inside))
        assert len(window.buckets) <= 5 and len(window.highs) <= 5


def test_seed_then_continue_equals_uninterrupted():
    commands, again = random_commands(31, 3000, SYMBOLS), random_commands(31, 3000, SYMBOLS)
    whole, whole_cache = Matcher(SYMBOLS), MarketDataCache(depth_levels=5)
    first, first_cache = Matcher(SYMBOLS), MarketDataCache(depth_levels=5)
    split = 1500
    tail: list[Reply] = []
    for replies in run(first, again[:split], 1, 10):
        first_cache.apply(replies)
        tail = replies
    # a restart: the state as a snapshot stores it, a fresh cache seeded from the recovered books
    restarted = Matcher(SYMBOLS)
    restarted.restore(json.loads(json.dumps(first.state())))
    cache = MarketDataCache(depth_levels=5)
    cache.seed_engine(restarted.engine, restarted.seq)
    assert cache.apply(tail) == set()  # the runner hands replayed batches again: already in the seed
    for symbol in SYMBOLS:
        assert cache.depth(symbol) == {**first_cache.depth(symbol), "seq": split}
        assert cache.ticker(symbol).last == first_cache.ticker(symbol).last
    steps = run(whole, commands, 2, 1)  # uninterrupted, one command a batch: batching changes nothing

    def catch_up(seq: int) -> None:
        while whole.seq < seq:
            whole_cache.apply(next(steps))

    catch_up(split)
    for n, replies in enumerate(run(restarted, again[split:], 1, 10)):
        cache.apply(replies)
        catch_up(restarted.seq)
        for symbol in SYMBOLS:
            got, want = cache.depth(symbol), whole_cache.depth(symbol)
            assert (got["bids"], got["asks"]) == (want["bids"], want["asks"]), (n, symbol)
            assert got["seq"] == (want["seq"] if want["seq"] > split else split)
            assert cache.ticker(symbol)[2:5] == whole_cache.ticker(symbol)[2:5]  # last, bid, ask
    assert restarted.state_hash() == whole.state_hash()
    assert all(cache.depth(s)["seq"] > split for s in SYMBOLS)


def test_replays_duplicates_and_undecodable_entries_change_nothing():
    matcher, cache = Matcher(SYMBOLS), MarketDataCache()
    batches = list(run(matcher, random_commands(41, 400, SYMBOLS), 41))
    for replies in batches:
        cache.apply(replies)
    before = {s: cache.snapshot(s) for s in SYMBOLS}
    for replies in batches[-5:]:  # handed again, as listeners see after a runner restart
        assert cache.apply(replies) == set()
    junk = matcher.apply_encoded(matcher.seq + 1, matcher.last_timestamp + 1, b"\xc1 not a command")
    retry = [matcher.apply(matcher.seq + 1, matcher.last_timestamp + 1,
                           NewOrder(0, 5, "AAA", Side.SELL, 1, 10**6, client_order_id="x")) for _ in (1, 2)]
    assert junk.command is None and retry[1].duplicate
    assert cache.apply([junk, retry[1]]) == set()
    assert {s: cache.snapshot(s) for s in SYMBOLS} == before
    assert cache.snapshot("NOPE") == Snapshot.empty("NOPE")


def test_readers_never_see_a_torn_snapshot(tmp_path):
    cache = MarketDataCache(depth_levels=5, trades_kept=20)
    bus = EmbeddedBus(Matcher.open(SYMBOLS, tmp_path, fsync=False), max_batch=64)
    bus.subscribe(cache)
    bus.start()
    stop = threading.Event()
    problems: list[tuple] = []
    seqs: list[set[int]] = [set() for _ in range(3)]

    def reader(i: int) -> None:
        last = dict.fromkeys(SYMBOLS, 0)
        while not stop.is_set():
            for symbol in SYMBOLS:
                snap = cache.snapshot(symbol)
                bids, asks, ticker = snap.bids, snap.asks, snap.ticker
                if bids and asks and bids[0][0] >= asks[0][0]:
                    problems.append(("crossed", snap))
                if [p for p, _ in bids] != sorted((p for p, _ in bids), reverse=True) or \
                        [p for p, _ in asks] != sorted(p for p, _ in asks):
                    problems.append(("unsorted", snap))
                if (ticker.seq, ticker.bid, ticker.ask) != (snap.seq, bids[0][0] if bids else None,
                                                            asks[0][0] if asks else None):
                    problems.append(("ticker from another batch", snap))
                if snap.trades and snap.trades[0].price != ticker.last:
                    problems.append(("trades from another batch", snap))
                depth = cache.depth(symbol)
                if not last[symbol] <= snap.seq <= depth["seq"]:
                    problems.append(("seq went back", last[symbol], snap.seq, depth["seq"]))
                last[symbol] = depth["seq"]
                seqs[i].add(depth["seq"])

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        commands = random_commands(51, 8_000, SYMBOLS)
        for start in range(0, len(commands), 500):
            futures = [bus.enqueue(cmd) for cmd in commands[start:start + 500]]
            futures[-1].result(30)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        bus.stop()
        bus.matcher.close()
    assert problems[:3] == []
    assert all(len(s) > 20 for s in seqs)  # the readers really read while the matcher wrote
    assert_depth_equals_engine(cache, bus.matcher, 5)
