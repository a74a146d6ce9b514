"""The edge between the admin's `Decimal`s and the risk core's integers.

Quantities become lots and prices ticks (through the instrument, exactly: anything off its lot or tick
size is a `ConfigError`), percentages basis points, seconds nanoseconds and money cash units
(10**-CASH_DECIMALS of the currency). `worker_config()` is everything the matcher's risk stage needs
to know from the database, as commands, for the matcher to apply at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings

from exchange.env import Mode
from exchange.models import Instrument
from risk.core import (
    CASH_DECIMALS,
    AdminCommand,
    InstrumentRisk,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
    UserLimit,
)
from risk.models import RiskLimit, UserRiskLimit

CASH_QUANTUM = Decimal(1).scaleb(-CASH_DECIMALS)  # 0.0001: one cash unit
_NS_PER_SECOND = 10**9
_BPS_PER_PCT = 100


class ConfigError(ValueError):
    """A value the risk core cannot take as it is; `field` names the model field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def cash_to_units(amount: Decimal) -> int:
    """Whole cash units in `amount` (signed); ValueError beyond 4 decimal places."""
    units = amount.scaleb(CASH_DECIMALS)
    if not units.is_finite() or units != units.to_integral_value():
        raise ValueError(f"{amount} is not a whole multiple of {CASH_QUANTUM}")
    return int(units)


def units_to_cash(units: int) -> Decimal:
    return Decimal(units).scaleb(-CASH_DECIMALS).quantize(CASH_QUANTUM)


def starting_cash_units() -> int:
    return cash_to_units(settings.ACCOUNT_STARTING_CASH)


def cash_share(units: int, shard: int, shards: int) -> int:
    """Shard `shard`'s part of `units` split across `shards`: even, the remainder on shard 0."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}")
    return units // shards + (units % shards if shard == 0 else 0)


def shard_shares() -> dict[int, int]:
    """Each matcher shard's share of a new account's starting cash (cash units): one shard, shard 0,
    in the embedded default."""
    production = settings.EXCHANGE_MODE == Mode.PRODUCTION
    shards = (sorted(int(s) for s in settings.MATCHER_SHARDS) if production else []) or [0]
    units = starting_cash_units()
    return {shard: cash_share(units, index, len(shards)) for index, shard in enumerate(shards)}


def account_shares(user_id: int) -> dict[int, int]:
    """Where a new account's starting cash lives (shard -> cash units): with balance shards, all of it
    in the user's balance shard; else each matcher shard's share (`shard_shares`)."""
    if settings.EXCHANGE_MODE == Mode.PRODUCTION and settings.BALANCE_SHARDS > 0:
        return {user_id % settings.BALANCE_SHARDS: starting_cash_units()}
    return shard_shares()


def starting_cash() -> Decimal:
    """What an account holds before the matcher first reports it."""
    return units_to_cash(starting_cash_units())


def cash_per_tick_lot(instrument: Instrument) -> int:
    value = (instrument.tick_size * instrument.lot_size).scaleb(CASH_DECIMALS)
    if value != value.to_integral_value() or value < 1:
        raise ConfigError("instrument", f"{instrument.symbol}: tick size x lot size is not a whole number "
                                        f"of cash units ({CASH_QUANTUM})")
    return int(value)


def instrument_risk(instrument: Instrument, limit: RiskLimit | None) -> InstrumentRisk:
    """The instrument's risk configuration; without a `RiskLimit` no limit applies (but trades still
    need the instrument's cash per tick and lot)."""
    config = InstrumentRisk(instrument.symbol, cash_per_tick_lot(instrument))
    if limit is None:
        return config
    config.max_position = _lots(instrument, limit.max_position, "max_position")
    config.max_order_qty = _lots(instrument, limit.max_order_size, "max_order_size")
    config.price_band_bps = pct_to_bps(limit.price_band_pct)
    config.hold_volume_bps = pct_to_bps(limit.hold_volume_pct)
    volume = _lots(instrument, limit.reference_daily_volume, "reference_daily_volume")
    config.reference_daily_volume = volume or 0
    if limit.reference_price is not None:
        try:
            config.reference_price = instrument.price_to_ticks(limit.reference_price)
        except ValueError as exc:
            raise ConfigError("reference_price", str(exc)) from None
    config.circuit_move_bps = pct_to_bps(limit.circuit_move_pct)
    if config.circuit_move_bps is not None:
        config.circuit_window_ns = seconds_to_ns(limit.circuit_window_seconds)
        config.circuit_halt_ns = seconds_to_ns(limit.circuit_halt_seconds)
    error = config.error()
    if error is not None:
        raise ConfigError(_MODEL_FIELD.get(error, "instrument"), f"not a valid risk configuration: {error}")
    return config


def user_limit(override: UserRiskLimit) -> UserLimit:
    instrument = override.instrument
    return UserLimit(override.user_id, instrument.symbol,
                     _lots(instrument, override.max_position, "max_position"),
                     _lots(instrument, override.max_order_size, "max_order_size"))


def no_user_limit(*, user_id: int, symbol: str) -> UserLimit:
    """What removes a user's override (every field None)."""
    return UserLimit(user_id, symbol)


def pct_to_bps(pct: Decimal | None) -> int | None:
    if pct is None:
        return None
    bps = pct * _BPS_PER_PCT
    if bps != bps.to_integral_value():
        raise ValueError(f"{pct}% is finer than a basis point")
    return int(bps)


def seconds_to_ns(seconds: int | None) -> int:
    return (seconds or 0) * _NS_PER_SECOND


def worker_config(
    symbols: Iterable[str] | None = None, *, shard: int = 0, shards: int = 1
) -> list[AdminCommand]:
    """Everything the risk stage takes from the database: the starting cash, every instrument's
    configuration (with its limits, or none) and every user override, in a fixed order; only those
    of `symbols` when given (a shard's). With several shards each holds its share of every account's
    starting cash (docs/RISK.md), so the shares add up to the setting."""
    commands: list[AdminCommand] = [SetDefaultCash(cash_share(starting_cash_units(), shard, shards))]
    limits = {limit.instrument_id: limit for limit in RiskLimit.objects.all()}
    instruments = Instrument.objects.order_by("symbol")
    overrides = UserRiskLimit.objects.select_related("instrument").order_by("user_id", "instrument__symbol")
    if symbols is not None:
        instruments = instruments.filter(symbol__in=list(symbols))
        overrides = overrides.filter(instrument__in=instruments)
    for instrument in instruments:
        commands.append(SetInstrumentRisk(instrument_risk(instrument, limits.get(instrument.pk))))
    commands.extend(SetUserLimit(user_limit(override)) for override in overrides)
    return commands


_MODEL_FIELD = {
    "max_position": "max_position",
    "max_order_qty": "max_order_size",
    "price_band_bps": "price_band_pct",
    "hold_volume_bps": "hold_volume_pct",
    "reference_daily_volume": "reference_daily_volume",
    "reference_price": "reference_price",
    "circuit_move_bps": "circuit_move_pct",
    "circuit_window_ns": "circuit_window_seconds",
    "circuit_halt_ns": "circuit_halt_seconds",
}


def _lots(instrument: Instrument, qty: Decimal | None, field: str) -> int | None:
    if qty is None:
        return None
    if qty == 0:
        return 0
    try:
        return instrument.qty_to_lots(qty)
    except ValueError as exc:
        raise ConfigError(field, str(exc)) from None
