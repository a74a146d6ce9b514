"""The demo market maker's loop: read the market, ask the strategy, send orders and cancels as the user
`marketmaker` through `matching.services`, like any client of the matcher (docs/ARCHITECTURE.md, "Demo
market maker").

Every `interval` seconds (MARKET_MAKER_INTERVAL, default 1) `MarketMaker.step()`:
  1. the first time: the user, its limits and its one deposit (exchange/marketmaker/accounts.py), then
     the instruments and their limits (again every REFRESH_EVERY steps, so admin changes are taken);
  2. its own orders and positions: from the replies it got (accepted, filled as taker, canceled ...),
     brought up to date from the projection (orders filled by other users' orders, orders whose reply
     it never got), each by the matcher seq it was last seen at, so the newer view wins;
  3. per instrument not halted: the ticker from `services.market_data()`, the strategy's commands
     (cancels first, then new orders), each reply folded into its own orders.
`Unavailable` (or anything else) ends the step: counted and logged, and the next step tries again; the
loop never dies of it. The heartbeat (last successful step, quotes live, errors, rejections) is what
`/health` reports as the `marketmaker` component, never required: the market maker down, trading goes on.

Embedded default: `start_if_enabled()` (called by `matching.services` right after the embedded matcher
starts) runs it in a daemon thread when DEMO_MARKET_MAKER is on; `command_bus_stop()` stops it first
and its quotes are canceled. Production: `manage.py runmarketmaker` runs the same loop in its own process
against the RedisBus and publishes the heartbeat to Redis for the web tier's `/health`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q

from exchange.env import Mode
from exchange.marketmaker import accounts
from exchange.marketmaker.strategy import Cancel, Limits, Market, Params, Place, RestingOrder, Strategy
from exchange.models import Instrument
from matching import services
from matching.engine.events import CancelRejected
from matching.engine.types import OrderStatus, OrderType, Side
from matching.models import Order
from matching.outcomes import outcomes
from matching.worker.bus import Unavailable
from matching.worker.matcher import Reply
from risk.config import ConfigError, instrument_risk, user_limit
from risk.core import OrderHeld, PositionUpdate
from risk.models import Position, RiskLimit, UserRiskLimit

log = logging.getLogger("exchange.marketmaker")

# Where the walk is anchored when the risk limits give no reference price and nothing has traded yet.
DEMO_PRICES = {"AAPL": Decimal("190.00"), "GOOGL": Decimal("140.00"), "MSFT": Decimal("420.00"),
               "TSLA": Decimal("250.00")}
DEFAULT_PRICE = Decimal(100)
REFRESH_EVERY = 30  # steps between re-reads of the instruments and their limits
LIVE = (OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value, OrderStatus.HELD.value)
GONE_KEPT = 10_000  # ids of its orders known to be gone, so a lagging projection does not revive them
LOG_EVERY = 60  # failed steps in a row between two log lines about the same error

OK, DEGRADED, DOWN = "ok", "degraded", "down"


@dataclass
class OwnOrder:
    symbol: str
    side: Side
    price: int
    remaining: int
    seq: int  # the matcher seq this view of it is from


@dataclass
class Heartbeat:
    running: bool = False
    last_quote_at: float | None = None  # wall clock (s) of the last step that completed
    steps: int = 0
    errors: int = 0  # steps that did not complete (Unavailable, anything else)
    rejected: int = 0  # orders and cancels the matcher refused
    quotes_live: int = 0
    failing: bool = False  # the last step did not complete
    last_error: str = ""

    def as_dict(self, interval: float) -> dict[str, Any]:
        return {"running": self.running, "failing": self.failing, "last_quote_at": self.last_quote_at,
                "steps": self.steps,
                "errors": self.errors, "rejected": self.rejected, "quotes_live": self.quotes_live,
                "last_error": self.last_error, "interval": interval}


def report(beat: dict[str, Any] | None, now: float | None = None) -> dict[str, Any]:
    """A heartbeat as /health shows it: ok while steps complete, degraded when the last step failed or
    the last completed one is older than three intervals (at least 3 s), down when not running."""
    if beat is None:
        return {"status": DOWN, "detail": "no heartbeat"}
    now = time.time() if now is None else now
    last = beat.get("last_quote_at")
    stale_after = max(3.0, 3 * float(beat.get("interval") or 1.0))
    if not beat.get("running"):
        status = DOWN
    elif not beat.get("failing") and last is not None and now - last <= stale_after:
        status = OK
    else:
        status = DEGRADED
    out = {"status": status, "quotes_live": beat.get("quotes_live", 0), "steps": beat.get("steps", 0),
           "errors": beat.get("errors", 0), "rejected": beat.get("rejected", 0),
           "last_quote_at": None if last is None else datetime.fromtimestamp(last, UTC).isoformat()}
    if beat.get("last_error"):
        out["last_error"] = beat["last_error"]
    return out


class MarketMaker:
    def __init__(self, *, interval: float | None = None, seed: int = 0, params: Params | None = None,
                 symbols: Sequence[str] | None = None, clock: Callable[[], int] = time.time_ns,
                 publish: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.interval = float(settings.MARKET_MAKER_INTERVAL if interval is None else interval)
        self.strategy = Strategy(params, seed)
        self.only = None if symbols is None else set(symbols)
        self.clock = clock  # engine-style ns, passed to the strategy
        self.publish = publish  # gets the heartbeat after every step (runmarketmaker: to Redis)
        self.user: Any = None
        self.instruments: dict[str, Instrument] = {}
        self.orders: dict[int, OwnOrder] = {}
        self.positions: dict[str, tuple[int, int]] = {}  # symbol -> (lots, seq)
        self.heartbeat = Heartbeat(running=True)
        self._gone: set[int] = set()
        self._gone_order: deque[int] = deque()
        self._since_refresh = 0
        self._failures = 0  # failed steps in a row
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the loop ------------------------------------------------------------------------------

    def step(self) -> bool:
        """One round (see the module); whether it completed. Never raises."""
        beat = self.heartbeat
        try:
            if self.user is None:
                self._prepare()
            elif self._since_refresh >= REFRESH_EVERY:
                self._load_instruments()
            self._since_refresh += 1
            self._reconcile()
            halted = set(Instrument.objects.filter(status=Instrument.Status.HALTED)
                         .values_list("symbol", flat=True))
            data = services.market_data()
            for symbol in self.strategy.symbols():
                if self._stop.is_set():
                    break
                ticker = data.ticker(symbol)
                market = Market(ticker.last, ticker.bid, ticker.ask)
                if symbol in halted:  # cancels would pass, new orders not: leave the quotes as they are
                    continue
                resting = [RestingOrder(oid, o.side, o.price, o.remaining)
                           for oid, o in self.orders.items() if o.symbol == symbol]
                position = self.positions.get(symbol, (0, 0))[0]
                for cmd in self.strategy.update(symbol, self.clock(), resting, position, market):
                    if self._stop.is_set():
                        break
                    self._send(cmd)
        except Unavailable as exc:
            self._failed(f"matcher unavailable: {exc}")
            return False
        except Exception as exc:
            if not beat.failing:
                log.exception("market maker step failed")
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        else:
            if self._failures:
                log.info("market maker: quoting again after %d failed steps", self._failures)
            self._failures = 0
            beat.last_quote_at, beat.failing = time.time(), False
            return True
        finally:
            beat.steps += 1
            beat.quotes_live = len(self.orders)
            self._publish()

    def run(self) -> None:
        """Step every `interval` seconds until `request_stop()`; closes this thread's database
        connection at the end."""
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                close_old_connections()  # a long-lived thread: drop a connection that went bad
                self.step()
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            connection.close()

    def start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run_thread, name="marketmaker", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, *, cancel: bool = True) -> None:
        """Stop the loop (waiting for a step under way), then cancel the quotes left, best effort."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 2 * float(settings.MATCHER_TIMEOUT) + 1)
            if self._thread.is_alive():
                log.warning("market maker thread did not stop in time; its quotes are left")
                cancel = False
        if cancel:
            self.cancel_all()
        self.heartbeat.running = False
        self._publish()

    def cancel_all(self) -> int:
        """Cancel every order it knows of; stops at the first `Unavailable`. How many it sent."""
        sent = 0
        for order_id, order in sorted(self.orders.items()):
            try:
                reply = services.order_cancel(user_id=self.user.pk, symbol=order.symbol, order_id=order_id)
            except Unavailable:
                log.warning("market maker: matcher unavailable, %d quotes left", len(self.orders))
                break
            sent += 1
            self._absorb(reply)
        self.heartbeat.quotes_live = len(self.orders)
        return sent

    def health(self) -> dict[str, Any]:
        return report(self.heartbeat.as_dict(self.interval))

    def _run_thread(self) -> None:
        try:
            self.run()
        finally:
            self.heartbeat.running = False

    # ---- set-up ----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        user = accounts.ensure_user()
        created = accounts.ensure_limits(user, send=True)
        if created:
            log.info("market maker: position limits set for %s", ", ".join(created))
        if accounts.ensure_funded(user):
            log.info("market maker: deposited %s", accounts.FUNDING)
        self.user = user
        self._load_instruments()
        self._adopt_open_orders()

    def _load_instruments(self) -> None:
        """The instruments to quote and the limits the risk stage applies to the maker in each."""
        self._since_refresh = 0
        instruments = Instrument.objects.order_by("symbol")
        if self.only is not None:
            instruments = instruments.filter(symbol__in=self.only)
        risk_limits = {r.instrument_id: r for r in RiskLimit.objects.all()}
        overrides = {o.instrument_id: o for o in
                     UserRiskLimit.objects.filter(user=self.user).select_related("instrument")}
        data = services.market_data()
        for instrument in instruments:
            symbol = instrument.symbol
            try:
                pk = instrument.pk
                limits = self._limits(instrument, risk_limits.get(pk), overrides.get(pk))
            except ConfigError:
                log.exception("market maker: %s has limits it cannot use; not quoting it", symbol)
                continue
            self.instruments[symbol] = instrument
            if symbol in self.strategy.symbols():
                self.strategy.set_limits(symbol, limits)
                continue
            ticker = data.ticker(symbol)
            last = ticker.last
            start = last  # the walk goes on from the market: the last trade, else the middle of the book
            if start is None and ticker.bid is not None and ticker.ask is not None:
                start = (ticker.bid + ticker.ask) // 2  # e.g. its own quotes from before a restart
            reference = self._reference(instrument, limits, last)
            self.strategy.add_instrument(symbol, reference, limits, start=start)

    @staticmethod
    def _limits(instrument: Instrument, limit: RiskLimit | None, override: UserRiskLimit | None) -> Limits:
        config = instrument_risk(instrument, limit)
        mine = None if override is None else user_limit(override)
        max_order = config.max_order_qty if mine is None or mine.max_order_qty is None else mine.max_order_qty
        max_position = config.max_position if mine is None or mine.max_position is None else mine.max_position
        hold = None
        if config.hold_volume_bps is not None:  # daily volume is at least the reference: safe all day
            hold = config.hold_volume_bps * config.reference_daily_volume // 10_000
        return Limits(max_order_qty=max_order, max_position=max_position,
                      price_band_bps=config.price_band_bps, reference_price=config.reference_price,
                      hold_qty=hold)

    @staticmethod
    def _reference(instrument: Instrument, limits: Limits, last: int | None) -> int:
        """The configured reference price, else the last trade, else the demo price, else 100."""
        if limits.reference_price:
            return limits.reference_price
        if last:
            return last
        price = DEMO_PRICES.get(instrument.symbol, DEFAULT_PRICE)
        return max(1, int(price / instrument.tick_size))

    def _adopt_open_orders(self) -> None:
        """Orders left from an earlier run (the matcher keeps them): quoted by this run from now on."""
        for oid, symbol, side, price, remaining, seq in (
                Order.objects.filter(user=self.user, status__in=LIVE, order_type=OrderType.LIMIT.value)
                .values_list("order_id", "symbol", "side", "price_ticks", "remaining_lots", "updated_seq")):
            if oid not in self.orders and oid not in self._gone and price is not None:
                self.orders[oid] = OwnOrder(symbol, Side(side), price, remaining, seq)

    # ---- its orders and positions ----------------------------------------------------------------

    def _reconcile(self) -> None:
        """Bring its orders and positions up to date from the projection where it saw a later seq."""
        live = Q(status__in=LIVE, order_type=OrderType.LIMIT.value)
        rows = (Order.objects.filter(user=self.user).filter(live | Q(order_id__in=list(self.orders)))
                .values_list("order_id", "symbol", "side", "price_ticks", "remaining_lots", "status",
                             "updated_seq"))
        for oid, symbol, side, price, remaining, status, seq in rows:
            own = self.orders.get(oid)
            alive = status in LIVE and remaining > 0
            if own is None:
                if alive and oid not in self._gone and price is not None:  # e.g. its reply timed out
                    self.orders[oid] = OwnOrder(symbol, Side(side), price, remaining, seq)
            elif seq > own.seq:
                if alive:
                    own.remaining, own.seq = remaining, seq
                else:
                    self._drop(oid)
        for symbol, qty, lot_size, seq in (Position.objects.filter(user=self.user)
                                           .values_list("instrument__symbol", "qty", "instrument__lot_size",
                                                        "seq")):
            if seq > self.positions.get(symbol, (0, -1))[1]:
                self.positions[symbol] = (int(qty / lot_size), seq)

    def _send(self, cmd: Cancel | Place) -> None:
        if isinstance(cmd, Cancel):
            order = self.orders.get(cmd.order_id)
            if order is None:
                return
            reply = services.order_cancel(user_id=self.user.pk, symbol=cmd.symbol, order_id=cmd.order_id)
        else:
            spec = services.OrderSpec(symbol=cmd.symbol, side=cmd.side, order_type=OrderType.LIMIT,
                                      qty_lots=cmd.qty, price_ticks=cmd.price)
            reply = services.order_submit(user_id=self.user.pk, order=spec)
        self._absorb(reply)

    def _absorb(self, reply: Reply) -> None:
        """Fold what a reply says about its own orders and positions into its view."""
        me, seq = self.user.pk, reply.seq
        for outcome in outcomes(reply.events).values():
            if outcome.owner != me:
                continue
            accepted, order_id = outcome.accepted, outcome.order_id
            if (accepted is not None and accepted.price is not None and order_id not in self.orders
                    and (isinstance(accepted, OrderHeld) or accepted.order_type == OrderType.LIMIT)):
                self.orders[order_id] = OwnOrder(accepted.symbol, accepted.side, accepted.price,
                                                 accepted.qty, seq)
            rejected = outcome.reject_reason
            if isinstance(outcome.refused, CancelRejected):
                rejected = outcome.refused.reason
            if rejected is not None:  # an order or a cancel refused: the order is not (or no longer) live
                self.heartbeat.rejected += 1
                self.heartbeat.last_error = f"{outcome.symbol}: {rejected}"
                self._drop(order_id)
            elif outcome.live is False:
                self._drop(order_id)
            elif outcome.remaining is not None:
                self._update(order_id, outcome.remaining, seq)
        for event in reply.events:
            if isinstance(event, PositionUpdate) and event.owner == me:
                self.positions[event.symbol] = (event.qty, seq)

    def _update(self, order_id: int, remaining: int, seq: int) -> None:
        order = self.orders.get(order_id)
        if order is None:
            return
        if remaining <= 0:
            self._drop(order_id)
        else:
            order.remaining, order.seq = remaining, seq

    def _drop(self, order_id: int) -> None:
        self.orders.pop(order_id, None)
        if order_id not in self._gone:
            self._gone.add(order_id)
            self._gone_order.append(order_id)
            if len(self._gone_order) > GONE_KEPT:
                self._gone.discard(self._gone_order.popleft())

    # ---- heartbeat -------------------------------------------------------------------------------

    def _failed(self, message: str) -> None:
        """Count a failed step; logged when the error changes and then every LOG_EVERY failures, not
        once an interval while the matcher is down."""
        beat = self.heartbeat
        if message != beat.last_error or self._failures % LOG_EVERY == 0:
            log.warning("market maker: %s; trying again every %.1f s", message, self.interval)
        self._failures += 1
        beat.errors += 1
        beat.failing, beat.last_error = True, message

    def _publish(self) -> None:
        if self.publish is None:
            return
        try:
            self.publish(self.heartbeat.as_dict(self.interval))
        except Exception:
            log.warning("market maker: could not publish the heartbeat", exc_info=True)


# ---- the process's market maker ----------------------------------------------------------------

_lock = threading.Lock()
_current: MarketMaker | None = None


def start_if_enabled() -> MarketMaker | None:
    """The embedded default's hook: with DEMO_MARKET_MAKER on, start the market maker thread (once)."""
    if not settings.DEMO_MARKET_MAKER or settings.EXCHANGE_MODE == Mode.PRODUCTION:
        return None
    return start()


def start(*, thread: bool = True, **options: Any) -> MarketMaker:
    """This process's market maker (created once); `thread=False`: the caller drives `step()` or `run()`
    (runmarketmaker, tests). /health reports it from now on."""
    global _current
    with _lock:
        if _current is None:
            _current = MarketMaker(**options)
            if thread:
                _current.start_thread()
        return _current


def current() -> MarketMaker | None:
    return _current


def stop(*, cancel: bool = True) -> None:
    """Stop this process's market maker, if any (its quotes canceled unless `cancel=False`)."""
    global _current
    with _lock:
        maker, _current = _current, None
    if maker is not None:
        maker.stop(cancel=cancel)


def heartbeat_key(prefix: str) -> str:
    return f"{prefix}:marketmaker:heartbeat"


def health() -> dict[str, Any] | None:
    """The `marketmaker` component of /health: this process's market maker, else (production, with
    DEMO_MARKET_MAKER on) the heartbeat `runmarketmaker` keeps in Redis; None: not part of this setup."""
    maker = _current
    if maker is not None:
        return maker.health()
    if not (settings.EXCHANGE_MODE == Mode.PRODUCTION and settings.DEMO_MARKET_MAKER):
        return None
    import redis

    from marketdata.redis_cache import connect

    prefix = settings.MATCHER_STREAM_PREFIX
    assert settings.REDIS_URL is not None  # production mode has one (exchange/env.py refuses it without)
    try:
        raw = connect(settings.REDIS_URL).get(heartbeat_key(prefix))
    except redis.RedisError as exc:
        return {"status": DOWN, "detail": f"redis: {exc}"}
    return report(None if raw is None else json.loads(raw))
