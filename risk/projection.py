"""The risk stage's events written into the ORM: accounts, positions, alerts and halts.

The projector (`matching/projector.py`) calls `apply_events` with each batch's (seq, event) pairs,
in seq order, inside its batch transaction; events of other kinds are ignored. The single-event
functions below are the same thing for one event.

Every write is guarded by the row's seq (`Balance.seq`, `Position.seq`, `Instrument.status_seq`): a
row only ever moves forward, so handing the same events again changes nothing. Within a batch only
the last update of each account, position and instrument is written. Integers become `Decimal`s here:
cash units with 4 places, lots through the instrument. Events for a user or symbol the database does
not know are logged and skipped (the projector must never stall on them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, NamedTuple, TypeVar

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Field, OuterRef, QuerySet, Subquery, Sum

from exchange.models import Instrument
from matching.timestamps import to_datetime
from risk.config import units_to_cash
from risk.core import CIRCUIT_BREAKER, AccountUpdate, InstrumentHalted, InstrumentResumed, PositionUpdate
from risk.core import RiskAlert as RiskAlertEvent
from risk.models import Account, Balance, Position, RiskAlert

log = logging.getLogger(__name__)

_REASON_MAX = Instrument._meta.get_field("halt_reason").max_length
_DETAIL_MAX = RiskAlert._meta.get_field("detail").max_length


class _Alert(NamedTuple):
    seq: int
    owner: int | None
    symbol: str
    kind: str
    detail: str
    timestamp: int


def apply_account_update(event: AccountUpdate, seq: int) -> None:
    apply_events([(seq, event)])


def apply_position_update(event: PositionUpdate, seq: int) -> None:
    apply_events([(seq, event)])


def apply_risk_alert(event: RiskAlertEvent, seq: int) -> None:
    apply_events([(seq, event)])


def apply_halt(event: InstrumentHalted | InstrumentResumed, seq: int) -> None:
    apply_events([(seq, event)])


def apply_events(items: Iterable[tuple[int, Any]], shard: int = 0) -> None:
    """Write the risk events among `items` ((seq, event) pairs in seq order) of one matcher shard."""
    accounts: dict[int, tuple[int, AccountUpdate]] = {}
    positions: dict[tuple[int, str], tuple[int, PositionUpdate]] = {}
    alerts: list[_Alert] = []
    halts: dict[str, tuple[int, InstrumentHalted | InstrumentResumed]] = {}
    for seq, event in items:
        kind = type(event)
        if kind is AccountUpdate:
            accounts[event.owner] = (seq, event)
        elif kind is PositionUpdate:
            positions[(event.owner, event.symbol)] = (seq, event)
        elif kind is RiskAlertEvent:
            alerts.append(_Alert(seq, event.owner, event.symbol, str(event.kind), event.detail,
                                 event.timestamp))
        elif kind is InstrumentHalted or kind is InstrumentResumed:
            halts[event.symbol] = (seq, event)
    if not (accounts or positions or alerts or halts):
        return
    owners = {*accounts, *(owner for owner, _ in positions), *(a.owner for a in alerts)}
    users = set(get_user_model().objects.filter(pk__in=owners).values_list("pk", flat=True))
    symbols = {*(symbol for _, symbol in positions), *(a.symbol for a in alerts), *halts}
    instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=symbols)}
    _write_accounts(accounts, users, shard)
    _write_positions(positions, users, instruments)
    _write_halts(halts, alerts)
    _write_alerts(alerts, users, instruments)


def _write_accounts(updates: dict[int, tuple[int, AccountUpdate]], users: set[int], shard: int) -> None:
    """The shard's balance rows, then each account as the sum of its balances (one per shard)."""
    rows = {}
    for owner, (seq, event) in updates.items():
        if owner not in users:
            log.warning("seq %d: account update for unknown user %d skipped", seq, owner)
            continue
        rows[(owner, shard)] = {"cash": units_to_cash(event.cash), "reserved": units_to_cash(event.reserved),
                                "seq": seq, "updated_at": to_datetime(event.timestamp)}
    if not rows:
        return
    _upsert(Balance, rows, ("user_id", "shard"))
    owners = sorted(owner for owner, _ in rows)
    # Locked first, so two shards' projectors sum one after the other, each seeing the other's commit.
    locked = set(Account.objects.select_for_update().filter(user_id__in=owners)
                 .values_list("user_id", flat=True))
    Account.objects.bulk_create([Account(user_id=o, cash=0) for o in owners if o not in locked],
                                ignore_conflicts=True)
    seq, last = max(updates.values(), key=lambda item: item[0])
    per_user = Balance.objects.filter(user_id=OuterRef("user_id")).values("user_id")
    Account.objects.filter(user_id__in=owners).update(
        cash=Subquery(per_user.annotate(total=Sum("cash")).values("total")),
        reserved=Subquery(per_user.annotate(total=Sum("reserved")).values("total")),
        seq=seq, updated_at=to_datetime(last.timestamp))


def _write_positions(updates: dict[tuple[int, str], tuple[int, PositionUpdate]], users: set[int],
                     instruments: dict[str, Instrument]) -> None:
    rows = {}
    for (owner, symbol), (seq, event) in updates.items():
        instrument = instruments.get(symbol)
        if owner not in users or instrument is None:
            log.warning("seq %d: position update for user %d in %r skipped (unknown)", seq, owner, symbol)
            continue
        rows[(owner, instrument.pk)] = {
            "qty": instrument.lots_to_qty(event.qty),
            "cost": units_to_cash(event.cost),
            "realised": units_to_cash(event.realised),
            "seq": seq,
            "updated_at": to_datetime(event.timestamp),
        }
    _upsert(Position, rows, ("user_id", "instrument_id"))


_Row = TypeVar("_Row", Balance, Position)


def _upsert(model: type[_Row], rows: dict[tuple, dict], keys: tuple[str, ...]) -> None:
    """Update each row whose seq is older; insert the missing ones (a row created meanwhile, e.g. an
    account by its owner's settings, is then updated). One read of the rows' seqs and one prepared
    UPDATE for all: a queryset per row cost more than the rest of a batch's projection."""
    if not rows:
        return
    def older(key: tuple) -> QuerySet:
        return model.objects.filter(**dict(zip(keys, key, strict=True)), seq__lt=rows[key]["seq"])

    near = {f"{name}__in": {key[i] for key in rows} for i, name in enumerate(keys)}
    seqs = {tuple(found[:-1]): found[-1] for found in model.objects.filter(**near).values_list(*keys, "seq")}
    stale: list[tuple] = [key for key in rows if key in seqs and seqs[key] < rows[key]["seq"]]
    if stale:
        names: list[str] = list(rows[stale[0]])
        fields = [model._meta.get_field(name) for name in (*names, *keys)]
        quote = connection.ops.quote_name
        columns = [quote(field.column) for field in fields if isinstance(field, Field)]
        assign = ", ".join(f"{c} = %s" for c in columns[:len(names)])
        match = " AND ".join(f"{c} = %s" for c in columns[len(names):])
        sql = f"UPDATE {quote(model._meta.db_table)} SET {assign} WHERE {match} AND {quote('seq')} < %s"
        prepared = []
        for row_key in stale:
            row = rows[row_key]
            values = [row[name] for name in names] + list(row_key)
            prepared.append([field.get_db_prep_save(value, connection) for field, value
                             in zip(fields, values, strict=True) if isinstance(field, Field)] + [row["seq"]])
        with connection.cursor() as cursor:
            cursor.executemany(sql, prepared)
    missing = [key for key in rows if key not in seqs]
    if not missing:
        return
    model.objects.bulk_create([model(**dict(zip(keys, key, strict=True)), **rows[key]) for key in missing],
                              ignore_conflicts=True)
    for key in missing:
        older(key).update(**rows[key])


def _write_halts(halts: dict[str, tuple[int, InstrumentHalted | InstrumentResumed]],
                 alerts: list[_Alert]) -> None:
    for symbol, (seq, event) in halts.items():
        if isinstance(event, InstrumentHalted):
            values = {"status": Instrument.Status.HALTED, "halt_reason": event.reason[:_REASON_MAX],
                      "halted_until": None if event.until is None else to_datetime(event.until)}
        else:
            values = {"status": Instrument.Status.OPEN, "halt_reason": "", "halted_until": None}
        if not Instrument.objects.filter(symbol=symbol, status_seq__lt=seq).update(**values, status_seq=seq):
            continue
        if isinstance(event, InstrumentHalted) and event.reason == CIRCUIT_BREAKER:
            end = "until resumed" if event.until is None else f"until {to_datetime(event.until).isoformat()}"
            alerts.append(_Alert(seq, None, symbol, CIRCUIT_BREAKER, f"trading halted {end}",
                                 event.timestamp))


def _write_alerts(alerts: list[_Alert], users: set[int], instruments: dict[str, Instrument]) -> None:
    """New alerts only: one already written (same seq, user, instrument, kind and detail) is skipped."""
    if not alerts:
        return
    new = []
    for alert in alerts:
        instrument = instruments.get(alert.symbol)
        new.append(RiskAlert(seq=alert.seq, user_id=alert.owner if alert.owner in users else None,
                             instrument_id=None if instrument is None else instrument.pk, kind=alert.kind,
                             detail=alert.detail[:_DETAIL_MAX], created_at=to_datetime(alert.timestamp)))
    seen = set(RiskAlert.objects.filter(seq__in={alert.seq for alert in alerts})
               .values_list("seq", "user_id", "instrument_id", "kind", "detail"))
    RiskAlert.objects.bulk_create([a for a in new if (a.seq, a.user_id, a.instrument_id, a.kind, a.detail)
                                   not in seen])
