"""The demo market maker's quoting strategy: pure (no Django, no I/O, no clock of its own).

Per instrument a fair value in ticks follows a seeded random walk that reverts toward a reference price
and stays within `max_deviation_bps` of it; a ladder of quotes (`levels` a side) sits around it. Given
the maker's own resting orders, `update()` returns the commands that move its quotes there: cancels of
orders no longer wanted, then new orders. Deterministic given the seed and the inputs (time included):
two strategies with the same seed fed the same calls return the same commands.

Integers only, as in the engine: prices in ticks, sizes in lots, ratios in basis points, time in ns.

The quotes respect the risk stage's rules for the maker (docs/RISK.md), so it is not refused:
- sizes at most the instrument's max order size and the largest quantity the hold rule lets through;
- prices within the price band (less `band_margin_bps`, since the last trade may move while the
  commands travel) around the last trade, else the configured reference price; levels outside are left
  out, and the fair value is kept within half the band of the last trade, so a market that moved away
  pulls the quotes along;
- inventory bounded: the ladder is shifted against the position (up to `max_skew_ticks` at the
  inventory cap) and a side is quoted only as far as position + that side's open quantity stays within
  the cap (the smaller of `max_inventory` and the maker's position limit): near the cap, the side that
  would add to the position stops.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from matching.engine.types import Side

BPS = 10_000


@dataclass(frozen=True)
class Params:
    levels: int = 5  # quotes a side
    half_spread_ticks: int = 5  # the best quote is at least this far from the (skewed) fair value
    level_step_ticks: int = 5  # between levels; quotes sit on a grid of this step, so small moves keep them
    base_size: int = 100  # lots at a level, plus 0 .. size_buckets - 1 times size_step (varies by price)
    size_step: int = 50
    size_buckets: int = 5
    max_inventory: int = 2_000  # lots, long or short (the maker's position limit caps it further)
    max_skew_ticks: int = 25  # how far the ladder moves against the position at the inventory cap
    step_ns: int = 1_000_000_000  # one random-walk step per this much time passed in
    max_steps: int = 120  # steps taken at most per update (a long pause does not loop for ever)
    vol_bps: int = 2  # a step moves the fair value by up to this much of the reference (uniform)
    reversion_bps: int = 20  # and pulls it back by this share of its distance from the reference
    max_deviation_bps: int = 300  # the fair value stays this close to the reference
    band_margin_bps: int = 100  # quotes stay this far inside the price band


@dataclass(frozen=True)
class Limits:
    """The risk stage's limits as they apply to the maker in one instrument (None: no limit)."""

    max_order_qty: int | None = None
    max_position: int | None = None
    price_band_bps: int | None = None
    reference_price: int | None = None  # the band's reference before the first trade
    hold_qty: int | None = None  # the largest quantity the hold rule lets through


@dataclass(frozen=True)
class Market:
    """What the market data shows of an instrument (ticks; None: nothing yet)."""

    last: int | None = None
    bid: int | None = None
    ask: int | None = None


@dataclass(frozen=True)
class Quote:
    side: Side
    price: int
    qty: int


@dataclass(frozen=True)
class RestingOrder:
    """One of the maker's own live orders as its replies (and the projection) last showed it."""

    order_id: int
    side: Side
    price: int
    qty: int  # remaining lots


@dataclass(frozen=True)
class Place:
    symbol: str
    side: Side
    price: int
    qty: int


@dataclass(frozen=True)
class Cancel:
    symbol: str
    order_id: int


Command = Place | Cancel


@dataclass
class _Instrument:
    reference: int
    limits: Limits
    fair: int
    rng: random.Random
    last_step_ns: int | None = None
    steps: int = field(default=0)


class Strategy:
    def __init__(self, params: Params | None = None, seed: int = 0) -> None:
        self.params = params or Params()
        self.seed = seed
        self._instruments: dict[str, _Instrument] = {}

    # ---- instruments ---------------------------------------------------------------------------

    def add_instrument(self, symbol: str, reference: int, limits: Limits | None = None,
                       start: int | None = None) -> None:
        """Quote `symbol` around `reference` (ticks); the walk starts at `start` (e.g. the last trade),
        kept within the deviation bound, or at the reference. Adding it again changes only its limits."""
        if reference <= 0:
            raise ValueError(f"{symbol}: the reference price must be positive, not {reference}")
        known = self._instruments.get(symbol)
        if known is not None:
            known.limits = limits or Limits()
            return
        fair = self._bounded(reference, reference if start is None else start)
        # a str seed goes through SHA-512: the same walk whatever PYTHONHASHSEED is
        rng = random.Random(f"{self.seed}:{symbol}")
        self._instruments[symbol] = _Instrument(reference, limits or Limits(), fair, rng)

    def set_limits(self, symbol: str, limits: Limits) -> None:
        self._instruments[symbol].limits = limits

    def symbols(self) -> list[str]:
        return sorted(self._instruments)

    def fair_value(self, symbol: str) -> int:
        return self._instruments[symbol].fair

    def reference(self, symbol: str) -> int:
        return self._instruments[symbol].reference

    # ---- the fair value --------------------------------------------------------------------------

    def advance(self, symbol: str, now_ns: int, market: Market | None = None) -> int:
        """Walk the fair value on to `now_ns` (one step per `step_ns`; the first call only starts the
        clock), then keep it within half the price band of the last trade. Returns it."""
        state, p = self._instruments[symbol], self.params
        if state.last_step_ns is None:
            state.last_step_ns = now_ns
        elif now_ns > state.last_step_ns:
            steps = (now_ns - state.last_step_ns) // p.step_ns
            if steps > p.max_steps:
                state.last_step_ns = now_ns
                steps = p.max_steps
            else:
                state.last_step_ns += steps * p.step_ns
            vol = max(1, state.reference * p.vol_bps // BPS)
            for _ in range(steps):
                pull = _div_round((state.reference - state.fair) * p.reversion_bps, BPS)
                state.fair = self._bounded(state.reference, state.fair + pull + state.rng.randint(-vol, vol))
                state.steps += 1
        band = self._band_bps(state.limits)
        if market is not None and market.last is not None and band is not None:
            reach = market.last * band // (2 * BPS)
            state.fair = max(market.last - reach, min(market.last + reach, state.fair))
        state.fair = max(1, state.fair)
        return state.fair

    # ---- quotes ----------------------------------------------------------------------------------

    def quotes(self, symbol: str, position: int = 0, market: Market | None = None) -> list[Quote]:
        """The ladder wanted now around the current fair value: bids best first, then asks best first."""
        state, p = self._instruments[symbol], self.params
        limits = state.limits
        cap = p.max_inventory if limits.max_position is None else min(p.max_inventory, limits.max_position)
        size_cap = min((q for q in (limits.max_order_qty, limits.hold_qty) if q is not None), default=None)
        held = max(-cap, min(cap, position))
        shift = -_div_round(held * p.max_skew_ticks, cap) if cap > 0 else 0
        centre, step = state.fair + shift, max(1, p.level_step_ticks)
        half = max(1, p.half_spread_ticks)
        band = self._band_bps(limits)
        anchor = market.last if market is not None and market.last is not None else limits.reference_price

        def in_band(price: int) -> bool:
            return band is None or anchor is None or (abs(price - anchor) * BPS <= band * anchor)

        out: list[Quote] = []
        for side, top, direction, exposure in (
            (Side.BUY, (centre - half) // step * step, -1, position),  # grid floor below the centre
            (Side.SELL, -((-(centre + half)) // step) * step, 1, -position),  # grid ceiling above it
        ):
            added = 0
            for level in range(p.levels):
                price = top + direction * level * step
                if price <= 0:
                    break
                if not in_band(price):
                    continue  # a deeper level may still be inside (the band's other edge)
                qty = self.size_for(price)
                if size_cap is not None:
                    qty = min(qty, size_cap)
                if qty <= 0 or exposure + added + qty > cap:
                    break  # near the inventory cap: this side quotes no further
                added += qty
                out.append(Quote(side, price, qty))
        return out

    def size_for(self, price: int) -> int:
        """A level's size: varies with its price (so the book looks uneven) and stays the same while
        the level is quoted, so a ladder that moves by one step keeps its other orders."""
        p = self.params
        mixed = (price * 2_654_435_761) & 0xFFFF_FFFF  # Knuth's multiplicative hash
        return p.base_size + (mixed >> 16) % max(1, p.size_buckets) * p.size_step

    def update(self, symbol: str, now_ns: int, resting: Iterable[RestingOrder], position: int = 0,
               market: Market | None = None) -> list[Command]:
        """Advance the fair value to `now_ns` and return what moves `resting` to the wanted ladder."""
        self.advance(symbol, now_ns, market)
        return plan(symbol, self.quotes(symbol, position, market), resting)

    # ---- helpers ---------------------------------------------------------------------------------

    def _bounded(self, reference: int, price: int) -> int:
        reach = reference * self.params.max_deviation_bps // BPS
        return max(reference - reach, min(reference + reach, price))

    def _band_bps(self, limits: Limits) -> int | None:
        """The band the quotes keep to: the risk stage's, less the margin (half of it if narrower)."""
        band = limits.price_band_bps
        if band is None:
            return None
        margin = self.params.band_margin_bps
        return band - margin if band > margin else band // 2


def plan(symbol: str, wanted: Iterable[Quote], resting: Iterable[RestingOrder]) -> list[Command]:
    """Cancels of resting orders that match no wanted quote (by side, price and size), by order id,
    then new orders for the wanted quotes no resting order covers, in the order given. A resting
    order that matches is kept (and with it its place in the queue)."""
    wanted = list(wanted)
    open_count = Counter((q.side, q.price, q.qty) for q in wanted)
    commands: list[Command] = []
    for order in sorted(resting, key=lambda o: o.order_id):
        key = (order.side, order.price, order.qty)
        if open_count[key] > 0:
            open_count[key] -= 1
        else:
            commands.append(Cancel(symbol, order.order_id))
    for quote in wanted:
        key = (quote.side, quote.price, quote.qty)
        if open_count[key] > 0:
            open_count[key] -= 1
            commands.append(Place(symbol, quote.side, quote.price, quote.qty))
    return commands


def _div_round(numerator: int, denominator: int) -> int:
    """numerator / denominator (> 0) rounded half away from zero: symmetric for both signs."""
    quotient = (abs(numerator) * 2 + denominator) // (2 * denominator)
    return quotient if numerator >= 0 else -quotient
