"""The risk stage's events into accounts, positions, alerts and instrument status; P&L on those rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from exchange.models import Instrument
from matching.timestamps import to_ns
from risk.config import shard_shares
from risk.core import (
    CIRCUIT_BREAKER,
    AccountUpdate,
    AlertKind,
    InstrumentHalted,
    InstrumentResumed,
    PositionUpdate,
    RiskAlert,
)
from risk.models import Account, Balance, Position
from risk.models import RiskAlert as Alert
from risk.projection import (
    apply_account_update,
    apply_events,
    apply_halt,
    apply_position_update,
    apply_risk_alert,
)
from risk.selectors import account_get

pytestmark = pytest.mark.django_db

T0 = to_ns(datetime(2026, 1, 2, 15, 30, tzinfo=UTC))


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


def test_account_update_creates_then_moves_forward_only(alice):
    apply_account_update(AccountUpdate(alice.pk, 10_000_050_000, 1_234_567, T0), seq=5)
    account = Account.objects.get(user=alice)
    assert (account.cash, account.reserved, account.seq) == (Decimal("1000005.0000"), Decimal("123.4567"), 5)
    assert account.available == Decimal("999881.5433")
    assert account.updated_at == datetime(2026, 1, 2, 15, 30, tzinfo=UTC)
    apply_account_update(AccountUpdate(alice.pk, 1, 0, T0), seq=4)  # older: a replay, ignored
    apply_account_update(AccountUpdate(alice.pk, 1, 0, T0), seq=5)
    assert Account.objects.get(user=alice).cash == Decimal("1000005.0000")
    apply_account_update(AccountUpdate(alice.pk, 20_000, 10_000, T0), seq=9)
    account = Account.objects.get(user=alice)
    assert (account.cash, account.reserved, account.seq) == (Decimal(2), Decimal(1), 9)


def test_account_update_keeps_the_users_own_setting(alice):
    Account.objects.create(user=alice, cash=Decimal(7), stp_default="cancel_both")  # set before any update
    apply_account_update(AccountUpdate(alice.pk, 30_000, 0, T0), seq=1)
    account = Account.objects.get(user=alice)
    assert (account.cash, account.stp_default) == (Decimal(3), "cancel_both")


def test_position_update_in_the_instruments_units(alice):
    odd = Instrument.objects.create(symbol="ODD", name="o", tick_size=Decimal("0.05"),
                                    lot_size=Decimal("0.1"))
    apply_position_update(PositionUpdate(alice.pk, "ODD", -25, -1_250_000, 3_000, T0), seq=3)
    position = Position.objects.get(user=alice, instrument=odd)
    assert (position.qty, position.cost) == (Decimal("-2.5"), Decimal(-125))
    assert position.realised == Decimal("0.3")
    apply_position_update(PositionUpdate(alice.pk, "ODD", 0, 0, 1, T0), seq=2)
    assert Position.objects.get(user=alice, instrument=odd).qty == Decimal("-2.5")


def test_a_batch_writes_each_rows_last_update(alice, django_assert_max_num_queries):
    events = [(1, AccountUpdate(alice.pk, 100, 0, T0)),
              (1, PositionUpdate(alice.pk, "AAPL", 5, 50_000, 0, T0)),
              (2, AccountUpdate(alice.pk, 200, 0, T0)),
              (2, PositionUpdate(alice.pk, "AAPL", 8, 80_000, 0, T0)),
              (3, AccountUpdate(alice.pk, 300, 50, T0))]
    apply_events(events)
    assert Account.objects.get(user=alice).seq == 3
    assert Account.objects.get(user=alice).cash == Decimal("0.0300")
    position = Position.objects.get(user=alice)
    assert (position.qty, position.seq) == (Decimal(8), 2)
    # users, instruments, the balance and the position (one update each), the accounts (lock, sum)
    with django_assert_max_num_queries(8):  # per batch, not per row
        apply_events([(4, AccountUpdate(alice.pk, 1, 0, T0)),
                      (4, PositionUpdate(alice.pk, "AAPL", 1, 1, 0, T0))])


def test_unknown_users_and_symbols_are_skipped(alice):
    apply_events([(1, AccountUpdate(999_999, 1, 0, T0)), (1, PositionUpdate(alice.pk, "NOPE", 1, 1, 0, T0)),
                  (1, RiskAlert(999_999, "NOPE", AlertKind.POSITION_LIMIT, "x", T0))])
    assert not Account.objects.exists() and not Position.objects.exists()
    alert = Alert.objects.get()
    assert (alert.user, alert.instrument, alert.kind) == (None, None, "position_limit")


def test_risk_alerts_are_written_once(alice):
    event = RiskAlert(alice.pk, "AAPL", AlertKind.RESERVATION_OVERRUN, "fills cost 12 more than reserved", T0)
    apply_risk_alert(event, seq=7)
    apply_risk_alert(event, seq=7)
    alert = Alert.objects.get()
    assert alert.instrument is not None
    assert (alert.seq, alert.user, alert.instrument.symbol) == (7, alice, "AAPL")
    assert alert.kind == "reservation_overrun"
    assert alert.detail == "fills cost 12 more than reserved" and not alert.acknowledged


def test_halts_and_resumes_set_the_instruments_status():
    until = T0 + 300 * 10**9
    apply_halt(InstrumentHalted("AAPL", CIRCUIT_BREAKER, until, T0), seq=10)
    aapl = Instrument.objects.get(symbol="AAPL")
    assert (aapl.status, aapl.halt_reason, aapl.status_seq) == ("halted", CIRCUIT_BREAKER, 10)
    assert aapl.halted_until == datetime(2026, 1, 2, 15, 35, tzinfo=UTC)
    alert = Alert.objects.get()  # a circuit breaker is worth an admin's look
    assert (alert.kind, alert.instrument, alert.user) == (CIRCUIT_BREAKER, aapl, None)
    apply_halt(InstrumentResumed("AAPL", T0), seq=9)  # older
    assert Instrument.objects.get(symbol="AAPL").status == "halted"
    apply_halt(InstrumentResumed("AAPL", until), seq=11)
    aapl.refresh_from_db()
    assert (aapl.status, aapl.halt_reason, aapl.halted_until) == ("open", "", None)
    apply_halt(InstrumentHalted("AAPL", "news pending", None, until), seq=12)
    aapl.refresh_from_db()
    assert (aapl.status, aapl.halt_reason, aapl.halted_until) == ("halted", "news pending", None)
    assert Alert.objects.count() == 1  # an admin's own halt raises no alert


def test_other_events_are_ignored(alice, django_assert_num_queries):
    with django_assert_num_queries(0):
        apply_events([(1, object()), (2, ("not", "a", "risk", "event"))])


# ---- P&L at average cost, on rows as the projector writes them --------------------------------


def position(qty: str, cost: str, realised: str = "0") -> Position:
    return Position(qty=Decimal(qty), cost=Decimal(cost), realised=Decimal(realised))


def test_long_position_pnl():
    long = position("10", "1000.0000", "25.5000")  # bought 10 at 100 on average
    assert long.average_price == Decimal(100)
    assert long.market_value(Decimal("110.00")) == Decimal("1100")
    assert long.unrealised(Decimal("110.00")) == Decimal(100)
    assert long.unrealised(Decimal("95.50")) == Decimal(-45)


def test_short_position_pnl():
    short = position("-10", "-1000.0000")  # sold 10 short at 100
    assert short.average_price == Decimal(100)
    assert short.market_value(Decimal(90)) == Decimal(-900)
    assert short.unrealised(Decimal(90)) == Decimal(100)  # gains as the price falls
    assert short.unrealised(Decimal(120)) == Decimal(-200)


def test_flat_position_has_no_average_price():
    flat = position("0", "0", "12.3400")
    assert flat.average_price is None
    assert flat.unrealised(Decimal(100)) == 0


def test_average_price_is_exact_beyond_floats():
    odd = position("3", "100.0000")
    assert odd.average_price is not None
    assert odd.average_price.quantize(Decimal("0.000001")) == Decimal("33.333333")
    big = position("123456789.12345678", "98765432109876.5432")
    # the product has 30 significant digits: more than the default context keeps
    assert big.unrealised(Decimal("800000.00000001")) == Decimal("-811109.8846321087654322")


def test_an_account_sums_its_balances_on_each_shard(alice, settings):
    apply_events([(5, AccountUpdate(alice.pk, 6_000, 0, T0))], shard=0)
    apply_events([(3, AccountUpdate(alice.pk, 4_000, 1_000, T0))], shard=1)
    account = Account.objects.get(user=alice)
    assert (account.cash, account.reserved) == (Decimal("1.0000"), Decimal("0.1000"))
    apply_events([(4, AccountUpdate(alice.pk, 1, 0, T0))], shard=0)  # older than shard 0's row: a replay
    assert Account.objects.get(user=alice).cash == Decimal("1.0000")
    assert sorted(Balance.objects.filter(user=alice).values_list("shard", "seq")) == [(0, 5), (1, 3)]

    # what the account shows: a shard the user never traded on still holds its share of the start
    settings.EXCHANGE_MODE, settings.MATCHER_SHARDS = "production", {0: ["AAPL"], 1: ["MSFT"], 2: ["TSLA"]}
    settings.ACCOUNT_STARTING_CASH = Decimal("3000.0001")
    assert shard_shares() == {0: 10_000_001, 1: 10_000_000, 2: 10_000_000}
    assert account_get(user=alice).cash == Decimal("1.0000") + Decimal("1000.0000")
