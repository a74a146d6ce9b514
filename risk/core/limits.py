"""Risk configuration: per instrument (`InstrumentRisk`) and per user and instrument (`UserLimit`).

Everything is an integer: prices in ticks, quantities in lots, cash in cash units, ratios in basis
points (1 bps = 1/10,000), time in nanoseconds. `None` switches a limit off. An instrument without
an `InstrumentRisk` has no limits at all and `cash_per_tick_lot = 1` (its trades still move cash,
and buying it still needs cash: buying power belongs to the account, not to the instrument).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

BPS: Final = 10_000  # basis points in 1


@dataclass(slots=True)
class InstrumentRisk:
    symbol: str
    cash_per_tick_lot: int  # cash units for 1 tick x 1 lot (tick 0.01, lot 1, CASH_DECIMALS 4: 100)
    max_position: int | None = None  # lots, absolute position, open orders counted as filled
    max_order_qty: int | None = None  # lots per order
    price_band_bps: int | None = None  # limit prices at most this far from the last (or reference) price
    hold_volume_bps: int | None = None  # orders above this share of the daily volume wait for an admin
    reference_daily_volume: int = 0  # lots; the hold rule uses max(this, volume traded today)
    reference_price: int | None = None  # ticks; the band's reference before the first trade
    circuit_move_bps: int | None = None  # a move larger than this within the window halts the symbol
    circuit_window_ns: int = 0
    circuit_halt_ns: int = 0

    def state(self) -> list:
        return [self.symbol, self.cash_per_tick_lot, self.max_position, self.max_order_qty,
                self.price_band_bps, self.hold_volume_bps, self.reference_daily_volume, self.reference_price,
                self.circuit_move_bps, self.circuit_window_ns, self.circuit_halt_ns]

    @classmethod
    def from_state(cls, values: Sequence) -> InstrumentRisk:
        return cls(values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7],
                   values[8], values[9], values[10])

    def error(self) -> str | None:
        """Why this configuration cannot be applied, or None."""
        if type(self.symbol) is not str or not self.symbol:
            return "symbol"
        if not _is_int(self.cash_per_tick_lot) or self.cash_per_tick_lot < 1:
            return "cash_per_tick_lot"
        optional = (("max_position", self.max_position), ("max_order_qty", self.max_order_qty),
                    ("price_band_bps", self.price_band_bps), ("hold_volume_bps", self.hold_volume_bps),
                    ("circuit_move_bps", self.circuit_move_bps))
        for name, value in optional:
            if value is not None and (not _is_int(value) or value < 0):
                return name
        if not _is_int(self.reference_daily_volume) or self.reference_daily_volume < 0:
            return "reference_daily_volume"
        reference = self.reference_price
        if reference is not None and (not _is_int(reference) or reference < 1):
            return "reference_price"
        if not _is_int(self.circuit_window_ns) or self.circuit_window_ns < 0:
            return "circuit_window_ns"
        if not _is_int(self.circuit_halt_ns) or self.circuit_halt_ns < (1 if self.circuit_move_bps is not None
                                                                         else 0):
            return "circuit_halt_ns"
        return None


@dataclass(slots=True)
class UserLimit:
    """One user's override for one instrument; a None field inherits the instrument's limit.
    Setting one whose fields are all None removes the override."""

    owner: int
    symbol: str
    max_position: int | None = None
    max_order_qty: int | None = None

    def state(self) -> list:
        return [self.owner, self.symbol, self.max_position, self.max_order_qty]

    @classmethod
    def from_state(cls, values: Sequence) -> UserLimit:
        return cls(values[0], values[1], values[2], values[3])

    def is_empty(self) -> bool:
        return self.max_position is None and self.max_order_qty is None

    def error(self) -> str | None:
        if not _is_int(self.owner):
            return "owner"
        if type(self.symbol) is not str or not self.symbol:
            return "symbol"
        for name, value in (("max_position", self.max_position), ("max_order_qty", self.max_order_qty)):
            if value is not None and (not _is_int(value) or value < 0):
                return name
        return None


def beyond_bps(price: int, reference: int, bps: int) -> bool:
    """Whether `price` is more than `bps` basis points away from `reference` (exactly at: no)."""
    move = price - reference if price >= reference else reference - price
    return move * BPS > bps * reference


def _is_int(value: object) -> bool:
    return type(value) is int  # not bool: True is no quantity
