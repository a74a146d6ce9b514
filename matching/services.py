"""The web tier's way to the matcher: one CommandBus per process, built from settings on first use.

The server starts it as it starts (the ASGI lifespan: exchange/lifespan.py); a server without lifespan
events starts it with the first request that needs it. In production (EXCHANGE_MODE), commands go to the
shard processes over Redis Streams instead; callers see the same `CommandBus` either way.
"""

from __future__ import annotations

import threading
import time as clock
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import redis
from django.conf import settings

from exchange.env import Mode
from exchange.models import Instrument
from marketdata import publisher
from marketdata.book_cache import MarketDataCache
from marketdata.redis_cache import RedisMarketData, connect
from matching.engine import AmendOrder, CancelOrder, NewOrder, OrderType, Side, STPMode, TimeInForce
from matching.models import Order
from matching.projector import Projector
from matching.selectors import projected_seq
from matching.shard import ShardOutputs, cursor_name
from matching.timestamps import to_ns
from matching.worker.balance_codec import Place, PlaceAmend
from matching.worker.bus import CommandBus, Unavailable
from matching.worker.embedded import EmbeddedBus
from matching.worker.matcher import ORDER_ID_STRIDE, Matcher, Reply
from matching.worker.projection_watch import ProjectionWatch
from matching.worker.redis_bus import RedisBus
from risk.config import worker_config
from risk.core import AdminCommand
from risk.core.checks import funding, protection

_lock = threading.Lock()
_bus: CommandBus | None = None
_outputs: ShardOutputs | None = None
_watch: ProjectionWatch | None = None  # production: how far each shard's projection has written
_market_data: RedisMarketData | None = None  # production: the shards' market data, read from Redis


def command_bus() -> CommandBus:
    global _bus
    if _bus is None:
        with _lock:
            if _bus is None:
                production = settings.EXCHANGE_MODE == Mode.PRODUCTION
                _bus = RedisBus.from_settings() if production else _start_embedded()
                if isinstance(_bus, EmbeddedBus):
                    _start_market_maker()
    return _bus


def _start_market_maker() -> None:
    """The demo market maker (DEMO_MARKET_MAKER) starts with the embedded matcher, in its own thread;
    in production it is a separate client (`manage.py runmarketmaker`)."""
    from exchange.marketmaker.runner import start_if_enabled  # it imports this module

    start_if_enabled()


def _start_embedded() -> EmbeddedBus:
    """Recover the embedded matcher (shard 0) from its journal, replaying whatever the projection has
    not seen yet into it, then start the projector and the matcher thread."""
    global _outputs
    cache = MarketDataCache()
    outputs = ShardOutputs(0, cache)
    matcher = Matcher.open(
        sorted(Instrument.objects.values_list("symbol", flat=True)),
        settings.MATCHER_DATA_DIR,
        fsync=settings.MATCHER_FSYNC,
        snapshot_every=settings.MATCHER_SNAPSHOT_EVERY,
        on_reply=lambda reply: outputs.project([reply]),
        replay_after=outputs.cursor,
    )
    outputs.start()
    outputs.recovered(matcher)
    config = matcher.config_changes(worker_config(symbols=matcher.engine.books))  # before its thread starts
    bus = EmbeddedBus(matcher)
    bus.subscribe(outputs.project)
    bus.subscribe(outputs.market_listener())
    # the WebSocket feeds: the publisher's loop runs in the server's event loop (exchange/lifespan.py)
    bus.subscribe(publisher.install(publisher.Publisher(cache, matcher.engine)).on_replies)
    bus.start()
    configure_risk(bus, config)
    _outputs = outputs
    return bus


def _projection_watch() -> ProjectionWatch:
    """This process's watch on the shards' projections (production), started on first use."""
    global _watch
    if _watch is None:
        with _lock:
            if _watch is None:
                assert settings.REDIS_URL is not None  # production mode has one (exchange/env.py)
                shards = sorted({int(name) for name in settings.MATCHER_SHARDS} | {0})
                _watch = ProjectionWatch(settings.REDIS_URL, settings.MATCHER_STREAM_PREFIX, shards).start()
    return _watch


def embedded_projector() -> Projector | None:
    """This process's projector: the embedded matcher's, once started (None in production)."""
    return None if _outputs is None else _outputs.projector


def configure_risk(bus: EmbeddedBus, config: list[AdminCommand]) -> None:
    """Send the starting cash, the limits of the matcher's instruments and the user overrides (those
    that changed) to its risk stage, as commands through the log like every admin change."""
    pending = [bus.enqueue(cmd) for cmd in config]
    for future in pending:
        future.result(settings.MATCHER_TIMEOUT)


def market_data() -> MarketDataCache | RedisMarketData:
    """Depth, last trades and ticker as the matcher last published them (never asks the matcher)."""
    global _market_data
    if settings.EXCHANGE_MODE == Mode.PRODUCTION:
        if _market_data is None:  # as runmatcher publishes it
            assert settings.REDIS_URL is not None  # production mode has one (exchange/env.py)
            _market_data = RedisMarketData(connect(settings.REDIS_URL), settings.MATCHER_STREAM_PREFIX)
        return _market_data
    command_bus()  # the embedded cache lives beside the matcher thread that feeds it
    assert _outputs is not None and isinstance(_outputs.market_data, MarketDataCache)
    return _outputs.market_data


def command_bus_stop() -> None:
    """Stop this process's bus: the market maker first (its quotes canceled; it must not start a new
    bus), then the matcher thread, the projector (written out) and the journal."""
    from exchange.marketmaker.runner import stop as stop_market_maker

    global _bus, _outputs, _market_data, _watch
    stop_market_maker()
    with _lock:
        if _watch is not None:
            _watch.stop()
            _watch = None
        if isinstance(_bus, EmbeddedBus):
            _bus.stop()
            if _outputs is not None:
                _outputs.stop()
            _bus.matcher.close()
        _bus, _outputs, _market_data = None, None, None


def command_bus_health() -> dict[str, dict]:
    """Per component, for /health. Production: every shard's heartbeat, from the first call (the
    RedisBus is only a client). Embedded: the matcher thread once this process has started it."""
    if _bus is None and settings.EXCHANGE_MODE == Mode.PRODUCTION:
        command_bus()
    if _bus is None:
        return {"matcher": {"status": "ok", "mode": "embedded",
                            "detail": "not started yet: it starts with the first order"}}
    bus = _bus
    report = {"matcher": bus.health(settings.BALANCE_SHARDS) if isinstance(bus, RedisBus) else bus.health()}
    projection = None if _outputs is None else _outputs.health()
    if projection is not None:
        report["projector"] = projection
    return report


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A new order as the web tier validated it (prices in ticks, quantities in lots), not yet a user's."""

    symbol: str
    side: Side
    order_type: OrderType
    qty_lots: int
    price_ticks: int | None = None
    stop_price_ticks: int | None = None
    tif: TimeInForce = TimeInForce.GTC
    expire_at: datetime | None = None
    post_only: bool = False
    stp: STPMode = STPMode.CANCEL_NEWEST
    client_order_id: str | None = None


def new_order(*, user_id: int, order: OrderSpec) -> NewOrder:
    """The NewOrder command (a DAY order without expire_at expires at the session's end)."""
    expire_at = order.expire_at
    if order.tif is TimeInForce.DAY and expire_at is None:
        expire_at = session_end(datetime.now(UTC))
    return NewOrder(0, user_id, order.symbol, order.side, order.qty_lots, order.price_ticks, order.order_type,
                    order.tif, order.post_only, order.stop_price_ticks,
                    None if expire_at is None else to_ns(expire_at), order.stp,
                    client_order_id=order.client_order_id)


def order_submit(*, user_id: int, order: OrderSpec) -> Reply:
    """Send a new order to the matcher and wait for its outcome (raises Unavailable). With balance
    shards, through the user's balance shard first (R1), which forwards it funded."""
    cmd = new_order(user_id=user_id, order=order)
    if balance_mode():
        bus = command_bus()
        assert isinstance(bus, RedisBus)
        return bus.submit_balance(place(cmd, bus), balance_shard_of(user_id), settings.MATCHER_TIMEOUT)
    return command_bus().submit(cmd, settings.MATCHER_TIMEOUT)


# ---- balance shards (issue 13; docs/ARCHITECTURE.md, "Accounts across shards") ---------------------

def balance_mode() -> bool:
    """Whether the accounts live in balance shards (production with BALANCE_SHARDS)."""
    return settings.EXCHANGE_MODE == Mode.PRODUCTION and settings.BALANCE_SHARDS > 0


def balance_shard_of(user_id: int) -> int:
    return user_id % settings.BALANCE_SHARDS


def place(cmd: NewOrder, bus: RedisBus) -> Place:
    """The order as its balance shard takes it: with what to reserve (`checks.funding`, at the
    instrument's cash per tick and lot) and, for a market buy without one, a protection price."""
    from exchange.api.lookups import instrument_get
    from risk.config import cash_per_tick_lot

    instrument = instrument_get(cmd.symbol)
    per_tick_lot = 1 if instrument is None else cash_per_tick_lot(instrument)
    if cmd.order_type is OrderType.MARKET and cmd.side is Side.BUY and cmd.price is None:
        cmd.price = protection_ticks(cmd.symbol)
    return Place(cmd, bus.shard_for(cmd), funding(cmd, per_tick_lot) or 0)


def protection_ticks(symbol: str) -> int:
    """A market buy's protection when it names none (`checks.protection`): the best ask, else the last
    price, plus the instrument's price band."""
    from risk.config import pct_to_bps
    from risk.models import RiskLimit

    ticker = market_data().ticker(symbol)
    band = (RiskLimit.objects.filter(instrument__symbol=symbol)
            .values_list("price_band_pct", flat=True).first())
    return protection(ticker.ask if ticker.ask is not None else ticker.last, pct_to_bps(band))


def order_id_known(order_id: int) -> bool:
    """Whether `order_id` could name an order: in range, and of a shard this exchange runs (the id
    names its shard). Others are unknown without asking any matcher."""
    if not 0 < order_id < 2**63:
        return False
    shard = order_id // ORDER_ID_STRIDE
    if settings.EXCHANGE_MODE == Mode.PRODUCTION:
        return shard in {int(name) for name in settings.MATCHER_SHARDS}
    return shard == 0  # the embedded matcher is shard 0


def order_cancel(*, user_id: int, order_id: int, symbol: str = "") -> Reply:
    """Cancel a live order. Without its symbol it is routed by its order id, which names the shard
    that made it; the shard finds the symbol (`Matcher.symbol_of`)."""
    return command_bus().submit(CancelOrder(order_id, user_id, symbol), settings.MATCHER_TIMEOUT)


def order_submit_many(*, orders: Sequence[tuple[int, OrderSpec]]) -> list[Reply | Unavailable]:
    """Send new orders, each (user id, spec), together and wait for all: per order its Reply, or
    Unavailable if that one was not answered in time. Embedded, they reach the matcher as one batch (one
    journal commit); over Redis, as one pipeline per shard. Raises Unavailable when none could be sent."""
    cmds = [new_order(user_id=user_id, order=order) for user_id, order in orders]
    if balance_mode():
        bus = command_bus()
        assert isinstance(bus, RedisBus)
        return bus.submit_balance_many([(place(cmd, bus), balance_shard_of(cmd.owner)) for cmd in cmds],
                                       settings.MATCHER_TIMEOUT)
    return command_bus().submit_many(cmds, settings.MATCHER_TIMEOUT)


def matcher_metrics() -> list[dict[str, Any]]:
    """Per matcher shard: shard, status, seq, queue_depth, age_seconds (of its heartbeat; None when
    embedded) and `metrics`, the summary of its `matcher.*` stages (None if it published none).
    Embedded: this process's matcher, nothing before it has started. Production: each shard's
    heartbeat, as its runner last published it (status "down" without one, "unknown" without Redis)."""
    if settings.EXCHANGE_MODE == Mode.EMBEDDED:
        bus = _bus
        if not isinstance(bus, EmbeddedBus):
            return []
        health = bus.health()
        return [{"shard": bus.matcher.shard, "status": health["status"], "seq": health["seq"],
                 "queue_depth": health["queue_depth"], "age_seconds": None,
                 "metrics": bus.metrics.summary(prefix="matcher.")}]
    redis_bus = command_bus()
    assert isinstance(redis_bus, RedisBus)
    try:
        beats: dict[int, dict | None] = redis_bus.heartbeats()
    except redis.RedisError:
        return [{"shard": shard, "status": "unknown", "seq": None, "queue_depth": None, "age_seconds": None,
                 "metrics": None} for shard in redis_bus.shards]
    out = []
    for shard, beat in beats.items():
        if beat is None:
            out.append({"shard": shard, "status": "down", "seq": None, "queue_depth": None,
                        "age_seconds": None, "metrics": None})
            continue
        lag = int(beat.get("lag", 0))
        out.append({"shard": shard, "status": "ok" if lag <= redis_bus.max_lag else "overloaded",
                    "seq": beat.get("seq"), "queue_depth": lag,
                    "age_seconds": round(max(0.0, clock.time() - float(beat.get("time", clock.time()))), 3),
                    "metrics": beat.get("metrics")})
    return out


def session_end(now: datetime) -> datetime:
    """When DAY orders expire: the end of the current UTC day (the simulator trades around the clock)."""
    return datetime.combine(now.date() + timedelta(days=1), time.min, tzinfo=UTC)


def order_amend(*, user_id: int, order_id: int, symbol: str = "", qty_lots: int | None = None,
                price_ticks: int | None = None, stop_price_ticks: int | None = None,
                order: Order | None = None) -> Reply:
    """Change a live order: `qty_lots` is the new total quantity (FIX style). Routed like a cancel. With
    balance shards, `order` (its row, as the caller read it) lets a buy go through its balance shard."""
    cmd = AmendOrder(order_id, user_id, symbol, qty_lots, price_ticks, stop_price_ticks)
    funded = amend_place(cmd, order) if balance_mode() else None
    if funded is not None:  # a buy: through the user's balance shard, which holds more if it needs more
        bus = command_bus()
        assert isinstance(bus, RedisBus)
        return bus.submit_balance(funded, balance_shard_of(user_id), settings.MATCHER_TIMEOUT)
    return command_bus().submit(cmd, settings.MATCHER_TIMEOUT)


def amend_place(cmd: AmendOrder, order: Order | None) -> PlaceAmend | None:
    """An amendment of the user's resting buy as its balance shard takes it: the order's ticket and
    what the amended order will reserve (its remaining lots, as the projection knows them, at the new
    price, x the instrument's cash per tick and lot: an upper bound while fills are in flight). None for
    what needs no cash (a sell, a market or stop order's budget, an order the projection does not show
    or that is not the user's)."""
    from exchange.api.lookups import instrument_get
    from risk.config import cash_per_tick_lot

    if (order is None or order.user_id != cmd.owner or order.ticket is None or order.side != Side.BUY
            or order.price_ticks is None):
        return None
    instrument = instrument_get(order.symbol)
    per_tick_lot = 1 if instrument is None else cash_per_tick_lot(instrument)
    remaining = order.remaining_lots + (0 if cmd.qty is None else cmd.qty - order.qty_lots)
    price = order.price_ticks if cmd.price is None else cmd.price
    needed = max(0, remaining) * price * per_tick_lot
    return PlaceAmend(cmd, cmd.order_id // ORDER_ID_STRIDE, order.ticket, needed)


def projection_catch_up(replies: Sequence[Reply]) -> None:
    """Wait for the projection to hold the newest of these replies on each shard, so that a read after
    the answer sees what the replies said (orders, fills, the account): read-your-writes."""
    newest: dict[int, tuple[int, int]] = {}  # shard -> (seq, order id) of its newest reply
    for reply in replies:
        shard = reply.order_id // ORDER_ID_STRIDE
        newest[shard] = max(newest.get(shard, (0, 0)), (reply.seq, reply.order_id))
    for seq, order_id in newest.values():
        _projection_wait(seq, order_id=order_id)


def _projection_wait(seq: int, *, order_id: int) -> bool:
    """Wait until the projection (orders, trades, balances in the ORM) holds the matcher's reply `seq`
    of the shard that owns `order_id`. True once it does; False after PROJECTION_WAIT_TIMEOUT (1 s by
    default; 0: no wait): the answer stands either way, the projection catches up on its own. Embedded,
    the projector is asked to write at once rather than at its next batch; in production the shard's
    projector announces each batch it writes (matching/worker/projection_watch.py)."""
    limit = settings.PROJECTION_WAIT_TIMEOUT
    if limit <= 0:  # read-your-writes turned off: answer at once
        return False
    projector = None if _outputs is None else _outputs.projector
    if settings.EXCHANGE_MODE == Mode.EMBEDDED and projector is not None:  # this process writes it
        try:
            return projector.wait_written(seq, limit)
        except Exception:  # a failing write is the projector's to report (/health); the answer stands
            return False
    shard = order_id // ORDER_ID_STRIDE
    if settings.EXCHANGE_MODE == Mode.PRODUCTION:
        heard = _projection_watch().wait(shard, seq, limit)  # announced by the shard's projector
        if heard is not None:
            return heard
    cursor = cursor_name(shard)  # not announced here (or the watch is not connected): ask the database
    deadline = clock.monotonic() + limit
    pause = 0.0005
    while projected_seq(cursor_name=cursor) < seq:
        left = deadline - clock.monotonic()
        if left <= 0:
            return False
        clock.sleep(min(pause, left))
        pause = min(pause * 2, 0.01)
    return True
