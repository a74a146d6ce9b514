"""The publisher's messages (marketdata/publisher.py) from a real Matcher and MarketDataCache, without a
channel layer: what one publication carries, and what it leaves out."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from asgiref.sync import async_to_sync

from exchange.models import Instrument
from marketdata.book_cache import MarketDataCache
from marketdata.publisher import Publisher, md_group, user_group
from matching.engine import NewOrder, OrderType, Side, TimeInForce
from matching.worker.matcher import Matcher
from matching.worker.metrics import METRICS, Registry

AAPL = Instrument(symbol="AAPL", tick_size=Decimal("0.01"), lot_size=Decimal("1"))


class Exchange:
    def __init__(self, metrics: Registry = METRICS) -> None:
        self.matcher = Matcher(["AAPL"])
        self.cache = MarketDataCache()
        self.publisher = Publisher(self.cache, units={"AAPL": AAPL}, metrics=metrics)

    def order(self, owner: int, side: Side, qty: int, price: int, at: int | None = None) -> None:
        """`at`: the command's engine time (nanoseconds); by default one far in the past."""
        seq = self.matcher.seq + 1
        cmd = NewOrder(0, owner, "AAPL", side, qty, price, OrderType.LIMIT, TimeInForce.GTC)
        reply = self.matcher.apply(seq, 10**18 + seq if at is None else at, cmd)
        self.cache.apply([reply])  # the listeners in the bus's order: the cache, then the publisher
        self.publisher.on_replies([reply])

    def publish(self) -> dict[str, dict]:
        return dict(async_to_sync(self.publisher.collect)())


def test_a_publication_carries_trades_in_order_and_the_latest_top_chained_to_the_last():
    ex = Exchange()
    ex.order(1, Side.SELL, 2, 10_000)
    first = ex.publish()[md_group("AAPL")]
    seq1, prev1, text1 = first["level2"]
    assert prev1 == 0 and json.loads(text1)["asks"] == [["100.00", "2"]]
    ex.order(1, Side.SELL, 3, 10_100)
    ex.order(2, Side.BUY, 4, 10_100)  # takes 2 at 100.00, then 2 at 101.00
    published = ex.publish()
    second = published[md_group("AAPL")]
    seq2, prev2, text2 = second["level2"]
    assert prev2 == seq1 and seq2 == ex.matcher.seq
    assert json.loads(text2)["asks"] == [["101.00", "1"]]  # conflated: the state after both orders
    trades = [json.loads(text) for _, text in second["trades"]]
    assert [(t["trade_id"], t["price"], t["quantity"], t["side"]) for t in trades] == [
        ("AAPL-1", "100.00", "2", "buy"), ("AAPL-2", "101.00", "2", "buy")]
    assert json.loads(second["ticker"][1])["last"] == "101.00"
    intervals = {json.loads(text)["interval"] for _, _, text in second["candles"]}
    assert intervals == {"1m", "5m", "15m", "1h", "1d"}
    # private: each owner's own updates, in order
    mine = [json.loads(text) for text in published[user_group(2)]["messages"]]
    assert [(m["type"], m.get("status")) for m in mine] == [
        ("order", "open"), ("fill", None), ("order", "partially_filled"), ("fill", None), ("order", "filled")]
    theirs = [json.loads(text) for text in published[user_group(1)]["messages"]]
    assert {m["order_id"] for m in theirs} & {m["order_id"] for m in mine} == set()


def test_a_change_below_the_top_ten_publishes_no_depth():
    ex = Exchange()
    for n in range(10):
        ex.order(1, Side.SELL, 1, 10_000 + n)
    ex.publish()
    ex.order(1, Side.SELL, 1, 20_000)  # the eleventh level
    published = ex.publish()
    assert md_group("AAPL") not in published  # nothing a subscriber sees changed
    assert ex.publisher.pending() == 0


def test_group_names_stay_valid_for_any_symbol():
    assert md_group("AAPL") == "md.AAPL"
    odd = md_group("BTC/USD")
    assert odd.startswith("md._") and odd.replace(".", "").replace("_", "").isalnum()


def test_within_the_rate_bound_trades_go_at_once_and_depth_waits():
    ex = Exchange()
    ex.order(1, Side.SELL, 5, 10_000)
    ex.publish()
    ex.order(2, Side.BUY, 2, 10_000)  # a trade inside the interval after that publication
    fast = dict(async_to_sync(ex.publisher.collect)(depth=False))
    message = fast[md_group("AAPL")]
    assert (message["level2"], message["ticker"], message["candles"]) == (None, None, ())
    assert [json.loads(text)["quantity"] for _, text in message["trades"]] == ["2"]
    own = [json.loads(text) for text in fast[user_group(2)]["messages"]]
    assert [m["status"] for m in own if m["type"] == "order"] == ["open", "filled"]  # private: at once too
    due = ex.publish()[md_group("AAPL")]  # the interval's end: nothing new, the depth it left
    assert due["trades"] == ()
    assert json.loads(due["level2"][2])["asks"] == [["100.00", "3"]]
    assert json.loads(due["ticker"][1])["last"] == "100.00"
    assert {json.loads(text)["volume"] for _, _, text in due["candles"]} == {"2"}
    assert ex.publish() == {}  # and then nothing is left over


def test_the_loop_sends_a_trade_during_the_interval_and_the_depth_at_its_end(settings):
    """Publisher._run on the in-memory layer: the first change goes at once; a trade inside the rate
    bound that follows goes in a message of its own (held for the bound, it would have come in one
    message with its depth), and its depth alone when the bound ends. What is checked is which message
    carries what, in which order; no time is measured."""
    import asyncio

    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    ex = Exchange()
    ex.publisher.interval = 0.5

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        assert layer is not None
        channel = await layer.new_channel()
        await layer.group_add(md_group("AAPL"), channel)
        ex.publisher.start_in_loop()
        got = []
        ex.order(1, Side.SELL, 5, 10_000)
        got.append(await asyncio.wait_for(layer.receive(channel), 10))
        ex.order(2, Side.BUY, 2, 10_000)  # inside the bound the first publication started
        got.append(await asyncio.wait_for(layer.receive(channel), 10))
        got.append(await asyncio.wait_for(layer.receive(channel), 10))
        await ex.publisher.aclose()
        return got

    first, trade, depth = async_to_sync(scenario)()
    assert json.loads(first["level2"][2])["asks"] == [["100.00", "5"]] and first["trades"] == ()
    assert trade["level2"] is None and trade["ticker"] is None
    assert [json.loads(text)["quantity"] for _, text in trade["trades"]] == ["2"]
    assert depth["trades"] == () and json.loads(depth["level2"][2])["asks"] == [["100.00", "3"]]
    assert depth["candles"]  # the trade's candles come with its depth


def test_stopping_inside_the_interval_publishes_the_rest_whole_and_ends(settings):
    """stop_soon (a replaced embedded publisher; stop_thread in runmatcher) while the loop waits out the
    rate bound: the depth held back goes out at once and the loop ends, rather than waiting for a
    wake-up that never comes."""
    import asyncio

    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    ex = Exchange()
    ex.publisher.interval = 3600.0

    async def scenario() -> dict:
        layer = get_channel_layer()
        assert layer is not None
        channel = await layer.new_channel()
        await layer.group_add(md_group("AAPL"), channel)
        ex.publisher.start_in_loop()
        task = ex.publisher._task
        assert task is not None
        ex.order(1, Side.SELL, 5, 10_000)
        await layer.receive(channel)  # published at once; the hour-long bound starts
        ex.order(1, Side.SELL, 1, 10_100)  # depth only: held for the bound
        await asyncio.sleep(0.05)
        ex.publisher.stop_soon()
        await asyncio.wait_for(task, 10)  # ends now, not after the hour
        return await asyncio.wait_for(layer.receive(channel), 1)

    last = async_to_sync(scenario)()
    assert json.loads(last["level2"][2])["asks"] == [["100.00", "5"], ["101.00", "1"]]


def test_a_trade_s_message_carries_its_engine_time_and_its_delay_to_the_layer_is_recorded(settings):
    """`trade_ns` is the first trade's engine time; each message with trades, once in the channel layer,
    records how long after that time it got there (stage matcher.trade_to_feed). Depth alone records
    nothing."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    registry = Registry()
    ex = Exchange(registry)
    traded = time.time_ns() - 2_000_000_000  # two seconds ago

    async def publish() -> dict:
        layer = get_channel_layer()
        assert layer is not None
        channel = await layer.new_channel()
        await layer.group_add(md_group("AAPL"), channel)
        await ex.publisher.publish(layer)
        return await layer.receive(channel)

    ex.order(1, Side.SELL, 5, 10_000, at=traded - 1_000)
    depth = async_to_sync(publish)()
    assert depth["trade_ns"] is None and "matcher.trade_to_feed" not in registry.summary()["stages"]
    ex.order(2, Side.BUY, 2, 10_000, at=traded)
    trade = async_to_sync(publish)()
    assert trade["trade_ns"] == traded
    stage = registry.summary()["stages"]["matcher.trade_to_feed"]
    assert stage["count"] == 1 and 2_000_000 <= stage["max"] < 60_000_000  # µs: two seconds and a bit
