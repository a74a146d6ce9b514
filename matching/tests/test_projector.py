"""The projector: a real Matcher's replies written into Order, Trade and AuditEvent rows."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from django.db.models import Sum

from matching import selectors
from matching.engine import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    NewOrder,
    OrderStatus,
    OrderType,
    Side,
    STPMode,
    TimeInForce,
)
from matching.engine import Trade as TradeEvent
from matching.models import AuditEvent, Order, ProjectionCursor, Trade
from matching.projector import Projector
from matching.tests.conftest import SYM, random_commands
from matching.tests.worker.load import SYMBOLS, LoadGenerator
from matching.worker.codec import WorkerCommand
from matching.worker.embedded import EmbeddedBus
from matching.worker.matcher import Matcher, Reply
from risk.config import units_to_cash
from risk.core import InstrumentRisk, RejectHeld, ReleaseHeld, SetDefaultCash, SetInstrumentRisk
from risk.models import Account, Position

BUY, SELL = Side.BUY, Side.SELL
T0 = 1_700_000_000 * 10**9  # 2023-11-14 22:13:20 UTC, in ns


class Feed:
    """A journal-less Matcher fed by hand (seq 1, 2, ...), each command's reply projected at once."""

    def __init__(self, projector: Projector | None = None) -> None:
        self.matcher = Matcher(SYMBOLS)
        self.projector = projector or Projector()
        self.replies: list[Reply] = []

    def run(self, cmd, ts: int | None = None, project: bool = True) -> Reply:
        m = self.matcher
        reply = m.apply(m.seq + 1, ts if ts is not None else max(T0, m.last_timestamp) + 1000, cmd)
        self.replies.append(reply)
        if project:
            self.projector.project_sync([reply])
        return reply

    def order(self, user, side, qty, price=None, symbol="AAPL", **kw) -> Order | None:
        """Submit a NewOrder; its projected row (None for a duplicate)."""
        reply = self.run(NewOrder(0, user.pk, symbol, side, qty, price, **kw))
        return None if reply.duplicate else Order.objects.get(order_id=reply.order_id)

    def cancel(self, user, order: Order) -> Reply:
        return self.run(CancelOrder(order.order_id, user.pk, order.symbol))

    def amend(self, user, order: Order, **kw) -> Reply:
        return self.run(AmendOrder(order.order_id, user.pk, order.symbol, **kw))


def kinds(order: Order) -> list[str]:
    rows = AuditEvent.objects.filter(order_id=order.order_id).order_by("seq", "id")
    return list(rows.values_list("kind", flat=True))


def fresh(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def users(django_user_model):
    return [django_user_model.objects.create_user(f"trader{n}") for n in range(3)]


@pytest.fixture
def feed():
    return Feed()


pytestmark = pytest.mark.django_db


def test_rest_partial_fill_fill_and_average_price(feed, users):
    alice, bob, _ = users
    ask_low = feed.order(alice, SELL, 5, 100, client_order_id="a1")
    ask_high = feed.order(alice, SELL, 10, 102)
    assert (ask_low.status, ask_low.remaining_lots, ask_low.average_price_ticks) == ("open", 5, None)
    assert ask_low.client_order_id == "a1" and ask_low.tif == "gtc" and ask_low.stp == "cancel_newest"
    assert ask_low.created_at.isoformat() == "2023-11-14T22:13:20.000001+00:00"

    bid = feed.order(bob, BUY, 10, 102)  # takes 5 @ 100, then 5 @ 102

    bid, ask_low, ask_high = fresh(bid), fresh(ask_low), fresh(ask_high)
    assert (bid.status, bid.filled_lots, bid.remaining_lots) == ("filled", 10, 0)
    assert bid.average_price_ticks == Decimal(101)
    assert (ask_low.status, ask_low.filled_lots, ask_low.remaining_lots) == ("filled", 5, 0)
    assert (ask_high.status, ask_high.filled_lots, ask_high.remaining_lots) == ("partially_filled", 5, 5)
    assert ask_high.updated_seq == bid.created_seq == 3
    columns = ("trade_id", "price_ticks", "qty_lots", "taker_order_id", "maker_order_id", "taker_user",
               "maker_user")
    trades = list(Trade.objects.order_by("trade_id").values_list(*columns))
    assert trades == [(1, 100, 5, bid.order_id, ask_low.order_id, bob.pk, alice.pk),
                      (2, 102, 5, bid.order_id, ask_high.order_id, bob.pk, alice.pk)]
    assert kinds(bid) == ["accepted", "partially_filled", "filled"]
    assert kinds(ask_high) == ["accepted", "partially_filled"]
    fill = AuditEvent.objects.get(order_id=ask_low.order_id, kind="filled")
    assert fill.user == alice and fill.detail["role"] == "maker" and fill.detail["taker_side"] == "buy"


def test_cancel_and_someone_elses_cancel(feed, users):
    alice, bob, _ = users
    bid = feed.order(alice, BUY, 7, 99)
    feed.cancel(bob, bid)
    assert fresh(bid).status == "open"
    feed.cancel(alice, bid)
    bid = fresh(bid)
    assert (bid.status, bid.cancel_reason, bid.canceled_lots) == ("canceled", "user", 7)
    assert bid.remaining_lots == 0
    assert kinds(bid) == ["accepted", "cancel_rejected", "canceled"]
    refused = AuditEvent.objects.get(kind="cancel_rejected")
    assert refused.user == bob and refused.detail["reason"] == "unknown_order"


def test_ioc_remainder_is_canceled_after_its_fill(feed, users):
    alice, bob, _ = users
    feed.order(alice, SELL, 3, 100)
    bid = fresh(feed.order(bob, BUY, 5, 100, tif=TimeInForce.IOC))
    assert (bid.status, bid.filled_lots, bid.canceled_lots, bid.cancel_reason) == ("canceled", 3, 2, "ioc")


def test_rejected_orders_are_stored_with_their_reason(feed, users):
    alice = users[0]
    no_price = feed.order(alice, BUY, 5, None, client_order_id="np")
    assert (no_price.status, no_price.reject_reason, no_price.qty_lots) == ("rejected", "invalid_price", 5)
    assert no_price.remaining_lots == 0 and no_price.client_order_id == "np"
    bad_qty = feed.order(alice, BUY, 0, 100)
    assert (bad_qty.reject_reason, bad_qty.qty_lots) == ("invalid_quantity", 0)
    unknown = feed.order(alice, BUY, 1, 100, symbol="NOT-A-LISTED-SYMBOL")
    assert (unknown.reject_reason, unknown.symbol) == ("unknown_symbol", "NOT-A-LISTED")
    audit = AuditEvent.objects.get(order_id=unknown.order_id)
    assert audit.kind == "rejected" and audit.detail["symbol"] == "NOT-A-LISTED-SYMBOL"
    assert audit.detail["request"]["side"] == "buy" and audit.detail["request"]["price"] == 100


def test_day_order_expires(feed, users):
    alice = users[0]
    day = feed.order(alice, BUY, 4, 99, tif=TimeInForce.DAY, expire_at=T0 + 10**9)
    assert day.expire_at == T0 + 10**9
    feed.run(AdvanceTime(0), ts=T0 + 2 * 10**9)
    day = fresh(day)
    assert (day.status, day.canceled_lots, day.remaining_lots) == ("expired", 4, 0)
    assert kinds(day) == ["accepted", "expired"]


def test_stop_waits_then_triggers_and_fills(feed, users):
    alice, bob, carol = users
    stop = feed.order(carol, BUY, 3, None, order_type=OrderType.STOP, stop_price=101)
    assert (stop.status, stop.stop_price_ticks, stop.price_ticks) == ("pending", 101, None)
    feed.order(alice, SELL, 5, 101)
    feed.order(bob, BUY, 2, 101)  # last = 101: the stop triggers and buys the other 3
    stop = fresh(stop)
    assert (stop.status, stop.filled_lots, stop.average_price_ticks) == ("filled", 3, Decimal(101))
    assert kinds(stop) == ["accepted", "stop_triggered", "filled"]


def test_self_trade_decrement_reduces_the_resting_order(feed, users):
    alice = users[0]
    ask = feed.order(alice, SELL, 10, 100)
    bid = fresh(feed.order(alice, BUY, 4, 100, stp=STPMode.DECREMENT))
    ask = fresh(ask)
    assert (ask.status, ask.remaining_lots, ask.canceled_lots, ask.filled_lots) == ("open", 6, 4, 0)
    assert (bid.status, bid.canceled_lots, bid.cancel_reason) == ("canceled", 4, "self_trade")
    assert kinds(ask) == ["accepted", "reduced"]
    assert not Trade.objects.exists()


def test_amend_changes_quantity_and_price(feed, users):
    alice, bob, _ = users
    ask = feed.order(alice, SELL, 10, 100)
    feed.order(bob, BUY, 3, 100)
    feed.amend(alice, ask, qty=8)  # remaining 7 -> 5, keeps priority
    ask = fresh(ask)
    assert (ask.qty_lots, ask.filled_lots, ask.remaining_lots, ask.status) == (8, 3, 5, "partially_filled")
    feed.amend(alice, ask, price=103)
    feed.amend(alice, ask, qty=1)  # below what has filled: refused
    ask = fresh(ask)
    assert (ask.price_ticks, ask.qty_lots, ask.remaining_lots) == (103, 8, 5)
    assert kinds(ask) == ["accepted", "partially_filled", "amended", "amended", "amend_rejected"]
    amended = AuditEvent.objects.filter(kind="amended").first()
    assert amended is not None and amended.detail["kept_priority"] is True


def test_duplicate_client_order_id_makes_no_rows(feed, users):
    alice = users[0]
    first = feed.order(alice, BUY, 1, 90, client_order_id="same")
    assert feed.order(alice, BUY, 1, 95, client_order_id="same") is None
    assert feed.replies[-1].duplicate
    assert list(Order.objects.values_list("order_id", flat=True)) == [first.order_id]
    assert AuditEvent.objects.count() == 1
    assert ProjectionCursor.objects.get(name="shard-0").last_seq == 2
    assert selectors.order_get_by_client_id(user=alice, symbol="AAPL", client_order_id="same") == first


def test_replaying_replies_changes_nothing(users):
    alice, bob, _ = users
    feed = Feed()
    for n in range(6):
        feed.run(NewOrder(0, alice.pk, "AAPL", SELL, 2, 100 + n), project=False)
    feed.run(NewOrder(0, bob.pk, "AAPL", BUY, 7, 105), project=False)
    feed.projector.project_sync(feed.replies[:4])
    feed.projector.project_sync(feed.replies)  # 1..4 again, then 5..7
    counts = (Order.objects.count(), Trade.objects.count(), AuditEvent.objects.count())
    assert counts == (7, 4, 7 + 2 * 4)
    assert feed.projector.project_sync(feed.replies) == 0
    assert (Order.objects.count(), Trade.objects.count(), AuditEvent.objects.count()) == counts
    assert Order.objects.get(order_id=feed.replies[-1].order_id).filled_lots == 7


def test_journal_replay_after_restart_is_skipped(tmp_path, users):
    alice, bob, _ = users
    projector = Projector()
    matcher = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    projector.project_sync(matcher.process([NewOrder(0, alice.pk, "AAPL", SELL, 5, 100),
                                            NewOrder(0, bob.pk, "AAPL", BUY, 2, 100)]))
    matcher.close()
    replayed: list[Reply] = []
    matcher = Matcher.open(SYMBOLS, tmp_path, fsync=False, on_reply=replayed.append)
    assert len(replayed) == 2
    assert projector.project_sync(replayed) == 0
    projector.project_sync(matcher.process([CancelOrder(replayed[0].order_id, alice.pk, "AAPL")]))
    matcher.close()
    ask = Order.objects.get(order_id=replayed[0].order_id)
    assert (ask.status, ask.filled_lots, ask.canceled_lots) == ("canceled", 2, 3)
    assert Trade.objects.count() == 1 and Order.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_background_thread_behind_the_embedded_bus(tmp_path, users):
    alice, bob, _ = users
    projector = Projector(batch_max=3, flush_interval=0.01)
    bus = EmbeddedBus(Matcher.open(SYMBOLS, tmp_path, fsync=False))
    bus.subscribe(projector.project)
    projector.start()
    bus.start()
    try:
        for n in range(10):
            bus.submit(NewOrder(0, alice.pk, "AAPL", SELL, 1, 100 + n, client_order_id=f"a{n}"), timeout=5)
        taker = bus.submit(NewOrder(0, bob.pk, "AAPL", BUY, 4, 200), timeout=5)
        projector.flush(timeout=10)
        assert Order.objects.count() == 11 and Trade.objects.count() == 4
        assert Order.objects.get(order_id=taker.order_id).average_price_ticks == Decimal("101.5")
        assert ProjectionCursor.objects.get().last_seq == 11
        bus.submit(CancelOrder(taker.order_id - 1, alice.pk, "AAPL"), timeout=5)
    finally:
        bus.stop()
        bus.matcher.close()
        projector.stop(flush=True)
    assert Order.objects.get(order_id=taker.order_id - 1).status == "canceled"
    assert projector.health() == {"status": "ok", "queue_depth": 0}


@pytest.mark.django_db(transaction=True)
def test_a_failing_write_is_kept_and_retried(django_user_model, caplog):
    projector = Projector(flush_interval=0.01)
    feed = Feed(projector)
    unknown_user = 10_000  # the order's owner is not in the database (yet): the write fails
    feed.run(NewOrder(0, unknown_user, "AAPL", BUY, 1, 90), project=False)
    projector.project(feed.replies)
    projector.start()
    try:
        deadline = time.monotonic() + 10
        while projector.health()["status"] == "ok" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert projector.health()["status"] == "failing" and projector.health()["queue_depth"] == 0
        assert "projecting seq 1..1 failed; retrying" in caplog.text
        assert not Order.objects.exists() and not ProjectionCursor.objects.exists()
        django_user_model.objects.create_user("late", id=unknown_user)
        projector.flush(timeout=10)
    finally:
        projector.stop(flush=False)
    assert Order.objects.get().user_id == unknown_user
    assert projector.health()["status"] == "ok"


def test_flush_without_the_thread_writes_in_the_caller(feed, users):
    feed.run(NewOrder(0, users[0].pk, "AAPL", BUY, 1, 90), project=False)
    feed.projector.project(feed.replies)
    assert not Order.objects.exists()
    feed.projector.flush()
    assert Order.objects.count() == 1


def test_selectors_show_only_the_users_own(feed, users):
    alice, bob, _ = users
    ask = feed.order(alice, SELL, 5, 100, client_order_id="x")
    feed.order(alice, SELL, 5, 101, symbol="MSFT")
    bid = feed.order(bob, BUY, 2, 100, client_order_id="x")
    assert [o.order_id for o in selectors.order_list(user=alice)] == [ask.order_id + 1, ask.order_id]
    assert [o.symbol for o in selectors.order_list(user=alice, symbol="MSFT")] == ["MSFT"]
    assert list(selectors.order_list(user=alice, status=OrderStatus.PARTIALLY_FILLED)) == [fresh(ask)]
    assert selectors.order_get(user=bob, order_id=ask.order_id) is None
    assert selectors.order_get(user=alice, order_id=ask.order_id) == ask
    assert selectors.order_get_by_client_id(user=bob, symbol="AAPL", client_order_id="x") == bid
    assert [t.qty_lots for t in selectors.fill_list(user=alice)] == [2]
    assert [t.qty_lots for t in selectors.fill_list(user=bob, symbol="AAPL")] == [2]
    assert list(selectors.fill_list(user=bob, symbol="MSFT")) == []
    assert list(selectors.fill_list(user=users[2])) == []
    feed.order(bob, BUY, 1, 100)
    assert [t.trade_id for t in selectors.trade_list(symbol="AAPL", limit=5)] == [2, 1]
    assert [t.trade_id for t in selectors.trade_list(symbol="AAPL", limit=1)] == [2]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_load_projection_matches_the_engine(tmp_path, django_user_model, seed):
    """The worker's load stream (limits, markets, IOC, cancels) in batches, as the matcher runs it."""
    ids = [django_user_model.objects.create_user(f"load{n}").pk for n in range(20)]
    matcher = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    load, rng, projector = LoadGenerator(seed), random.Random(seed), Projector()
    events = []
    for _ in range(60):
        commands = load.batch(matcher.engine, rng.randint(1, 60))
        for cmd in commands:
            if isinstance(cmd, NewOrder):
                cmd.owner = ids[cmd.owner - 1]
        replies = matcher.process(commands)
        events += [e for r in replies for e in r.events]
        projector.project_sync(replies)
    matcher.close()
    assert Trade.objects.count() > 100
    check_projection(matcher, events)


@pytest.mark.parametrize("seed", [3, 4])
def test_every_kind_of_event_projection_matches_the_engine(django_user_model, seed):
    """The engine tests' random stream: stops, amends, DAY expiry, post-only, every STP mode, rejects."""
    ids = [django_user_model.objects.create_user(f"mixed{n}").pk for n in range(5)]
    matcher, projector, events, replies = Matcher([SYM]), Projector(), [], []
    for cmd in random_commands(seed, 1500):  # order ids 1, 2, ... as the matcher numbers them
        if not isinstance(cmd, AdvanceTime):
            cmd.owner = ids[cmd.owner - 1]
        replies.append(matcher.apply(matcher.seq + 1, cmd.timestamp, cmd))
        events += replies[-1].events
    for start in range(0, len(replies), 97):
        projector.project_sync(replies[start:start + 97])
    seen = Counter(AuditEvent.objects.values_list("kind", flat=True))
    risk_stage = {AuditEvent.Kind.HELD, AuditEvent.Kind.RELEASED}  # the test below
    assert all(seen[kind] > 0 for kind in set(AuditEvent.Kind.values) - risk_stage), seen
    check_projection(matcher, events)


def test_held_orders_accounts_and_positions_are_projected(django_user_model):
    alice, bob = (django_user_model.objects.create_user(name).pk for name in ("alice", "bob"))
    matcher, projector, replies = Matcher(["AAPL"]), Projector(), []

    def apply(*cmds: WorkerCommand) -> list[Reply]:
        out = [matcher.apply(matcher.seq + 1, matcher.seq + 1, cmd) for cmd in cmds]
        replies.extend(out)
        return out

    aapl = InstrumentRisk("AAPL", 100, hold_volume_bps=500, reference_daily_volume=1_000)  # hold above 50
    apply(SetDefaultCash(10**9), SetInstrumentRisk(aapl))
    kept, refused = apply(NewOrder(0, alice, "AAPL", Side.SELL, 100, 1_000),
                          NewOrder(0, alice, "AAPL", Side.SELL, 60, 1_010))
    apply(NewOrder(0, bob, "AAPL", Side.BUY, 10, 1_000),  # rests
          ReleaseHeld(kept.order_id), RejectHeld(refused.order_id))
    projector.project_sync(replies[:4])  # held in one batch, released and rejected in the next
    projector.project_sync(replies[4:])

    rows = Order.objects.in_bulk([kept.order_id, refused.order_id], field_name="order_id")
    released, rejected = rows[kept.order_id], rows[refused.order_id]
    assert (released.status, released.filled_lots, released.remaining_lots) == ("partially_filled", 10, 90)
    assert (rejected.status, rejected.reject_reason, rejected.remaining_lots) == (
        "rejected", "held_rejected", 0)
    audit = AuditEvent.objects.filter(order_id=kept.order_id).order_by("seq")
    kinds = list(audit.values_list("kind", flat=True))
    assert kinds[:3] == ["held", "released", "accepted"]
    assert matcher.risk is not None
    for owner in (alice, bob):
        account, row = matcher.risk.account(owner), Account.objects.get(user_id=owner)
        assert account is not None
        assert (row.cash, row.reserved) == (units_to_cash(account.cash), units_to_cash(account.reserved))
        position = matcher.risk.position(owner, "AAPL")
        assert position is not None
        assert Position.objects.get(user_id=owner).qty == position.qty
    assert Position.objects.get(user_id=bob).qty == 10 and Account.objects.get(user_id=bob).cash < 100_000


def check_projection(matcher: Matcher, events: list) -> None:
    """Every order's row against its trades and the engine's live state; trades and audit complete."""
    trade_events = [e for e in events if type(e) is TradeEvent]
    assert Trade.objects.count() == len(trade_events)
    filled: defaultdict[int, int] = defaultdict(int)
    notional: defaultdict[int, int] = defaultdict(int)
    filled_in_rows: defaultdict[int, int] = defaultdict(int)
    for t in trade_events:
        for order_id in (t.taker_order_id, t.maker_order_id):
            filled[order_id] += t.qty
            notional[order_id] += t.price * t.qty
    for side in ("taker", "maker"):
        for row in Trade.objects.values(f"{side}_order_id").annotate(lots=Sum("qty_lots")):
            filled_in_rows[row[f"{side}_order_id"]] += row["lots"]
    assert filled_in_rows == filled
    live = {oid: o for book in matcher.engine.books.values() for oid, o in book.orders.items()}
    orders = list(Order.objects.all())
    assert len(orders) == matcher.orders_created
    for order in orders:
        if order.status == "rejected":
            assert (order.filled_lots, order.remaining_lots, order.canceled_lots) == (0, 0, 0), order
            continue
        assert order.qty_lots == order.filled_lots + order.remaining_lots + order.canceled_lots, order
        assert order.filled_lots == filled[order.order_id], order
        assert order.notional_ticks_lots == notional[order.order_id], order
        engine_order = live.get(order.order_id)
        assert order.remaining_lots == (engine_order.remaining if engine_order else 0), order
        if engine_order is not None:
            assert (order.qty_lots, order.price_ticks) == (engine_order.qty, engine_order.price), order
        assert (order.status in ("filled", "canceled", "expired")) == (engine_order is None), order
    expected_audit = Counter(type(e).__name__ for e in events if type(e).__name__ != "BookDelta")
    expected_audit["Trade"] *= 2  # one row for each side
    assert AuditEvent.objects.count() == sum(expected_audit.values())
