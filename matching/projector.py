"""The projector: the matcher's replies written into the ORM (Order, Trade, AuditEvent, and the
risk stage's accounts, positions, alerts and halts through `risk.projection`).

Each batch of replies is written in ONE transaction together with the stream's
`ProjectionCursor`, so a batch is either wholly projected or not at all, and replies at or below
the cursor are skipped: handing the same replies again (a matcher replaying its journal after a
restart) changes nothing. Duplicate replies (a retried client_order_id) produce no rows.

Two ways in:
- `Projector.project(replies)` only queues them (cheap; it runs on the matcher thread, as an
  `EmbeddedBus` listener). A background thread writes up to `batch_max` replies per transaction.
  A failed write (database down, locked, a bug) is logged, kept and retried with backoff, so
  nothing is dropped silently; `health()` reports the failure and the queue depth.
- `Projector.project_sync(replies)` writes at once in the caller's thread and raises on failure:
  the caller must retry them, or their seqs become a (logged) gap in the projection.

Replies must arrive in seq order. The projection has to see every seq: the matcher replays only
its journal tail after its latest snapshot, so a projection reset while the journal is kept (or
queued replies abandoned by `stop(flush=False)`) cannot be rebuilt; the gap is logged.
"""

from __future__ import annotations

import logging
import threading
import typing
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from functools import cache
from typing import Any, Protocol

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from matching.engine import (
    AmendRejected,
    CancelRejected,
    NewOrder,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    OrderStatus,
    OrderType,
    Side,
    StopTriggered,
    TimeInForce,
)
from matching.engine import Trade as TradeEvent
from matching.engine.types import STPMode
from matching.models import SYMBOL_MAX_LENGTH, AuditEvent, Order, ProjectionCursor, Trade
from matching.outcomes import OrderOutcome, outcomes
from matching.timestamps import to_datetime
from matching.worker.matcher import Reply
from risk.core import FundedOrder, HeldOrderReleased, OrderHeld, RejectHeld, ReleaseHeld, RiskEvent
from risk.projection import apply_events as apply_risk_events

log = logging.getLogger(__name__)

Kind = AuditEvent.Kind
_DB_INT_MAX = 2**63 - 1
_UPDATED_FIELDS = (
    "status", "price_ticks", "stop_price_ticks", "qty_lots", "filled_lots", "remaining_lots",
    "canceled_lots", "notional_ticks_lots", "cancel_reason", "reject_reason", "updated_seq", "updated_at",
)


# ---- writing one batch ---------------------------------------------------------------------


def write_replies(replies: Sequence[Reply], cursor_name: str, shard: int = 0) -> int:
    """Project the replies newer than the cursor in one transaction; returns how many were new."""
    with transaction.atomic():
        cursor, _ = ProjectionCursor.objects.select_for_update().get_or_create(name=cursor_name)
        fresh = [reply for reply in replies if reply.seq > cursor.last_seq]
        if not fresh:
            return 0
        if fresh[0].seq != cursor.last_seq + 1:
            log.warning("%s: seqs %d..%d were never projected", cursor_name, cursor.last_seq + 1,
                        fresh[0].seq - 1)
        _save(_collect(fresh), shard)
        cursor.last_seq = fresh[-1].seq
        cursor.save(update_fields=["last_seq"])
    return len(fresh)


@dataclass
class _Rows:
    """What one batch writes: every order it touches (loaded or new), new trades, audit events."""

    orders: dict[int, Order]
    created: dict[int, Order] = field(default_factory=dict)  # inserted by this batch
    changed: dict[int, Order] = field(default_factory=dict)  # loaded, to update
    trades: list[Trade] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)
    risk: list[tuple[int, Any]] = field(default_factory=list)  # (seq, event) for risk.projection

    def add(self, order: Order) -> None:
        self.orders[order.order_id] = self.created[order.order_id] = order

    def touch(self, order_id: int, seq: int, timestamp: int) -> Order | None:
        """The order an event changes, marked for writing (None, logged, if it was never projected)."""
        order = self.orders.get(order_id)
        if order is None:
            log.error("seq %d: event for order %d, which was never projected", seq, order_id)
            return None
        order.updated_seq, order.updated_at = seq, to_datetime(timestamp)
        if order_id not in self.created:
            self.changed[order_id] = order
        return order

    def record(self, reply: Reply, kind: str, event: _Audited, order_id: int, owner: int,
               **extra: Any) -> None:
        detail = {**_plain_fields(event), **extra}
        symbol = event.symbol[:SYMBOL_MAX_LENGTH]  # a rejected unknown symbol may be longer; detail keeps it
        self.audit.append(AuditEvent(seq=reply.seq, kind=kind, order_id=order_id, user_id=owner,
                                     symbol=symbol, detail=detail, at=to_datetime(event.timestamp)))


class _Audited(Protocol):
    """What an audit row takes from an event besides its fields (every order event has them)."""

    @property
    def symbol(self) -> str: ...

    @property
    def timestamp(self) -> int: ...


def _collect(replies: Sequence[Reply]) -> _Rows:
    """Each reply's events as audit rows and trades, then its outcomes (matching.outcomes) as order rows."""
    rows = _Rows(orders=_load_orders(replies))
    for reply in replies:
        if reply.duplicate:
            continue
        for event in reply.events:
            audit = _AUDITED.get(type(event))
            if audit is not None:
                audit(rows, reply, event)
            elif type(event) in _RISK_EVENTS:
                rows.risk.append((reply.seq, event))
        for outcome in outcomes(reply.events).values():
            _fold(rows, reply, outcome)
    return rows


def _load_orders(replies: Sequence[Reply]) -> dict[int, Order]:
    """Existing rows of the orders these replies change (orders new in this batch are not looked up)."""
    new: set[int] = set()
    wanted: set[int] = set()
    for reply in replies:
        released = isinstance(reply.command, ReleaseHeld)  # its OrderAccepted is for a held row
        for event in reply.events:
            if (type(event) is OrderAccepted and not released) or type(event) is OrderHeld:
                new.add(event.order_id)
            elif type(event) is TradeEvent:
                wanted.update((event.taker_order_id, event.maker_order_id))
            elif (order_id := getattr(event, "order_id", None)) is not None:
                wanted.add(order_id)
    return Order.objects.in_bulk(wanted - new, field_name="order_id")


def _save(rows: _Rows, shard: int) -> None:
    _insert(Order, list(rows.created.values()))
    _update(Order, list(rows.changed.values()), _UPDATED_FIELDS)
    _insert(Trade, rows.trades)
    _insert(AuditEvent, rows.audit)
    apply_risk_events(rows.risk, shard)


# ---- writing rows: one prepared statement each (bulk_create/bulk_update compile SQL per row and
# ---- are several times slower here); portable SQL, values adapted by the model's own fields


def _insert(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    columns = [f for f in model._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    _execute_many(sql, objs, columns)


def _update(model: type[models.Model], objs: Sequence[models.Model], names: Sequence[str]) -> None:
    columns = [_column(model, name) for name in names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} = %s"
    _execute_many(sql, objs, [*columns, model._meta.pk])


def _column(model: type[models.Model], name: str) -> models.Field:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.concrete, name  # a column of the model's table
    return field


def _execute_many(sql: str, objs: Sequence[models.Model], columns: list[models.Field]) -> None:
    if not objs:
        return
    db = connections[DEFAULT_DB_ALIAS]
    values = [(f.attname, _adapter(f, db)) for f in columns]
    rows = [[getattr(obj, name) if adapt is None else adapt(getattr(obj, name)) for name, adapt in values]
            for obj in objs]
    with db.cursor() as cursor:
        cursor.executemany(sql, rows)


def _adapter(field: models.Field, db: BaseDatabaseWrapper) -> Callable[[Any], Any] | None:
    """None for values the driver takes as they are; datetimes are adapted once per distinct value."""
    if isinstance(field, models.DateTimeField):
        return cache(lambda value: field.get_db_prep_save(value, db))
    if isinstance(field, models.DecimalField | models.JSONField):
        return lambda value: field.get_db_prep_save(value, db)
    return None


# ---- order rows: one outcome at a time ------------------------------------------------------


def _fold(rows: _Rows, reply: Reply, outcome: OrderOutcome) -> None:
    """What one reply did to one order, into its row: a new order's row is made from its NewOrder."""
    order_id = outcome.order_id
    resolving = isinstance(reply.command, ReleaseHeld | RejectHeld)  # a held order's row goes on
    if not resolving and outcome.accepted is not None and order_id not in rows.orders:
        first = _new_order(reply, outcome, outcome.status or OrderStatus.OPEN)
        first.remaining_lots = outcome.accepted.qty
        rows.add(first)
    elif not resolving and outcome.status is OrderStatus.REJECTED:
        if order_id not in rows.orders:  # a new order refused (duplicate_order_id: the live one's row stays)
            refused = _new_order(reply, outcome, OrderStatus.REJECTED)
            refused.reject_reason = "" if outcome.reject_reason is None else outcome.reject_reason.value
            rows.add(refused)
        return
    order = rows.touch(order_id, reply.seq, outcome.timestamp)
    if order is None:
        return
    order.filled_lots += outcome.filled
    order.notional_ticks_lots += outcome.notional
    taken = outcome.taken_away
    if resolving and outcome.status is OrderStatus.REJECTED:  # a held order refused at last: all of it
        taken = order.remaining_lots
    order.canceled_lots += taken
    if outcome.remaining is not None:
        order.remaining_lots = outcome.remaining
    elif taken:
        order.remaining_lots -= taken
    if outcome.status is not None:
        order.status = outcome.status.value
    if outcome.cancel_reason is not None:
        order.cancel_reason = outcome.cancel_reason.value
    if outcome.reject_reason is not None:
        order.reject_reason = outcome.reject_reason.value
    if outcome.amended is not None:
        change = outcome.amended
        order.qty_lots, order.price_ticks = change.qty, change.price
        order.stop_price_ticks = change.stop_price


# ---- audit rows: one per event ------------------------------------------------------------------


def _audit(kind: str) -> Callable[[_Rows, Reply, Any], None]:
    def record(rows: _Rows, reply: Reply, event: Any) -> None:
        rows.record(reply, kind, event, event.order_id, event.owner)

    return record


def _audit_rejected(rows: _Rows, reply: Reply, event: OrderRejected) -> None:
    request = _plain_fields(reply.command)
    rows.record(reply, Kind.REJECTED, event, event.order_id, event.owner, request=request)


def _audit_trade(rows: _Rows, reply: Reply, event: TradeEvent) -> None:
    rows.trades.append(Trade(
        symbol=event.symbol, trade_id=event.trade_id, price_ticks=event.price, qty_lots=event.qty,
        taker_order_id=event.taker_order_id, maker_order_id=event.maker_order_id,
        taker_user_id=event.taker_owner, maker_user_id=event.maker_owner, taker_side=event.taker_side.value,
        seq=reply.seq, executed_at=to_datetime(event.timestamp),
    ))
    for order_id, owner, remaining, role in ((event.taker_order_id, event.taker_owner, event.taker_remaining,
                                              "taker"),
                                             (event.maker_order_id, event.maker_owner, event.maker_remaining,
                                              "maker")):
        kind = Kind.FILLED if remaining == 0 else Kind.PARTIALLY_FILLED
        rows.record(reply, kind, event, order_id, owner, role=role)


_AUDITED: dict[type, Callable[[_Rows, Reply, Any], None]] = {
    OrderAccepted: _audit(Kind.ACCEPTED),
    OrderRejected: _audit_rejected,
    TradeEvent: _audit_trade,
    OrderCanceled: _audit(Kind.CANCELED),
    OrderExpired: _audit(Kind.EXPIRED),
    OrderReduced: _audit(Kind.REDUCED),
    OrderAmended: _audit(Kind.AMENDED),
    StopTriggered: _audit(Kind.STOP_TRIGGERED),
    CancelRejected: _audit(Kind.CANCEL_REJECTED),
    AmendRejected: _audit(Kind.AMEND_REJECTED),
    OrderHeld: _audit(Kind.HELD),
    HeldOrderReleased: _audit(Kind.RELEASED),
}  # BookDelta: market data, not an order's history
_RISK_EVENTS = frozenset(typing.get_args(RiskEvent)) - set(_AUDITED)


# ---- plain values ----------------------------------------------------------------------------


def _new_order(reply: Reply, outcome: OrderOutcome, status: OrderStatus) -> Order:
    """A row from the NewOrder as applied; a rejected one's fields may be invalid, so each is checked."""
    cmd = reply.command
    ticket = None
    if isinstance(cmd, FundedOrder):  # funded by its balance shard (issue 13): the order inside
        ticket = cmd.ticket
        cmd = cmd.order
    if not isinstance(cmd, NewOrder):
        raise TypeError(f"seq {reply.seq}: order event without its NewOrder")
    at = to_datetime(outcome.timestamp)
    return Order(
        ticket=ticket,
        order_id=outcome.order_id, user_id=outcome.owner, symbol=outcome.symbol[:SYMBOL_MAX_LENGTH],
        side=_member(cmd.side, Side), order_type=_member(cmd.order_type, OrderType),
        tif=_member(cmd.tif, TimeInForce), stp=_member(cmd.stp, STPMode), status=status.value,
        price_ticks=_units(cmd.price), stop_price_ticks=_units(cmd.stop_price), qty_lots=_units(cmd.qty) or 0,
        expire_at=_units(cmd.expire_at), post_only=cmd.post_only is True, client_order_id=cmd.client_order_id,
        created_seq=reply.seq, updated_seq=reply.seq, created_at=at, updated_at=at,
    )


def _member(value: object, enum: type[Enum]) -> str:
    try:
        return enum(value).value
    except (ValueError, TypeError):
        return ""


def _units(value: object) -> int | None:
    """A tick or lot count that fits a database integer, else None (only in rejected orders)."""
    return value if type(value) is int and 0 <= value <= _DB_INT_MAX else None


def _plain_fields(record: Any) -> dict[str, Any]:
    """An event's or command's fields as JSON values (enums as their strings)."""
    names = [f.name for f in fields(record)] if is_dataclass(record) else record._fields  # or a NamedTuple
    return {name: _plain(getattr(record, name)) for name in names}


def _plain(value: object) -> Any:
    if isinstance(value, Enum):
        return value.value
    if value is None or type(value) in (int, str, bool):
        return value
    return repr(value)


# ---- the background writer --------------------------------------------------------------------

_FIRST_RETRY, _LAST_RETRY = 0.1, 5.0  # seconds; the backoff doubles in between


class Projector:
    """Queues replies from the matcher thread; a background thread writes them in batches."""

    def __init__(self, cursor_name: str = "shard-0", batch_max: int = 5000,
                 flush_interval: float = 0.05, shard: int = 0,
                 on_written: Callable[[int], None] | None = None) -> None:
        self.cursor_name = cursor_name
        self.on_written = on_written  # called with the newest seq after each batch the writer commits
        self.shard = shard  # whose balances its accounts updates are (risk.models.Balance)
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self.failure: BaseException | None = None  # the last write error, until a write succeeds
        self._queue: deque[Reply] = deque()
        self._cond = threading.Condition()
        self._queued = 0  # replies ever queued
        self._done = 0  # replies ever written (or skipped as already projected)
        self._flush_to = 0  # a flush() is waiting until _done reaches this
        self._flush_seq = 0  # a wait_written() is waiting until written_seq reaches this
        self.written_seq = 0  # the newest reply seq written (or found already projected)
        self._stopping = False
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None

    def project_sync(self, replies: Sequence[Reply]) -> int:
        """Write now, in this thread, in one transaction; raises if the database does."""
        return write_replies(replies, self.cursor_name, self.shard)

    def project(self, replies: Iterable[Reply]) -> None:
        """Queue replies for the writer thread. Cheap: an `EmbeddedBus` listener on the matcher thread."""
        with self._cond:
            before = len(self._queue)
            self._queue.extend(replies)
            self._queued += len(self._queue) - before
            self._cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"projector-{self.cursor_name}", daemon=True)
        self._thread.start()

    def stop(self, flush: bool = True, timeout: float = 30.0) -> None:
        """Stop the writer, first writing everything queued if `flush` (giving up after `timeout`)."""
        if not flush:
            self._abandon.set()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._abandon.set()
            self._thread.join(_LAST_RETRY)
        if self._queue:
            log.error("%s: %d replies left unprojected, from seq %d", self.cursor_name, len(self._queue),
                      self._queue[0].seq)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued so far is written (here, if the writer is not running)."""
        if self._thread is None or not self._thread.is_alive():
            self._write_here()
            return
        with self._cond:
            target = self._queued
            self._flush_to = max(self._flush_to, target)
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                unwritten = target - self._done
                raise TimeoutError(f"projector {self.cursor_name}: {unwritten} replies still unwritten")

    def wait_written(self, seq: int, timeout: float) -> bool:
        """Block until the reply `seq` is written, asking the writer to write it at once rather than
        at the end of its batch interval (it may not even be queued yet); False after `timeout`."""
        if self._thread is None or not self._thread.is_alive():
            self._write_here()
            return self.written_seq >= seq
        with self._cond:
            self._flush_seq = max(self._flush_seq, seq)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self.written_seq >= seq, timeout)

    def health(self) -> dict:
        return {
            "status": "ok" if self.failure is None else "failing",
            "queue_depth": len(self._queue),
            **({"error": repr(self.failure)} if self.failure is not None else {}),
        }

    # ---- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                if not self._write_until_done(batch):
                    with self._cond:
                        self._queue.extendleft(reversed(batch))  # abandoned: count it as unprojected
                    return
                with self._cond:
                    self._done += len(batch)
                    self.written_seq = max(self.written_seq, batch[-1].seq)
                    self._cond.notify_all()
                if self.on_written is not None:
                    self.on_written(self.written_seq)
        finally:
            connections.close_all()  # this thread's connections only

    def _take(self) -> list[Reply] | None:
        """The next batch: waits for replies, then up to flush_interval for more (None: stop)."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._stopping)
            if not self._queue or self._abandon.is_set():
                return None
            self._cond.wait_for(self._batch_ready, self.flush_interval)
            return [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_max))]

    def _batch_ready(self) -> bool:
        return (len(self._queue) >= self.batch_max or self._stopping or self._flush_to > self._done
                or (bool(self._queue) and self._queue[-1].seq >= self._flush_seq > self.written_seq))

    def _write_until_done(self, batch: list[Reply]) -> bool:
        """Write the batch, retrying with backoff on any error; False if abandoned by stop()."""
        delay = _FIRST_RETRY
        while True:
            try:
                write_replies(batch, self.cursor_name, self.shard)
            except Exception as exc:
                log.exception("%s: projecting seq %d..%d failed; retrying in %.1fs", self.cursor_name,
                              batch[0].seq, batch[-1].seq, delay)
                self.failure = exc
                connection.close()  # a broken connection is replaced by the next query
                if self._abandon.wait(delay):
                    return False
                delay = min(delay * 2, _LAST_RETRY)
            else:
                self.failure = None
                return True

    def _write_here(self) -> None:
        while True:
            with self._cond:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_max))]
            if not batch:
                return
            try:
                write_replies(batch, self.cursor_name, self.shard)
            except BaseException:
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                raise
            with self._cond:
                self._done += len(batch)
                self.written_seq = max(self.written_seq, batch[-1].seq)
