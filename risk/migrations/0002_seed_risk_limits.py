"""Seed the demo instruments' risk limits (see docs/ARCHITECTURE.md, "Accounts and risk: the Django side").

Per instrument: a maximum position and order size; for all of them a 10% price band, orders above 5% of
a reference daily volume of 100,000 shares held for an admin, and a circuit breaker that halts trading
for 300 s after a move of more than 10% within 300 s.
"""

from decimal import Decimal

from django.db import migrations

# symbol: (max position, max order size), in shares
SEED = {
    "AAPL": (Decimal(10_000), Decimal(1_000)),
    "GOOGL": (Decimal(5_000), Decimal(500)),
    "MSFT": (Decimal(10_000), Decimal(1_000)),
    "TSLA": (Decimal(10_000), Decimal(1_000)),
}
COMMON = {
    "price_band_pct": Decimal(10),
    "hold_volume_pct": Decimal(5),
    "reference_daily_volume": Decimal(100_000),
    "circuit_move_pct": Decimal(10),
    "circuit_window_seconds": 300,
    "circuit_halt_seconds": 300,
}


def create_limits(apps, schema_editor):
    Instrument = apps.get_model("exchange", "Instrument")
    RiskLimit = apps.get_model("risk", "RiskLimit")
    for instrument in Instrument.objects.filter(symbol__in=SEED):
        max_position, max_order_size = SEED[instrument.symbol]
        RiskLimit.objects.get_or_create(
            instrument=instrument,
            defaults={"max_position": max_position, "max_order_size": max_order_size, **COMMON},
        )


def delete_limits(apps, schema_editor):
    RiskLimit = apps.get_model("risk", "RiskLimit")
    RiskLimit.objects.filter(instrument__symbol__in=SEED).delete()


class Migration(migrations.Migration):
    dependencies = [("risk", "0001_accounts_and_limits"), ("exchange", "0002_seed_instruments")]

    operations = [migrations.RunPython(create_limits, delete_limits)]
