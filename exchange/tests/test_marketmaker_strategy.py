"""The demo market maker's strategy alone (pure: no Django, no database, time passed in)."""

from __future__ import annotations

import random

import pytest

from exchange.marketmaker.strategy import (
    BPS,
    Cancel,
    Limits,
    Market,
    Params,
    Place,
    Quote,
    RestingOrder,
    Strategy,
    plan,
)
from matching.engine.types import Side

SECOND = 10**9
# as the seeded AAPL limits apply to the market maker (its override: a 20,000 position limit)
AAPL = Limits(max_order_qty=1_000, max_position=20_000, price_band_bps=1_000, hold_qty=5_000)


def strategy(seed: int = 1, reference: int = 19_000, limits: Limits = AAPL, **params: int) -> Strategy:
    s = Strategy(Params(**params), seed)
    s.add_instrument("AAPL", reference, limits)
    return s


def ladder(s: Strategy, position: int = 0, market: Market | None = None) -> list[tuple[str, int, int]]:
    return [(q.side.value, q.price, q.qty) for q in s.quotes("AAPL", position, market)]


def resting_from(commands: list, start_id: int = 1) -> list[RestingOrder]:
    return [RestingOrder(start_id + i, c.side, c.price, c.qty)
            for i, c in enumerate(c for c in commands if isinstance(c, Place))]


def test_first_ladder_around_the_reference():
    s = strategy()
    commands = s.update("AAPL", 0, [], 0, Market())
    places = [c for c in commands if isinstance(c, Place)]
    assert places == commands
    assert [(c.side.value, c.price, c.qty) for c in places] == [
        ("buy", 18995, 100), ("buy", 18990, 150), ("buy", 18985, 150), ("buy", 18980, 200),
        ("buy", 18975, 200),
        ("sell", 19005, 300), ("sell", 19010, 250), ("sell", 19015, 200), ("sell", 19020, 150),
        ("sell", 19025, 100),
    ]


def test_the_same_seed_and_inputs_give_the_same_commands():
    def run(seed: int) -> list:
        s, out, rng = strategy(seed), [], random.Random(99)
        resting: list[RestingOrder] = []
        for i in range(200):
            position = rng.randint(-1_500, 1_500)
            market = Market(last=19_000 + rng.randint(-50, 50))
            commands = s.update("AAPL", i * SECOND, resting, position, market)
            out.append(commands)
            resting = resting_from(commands, start_id=1000 * i)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_the_walk_for_a_seed_is_pinned():
    s = strategy(seed=1)
    path = [s.advance("AAPL", i * SECOND) for i in range(8)]
    assert path == [19000, 19000, 19003, 19004, 19002, 19000, 19002, 19002]


def test_the_fair_value_reverts_and_stays_bounded():
    s = strategy(seed=3, vol_bps=50, max_deviation_bps=300)  # large steps: the bound is reached
    values = [s.advance("AAPL", i * SECOND) for i in range(3_000)]
    assert min(values) >= 19_000 - 570 and max(values) <= 19_000 + 570
    assert min(values) < 18_800 and max(values) > 19_200  # it does move
    late = values[1_000:]
    assert abs(sum(late) / len(late) - 19_000) < 150  # and comes back around the reference


def test_time_passes_in_steps_and_never_backwards():
    s = strategy(seed=1)
    s.advance("AAPL", 10 * SECOND)  # starts the clock
    assert s.advance("AAPL", 10 * SECOND + SECOND // 2) == 19_000  # less than a step: no move
    before = s.fair_value("AAPL")
    assert s.advance("AAPL", 5 * SECOND) == before  # earlier: nothing
    moved = strategy(seed=1)
    moved.advance("AAPL", 0)
    moved.advance("AAPL", 3 * SECOND)  # three steps at once ...
    one_by_one = strategy(seed=1)
    for i in range(4):
        one_by_one.advance("AAPL", i * SECOND)
    assert moved.fair_value("AAPL") == one_by_one.fair_value("AAPL")  # ... as three single ones
    capped = strategy(seed=1, max_steps=5)
    capped.advance("AAPL", 0)
    capped.advance("AAPL", 10**6 * SECOND)  # a long pause costs at most max_steps
    assert capped._instruments["AAPL"].steps == 5


@pytest.mark.parametrize("seed", range(5))
def test_quotes_stay_within_the_band_the_sizes_and_the_inventory(seed):
    limits = Limits(max_order_qty=180, max_position=1_200, price_band_bps=1_000, hold_qty=250)
    s = strategy(seed, limits=limits, max_inventory=5_000)  # the position limit is the tighter cap
    rng = random.Random(seed)
    last = 19_000
    for i in range(300):
        last = max(100, last + rng.randint(-400, 400))  # a market that wanders off, even far
        position = rng.randint(-1_300, 1_300)
        s.advance("AAPL", i * SECOND, Market(last=last))
        quotes = s.quotes("AAPL", position, Market(last=last))
        band = 1_000 - Params().band_margin_bps
        for q in quotes:
            assert abs(q.price - last) * BPS <= band * last, (q, last)
            assert 0 < q.qty <= 180
        bids = [q for q in quotes if q.side is Side.BUY]
        asks = [q for q in quotes if q.side is Side.SELL]
        # a side adds to the position only within the cap (a position already beyond it: no quotes)
        assert not bids or position + sum(q.qty for q in bids) <= 1_200
        assert not asks or -position + sum(q.qty for q in asks) <= 1_200
        if bids and asks:
            assert max(q.price for q in bids) < min(q.price for q in asks)
        assert len({(q.side, q.price) for q in quotes}) == len(quotes)
        assert abs(s.fair_value("AAPL") - last) * 2 * BPS <= 900 * last + 2 * BPS  # within half the band


def test_the_band_before_the_first_trade_uses_the_reference_price():
    limits = Limits(price_band_bps=200, reference_price=19_000)  # 2%, less the 1% margin: 190 ticks
    s = strategy(limits=limits, level_step_ticks=60)
    prices = [q.price for q in s.quotes("AAPL", 0, Market())]
    assert prices and all(abs(p - 19_000) <= 190 for p in prices)
    assert len(prices) < 10  # the deeper levels are outside it


def test_no_band_without_a_reference():
    s = strategy(limits=Limits(price_band_bps=200), level_step_ticks=60)
    assert len(s.quotes("AAPL", 0, Market())) == 10


def test_inventory_skews_the_quotes_against_the_position():
    s = strategy()
    flat = s.quotes("AAPL", 0)
    long = s.quotes("AAPL", 1_000)
    short = s.quotes("AAPL", -1_000)

    def best(quotes: list[Quote], side: Side) -> int:
        prices = [q.price for q in quotes if q.side is side]
        return max(prices) if side is Side.BUY else min(prices)

    assert best(long, Side.SELL) < best(flat, Side.SELL) and best(long, Side.BUY) < best(flat, Side.BUY)
    assert best(short, Side.SELL) > best(flat, Side.SELL) and best(short, Side.BUY) > best(flat, Side.BUY)


def test_near_the_inventory_cap_one_side_stops():
    s = strategy()  # max_inventory 2,000 lots
    long = ladder(s, 1_990)
    assert [q for q in long if q[0] == "buy"] == []
    assert len([q for q in long if q[0] == "sell"]) == 5  # it still offers to get out
    short = ladder(s, -1_990)
    assert [q for q in short if q[0] == "sell"] == []
    partly = ladder(s, 1_700)  # room for some bids only
    assert 0 < sum(q[2] for q in partly if q[0] == "buy") <= 300


def test_sizes_are_capped_by_the_order_size_and_the_hold_rule():
    assert {q[2] for q in ladder(strategy(limits=Limits(max_order_qty=120)))} <= {100, 120}
    assert {q[2] for q in ladder(strategy(limits=Limits(max_order_qty=1_000, hold_qty=100)))} == {100}
    assert ladder(strategy(limits=Limits(hold_qty=0))) == []  # every order would be held: no quotes


def test_resting_orders_that_match_are_kept_and_stale_ones_canceled():
    s = strategy()
    first = s.update("AAPL", 0, [], 0)
    resting = resting_from(first)
    assert s.update("AAPL", 0, resting, 0) == []  # nothing moved: nothing to do
    # a partly filled level and an order from elsewhere: both replaced or canceled
    partly = [*resting[:2], RestingOrder(3, Side.BUY, 18985, 20), *resting[3:],
              RestingOrder(99, Side.SELL, 19500, 10)]
    commands = s.update("AAPL", 0, partly, 0)
    assert commands == [Cancel("AAPL", 3), Cancel("AAPL", 99), Place("AAPL", Side.BUY, 18985, 150)]


def test_a_move_of_one_grid_step_replaces_one_order_a_side():
    low, high = strategy(reference=19_000), strategy(reference=19_005)
    resting = resting_from(low.update("AAPL", 0, [], 0))
    commands = high.update("AAPL", 0, resting, 0)
    cancels = [c for c in commands if isinstance(c, Cancel)]
    places = [c for c in commands if isinstance(c, Place)]
    assert [c.order_id for c in cancels] == [5, 6]  # the deepest bid, the best ask
    assert [(p.side.value, p.price) for p in places] == [("buy", 19000), ("sell", 19030)]
    assert all(isinstance(c, Cancel) for c in commands[:2])  # cancels go first


def test_plan_keeps_duplicates_apart():
    wanted = [Quote(Side.BUY, 100, 5), Quote(Side.BUY, 100, 5)]
    assert plan("X", wanted, [RestingOrder(1, Side.BUY, 100, 5)]) == [Place("X", Side.BUY, 100, 5)]
    assert plan("X", wanted[:1], [RestingOrder(1, Side.BUY, 100, 5), RestingOrder(2, Side.BUY, 100, 5)]) == [
        Cancel("X", 2)]


def test_adding_an_instrument_again_changes_only_its_limits():
    s = strategy()
    s.advance("AAPL", 0)
    s.advance("AAPL", 5 * SECOND)
    fair = s.fair_value("AAPL")
    s.add_instrument("AAPL", 25_000, Limits(max_order_qty=100))
    assert s.fair_value("AAPL") == fair and s.reference("AAPL") == 19_000
    assert {q[2] for q in ladder(s)} == {100}


def test_the_walk_starts_at_the_last_trade_within_its_bound():
    s = Strategy(Params(), 1)
    s.add_instrument("A", 10_000, start=10_100)
    s.add_instrument("B", 10_000, start=20_000)
    assert s.fair_value("A") == 10_100
    assert s.fair_value("B") == 10_300  # 3% above the reference at most
    with pytest.raises(ValueError):
        s.add_instrument("C", 0)
