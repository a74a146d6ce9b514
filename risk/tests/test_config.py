"""The edge between the admin's Decimals and the risk core's integers: lots, ticks, bps, ns, cash units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from exchange.models import Instrument
from risk.config import (
    ConfigError,
    cash_share,
    cash_to_units,
    instrument_risk,
    pct_to_bps,
    seconds_to_ns,
    starting_cash_units,
    units_to_cash,
    user_limit,
    worker_config,
)
from risk.core import (
    CASH_DECIMALS,
    InstrumentRisk,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
    UserLimit,
)
from risk.models import RiskLimit, UserRiskLimit

pytestmark = pytest.mark.django_db

S = 10**9


@pytest.fixture
def odd(db):
    """Tick 0.05, lot 0.1: one tick x one lot is 0.005 of the currency, 50 cash units."""
    return Instrument.objects.create(symbol="ODD", name="Odd lots", tick_size=Decimal("0.05"),
                                     lot_size=Decimal("0.1"))


def test_the_seeded_limits_as_the_risk_core_takes_them():
    expected = {"AAPL": (10_000, 1_000), "GOOGL": (5_000, 500), "MSFT": (10_000, 1_000),
                "TSLA": (10_000, 1_000)}
    for symbol, (max_position, max_order) in expected.items():
        limit = RiskLimit.objects.get(instrument__symbol=symbol)
        assert instrument_risk(limit.instrument, limit) == InstrumentRisk(
            symbol, 100, max_position, max_order, price_band_bps=1_000, hold_volume_bps=500,
            reference_daily_volume=100_000, reference_price=None, circuit_move_bps=1_000,
            circuit_window_ns=300 * S, circuit_halt_ns=300 * S)


def test_quantities_become_lots_of_the_instrument(odd):
    limit = RiskLimit(instrument=odd, max_position=Decimal("2.5"), max_order_size=Decimal("0.3"),
                      hold_volume_pct=None, reference_daily_volume=Decimal("1000"),
                      reference_price=Decimal("101.25"))
    config = instrument_risk(odd, limit)
    assert (config.cash_per_tick_lot, config.max_position, config.max_order_qty) == (50, 25, 3)
    assert (config.reference_daily_volume, config.reference_price) == (10_000, 2_025)
    assert config.hold_volume_bps is None and config.price_band_bps is None
    assert config.circuit_move_bps is None and config.circuit_halt_ns == 0


def test_zero_is_a_limit_and_none_is_none(odd):
    config = instrument_risk(odd, RiskLimit(instrument=odd, max_position=Decimal(0), max_order_size=None))
    assert (config.max_position, config.max_order_qty) == (0, None)
    assert instrument_risk(odd, None) == InstrumentRisk("ODD", 50)


@pytest.mark.parametrize(("field", "value"), [("max_position", Decimal("2.55")),
                                              ("max_order_size", Decimal("0.01")),
                                              ("reference_daily_volume", Decimal("0.05")),
                                              ("reference_price", Decimal("101.26"))])
def test_values_off_the_lot_or_tick_size_are_refused_on_their_field(odd, field, value):
    limit = RiskLimit(instrument=odd, **{field: value})
    with pytest.raises(ConfigError) as raised:
        instrument_risk(odd, limit)
    assert raised.value.field == field
    with pytest.raises(ValidationError) as invalid:
        limit.full_clean()
    assert field in invalid.value.message_dict


def test_a_circuit_breaker_needs_its_window_and_halt():
    limit = RiskLimit(instrument=Instrument.objects.get(symbol="AAPL"), circuit_move_pct=Decimal(5),
                      circuit_window_seconds=60)
    with pytest.raises(ValidationError) as invalid:
        limit.clean()
    assert "circuit_move_pct" in invalid.value.message_dict


@pytest.mark.parametrize(("pct", "bps"), [(None, None), (Decimal(0), 0), (Decimal("0.01"), 1),
                                          (Decimal("12.5"), 1_250), (Decimal(100), 10_000)])
def test_percent_to_basis_points(pct, bps):
    assert pct_to_bps(pct) == bps


def test_finer_than_a_basis_point_is_refused():
    with pytest.raises(ValueError, match="basis point"):
        pct_to_bps(Decimal("0.001"))


def test_seconds_to_nanoseconds():
    assert (seconds_to_ns(None), seconds_to_ns(0), seconds_to_ns(300)) == (0, 0, 300 * S)


def test_cash_units():
    assert CASH_DECIMALS == 4
    assert cash_to_units(Decimal("1000000")) == 10_000_000_000
    assert cash_to_units(Decimal("-0.0001")) == -1
    assert units_to_cash(12_345) == Decimal("1.2345")
    assert str(units_to_cash(10_000_000_000)) == "1000000.0000"
    with pytest.raises(ValueError):
        cash_to_units(Decimal("0.00001"))


def test_starting_cash_comes_from_the_setting(settings):
    assert starting_cash_units() == 10_000_000_000  # the default, 1,000,000
    settings.ACCOUNT_STARTING_CASH = Decimal("2500.5")
    assert starting_cash_units() == 25_005_000


def test_user_limit(django_user_model):
    user = django_user_model.objects.create_user("trader")
    aapl = Instrument.objects.get(symbol="AAPL")
    override = UserRiskLimit(user=user, instrument=aapl, max_position=Decimal(50))
    assert user_limit(override) == UserLimit(user.pk, "AAPL", 50, None)
    with pytest.raises(ValidationError):
        UserRiskLimit(user=user, instrument=aapl).full_clean()  # neither limit: delete it instead
    with pytest.raises(ValidationError) as invalid:
        UserRiskLimit(user=user, instrument=aapl, max_order_size=Decimal("0.5")).full_clean()
    assert "max_order_size" in invalid.value.message_dict


def test_instruments_must_count_in_whole_cash_units():
    fine = Instrument(symbol="FINE", name="f", tick_size=Decimal("0.001"), lot_size=Decimal("0.1"))
    fine.full_clean()
    too_fine = Instrument(symbol="TINY", name="t", tick_size=Decimal("0.0001"), lot_size=Decimal("0.01"))
    with pytest.raises(ValidationError, match="cash"):
        too_fine.full_clean()


def test_worker_config_is_everything_the_risk_stage_needs(django_user_model, odd):
    user = django_user_model.objects.create_user("trader")
    UserRiskLimit.objects.create(user=user, instrument=odd, max_order_size=Decimal("1.5"))
    commands = worker_config()
    assert commands[0] == SetDefaultCash(10_000_000_000)
    configs = [c.config for c in commands if isinstance(c, SetInstrumentRisk)]
    assert [c.symbol for c in configs] == ["AAPL", "GOOGL", "MSFT", "ODD", "TSLA"]
    assert configs[3] == InstrumentRisk("ODD", 50)  # no RiskLimit: no limits
    assert configs[0].max_order_qty == 1_000
    assert commands[-1] == SetUserLimit(UserLimit(user.pk, "ODD", None, 15))
    assert len(commands) == 1 + 5 + 1


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_the_shards_shares_add_up_to_the_starting_cash(settings, shards):
    settings.ACCOUNT_STARTING_CASH = Decimal("1000000.0003")
    total = starting_cash_units()
    shares = [cash_share(total, n, shards) for n in range(shards)]
    assert sum(shares) == total and max(shares) - min(shares) <= total % shards
    first = worker_config(shard=shards - 1, shards=shards)[0]
    assert isinstance(first, SetDefaultCash) and first.amount == shares[-1]
    with pytest.raises(ValueError):
        cash_share(total, shards, shards)
