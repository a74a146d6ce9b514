"""Two balance shards and two matching shards, each its own runner on one real Redis (issue 13): a user
spends nearly all their cash on AAPL (matching shard 0), sells it and spends the proceeds on MSFT
(matching shard 1); the settlements travel back on the balance streams, and a matching runner that
restarts from its snapshot sends them again without moving any cash twice.

The runners are stepped by hand (no threads): each step reads what is waiting on its stream."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from matching.engine import NewOrder, OrderRejected, OrderType, RejectReason, Side, Trade
from matching.tests.worker.stream_driver import REDIS_URL
from matching.worker.balance_codec import (
    Place,
    balance_entry,
    balance_stream_key,
    decode_balance_command,
    encode_balance_command,
)
from matching.worker.balance_runner import BalanceRunner
from matching.worker.codec import encode_command
from matching.worker.matcher import ORDER_ID_STRIDE, Matcher, Reply
from matching.worker.redis_bus import RedisBus
from matching.worker.replies import decode_reply, unaddress
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import StreamRunner, entry_fields, stream_key
from risk.core import InstrumentRisk, SetInstrumentRisk
from risk.core.balances import BalanceShard, Settle
from risk.core.commands import FundedOrder, SetDefaultCash

CASH = 1_000_000
SYMBOLS = {0: ["AAPL"], 1: ["MSFT"]}
MATCHING = {"AAPL": 0, "MSFT": 1}


class Exchange:
    def __init__(self, client: Any, prefix: str, tmp_path: Any) -> None:
        self.client, self.prefix, self.tmp_path = client, prefix, tmp_path
        self.reply_key = f"{prefix}:replies:web"
        self.requests = 0
        self.balances: dict[int, BalanceRunner] = {}
        for b in (0, 1):
            shard = BalanceShard(b)
            shard.apply(SetDefaultCash(CASH))
            self.balances[b] = BalanceRunner(shard, client, b, None, prefix, [0, 1], block_ms=10)
            self.balances[b].recover()
        for m, symbols in SYMBOLS.items():
            for symbol in symbols:  # cash per tick and lot: 100 (the web tier sends this at start)
                config = encode_command(SetInstrumentRisk(InstrumentRisk(symbol, 100)))
                client.xadd(stream_key(prefix, m), entry_fields(config))
        self.matching = {m: self.matching_runner(m) for m in SYMBOLS}

    def matching_runner(self, m: int) -> StreamRunner:
        matcher = Matcher(SYMBOLS[m], shard=m, balance_shards=2)
        snapshots = SnapshotStore(self.tmp_path / f"m{m}")
        runner = StreamRunner(matcher, self.client, m, snapshots, snapshot_every=10**6, prefix=self.prefix,
                              block_ms=10)
        runner.recover()
        return runner

    def place(self, owner: int, symbol: str, side: Side, qty: int, price: int, **kw: Any) -> Reply:
        """As the web tier: Place on the owner's balance shard, then every runner until the answer."""
        order = NewOrder(0, owner, symbol, side, qty, price, **kw)
        amount = qty * price * 100 if side is Side.BUY else 0
        self.requests += 1
        request_id = str(self.requests).encode()
        payload = encode_balance_command(Place(order, MATCHING[symbol], amount))
        self.client.xadd(balance_stream_key(self.prefix, owner % 2), balance_entry(payload, self.reply_key,
                                                                                     request_id))
        self.settle()
        for item in self.client.lrange(self.reply_key, 0, -1):
            got, encoded = unaddress(item)
            if got == request_id:
                return decode_reply(encoded)
        raise AssertionError(f"no answer to request {request_id!r}")

    def settle(self) -> None:
        """Step every runner until no stream has anything waiting."""
        while True:
            runners: list[BalanceRunner | StreamRunner] = [*self.balances.values(), *self.matching.values()]
            moved = sum(runner.step(None) for runner in runners)
            if not moved:
                return

    def account(self, owner: int) -> tuple[int, int] | None:
        return self.balances[owner % 2].shard.account(owner)


def test_one_account_spends_across_matching_shards_through_the_runners(redis_client, redis_prefix, tmp_path):
    x = Exchange(redis_client, redis_prefix, tmp_path)
    x.place(2, "AAPL", Side.SELL, 99, 100)
    bought = x.place(1, "AAPL", Side.BUY, 99, 100)  # 990,000 of user 1's 1,000,000, on balance shard 1
    assert [t.qty for t in bought.events if isinstance(t, Trade)] == [99]
    assert x.account(1) == (CASH - 990_000, 0) and x.account(2) == (CASH + 990_000, 0)
    refused = x.place(1, "MSFT", Side.BUY, 1, 101)  # 10,100 > 10,000: refused at R1
    rejection = refused.events[0]
    assert isinstance(rejection, OrderRejected) and rejection.reason is RejectReason.INSUFFICIENT_FUNDS
    # numbered and answered by MSFT's matching shard all the same: an id for the history and the audit
    assert refused.seq > 0 and refused.order_id // ORDER_ID_STRIDE == 1
    assert rejection.order_id == refused.order_id
    x.place(4, "AAPL", Side.BUY, 99, 101)
    sold = x.place(1, "AAPL", Side.SELL, 99, 101, order_type=OrderType.MARKET)  # protected at 101
    assert [t.price for t in sold.events if isinstance(t, Trade)] == [101]
    assert x.account(1) == (CASH - 990_000 + 99 * 101 * 100, 0)
    x.place(3, "MSFT", Side.SELL, 100, 110)
    spent = x.place(1, "MSFT", Side.BUY, 91, 110)  # 1,001,000 of its 1,009,900: the proceeds of AAPL
    assert [t.qty for t in spent.events if isinstance(t, Trade)] == [91]
    assert x.account(1) == (8_900, 0)
    total = sum(cash for b in x.balances.values() for cash, _ in (b.shard.account(o) or (0, 0)
                                                                      for o in b.shard.accounts))
    assert total == CASH * 4  # four accounts opened; trades only move cash between them
    # A matching runner restarts from its start: it replays its stream and sends every settlement again;
    # the balance shards' cursors skip them all.
    before = {b: runner.shard.state_hash() for b, runner in x.balances.items()}
    sent = {b: redis_client.xlen(balance_stream_key(redis_prefix, b)) for b in (0, 1)}
    x.matching[0] = x.matching_runner(0)
    x.settle()
    resent = {b: redis_client.xlen(balance_stream_key(redis_prefix, b)) - sent[b] for b in (0, 1)}
    assert resent[0] > 0 and resent[1] > 0  # every settlement of AAPL's shard, once more
    assert {b: runner.shard.state_hash() for b, runner in x.balances.items()} == before
    assert x.account(1) == (8_900, 0) and x.account(2) == (CASH + 990_000, 0)
    for runner in x.balances.values():
        assert runner.shard.check() == []


def test_settlements_that_cannot_be_routed_wait_and_no_snapshot_covers_them(redis_client, redis_prefix,
                                                                           tmp_path):
    """A balance stream Redis refuses (here a key of the wrong type): the batch is applied and its
    settlements kept; no snapshot is taken while they wait; the next step sends them, in order."""
    matcher = Matcher(["AAPL"], shard=0, balance_shards=2)
    snapshots = SnapshotStore(tmp_path)
    runner = StreamRunner(matcher, redis_client, 0, snapshots, snapshot_every=1, prefix=redis_prefix,
                          block_ms=10)
    runner.recover()
    blocked = balance_stream_key(redis_prefix, 1)
    redis_client.set(blocked, b"not a stream")
    order = FundedOrder(NewOrder(0, 7, "AAPL", Side.BUY, 1, 100), 10**12 + 1, 100)
    redis_client.xadd(stream_key(redis_prefix, 0), entry_fields(encode_command(order)))
    with pytest.raises(redis.ResponseError):
        runner.step(None)
    assert matcher.seq == 1 and snapshots.latest() is None  # applied, but no snapshot covers it
    redis_client.delete(blocked)
    runner.step(None)  # nothing new to read: the waiting settlement goes out first
    (entry,) = redis_client.xrange(blocked)
    settle = decode_balance_command(entry[1][b"c"])
    assert isinstance(settle, Settle) and (settle.matching_shard, settle.seq) == (0, 1)
    assert [(line.owner, line.ticket, line.cash, line.release) for line in settle.lines] == [
        (7, 10**12 + 1, 0, 0)]  # the confirmation of the ticket


def test_the_web_tiers_bus_sends_orders_through_the_balance_shards(redis_client, redis_prefix, tmp_path):
    """RedisBus.submit_balance: a Place goes to the user's balance shard and the answer comes from the
    matching shard the order was forwarded to; a refusal at R1 comes from the balance shard itself."""
    x = Exchange(redis_client, redis_prefix, tmp_path)
    runners: list[BalanceRunner | StreamRunner] = [*x.balances.values(), *x.matching.values()]
    threads = [threading.Thread(target=runner.run, daemon=True) for runner in runners]
    for runner in runners:
        runner.heartbeat()  # the bus refuses a shard without one
    for thread in threads:
        thread.start()
    bus = RedisBus(REDIS_URL, MATCHING, timeout=5, prefix=redis_prefix)
    try:
        def place(owner: int, symbol: str, side: Side, qty: int, price: int) -> Reply:
            order = NewOrder(0, owner, symbol, side, qty, price)
            amount = qty * price * 100 if side is Side.BUY else 0
            return bus.submit_balance(Place(order, MATCHING[symbol], amount), owner % 2)

        resting = place(2, "MSFT", Side.SELL, 10, 100)
        assert resting.order_id // ORDER_ID_STRIDE == 1 and resting.seq > 0  # answered by matching shard 1
        taken = place(1, "MSFT", Side.BUY, 4, 100)
        assert [t.qty for t in taken.events if isinstance(t, Trade)] == [4]
        refused = place(3, "MSFT", Side.BUY, 1_000, 100)  # 10,000,000 > 1,000,000: balance shard 1 says no
        assert refused.seq > 0 and refused.order_id // ORDER_ID_STRIDE == 1  # numbered by matching shard 1
        assert [e.reason for e in refused.events if isinstance(e, OrderRejected)] == [
            RejectReason.INSUFFICIENT_FUNDS]
        many = bus.submit_balance_many([(Place(NewOrder(0, 5, "AAPL", Side.BUY, 1, 100), 0, 10_000), 1),
                                        (Place(NewOrder(0, 6, "AAPL", Side.SELL, 1, 100), 0, 0), 0)])
        assert [r.order_id // ORDER_ID_STRIDE for r in many if isinstance(r, Reply)] == [0, 0]
        deadline = time.monotonic() + 5
        while x.account(1) != (CASH - 40_000, 0) and time.monotonic() < deadline:
            time.sleep(0.01)  # the settlement travels back to balance shard 1 after the answer
        assert x.account(1) == (CASH - 40_000, 0) and x.account(2) == (CASH + 40_000, 0)
    finally:
        bus.close()
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(5)
