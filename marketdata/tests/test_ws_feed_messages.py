"""The messages of marketdata/feed.py from a real Matcher's events: the checksum's canonical string and
the private updates (OrderTracker) through a whole order life."""

from __future__ import annotations

import zlib
from decimal import Decimal

from exchange.models import Instrument
from marketdata.feed import OrderTracker, checksum, render_private
from matching.engine import CancelOrder, NewOrder, OrderType, Side, TimeInForce
from matching.worker.matcher import Matcher

AAPL = Instrument(symbol="AAPL", tick_size=Decimal("0.01"), lot_size=Decimal("1"))


def test_checksum_is_crc32_of_the_documented_string():
    bids, asks = [["150.25", "3"], ["150.20", "10"]], [["150.30", "1"]]
    assert checksum(bids, asks) == zlib.crc32(b"150.25:3|150.20:10;150.30:1")
    assert checksum([], []) == zlib.crc32(b";")
    assert 0 <= checksum(bids, asks) < 2**32


def test_the_tracker_follows_an_order_life_for_its_owner_only():
    matcher = Matcher(["AAPL"])
    tracker = OrderTracker()

    def apply(cmd):
        reply = matcher.apply(matcher.seq + 1, 10**18 + matcher.seq, cmd)
        return reply, [(owner, render_private(AAPL, update)) for owner, update in tracker.fold(reply.events,
                                                                                                reply.seq)]

    def new(owner, side, qty, price, tif=TimeInForce.GTC):
        return NewOrder(0, owner, "AAPL", side, qty, price, OrderType.LIMIT, tif)

    rest, updates = apply(new(1, Side.SELL, 5, 15000))
    assert [(o, u["type"], u["status"], u["price"], u["quantity"]) for o, u in updates] == \
        [(1, "order", "open", "150.00", "5")]
    _, updates = apply(new(2, Side.BUY, 2, 15000, TimeInForce.IOC))
    by_owner = {o: [u for p, u in updates if p == o] for o in (1, 2)}
    maker_fill = next(u for u in by_owner[1] if u["type"] == "fill")
    assert (maker_fill["side"], maker_fill["quantity"], maker_fill["liquidity"]) == ("sell", "2", "maker")
    assert maker_fill["trade_id"] == "AAPL-1"
    maker_order = [u for u in by_owner[1] if u["type"] == "order"][-1]
    assert (maker_order["status"], maker_order["remaining_quantity"], maker_order["filled_quantity"],
            maker_order["quantity"]) == ("partially_filled", "3", "2", "5")
    assert [u["status"] for u in by_owner[2] if u["type"] == "order"] == ["open", "filled"]
    _, updates = apply(CancelOrder(rest.order_id, 1, "AAPL"))
    ((owner, canceled),) = updates
    assert (owner, canceled["status"], canceled["remaining_quantity"], canceled["filled_quantity"]) == \
        (1, "canceled", "0", "2")
    assert rest.order_id not in tracker.orders  # done with: not kept


def test_orders_live_before_the_publisher_started_are_seeded_from_the_engine():
    matcher = Matcher(["AAPL"])
    order = NewOrder(0, 7, "AAPL", Side.BUY, 4, 10000, OrderType.LIMIT, TimeInForce.GTC)
    rest = matcher.apply(1, 10**18, order)
    tracker = OrderTracker()
    tracker.seed_engine(matcher.engine)
    reply = matcher.apply(2, 10**18 + 1, CancelOrder(rest.order_id, 7, "AAPL"))
    ((owner, update),) = tracker.fold(reply.events, reply.seq)
    assert (owner, update["side"], update["price"], update["quantity"], update["status"]) == \
        (7, "buy", 10000, 4, "canceled")
