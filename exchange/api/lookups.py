"""Symbol -> instrument, looked up on every order, cached in process memory (`exchange.local_cache`).

Invalidated at once in this process when any instrument is saved or deleted (a new tick size applies
to the next order); otherwise an entry lives TTL seconds: the bound on how long a change made in
another server process, or by a `QuerySet.update` that sends no signal, can go unseen. Cached objects
are shared between requests: read them, never change them.

API tokens are not cached: the token authentication (exchange/api/authentication.py) reads the token's
user on every call, so a deleted token or a deactivated user is refused at once in every process.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from exchange.local_cache import MISSING, LocalCache
from exchange.models import Instrument

TTL = 5.0  # seconds

INSTRUMENTS = LocalCache("instruments", TTL)  # symbol -> Instrument


def instrument_get(symbol: str) -> Instrument | None:
    found = INSTRUMENTS.load(symbol, lambda: _found(Instrument.objects.filter(symbol=symbol).first()))
    return None if found is MISSING else found


def _found(value: Any) -> Any:
    return MISSING if value is None else value  # nothing found is not cached


def _instrument_changed(sender: type, instance: Instrument, **kwargs: Any) -> None:
    INSTRUMENTS.clear()  # rare; a renamed symbol leaves no stale entry under its old name


def connect_signals() -> None:
    """Called once from ExchangeConfig.ready()."""
    for signal in (post_save, post_delete):
        signal.connect(_instrument_changed, sender=Instrument, dispatch_uid=f"lookups-instrument-{signal}")
