"""The publisher's messages (marketdata/publisher.py) from a real Matcher and MarketDataCache, without a
channel layer: what one publication carries, and what it leaves out."""

from __future__ import annotations

import json
from decimal import Decimal

from asgiref.sync import async_to_sync

from exchange.models import Instrument
from marketdata.book_cache import MarketDataCache
from marketdata.publisher import Publisher, md_group, user_group
from matching.engine import NewOrder, OrderType, Side, TimeInForce
from matching.worker.matcher import Matcher

AAPL = Instrument(symbol="AAPL", tick_size=Decimal("0.01"), lot_size=Decimal("1"))


class Exchange:
    def __init__(self) -> None:
        self.matcher = Matcher(["AAPL"])
        self.cache = MarketDataCache()
        self.publisher = Publisher(self.cache, units={"AAPL": AAPL})

    def order(self, owner: int, side: Side, qty: int, price: int) -> None:
        seq = self.matcher.seq + 1
        reply = self.matcher.apply(seq, 10**18 + seq, NewOrder(0, owner, "AAPL", side, qty, price,
                                                               OrderType.LIMIT, TimeInForce.GTC))
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
