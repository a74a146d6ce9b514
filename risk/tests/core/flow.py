"""A random order flow for the risk core: every command kind, admin ones included, on two symbols
(AAPL with every limit configured and cash_per_tick_lot 100, T unconfigured), four owners and a
narrow price range so much of it trades, holds, halts and gets rejected.

The flow is a list of small integer tuples (`Op`), drawn by hypothesis (which can shrink them) or by
`random_ops(seed)`; `Flow.command(op)` turns one into a command, given what was placed before.
"""

from __future__ import annotations

import random

from matching.engine import (
    AdvanceTime,
    AmendOrder,
    CancelOrder,
    MatchingEngine,
    NewOrder,
    OrderType,
    Side,
    STPMode,
    TimeInForce,
)
from risk.core import (
    AdjustCash,
    HaltInstrument,
    InstrumentRisk,
    RejectHeld,
    ReleaseHeld,
    ResumeInstrument,
    RiskEngine,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
    UserLimit,
)

SYMBOLS = ("AAPL", "T")
OWNERS = 4
DEFAULT_CASH = 100_000  # 10 lots of AAPL at 100 ticks x 100 cash units
CASH_PER_TICK_LOT = {"AAPL": 100, "T": 1}
STP_MODES = list(STPMode)

# (kind 0-99, owner 1-4, symbol 0-1, side 0-1, qty 1-12, price 90-110, aux 0-9999)
Op = tuple[int, int, int, int, int, int, int]


def aapl_config(**changes) -> InstrumentRisk:
    config = InstrumentRisk("AAPL", 100, max_position=30, max_order_qty=10, price_band_bps=800,
                            hold_volume_bps=2_000, reference_daily_volume=30, reference_price=100,
                            circuit_move_bps=600, circuit_window_ns=40, circuit_halt_ns=25)
    for name, value in changes.items():
        setattr(config, name, value)
    return config


def setup_commands() -> list:
    return [SetDefaultCash(DEFAULT_CASH, timestamp=1), SetInstrumentRisk(aapl_config(), timestamp=2)]


def new_engines() -> RiskEngine:
    return RiskEngine(MatchingEngine(SYMBOLS))


def random_ops(seed: int, n: int) -> list[Op]:
    rnd = random.Random(seed)
    return [(rnd.randrange(100), rnd.randint(1, OWNERS), rnd.randrange(2), rnd.randrange(2),
             rnd.randint(1, 12), rnd.randint(90, 110), rnd.randrange(10_000)) for _ in range(n)]


class Flow:
    """Turns ops into commands; remembers ids placed so cancels and amends hit real ones, and reads
    the risk engine's held queue so releases and rejections mostly do."""

    def __init__(self, risk: RiskEngine) -> None:
        self.risk = risk
        self.ts = 10
        self.next_id = 1
        self.placed: list[tuple[int, int, str]] = []  # (order id, owner, symbol)
        self.stop_buyers: set[int] = set()  # owners who placed a stop buy (they may overrun)
        self.oldest_market_buyers: set[int] = set()  # market buys with stp cancel_oldest (likewise)

    def command(self, op: Op):
        kind, owner, sym, side_bit, qty, price, aux = op
        self.ts += 1 + aux % 7
        ts = self.ts
        symbol = SYMBOLS[sym]
        side = Side.BUY if side_bit else Side.SELL
        stp = STP_MODES[aux % len(STP_MODES)]
        recent = self.placed[-10:]
        if kind < 40:
            tif = [TimeInForce.GTC] * 5 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY]
            tif_pick = tif[aux % len(tif)]
            expire = ts + 1 + aux % 60 if tif_pick is TimeInForce.DAY else None
            post = tif_pick is TimeInForce.GTC and aux % 13 == 0
            return self._new(NewOrder(0, owner, symbol, side, qty, price, tif=tif_pick, post_only=post,
                                      expire_at=expire, stp=stp, timestamp=ts))
        if kind < 48:
            if side is Side.BUY and stp is STPMode.CANCEL_OLDEST:
                self.oldest_market_buyers.add(owner)
            tif_pick = TimeInForce.FOK if aux % 3 == 0 else TimeInForce.GTC
            return self._new(NewOrder(0, owner, symbol, side, qty, order_type=OrderType.MARKET, tif=tif_pick,
                                      stp=stp, timestamp=ts))
        if kind < 56:
            limit = None if aux % 2 else price + aux % 5 - 2
            if side is Side.BUY:
                self.stop_buyers.add(owner)
            otype = OrderType.STOP if limit is None else OrderType.STOP_LIMIT
            return self._new(NewOrder(0, owner, symbol, side, qty, limit, otype, stop_price=price, stp=stp,
                                      timestamp=ts))
        if kind < 68 and recent:
            oid, placed_owner, osym = recent[aux % len(recent)]
            return CancelOrder(oid, placed_owner if aux % 10 else owner, osym, ts)
        if kind < 78 and recent:
            oid, placed_owner, osym = recent[aux % len(recent)]
            change = [{"qty": qty}, {"price": price}, {"qty": qty, "price": price}, {"stop_price": price}]
            return AmendOrder(oid, placed_owner, osym, timestamp=ts, **change[aux % 4])
        if kind < 82:
            return AdvanceTime(ts)
        if kind < 86:
            return AdjustCash(owner, (aux - 4_000) * 20, timestamp=ts)
        if kind < 91:
            held = list(self.risk.held)
            oid = held[aux % len(held)] if held and aux % 8 else 999_999
            return (ReleaseHeld if aux % 3 else RejectHeld)(oid, timestamp=ts)
        if kind < 93:
            if aux % 4 == 0:
                return HaltInstrument(symbol, "test", timestamp=ts)
            return ResumeInstrument(symbol, timestamp=ts)
        if kind < 95:
            user_limit = UserLimit(owner, symbol, max_position=None if aux % 3 == 0 else 5 + aux % 40,
                                   max_order_qty=None if aux % 4 else 4 + aux % 12)
            return SetUserLimit(user_limit, timestamp=ts)
        return SetInstrumentRisk(aapl_config(max_position=10 + aux % 30, price_band_bps=200 + aux % 1_000),
                                 timestamp=ts)

    def _new(self, cmd: NewOrder) -> NewOrder:
        cmd.order_id = self.next_id
        self.next_id += 1
        self.placed.append((cmd.order_id, cmd.owner, cmd.symbol))
        return cmd
