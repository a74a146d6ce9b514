"""The demo market maker against the embedded matcher: its steps driven directly (no waiting for its
interval), its quotes seen through the API, a user trading with them, /health, and the setting."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from exchange.marketmaker import accounts, runner
from exchange.marketmaker.strategy import Market
from exchange.models import Instrument
from matching import services
from matching.models import AuditEvent, Order
from matching.projector import Projector
from matching.worker.bus import Unavailable
from risk.models import Position, RiskLimit, UserRiskLimit

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, timeout: float = 5.0):
    """The market data follows the matcher's replies on its thread, a moment after the reply."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


@pytest.fixture
def aapl(embedded):
    """AAPL with the seeded limits (a transactional test before may have flushed them), set before the
    matcher starts so they are in its start-up configuration."""
    instrument = Instrument.objects.get(symbol="AAPL")
    RiskLimit.objects.update_or_create(instrument=instrument, defaults={
        "max_position": Decimal(10_000), "max_order_size": Decimal(1_000), "price_band_pct": Decimal(10),
        "hold_volume_pct": Decimal(5), "reference_daily_volume": Decimal(100_000)})
    return instrument


@pytest.fixture
def clock() -> list[int]:
    """The market maker's clock (ns): it only moves when told, so the fair value moves only when a test
    wants it to."""
    return [0]


@pytest.fixture
def maker(aapl, clock):
    """This process's market maker without its thread: the test calls step(), on `clock`.

    The projector's writer thread is stopped: `project()` writes what is queued, in the test's thread.
    The test database (in-memory SQLite, shared cache) fails a read that meets a write at once, where a
    file database waits, so a writer thread would fail steps at random here."""
    services.command_bus()
    projector().stop(flush=True)
    mm = runner.start(thread=False, symbols=["AAPL"], seed=5, clock=lambda: clock[0])
    yield mm
    runner.stop()
    project()


def projector() -> Projector:
    writer = services.embedded_projector()
    assert writer is not None  # the embedded matcher is running
    return writer


def project() -> None:
    projector().flush()


def health() -> dict:
    report = runner.health()
    assert report is not None
    return report


@pytest.fixture
def alice(embedded, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("alice", password="pw"))
    return client


def book(client: Client, seq_after: int = 0) -> dict:
    def read():
        body = client.get("/api/book/AAPL?depth=10").json()
        return body if body["seq"] >= seq_after else None

    return wait_for(read)


def levels(side: list[dict]) -> list[tuple[str, str]]:
    return [(level["price"], level["quantity"]) for level in side]


def wanted(mm: runner.MarketMaker, position: int) -> tuple[list, list]:
    """The ladder the strategy wants now, as the API shows prices and quantities."""
    last = services.market_data().ticker("AAPL").last
    quotes = mm.strategy.quotes("AAPL", position, Market(last=last))
    show = [(f"{Decimal(q.price) / 100:.2f}", str(q.qty)) for q in quotes]
    bids = [s for s, q in zip(show, quotes, strict=True) if q.side == "buy"]
    asks = [s for s, q in zip(show, quotes, strict=True) if q.side == "sell"]
    return bids, asks


def test_a_step_quotes_both_sides_a_buy_fills_and_the_next_step_requotes(maker, alice, clock):
    assert maker.step() is True
    seq = services.command_bus().health()["seq"]
    first = book(alice, seq)
    bids, asks = wanted(maker, 0)
    assert levels(first["bids"]) == bids and levels(first["asks"]) == asks
    assert len(bids) == len(asks) == 5
    assert Decimal(first["bids"][0]["price"]) < Decimal(first["asks"][0]["price"])
    assert abs(Decimal(first["bids"][0]["price"]) - Decimal("190.00")) < 1  # the demo price, no trade yet
    assert len(maker.orders) == 10 and maker.heartbeat.quotes_live == 10

    best_ask, best_qty = first["asks"][0]["price"], int(first["asks"][0]["quantity"])
    take = alice.post("/api/submit", {"symbol": "AAPL", "side": "buy", "type": "market", "quantity": "40"},
                      content_type="application/json").json()
    assert take["status"] == "filled", take
    assert [(t["price"], t["quantity"]) for t in take["trades"]] == [(best_ask, "40")]
    project()
    assert Position.objects.filter(user=accounts.ensure_user(), qty=-40).exists()

    clock[0] += 10**9  # a second later: one step of the walk
    assert maker.step() is True
    assert maker.positions["AAPL"][0] == -40  # learned from the projection: the fill was not its reply
    second = book(alice, services.command_bus().health()["seq"])
    bids, asks = wanted(maker, -40)
    assert levels(second["bids"]) == bids and levels(second["asks"]) == asks  # re-quoted, full sizes
    assert second["seq"] > first["seq"]
    assert sorted(o.remaining for o in maker.orders.values()) == sorted(int(q) for _, q in bids + asks)
    assert (best_ask, str(best_qty - 40)) not in levels(second["asks"])  # the partly filled order went

    health = alice.get("/health")
    assert health.status_code == 200
    component = health.json()["components"]["marketmaker"]
    assert component["status"] == "ok"
    assert component["quotes_live"] == 10 and component["steps"] == 2 and component["errors"] == 0


def test_set_up_once_user_limits_and_one_deposit(maker):
    assert maker.step() is True
    user = accounts.ensure_user()
    assert not user.has_usable_password()
    limit = UserRiskLimit.objects.get(user=user, instrument__symbol="AAPL")
    assert limit.max_position == accounts.MAX_POSITION_LOTS and limit.max_order_size is None
    deposits = AuditEvent.objects.filter(kind=AuditEvent.AdminKind.CASH_ADJUST, user=user)
    assert [d.detail["amount"] for d in deposits] == [str(accounts.FUNDING)]
    assert AuditEvent.objects.filter(kind=AuditEvent.AdminKind.USER_LIMIT_SET, user=user).count() == 1
    project()
    assert Order.objects.filter(user=user, status="open").count() == 10
    again = runner.MarketMaker(symbols=["AAPL"])  # e.g. after a restart: adopts its orders, no deposit
    assert again.step() is True
    assert deposits.count() == 1
    assert AuditEvent.objects.filter(kind=AuditEvent.AdminKind.USER_LIMIT_SET, user=user).count() == 1
    assert set(again.orders) == set(maker.orders)  # the first one's quotes, still wanted, kept


def test_unavailable_is_counted_and_the_next_step_recovers(maker, alice, monkeypatch):
    assert maker.step() is True

    def down(**kwargs):
        raise Unavailable("the matcher queue is full")

    monkeypatch.setattr(services, "market_data", down)
    assert maker.step() is False
    assert maker.heartbeat.errors == 1 and "unavailable" in maker.heartbeat.last_error
    health = alice.get("/health")
    assert health.status_code == 200  # not required: trading goes on
    assert health.json()["status"] == "ok"
    assert health.json()["components"]["marketmaker"]["status"] == "degraded"
    monkeypatch.undo()
    assert maker.step() is True
    assert alice.get("/health").json()["components"]["marketmaker"]["status"] == "ok"


def test_a_stopped_market_maker_is_down_but_not_required(maker, alice):
    maker.heartbeat.running = False
    body = alice.get("/health")
    assert body.status_code == 200
    assert body.json()["components"]["marketmaker"]["status"] == "down"


def test_stop_cancels_its_quotes(maker, alice):
    assert maker.step() is True
    runner.stop()
    assert maker.orders == {}
    after = book(alice, services.command_bus().health()["seq"])
    assert after["bids"] == [] and after["asks"] == []
    assert "marketmaker" not in alice.get("/health").json()["components"]


def test_with_the_setting_off_nothing_starts(aapl, settings, alice):
    settings.DEMO_MARKET_MAKER = False
    services.command_bus()
    assert runner.current() is None
    assert not any(t.name == "marketmaker" for t in threading.enumerate())
    assert "marketmaker" not in alice.get("/health").json()["components"]


def test_with_the_setting_on_it_starts_with_the_matcher_and_stops_with_it(aapl, settings, alice):
    settings.DEMO_MARKET_MAKER = True
    settings.MARKET_MAKER_INTERVAL = 0.05
    services.command_bus()
    maker = runner.current()
    assert maker is not None
    # (a step may fail on the test database's table locks, see `maker`: the next one recovers)
    assert wait_for(lambda: maker.heartbeat.quotes_live >= 10 and health()["status"] == "ok")
    services.command_bus_stop()
    assert runner.current() is None
    assert not any(t.name == "marketmaker" for t in threading.enumerate())
    assert maker.orders == {}  # its quotes were canceled before the matcher stopped


def test_runmarketmaker_needs_redis(settings):
    settings.EXCHANGE_MODE, settings.REDIS_URL = "embedded", None
    with pytest.raises(CommandError, match="REDIS_URL"):
        call_command("runmarketmaker", stdout=StringIO())


def test_production_health_reads_the_heartbeat_runmarketmaker_publishes(settings, monkeypatch):
    from exchange.management.commands.runmarketmaker import Command

    settings.REDIS_URL, settings.DEMO_MARKET_MAKER = "redis://127.0.0.1:1/0", True
    settings.EXCHANGE_MODE = "production"
    store: dict[str, bytes] = {}

    class FakeRedis:
        def get(self, key):
            return store.get(key)

        def set(self, key, value, ex=None):
            assert ex >= 10  # it expires: a dead process's heartbeat goes away
            store[key] = value.encode()

    monkeypatch.setattr("marketdata.redis_cache.connect", lambda url, timeout=0.5: FakeRedis())
    assert runner.health() == {"status": "down", "detail": "no heartbeat"}
    publish = Command._publisher(1.0)
    beat = runner.Heartbeat(running=True, last_quote_at=time.time(), steps=3, quotes_live=40)
    publish(beat.as_dict(1.0))
    assert list(store) == ["exchange:marketmaker:heartbeat"]
    assert health()["status"] == "ok" and health()["quotes_live"] == 40
    beat.last_quote_at = time.time() - 60  # nothing quoted for a minute
    publish(beat.as_dict(1.0))
    assert health()["status"] == "degraded"
    settings.DEMO_MARKET_MAKER = False  # not part of this deployment: not reported
    assert runner.health() is None


def test_report_statuses():
    now = 1_000.0
    beat = {"running": True, "failing": False, "last_quote_at": now - 2, "interval": 1.0}
    assert runner.report(beat, now)["status"] == "ok"
    assert runner.report({**beat, "last_quote_at": now - 4}, now)["status"] == "degraded"
    assert runner.report({**beat, "last_quote_at": None}, now)["status"] == "degraded"  # none yet
    assert runner.report({**beat, "failing": True}, now)["status"] == "degraded"
    assert runner.report({**beat, "running": False}, now)["status"] == "down"
    assert runner.report({**beat, "interval": 10.0, "last_quote_at": now - 25}, now)["status"] == "ok"
