"""Admin commands of the risk core. They go through `RiskEngine.apply` and the matcher's log like
the engine's own commands (NewOrder, CancelOrder, AmendOrder, AdvanceTime), so replaying the log
rebuilds the same configuration, balances and halts. Time arrives in `timestamp` (ns)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from matching.engine.commands import AmendOrder, NewOrder
from matching.engine.types import OrderType, Side, STPMode, TimeInForce
from risk.core.limits import InstrumentRisk, UserLimit


@dataclass(slots=True)
class SetInstrumentRisk:
    """Replace an instrument's risk configuration (limits apply to orders from now on; open orders
    and positions stay, a position now beyond its limit raises a RiskAlert)."""

    config: InstrumentRisk
    timestamp: int = 0


@dataclass(slots=True)
class SetUserLimit:
    """Set one user's override for one instrument; all-None fields remove it."""

    limit: UserLimit
    timestamp: int = 0


@dataclass(slots=True)
class SetDefaultCash:
    """The cash (cash units) an account opens with from now on; existing accounts keep theirs."""

    amount: int
    timestamp: int = 0


@dataclass(slots=True)
class AdjustCash:
    """Deposit (amount > 0) or withdraw (amount < 0) cash units; a withdrawal that would leave less
    cash than the owner's open orders reserve is refused."""

    owner: int
    amount: int
    timestamp: int = 0


@dataclass(slots=True)
class HaltInstrument:
    """Stop new orders and amends on a symbol until `ResumeInstrument` (cancels stay allowed,
    resting orders stay in the book)."""

    symbol: str
    reason: str
    timestamp: int = 0


@dataclass(slots=True)
class ResumeInstrument:
    """Lift a halt: an admin halt, or a circuit-breaker halt before its time."""

    symbol: str
    timestamp: int = 0


@dataclass(slots=True)
class ReleaseHeld:
    """Send a held order to the engine (re-checked first: see docs/RISK.md)."""

    order_id: int
    timestamp: int = 0


@dataclass(slots=True)
class RejectHeld:
    """Refuse a held order: its reservation is released, the owner sees OrderRejected(held_rejected)."""

    order_id: int
    timestamp: int = 0


REFUSED: Final = 0  # FundedOrder.ticket of an order its balance shard refused


@dataclass(slots=True)
class FundedOrder:
    """A new order whose cash its owner's balance shard holds already (R1): `ticket` names that
    reservation there, `reserved` is what it holds (a sell: 0). The matching shard checks the symbol
    (never the cash) and matches; what the order then spends or frees is settled against the ticket.
    An order the matching shard refuses releases the ticket whole. Time and id are the order's.

    `ticket` REFUSED (0, never a ticket: a shard numbers them from 1 up): the balance shard would not
    hold the cash. The matching shard still numbers the order and rejects it (insufficient_funds), so
    the caller gets its id and the order is in the history and the audit trail, as in the embedded
    default."""

    order: NewOrder
    ticket: int
    reserved: int

    @property
    def timestamp(self) -> int:
        return self.order.timestamp


@dataclass(slots=True)
class FundedAmend:
    """An amendment of a buy whose extra cash (`extra`) its owner's balance shard holds already, added
    to the order's `ticket` there (R1's Extend). The matching shard counts it in the order's
    reservation; an amendment refused, or one that needs less, releases what is not needed."""

    amend: AmendOrder
    ticket: int
    extra: int

    @property
    def timestamp(self) -> int:
        return self.amend.timestamp


@dataclass(slots=True)
class Fence:
    """From a balance shard that restarted: of its `tickets` sent here, those this shard never received
    are void. Funded orders arrive in ticket order on one stream, so everything sent before the fence
    has been applied here already (and confirmed back); the answer (`Voids`) goes back on the
    settlements' own stream, after those confirmations, and the balance shard releases only the tickets
    still unconfirmed then. A funded order of that balance shard at or below a fenced ticket arriving
    later is ignored."""

    balance_shard: int
    tickets: Sequence[int]
    timestamp: int = 0


AdminCommand = (
    SetInstrumentRisk
    | SetUserLimit
    | SetDefaultCash
    | AdjustCash
    | HaltInstrument
    | ResumeInstrument
    | ReleaseHeld
    | RejectHeld
)


# ---- the engine's NewOrder, as the held queue keeps it ----------------------------------------


def copy_order(cmd: NewOrder, timestamp: int) -> NewOrder:
    """A copy of a new order with another timestamp (risk keeps no reference to a caller's command;
    a released order enters the book at the release time)."""
    return NewOrder(cmd.order_id, cmd.owner, cmd.symbol, cmd.side, cmd.qty, cmd.price, cmd.order_type,
                    cmd.tif, cmd.post_only, cmd.stop_price, cmd.expire_at, cmd.stp, timestamp,
                    cmd.client_order_id)


def order_state(cmd: NewOrder) -> list:
    return [cmd.order_id, cmd.owner, cmd.symbol, cmd.side.value, cmd.qty, cmd.price, cmd.order_type.value,
            cmd.tif.value, cmd.post_only, cmd.stop_price, cmd.expire_at, cmd.stp.value, cmd.timestamp,
            cmd.client_order_id]


def order_from_state(v: Sequence) -> NewOrder:
    return NewOrder(v[0], v[1], v[2], Side(v[3]), v[4], v[5], OrderType(v[6]), TimeInForce(v[7]), v[8], v[9],
                    v[10], STPMode(v[11]), v[12], v[13])
