from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from hypothesis import given
from hypothesis import strategies as st

from exchange.models import MAX_UNITS, Instrument

EQUITY = Instrument(symbol="TEST", name="Test", tick_size=Decimal("0.01"), lot_size=Decimal("1"))
BAD_AMOUNTS = [
    "NaN", "sNaN", "Infinity", "-Infinity", "0", "-0", "-0.01", "0.005", "0.015", "1E+30", "1E+999999999",
    "1E-999999999", "1.00000000000000000000000000000000000000000001",
]  # fmt: skip


@pytest.mark.django_db
def test_seed_migration_creates_demo_instruments():
    rows = list(Instrument.objects.values_list("symbol", "name", "tick_size", "lot_size", "status"))
    assert rows == [
        ("AAPL", "Apple Inc.", Decimal("0.01"), Decimal("1"), "open"),
        ("GOOGL", "Alphabet Inc.", Decimal("0.01"), Decimal("1"), "open"),
        ("MSFT", "Microsoft Corp.", Decimal("0.01"), Decimal("1"), "open"),
        ("TSLA", "Tesla Inc.", Decimal("0.01"), Decimal("1"), "open"),
    ]
    aapl = Instrument.objects.get(symbol="AAPL")
    assert aapl.price_to_ticks(Decimal("189.99")) == 18999
    assert str(aapl.ticks_to_price(18999)) == "189.99"
    assert str(aapl.lots_to_qty(100)) == "100"


def test_conversions():
    assert EQUITY.price_to_ticks(Decimal("150.25")) == 15025
    assert EQUITY.price_to_ticks(Decimal("150.2500000000")) == 15025
    assert EQUITY.qty_to_lots(Decimal("3E+2")) == 300
    assert str(EQUITY.ticks_to_price(1)) == "0.01"
    assert str(Instrument(lot_size=Decimal("100")).lots_to_qty(5)) == "500"


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_bad_amounts_raise_value_error(amount):
    with pytest.raises(ValueError):
        EQUITY.price_to_ticks(Decimal(amount))
    with pytest.raises(ValueError):
        EQUITY.qty_to_lots(Decimal(amount))


@pytest.mark.parametrize("amount", [1.5, 2, "1.00", True, None])
def test_non_decimals_raise_type_error(amount):
    with pytest.raises(TypeError):
        EQUITY.price_to_ticks(amount)


def test_range_is_signed_64_bit():
    assert EQUITY.price_to_ticks(EQUITY.ticks_to_price(MAX_UNITS)) == MAX_UNITS
    with pytest.raises(ValueError, match="too large"):
        EQUITY.price_to_ticks(EQUITY.ticks_to_price(MAX_UNITS) + EQUITY.tick_size)
    with pytest.raises(ValueError):
        EQUITY.ticks_to_price(MAX_UNITS + 1)
    with pytest.raises(TypeError):
        EQUITY.lots_to_qty(True)


@given(
    units=st.integers(1, MAX_UNITS),
    size=st.sampled_from(["0.01", "0.05", "0.00000001", "25", "9999999.99999999"]).map(Decimal),
)
def test_round_trip(units, size):
    instrument = Instrument(tick_size=size, lot_size=size)
    assert instrument.price_to_ticks(instrument.ticks_to_price(units)) == units
    assert instrument.qty_to_lots(instrument.lots_to_qty(units)) == units


def test_clean_rejects_bad_sizes_and_symbols():
    instrument = Instrument(symbol="aapl", name="Apple", tick_size=Decimal("0"), lot_size=Decimal("-1"))
    with pytest.raises(ValidationError) as caught:
        instrument.full_clean()
    assert set(caught.value.message_dict) == {"symbol", "tick_size", "lot_size"}


@pytest.mark.django_db
def test_database_rejects_non_positive_sizes():
    with pytest.raises(IntegrityError):
        Instrument.objects.create(symbol="ZERO", name="Zero", tick_size=Decimal("0"), lot_size=Decimal("1"))
