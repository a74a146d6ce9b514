"""What risk knows per symbol: its configuration, last trade price, today's volume, the circuit
breaker's window of recent prices, and whether it is halted. Time is engine time (ns) throughout."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Final

from risk.core.limits import InstrumentRisk, beyond_bps

DAY_NS: Final = 86_400_000_000_000  # the daily volume restarts at each UTC day: ts // DAY_NS


class SymbolRisk:
    """One symbol. Without a config: no limits, cash_per_tick_lot 1, no circuit breaker.

    The circuit window keeps two monotonic queues of (timestamp, price): `highs` with decreasing
    prices, so its head is the highest price in the window, and `lows` increasing. A trade is then
    compared with the window's extremes only (the largest move from any price in it is from one of
    them), and each trade is pushed and evicted once: O(1) amortized.
    """

    __slots__ = ("cash_per_tick_lot", "config", "halt_reason", "halt_until", "halted", "highs",
                 "last_price", "lows", "symbol", "volume", "volume_day")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.config: InstrumentRisk | None = None
        self.cash_per_tick_lot = 1
        self.last_price: int | None = None
        self.volume_day = 0
        self.volume = 0
        self.halted = False
        self.halt_reason = ""
        self.halt_until: int | None = None  # None with halted: until an admin resumes it
        self.highs: deque[tuple[int, int]] = deque()
        self.lows: deque[tuple[int, int]] = deque()

    def configure(self, config: InstrumentRisk) -> None:
        self.config = config
        self.cash_per_tick_lot = config.cash_per_tick_lot
        if config.circuit_move_bps is None:
            self.highs.clear()
            self.lows.clear()

    def daily_volume(self, ts: int, reference: int) -> int:
        """The volume the hold rule measures against: max(reference, lots traded so far today)."""
        today = self.volume if ts // DAY_NS == self.volume_day else 0
        return today if today > reference else reference

    def reference_price(self) -> int | None:
        """The price band's reference: the last trade, else the configured reference price."""
        if self.last_price is not None:
            return self.last_price
        return None if self.config is None else self.config.reference_price

    def record_trade(self, ts: int, price: int, qty: int) -> bool:
        """Count a trade; True when its price moved beyond the circuit breaker's limit from any
        trade price of the last `circuit_window_ns` (trades at ts - window count as inside)."""
        self.last_price = price
        day = ts // DAY_NS
        if day != self.volume_day:
            self.volume_day, self.volume = day, 0
        self.volume += qty
        config = self.config
        if config is None or config.circuit_move_bps is None or self.halted:
            return False
        highs, lows = self.highs, self.lows
        oldest = ts - config.circuit_window_ns
        while highs and highs[0][0] < oldest:
            highs.popleft()
        while lows and lows[0][0] < oldest:
            lows.popleft()
        bps = config.circuit_move_bps
        moved = bool(highs) and (beyond_bps(price, highs[0][1], bps) or beyond_bps(price, lows[0][1], bps))
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((ts, price))
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((ts, price))
        return moved

    def halt(self, reason: str, until: int | None) -> None:
        """Halt; the circuit window starts afresh, so after the halt prices are compared only with
        trades made after it."""
        self.halted, self.halt_reason, self.halt_until = True, reason, until
        self.highs.clear()
        self.lows.clear()

    def resume(self) -> None:
        self.halted, self.halt_reason, self.halt_until = False, "", None

    def state(self) -> list:
        return [self.symbol, None if self.config is None else self.config.state(), self.last_price,
                self.volume_day, self.volume, self.halted, self.halt_reason, self.halt_until,
                [list(entry) for entry in self.highs], [list(entry) for entry in self.lows]]

    @classmethod
    def from_state(cls, state: Sequence) -> SymbolRisk:
        symbol, config, last_price, volume_day, volume, halted, reason, until, highs, lows = state
        risk = cls(symbol)
        if config is not None:
            risk.configure(InstrumentRisk.from_state(config))
        risk.last_price, risk.volume_day, risk.volume = last_price, volume_day, volume
        risk.halted, risk.halt_reason, risk.halt_until = halted, reason, until
        risk.highs.extend((entry[0], entry[1]) for entry in highs)
        risk.lows.extend((entry[0], entry[1]) for entry in lows)
        return risk
