"""Events of the risk core, as small typed named tuples beside the engine's (matching/engine/events.py).

`RiskEngine.apply` returns the engine's events for a command with these around them. Order
rejections by risk reuse the engine's `OrderRejected` / `AmendRejected` (with risk's reasons), and a
user's cancel of a held order the engine's `OrderCanceled(reason=user)`, so a consumer handles one
vocabulary for an order's life whichever layer ended it.

Unlike the engine's events these are not patched to compare their type (no class patching: the
package is written to compile with mypyc); their field layouts differ from every engine event's,
so lists of events still compare as expected.

Order within one command's events: `InstrumentResumed` for halts whose time is up, then the command's
own events (a rejection, `OrderHeld`, `HeldOrderReleased` followed by the engine's events, the
engine's events, admin acknowledgements; for an order command, first the symbol's DAY/GTD expiries
due at its timestamp, as in the engine's events, even when risk then refuses it), then
`PositionUpdate`s by (owner, symbol), `AccountUpdate`s by owner, `RiskAlert`s by (owner, symbol), and
last `InstrumentHalted` for circuit breakers tripped.
"""

from __future__ import annotations

from typing import NamedTuple

from matching.engine.types import Side
from risk.core.types import AdminKind, AdminRejectReason, AlertKind


class OrderHeld(NamedTuple):
    """A new order was kept back for an admin (the hold rule); its cash is reserved meanwhile."""

    order_id: int
    owner: int
    symbol: str
    side: Side
    qty: int
    price: int | None
    timestamp: int


class HeldOrderReleased(NamedTuple):
    """An admin released a held order; the engine's events for it follow (or a risk rejection)."""

    order_id: int
    owner: int
    symbol: str
    timestamp: int


class AccountUpdate(NamedTuple):
    """An account's balances after a command that changed them (cash units; available = cash - reserved)."""

    owner: int
    cash: int
    reserved: int
    timestamp: int


class PositionUpdate(NamedTuple):
    """A position after a command that traded it. `cost` is the cash units paid for the open position
    (signed like qty), `realised` the profit taken by reducing it; cost - realised is exactly the net
    cash spent on the symbol."""

    owner: int
    symbol: str
    qty: int
    cost: int
    realised: int
    timestamp: int


class Settlement(NamedTuple):
    """What one command of a matching shard settles with one balance shard (its owners' lines, in
    order), when the balance shards run elsewhere (cash.SettlementOutbox): the runner sends it as
    that balance shard's `Settle(matching shard, seq, lines)`. Not a `RiskEvent` (see below)."""

    balance_shard: int
    lines: tuple
    timestamp: int


class Voids(NamedTuple):
    """The answer to a `Fence`: the runner sends it to the balance shard as `Void(matching shard,
    tickets)`, in order with the settlements. Not a `RiskEvent`, like `Settlement`."""

    balance_shard: int
    tickets: tuple
    timestamp: int


class RiskAlert(NamedTuple):
    """A breach found after trades (which stand): a position beyond its limit, fills above the
    reservation."""

    owner: int
    symbol: str
    kind: AlertKind
    detail: str
    timestamp: int


class InstrumentHalted(NamedTuple):
    """No new orders or amends on `symbol` until `until` (ns; None: until an admin resumes it)."""

    symbol: str
    reason: str
    until: int | None
    timestamp: int


class InstrumentResumed(NamedTuple):
    symbol: str
    timestamp: int


class AdminApplied(NamedTuple):
    """An admin command took effect. `key` names what it changed: the symbol (set_instrument_risk),
    "owner:symbol" (set_user_limit), the owner (adjust_cash, which also gives an AccountUpdate) or ""
    (set_default_cash). Halt, resume, release and reject answer with their own events instead."""

    kind: AdminKind
    key: str
    timestamp: int


class AdminRejected(NamedTuple):
    """An admin command that could not apply and changed nothing (key as in AdminApplied; the order
    id for release_held / reject_held, the symbol for halt / resume). `detail`: the offending field
    of an invalid configuration, else ""."""

    kind: AdminKind
    key: str
    reason: AdminRejectReason
    detail: str
    timestamp: int


RiskEvent = (
    OrderHeld
    | HeldOrderReleased
    | AccountUpdate
    | PositionUpdate
    | RiskAlert
    | InstrumentHalted
    | InstrumentResumed
    | AdminApplied
    | AdminRejected
)
# `Settlement` is not among them: it is not part of what a reply tells the web tier or the projector;
# the runner of a matching shard whose balance shards run elsewhere takes it out and routes it.
