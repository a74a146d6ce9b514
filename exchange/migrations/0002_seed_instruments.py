"""Seed the demo instruments: US equities with a one-cent tick and a one-share lot."""

from decimal import Decimal

from django.db import migrations

SEED = (
    ("AAPL", "Apple Inc."),
    ("GOOGL", "Alphabet Inc."),
    ("MSFT", "Microsoft Corp."),
    ("TSLA", "Tesla Inc."),
)


def create_instruments(apps, schema_editor):
    Instrument = apps.get_model("exchange", "Instrument")
    for symbol, name in SEED:
        Instrument.objects.get_or_create(
            symbol=symbol,
            defaults={"name": name, "tick_size": Decimal("0.01"), "lot_size": Decimal("1"), "status": "open"},
        )


def delete_instruments(apps, schema_editor):
    Instrument = apps.get_model("exchange", "Instrument")
    Instrument.objects.filter(symbol__in=[symbol for symbol, _ in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("exchange", "0001_instrument")]

    operations = [migrations.RunPython(create_instruments, delete_instruments)]
