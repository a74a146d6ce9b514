"""Writes to exchange models; views and admin call these instead of saving models themselves."""

from django.db.models import QuerySet

from exchange.models import Instrument


def instruments_set_status(*, instruments: QuerySet[Instrument], status: Instrument.Status) -> int:
    """Open or halt trading in `instruments`; returns how many actually changed."""
    return instruments.exclude(status=status).update(status=status)
