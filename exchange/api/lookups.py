"""What the API looks up on every call, cached in process memory (`exchange.local_cache`): API token
-> its user, symbol -> instrument. Sync and async (the async order entry path never blocks on a hit).

Invalidation, at once in this process: a token saved or deleted; a user saved (deactivated, say) or
deleted; any instrument saved or deleted (a new tick size applies to the next order). Otherwise an
entry lives TTL seconds: the bound on how long another server process, or a `QuerySet.update` that
sends no signal, can go unseen. Cached objects are shared between requests: read them, never change
them (a view that changes the user loads its own copy).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from rest_framework.authtoken.models import Token

from exchange.local_cache import MISSING, LocalCache
from exchange.models import Instrument

TTL = 5.0  # seconds

TOKENS = LocalCache("api tokens", TTL)  # key -> Token with its user (select_related)
INSTRUMENTS = LocalCache("instruments", TTL)  # symbol -> Instrument


def token_get(key: str) -> Token | None:
    """The token with this key and its user, or None."""
    token = TOKENS.load(key, lambda: _found(Token.objects.select_related("user").filter(key=key).first()))
    return None if token is MISSING else token


async def atoken_get(key: str) -> Token | None:
    async def load() -> Any:
        return _found(await Token.objects.select_related("user").filter(key=key).afirst())

    token = await TOKENS.aload(key, load)
    return None if token is MISSING else token


def instrument_get(symbol: str) -> Instrument | None:
    found = INSTRUMENTS.load(symbol, lambda: _found(Instrument.objects.filter(symbol=symbol).first()))
    return None if found is MISSING else found


async def ainstrument_get(symbol: str) -> Instrument | None:
    async def load() -> Any:
        return _found(await Instrument.objects.filter(symbol=symbol).afirst())

    found = await INSTRUMENTS.aload(symbol, load)
    return None if found is MISSING else found


def _found(value: Any) -> Any:
    return MISSING if value is None else value  # nothing found is not cached


def _token_changed(sender: type, instance: Token, **kwargs: Any) -> None:
    TOKENS.invalidate(instance.key)


def _user_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    TOKENS.invalidate_where(lambda token: token.user_id == instance.pk)


def _instrument_changed(sender: type, instance: Instrument, **kwargs: Any) -> None:
    INSTRUMENTS.clear()  # rare; a renamed symbol leaves no stale entry under its old name


def connect_signals() -> None:
    """Called once from ExchangeConfig.ready()."""
    user_model = get_user_model()
    for signal in (post_save, post_delete):
        signal.connect(_token_changed, sender=Token, dispatch_uid=f"lookups-token-{signal}")
        signal.connect(_user_changed, sender=user_model, dispatch_uid=f"lookups-user-{signal}")
        signal.connect(_instrument_changed, sender=Instrument, dispatch_uid=f"lookups-instrument-{signal}")
