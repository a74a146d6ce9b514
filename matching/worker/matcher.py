"""The matcher: the single owner of a shard's books and of the worker state around them.

One thread calls it; nothing else writes its state. Every command takes the same path, live
or replayed: it is sequenced (seq, timestamp) and made durable in a command log first, then
`apply` stamps the order id, answers idempotent retries, and runs the engine. Because `apply`
depends only on the logged record and the state before it, replaying the log from a snapshot
rebuilds exactly the state that was lost.

Two kinds of log feed it: the embedded default keeps a local `Journal` (`process` sequences,
group-commits and applies a batch); the production transport hands in records that a Redis
Stream already holds durably (`apply` directly).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from matching.engine import AdvanceTime, AmendOrder, CancelOrder, Command, Event, MatchingEngine, NewOrder
from matching.worker.codec import CodecError, WorkerCommand, decode_batch, decode_command, encode_batch
from matching.worker.journal import BackgroundSync, Journal, JournalRecord, Segments
from matching.worker.snapshots import SnapshotStore
from risk.core import AdminCommand, Fence, FundedAmend, FundedOrder, RiskEngine, RiskEvent, SetInstrumentRisk
from risk.core.balances import BalanceShard
from risk.core.cash import LocalSettlement, SettlementOutbox

log = logging.getLogger(__name__)

# Order ids are unique across shards: shard N numbers its orders N * stride + 1, + 2, ...
ORDER_ID_STRIDE = 10**12
# From this batch size on, the batch is applied while its fsync runs; below it the hand-off to
# the sync thread costs more than the overlap saves.
OVERLAP_FSYNC_FROM = 64
# A new journal segment is started at the first snapshot after the current one reaches this size.
SEGMENT_BYTES = 64 * 2**20


@dataclass(slots=True)
class Reply:
    """The outcome of one command, for the caller that sent it."""

    seq: int
    order_id: int  # the order the command created or addressed (the original one for a retry)
    events: list[Event | RiskEvent] = field(default_factory=list)
    duplicate: bool = False  # a retried client_order_id: nothing happened, see the original order
    command: WorkerCommand | None = None  # as applied (order id and timestamp stamped)


class Matcher:
    def __init__(
        self,
        symbols: Iterable[str],
        *,
        shard: int = 0,
        journal: Journal | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot_every: int = 100_000,
        clock: Callable[[], int] = time.time_ns,
        balance_shards: int = 0,
    ) -> None:
        self.engine = MatchingEngine(symbols)
        # The risk stage switches on with the first admin command in the log (the web tier sends
        # the limits and starting cash when it starts the matcher), so the log alone decides it and
        # a replay takes the same path. Without one, orders go straight to the engine. With
        # `balance_shards`, the accounts live in that many balance shards elsewhere: risk is on from the
        # start, takes funded orders and emits settlements (risk.core.cash.SettlementOutbox); without,
        # its one balance shard is here, behind the same stages (LocalSettlement).
        self.balance_shards = balance_shards
        self.shard = shard
        self.risk: RiskEngine | None = None if not balance_shards else self._new_risk()
        self.journal = journal
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.seq = 0  # last applied
        self.last_timestamp = 0
        self.orders_created = 0
        # (owner, symbol, client_order_id) -> order id. Per symbol, so that every shard can decide a
        # retry alone (a symbol lives on one shard) and the projection's unique key agrees.
        self.client_order_ids: dict[tuple[int, str, str], int] = {}
        self._since_snapshot = 0
        self._syncer: BackgroundSync | None = None
        self.segments: Segments | None = None  # set by open(): the journal's chain of files
        self.segment_bytes = SEGMENT_BYTES

    @classmethod
    def open(
        cls,
        symbols: Iterable[str],
        directory: str | os.PathLike,
        *,
        shard: int = 0,
        fsync: bool = True,
        snapshot_every: int = 100_000,
        on_reply: Callable[[Reply], None] | None = None,
        replay_after: int | None = None,
        segment_bytes: int = SEGMENT_BYTES,
    ) -> Matcher:
        """A matcher keeping its journal and snapshots under `directory`, recovered to its last state.
        The journal is a chain of segments, a new one started at a snapshot once the current one holds
        `segment_bytes`, so a restart reads only the segments after its snapshot."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        segments = Segments(directory / f"shard-{shard}.journal")
        matcher = cls(
            symbols,
            shard=shard,
            journal=segments.open(fsync=fsync),
            snapshots=SnapshotStore(directory / f"shard-{shard}-snapshots"),
            snapshot_every=snapshot_every,
        )
        matcher.segments, matcher.segment_bytes = segments, segment_bytes
        try:
            matcher.recover(on_reply, replay_after)
        except BaseException:
            matcher.close()
            raise
        return matcher

    def close(self) -> None:
        if self._syncer is not None:
            self._syncer.close()
        if self.journal is not None:
            self.journal.close()

    # ---- the live path ------------------------------------------------------------------

    def process(self, commands: list[WorkerCommand]) -> list[Reply]:
        """Sequence a batch, make it durable with one group commit, then apply it.

        The batch is one journal record: seqs and timestamps run on from its first ones (the
        timestamp strictly increasing, whatever the wall clock does), so the sequencer reads the
        clock, encodes and frames once per batch."""
        journal = self.journal
        if journal is None:
            raise RuntimeError("process() needs a journal; without one, feed apply() from a durable log")
        if not commands:
            return []
        seq, timestamp = self.seq + 1, max(self.clock(), self.last_timestamp + 1)
        journal.append(seq, timestamp, encode_batch(commands), len(commands))
        journal.write()
        if len(commands) < OVERLAP_FSYNC_FROM or not journal.fsync:
            journal.sync()
            replies = [self.apply(seq + i, timestamp + i, cmd) for i, cmd in enumerate(commands)]
        else:
            # Apply while the disk flushes (fsync releases the GIL): the replies leave only once it
            # is durable, and a failed fsync fails the matcher, so nothing undurable is ever seen.
            if self._syncer is None:
                self._syncer = BackgroundSync(journal, f"journal-sync-{self.shard}")
            self._syncer.start()
            try:
                replies = [self.apply(seq + i, timestamp + i, cmd) for i, cmd in enumerate(commands)]
            finally:
                self._syncer.wait()
        self._maybe_snapshot()
        return replies

    def apply(self, seq: int, timestamp: int, cmd: WorkerCommand) -> Reply:
        """Apply one durable command. Deterministic: depends only on (state, seq, timestamp, cmd)."""
        if seq != self.seq + 1:  # every logged record takes exactly one seq (as _advance; inline: hot)
            raise ValueError(f"sequence gap: expected {self.seq + 1}, got {seq}")
        self.seq = seq
        self.last_timestamp = timestamp
        self._since_snapshot += 1
        risk = self.risk
        # One branch a type, each setting its own fields: compiled, an attribute of one class is a
        # struct access, one of a union a dictionary lookup.
        if isinstance(cmd, NewOrder):
            order_id, duplicate = self._number(cmd, timestamp)
            if duplicate:
                return Reply(seq, order_id, [], True, cmd)
        elif isinstance(cmd, CancelOrder):
            cmd.timestamp = timestamp
            order_id = cmd.order_id
            if not cmd.symbol:  # routed by its order id alone: the order's symbol, as this state says
                cmd.symbol = self.symbol_of(order_id)
        elif isinstance(cmd, AmendOrder):
            order_id = self._stamp_amend(cmd, timestamp)
        elif isinstance(cmd, AdvanceTime):
            cmd.timestamp = timestamp
            order_id = 0
        elif isinstance(cmd, FundedOrder):  # a new order its balance shard funded (risk.core.commands)
            order_id, duplicate = self._number(cmd.order, timestamp)
            if duplicate:  # a retried client_order_id: its ticket goes back to the balance shard whole
                return Reply(seq, order_id, [] if risk is None else risk.unfunded(cmd), True, cmd)
        elif isinstance(cmd, FundedAmend):
            order_id = self._stamp_amend(cmd.amend, timestamp)
        elif isinstance(cmd, Fence):
            cmd.timestamp = timestamp
            order_id = 0
        else:
            cmd.timestamp = timestamp
            return Reply(seq, getattr(cmd, "order_id", 0), self._admin(cmd), False, cmd)
        if risk is None:
            if not isinstance(cmd, Command):  # funded: only a matcher with balance shards takes them
                return Reply(seq, order_id, [], False, cmd)
            return Reply(seq, order_id, cast(list, self.engine.apply(cmd)), False, cmd)
        return Reply(seq, order_id, risk.apply(cmd), False, cmd)

    def _number(self, order: NewOrder, timestamp: int) -> tuple[int, bool]:
        """Stamp a new order and give it the shard's next id: (id, False). A retried client_order_id:
        (the original order's id, True), nothing numbered."""
        order.timestamp = timestamp
        coid = order.client_order_id
        key = None
        if coid is not None:
            key = (order.owner, order.symbol, coid)
            original = self.client_order_ids.get(key)
            if original is not None:
                return original, True
        self.orders_created += 1
        order_id = order.order_id = self.shard * ORDER_ID_STRIDE + self.orders_created
        if key is not None:
            self.client_order_ids[key] = order_id
        return order_id, False

    def _stamp_amend(self, cmd: AmendOrder, timestamp: int) -> int:
        """Stamp an amendment and give it its order's symbol if it names none (routed by order id)."""
        cmd.timestamp = timestamp
        order_id = cmd.order_id
        if not cmd.symbol:
            cmd.symbol = self.symbol_of(order_id)
        return order_id

    def symbol_of(self, order_id: int) -> str:
        """The symbol of this shard's live order `order_id` (resting, a pending stop or held); "" when
        none is live (the cancel or amendment is then refused as for an unknown symbol). A pure function
        of the state, so a replayed command finds the same symbol."""
        for symbol, book in self.engine.books.items():
            if order_id in book.orders:
                return symbol
        if self.risk is not None:
            held = self.risk.held.get(order_id)
            if held is not None:
                return held.symbol
        return ""

    def _new_risk(self) -> RiskEngine:
        """With balance shards elsewhere, risk emits their settlements; without, the one balance shard
        runs here behind the same stages (risk.core.cash.LocalSettlement: R1, the symbol's checks
        and matching, R2)."""
        if self.balance_shards:
            return RiskEngine(self.engine, stage=SettlementOutbox(self.balance_shards, self.shard))
        return RiskEngine(self.engine, stage=LocalSettlement(BalanceShard(0), self.shard))

    def _admin(self, cmd: AdminCommand) -> list[Event | RiskEvent]:
        if self.risk is None:
            self.risk = self._new_risk()
        if isinstance(cmd, SetInstrumentRisk):
            self.engine.add_symbol(cmd.config.symbol)  # an instrument created since the start
        return self.risk.apply(cmd)

    def apply_encoded(self, seq: int, timestamp: int, payload: bytes) -> Reply:
        """Apply a logged command; an undecodable one still takes its seq and is answered empty."""
        try:
            cmd: WorkerCommand | CodecError = decode_command(payload)
        except CodecError as exc:
            cmd = exc
        return self._apply_decoded(seq, timestamp, cmd)

    def apply_record(self, record: JournalRecord) -> list[Reply]:
        """Apply the commands of a journal record that are past this matcher's seq."""
        try:
            cmds = decode_batch(record.payload)
            if len(cmds) != record.count:
                raise CodecError(f"record holds {len(cmds)} commands, its header says {record.count}")
        except CodecError as exc:
            cmds = [exc] * record.count
        skip = self.seq + 1 - record.seq  # a snapshot may fall inside the record
        return [
            self._apply_decoded(record.seq + i, record.timestamp + i, cmd)
            for i, cmd in enumerate(cmds)
            if i >= skip
        ]

    def _apply_decoded(self, seq: int, timestamp: int, cmd: WorkerCommand | CodecError) -> Reply:
        if isinstance(cmd, CodecError):
            log.error("seq %d: undecodable command skipped: %s", seq, cmd)
            self._advance(seq, timestamp)
            return Reply(seq, 0)
        return self.apply(seq, timestamp, cmd)

    def _advance(self, seq: int, timestamp: int) -> None:
        """Take the next seq, or refuse a gap: every logged record takes exactly one."""
        if seq != self.seq + 1:
            raise ValueError(f"sequence gap: expected {self.seq + 1}, got {seq}")
        self.seq = seq
        self.last_timestamp = timestamp
        self._since_snapshot += 1

    def config_changes(self, commands: list[AdminCommand]) -> list[AdminCommand]:
        """Those of the risk configuration `commands` that would change this matcher's state: a
        restart sends only these, so an unchanged configuration adds nothing to the log."""
        return list(commands) if self.risk is None else self.risk.config_changes(commands)

    def expiry_due(self) -> bool:
        """Whether a DAY/GTD order (or a stale entry for one) is due to expire, or a timed halt to
        end, by now: time passes in the books only through a logged AdvanceTime."""
        now = self.clock()
        if self.risk is not None:
            deadline = self.risk.next_deadline()
            if deadline is not None and deadline <= now:
                return True
        return any(book.expiries and book.expiries[0][0] <= now for book in self.engine.books.values())

    # ---- state, snapshots, recovery -------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to resume, as plain JSON-able values."""
        return {
            "shard": self.shard,
            "seq": self.seq,
            "last_timestamp": self.last_timestamp,
            "orders_created": self.orders_created,
            "client_order_ids": [[*key, oid] for key, oid in self.client_order_ids.items()],
            "engine": self.engine.state(),
            "risk": None if self.risk is None else self.risk.state(),
            "balance_shards": self.balance_shards,
        }

    def restore(self, state: dict) -> None:
        if state["shard"] != self.shard:
            raise ValueError(f"snapshot of shard {state['shard']} given to shard {self.shard}")
        symbols = set(self.engine.books)
        self.engine = MatchingEngine.from_state(state["engine"])
        for symbol in symbols:  # symbols added to the configuration since the snapshot
            self.engine.add_symbol(symbol)
        self.seq = state["seq"]
        self.last_timestamp = state["last_timestamp"]
        self.orders_created = state["orders_created"]
        self.client_order_ids = {(o, s, c): oid for o, s, c, oid in state["client_order_ids"]}
        risk = state.get("risk")
        self.balance_shards = state.get("balance_shards", 0)
        self.risk = None if risk is None else RiskEngine.from_state(risk, self.engine)

    def state_hash(self) -> str:
        """Books, and accounts, limits and halts once the risk stage is on."""
        return self.engine.state_hash() if self.risk is None else self.risk.state_hash()

    def snapshot(self) -> None:
        if self.snapshots is not None:
            self.snapshots.save(self.seq, self.state())
            journal = self.journal
            if self.segments is not None and journal is not None and journal.size >= self.segment_bytes:
                if self._syncer is not None:  # it syncs the segment being retired
                    self._syncer.close()
                    self._syncer = None
                self.journal = self.segments.rotate(journal)
        self._since_snapshot = 0

    def _maybe_snapshot(self) -> None:
        if self.snapshots is not None and self._since_snapshot >= self.snapshot_every:
            self.snapshot()

    def recover(
        self, on_reply: Callable[[Reply], None] | None = None, replay_after: int | None = None
    ) -> int:
        """Latest snapshot plus the journal's tail. Returns how many commands were replayed.

        `on_reply` sees every replayed command's reply, so projections can catch up; a projection
        that has written up to seq N passes `replay_after=N`, and recovery starts from a snapshot
        no newer than N (or the journal's start), so every reply after N is handed to it again."""
        if self.snapshots is not None:
            latest = self.snapshots.latest(at_most=replay_after)
            if latest is not None:
                self.restore(cast(dict, latest[1]))
        replayed = 0
        if self.journal is not None:
            records = (Journal.read(self.journal.path, start_seq=self.seq + 1) if self.segments is None
                       else self.segments.read(self.seq + 1))
            for record in records:
                for reply in self.apply_record(record):
                    replayed += 1
                    if on_reply is not None:
                        on_reply(reply)
            if self.seq != self.journal.last_seq:
                raise RuntimeError(f"journal ends at {self.journal.last_seq} but state is at {self.seq}")
        log.info("shard %d recovered at seq %d (%d replayed)", self.shard, self.seq, replayed)
        return replayed
