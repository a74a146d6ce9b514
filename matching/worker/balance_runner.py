"""The balance shard process of the production transport: R1 and R2 of one balance shard.

The stream `{prefix}:balances:{b}` (`balance_codec.balance_stream_key`) IS balance shard b's durable,
ordered command log (appendonly Redis, as for the matching shards); this runner is its only reader:

    XREAD BLOCK from the last applied entry id; per entry: seq = seq + 1, timestamp from the entry id
        (stream_runner.entry_timestamp), decode (balance_codec), apply to the BalanceShard:
      Place        Reserve(owner, amount, matching shard); held: forward FundedOrder(order, ticket,
                   amount) to the matching shard's stream with the web's reply address (`r`, `i`), so
                   the matching shard answers the web itself; refused: forward FundedOrder(order,
                   REFUSED, 0) the same way: the matching shard numbers it and answers it rejected
                   (insufficient_funds), and it is in the history and the audit trail
      PlaceAmend   Extend the ticket by what it holds less than `needed`; refused: AmendRejected;
                   else forward FundedAmend (the plain AmendOrder when nothing was added), same address
      Settle/Void  from the matching runners: applied, never answered (a redelivered Settle at or
                   below the matching shard's cursor is skipped by the BalanceShard itself)
      Adjust       answered AdminApplied / AdminRejected(adjust_cash, str(owner)); SetDefaultCash
                   answered with the BalanceShard's own AdminApplied / AdminRejected
      undecodable  skipped with a log line, answered with an empty Reply if the caller waits
    then, per batch, in this order: the forwards (one MULTI/EXEC of XADDs, in stream order, hence in
        ticket order per matching shard), the replies (RPUSH + EXPIRE per reply list, as the matching
        runner), the listeners ((seq, events) per entry: BalanceUpdate and the rest, for a projector),
        maybe a snapshot {"stream_id", "seq", "balances": BalanceShard.state(), ...}
    every `heartbeat_every` s: SET {prefix}:balance-heartbeat:{b} {seq, lag, ...} with a short TTL

Durability order: a snapshot never covers an entry whose forward was not sent. If sending the
forwards fails, the shard's state is ahead of what the matching shards were told: the runner then
recovers (below) before reading on, exactly as after a crash.

Recovery (`recover`): the newest snapshot (or the initial state), the stream after it replayed
SILENTLY (applied, listeners called, nothing forwarded or answered: those callers were answered, or
gave up), then a FENCE per matching shard m holding unconfirmed tickets: XADD Fence(b, tickets) to
m's stream, after every funded order this shard ever sent there. m answers with a Void that reaches
this stream after the confirmations of every ticket it did receive, so only orders that never arrived
are released; m refuses any fenced ticket arriving later.

An entry whose `v` is not a balance format this build reads stops the runner (formats.UnsupportedFormat,
after applying the entries before it), like the matching runner: never skip a command.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from matching.engine import AmendRejected, RejectReason
from matching.worker.balance_codec import (
    BALANCE_FORMATS_READ,
    Place,
    PlaceAmend,
    balance_stream_key,
    decode_balance_command,
)
from matching.worker.codec import CodecError, encode_command
from matching.worker.formats import UnsupportedFormat, check_format
from matching.worker.matcher import Reply
from matching.worker.replies import address, encode_reply
from matching.worker.runner_control import RunnerControl
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import (
    START,
    StreamLost,
    entry_fields,
    entry_timestamp,
    parse_id,
    stream_key,
)
from risk.core.balances import (
    Adjust,
    Adjusted,
    AdjustRefused,
    BalanceEvent,
    BalanceRefusal,
    BalanceShard,
    Extend,
    ExtendRefused,
    Reserve,
    Reserved,
    Settle,
    Void,
)
from risk.core.commands import REFUSED, Fence, FundedAmend, FundedOrder, SetDefaultCash
from risk.core.events import AdminApplied, AdminRejected
from risk.core.types import AdminKind, AdminRejectReason

log = logging.getLogger(__name__)

BalanceListener = Callable[[list[tuple[int, list[BalanceEvent]]]], None]
SNAPSHOT_FORMAT = "balance-runner/1"

# `v` values this build reads, as Redis returns them (bytes)
_READABLE_V = frozenset(str(version).encode() for version in BALANCE_FORMATS_READ)


def balance_heartbeat_key(prefix: str, shard: int) -> str:
    return f"{prefix}:balance-heartbeat:{shard}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def balance_entry_format(stream: str, entry_id: bytes | str, fields: dict) -> int:
    """The balance format of an entry's `v`; `UnsupportedFormat` if this build does not read it. The
    balance stream has no legacy entries, so an entry without `v` is not guessed at either."""
    raw = fields.get(b"v")
    if raw in _READABLE_V:
        return int(raw)
    version: object = raw
    if isinstance(raw, bytes):
        with contextlib.suppress(ValueError):
            version = int(raw)
    return check_format("balance command", f"stream {stream} entry {_text(entry_id)}", version,
                        BALANCE_FORMATS_READ)


class _Batch:
    """What one batch sends, in stream order: forwards (matching stream, entry fields), then replies."""

    __slots__ = ("forwards", "replies")

    def __init__(self) -> None:
        self.forwards: list[tuple[str, dict[Any, Any]]] = []
        self.replies: dict[bytes, list[bytes]] = {}


class BalanceRunner(RunnerControl[BalanceListener]):
    def __init__(
        self,
        shard: BalanceShard,
        client: redis.Redis,
        balance_shard: int,
        snapshots: SnapshotStore | None,
        prefix: str,
        matching_shards: list[int],
        *,
        snapshot_every: int = 10_000,
        max_batch: int = 1_000,
        block_ms: int = 500,
        reply_ttl: int = 60,
        heartbeat_ttl: float = 3.0,
        heartbeat_every: float = 0.5,
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the balance runner needs a Redis client with decode_responses=False")
        if shard.shard != balance_shard:
            raise ValueError(f"runner for balance shard {balance_shard} given shard {shard.shard}")
        self.shard = shard  # replaced by a restored one on recovery
        self._initial = shard.state()  # what a recovery without a snapshot starts from
        self.redis = client
        self.balance_shard = balance_shard
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self.prefix = prefix
        self.matching_shards = sorted(set(matching_shards))
        self._matching = frozenset(self.matching_shards)
        self.stream = balance_stream_key(prefix, balance_shard)
        self.heartbeat_key = balance_heartbeat_key(prefix, balance_shard)
        self.max_batch = max_batch
        self.block_ms = max(1, block_ms)  # BLOCK 0 would wait forever
        self.reply_ttl = reply_ttl
        self.heartbeat_ttl_ms = int(heartbeat_ttl * 1000)
        self.heartbeat_every = heartbeat_every
        self.seq = 0  # entries applied (every entry takes one, an undecodable one too)
        self.last_timestamp = 0
        self.stream_id = START  # the last entry applied
        self.recovered = False
        # The state holds reservations whose forwards may not have been sent: recover before reading on.
        self.needs_recovery = False
        super().__init__()
        self._since_snapshot = 0
        self._last_heartbeat = 0.0
        self._lag = 0

    # ---- recovery ---------------------------------------------------------------------------

    def restore_snapshot(self) -> None:
        """The newest snapshot, or the state the runner was built with, and its stream position."""
        store = self.snapshots
        latest = store.latest() if store is not None else None
        if store is None or latest is None:
            self.shard = BalanceShard.from_state(self._initial)
            self.seq, self.last_timestamp, self.stream_id = 0, 0, START
        else:
            state = cast(dict, latest[1])
            if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"{store.directory} holds other snapshots, not {SNAPSHOT_FORMAT}")
            if state["stream"] != self.stream:
                raise ValueError(f"snapshot is of stream {state['stream']!r}, not {self.stream!r}")
            self.shard = BalanceShard.from_state(state["balances"])
            self.seq, self.last_timestamp = state["seq"], state["last_timestamp"]
            self.stream_id = state["stream_id"]
        self._since_snapshot = 0

    def check_stream(self) -> None:
        """Refuse to run on a stream that lost entries the state says exist (as StreamRunner does)."""
        try:
            info = self.redis.xinfo_stream(self.stream)
        except redis.ResponseError:  # no such key
            if self.seq:
                raise StreamLost(f"{self.stream} is gone; snapshot at seq {self.seq}") from None
            return
        if parse_id(info.get("last-generated-id", b"0-0")) < parse_id(self.stream_id):
            raise StreamLost(f"{self.stream} ends before the snapshot's {self.stream_id}")
        added = info.get("entries-added")
        if added is not None and added < self.seq:
            raise StreamLost(f"{self.stream} holds {added} entries ever added, the state is at seq "
                             f"{self.seq}: it was recreated")
        if parse_id(info.get("max-deleted-entry-id", b"0-0")) > parse_id(self.stream_id):
            raise StreamLost(f"{self.stream}: entries after {self.stream_id} were deleted")

    def recover(self, *, wait: bool = False) -> int:
        """Snapshot, silent replay of the stream's tail, fence (see the module); entries replayed.
        With `wait`, retries while Redis is unreachable (until `stop()`, leaving `recovered` false)."""
        self.recovered = False
        delay = 0.1
        while True:
            try:
                self.restore_snapshot()
                start = self.seq
                self.check_stream()
                while True:
                    response = cast(list, self.redis.xread({self.stream: self.stream_id},
                                                           count=self.max_batch))
                    if not response:
                        break
                    self._apply_batch(response[0][1], live=False)
                self.fence()
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not wait:
                    raise
                log.warning("balance shard %d: Redis unreachable during recovery (%s); retrying",
                            self.balance_shard, exc)
                self._pause(delay)
                delay = min(delay * 2, 2.0)
                if self.stopping:
                    return 0
        self.needs_recovery = False
        self.recovered = True
        if self.snapshots is not None and self._since_snapshot >= self.snapshot_every:
            self.snapshot()  # safe now: everything replayed is fenced
        log.info("balance shard %d recovered at seq %d, stream id %s (%d replayed)", self.balance_shard,
                 self.seq, self.stream_id, self.seq - start)
        return self.seq - start

    def fence(self) -> None:
        """XADD Fence(b, unconfirmed tickets) to each matching shard holding some (one MULTI/EXEC)."""
        ts = time.time_ns()
        fences = []
        for m in self.matching_shards:
            tickets = self.shard.unconfirmed(m)
            if tickets:
                fences.append((stream_key(self.prefix, m),
                               entry_fields(encode_command(Fence(self.balance_shard, tickets, ts)))))
        stray = {r.matching_shard for r in self.shard.reservations.values()} - self._matching
        if stray:
            log.warning("balance shard %d: reservations on matching shards %s not configured here: "
                        "not fenced", self.balance_shard, sorted(stray))
        if fences:
            pipe = self.redis.pipeline(transaction=True)
            for stream, fields in fences:
                pipe.xadd(stream, fields)
            pipe.execute()

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until `stop()`; snapshot (if consistent) and withdraw the heartbeat on the way out."""
        if not self.recovered:
            self.recover(wait=True)
            if not self.recovered:
                return
        clean = False
        try:
            self._serve(self._serve_step, f"balance shard {self.balance_shard}")
            clean = True
        finally:
            # Any other failure may leave the state half-applied, or ahead of its forwards: no snapshot.
            if clean and self._since_snapshot and not self.needs_recovery:
                self.snapshot()
            with contextlib.suppress(redis.RedisError):
                self.redis.delete(self.heartbeat_key)

    def _serve_step(self) -> None:
        """What `run` does each time round: recover first if a batch's forwards were not sent."""
        if self.needs_recovery:
            self.recover(wait=True)
        else:
            self.step(self.block_ms)

    def step(self, block_ms: int | None) -> int:
        """Read one batch (waiting up to block_ms; None: not at all), apply and send it; its size."""
        if self.needs_recovery:
            raise RuntimeError("forwards of an applied batch were not sent: recover() first")
        response = cast(list, self.redis.xread({self.stream: self.stream_id}, count=self.max_batch,
                                               block=block_ms))
        entries = response[0][1] if response else []
        if entries:
            self._apply_batch(entries, live=True)
        if time.monotonic() - self._last_heartbeat >= self.heartbeat_every:
            self.heartbeat()
        return len(entries)

    def _apply_batch(self, entries: list[tuple[bytes, dict]], *, live: bool) -> None:
        """Apply a batch, then (live) send its forwards and replies; at an entry in a format this build
        does not read, do so for the entries before it, then raise `UnsupportedFormat`."""
        for index, (entry_id, fields) in enumerate(entries):
            try:
                balance_entry_format(self.stream, entry_id, fields)
            except UnsupportedFormat:
                if index:
                    self._apply_batch(entries[:index], live=live)
                raise
        batch = _Batch() if live else None
        applied: list[tuple[int, list[BalanceEvent]]] = []
        try:
            for entry_id, fields in entries:
                timestamp = entry_timestamp(entry_id, self.last_timestamp)
                events = self._apply_entry(fields, timestamp, batch)
                # state and position advance together
                self.seq += 1
                self.last_timestamp = timestamp
                self.stream_id = _text(entry_id)
                applied.append((self.seq, events))
        except BaseException:
            self.needs_recovery = True  # half a batch applied, nothing sent: only a recovery knows
            raise
        self._since_snapshot += len(applied)
        try:
            if batch is not None:
                self._send(batch)
        finally:
            self._after_batch(applied, live)

    def _send(self, batch: _Batch) -> None:
        if batch.forwards:
            try:
                pipe = self.redis.pipeline(transaction=True)  # all or none, and the reader wakes to all
                for stream, fields in batch.forwards:
                    pipe.xadd(stream, fields)
                pipe.execute()
            except BaseException:
                self.needs_recovery = True  # which of them arrived is for the fence to find out
                raise
        if batch.replies:
            pipe = self.redis.pipeline(transaction=False)
            for key, encoded in batch.replies.items():
                pipe.rpush(key, *encoded)
                pipe.expire(key, self.reply_ttl)
            for result in pipe.execute(raise_on_error=False):
                if isinstance(result, Exception):  # e.g. a key of another type: that list only
                    log.warning("balance shard %d: a reply push failed: %s", self.balance_shard, result)

    def _after_batch(self, applied: list[tuple[int, list[BalanceEvent]]], live: bool) -> None:
        for listener in self._listeners:
            try:
                listener(applied)
            except Exception:
                log.exception("balance runner listener %r failed", listener)
        # Never mid-replay (its forwards were not sent) nor ahead of unsent forwards.
        if (live and not self.needs_recovery and self.snapshots is not None
                and self._since_snapshot >= self.snapshot_every):
            with contextlib.suppress(redis.RedisError):
                self.heartbeat()
            self.snapshot()

    # ---- one entry --------------------------------------------------------------------------

    def _apply_entry(self, fields: dict, ts: int, batch: _Batch | None) -> list[BalanceEvent]:
        """Apply one entry at `ts`; with a batch (live), queue its forward and its answer."""
        try:
            cmd = decode_balance_command(fields.get(b"c", b""))
        except CodecError as exc:
            log.error("balance shard %d seq %d: undecodable entry skipped: %s", self.balance_shard,
                      self.seq + 1, exc)
            self._answer(batch, fields, Reply(0, 0))
            return []
        if isinstance(cmd, Place):
            return self._place(cmd, fields, ts, batch)
        if isinstance(cmd, PlaceAmend):
            return self._place_amend(cmd, fields, ts, batch)
        if isinstance(cmd, Settle):
            return self.shard.apply(Settle(cmd.matching_shard, cmd.seq, cmd.lines, ts))
        if isinstance(cmd, Void):
            return self.shard.apply(Void(cmd.matching_shard, cmd.tickets, ts))
        if isinstance(cmd, Adjust):
            return self._adjust(cmd, fields, ts, batch)
        events = self.shard.apply(SetDefaultCash(cmd.amount, ts))
        answer = [event for event in events if type(event) is AdminApplied or type(event) is AdminRejected]
        self._answer(batch, fields, Reply(0, 0, cast(list, answer), False, SetDefaultCash(cmd.amount, ts)))
        return events

    def _known_shard(self, matching_shard: int, fields: dict, batch: _Batch | None) -> bool:
        # Checked before anything is held: a ticket for a shard never fenced would never be released.
        if matching_shard in self._matching:
            return True
        log.error("balance shard %d seq %d: matching shard %d is not configured here: entry skipped",
                  self.balance_shard, self.seq + 1, matching_shard)
        self._answer(batch, fields, Reply(0, 0))
        return False

    def _place(self, cmd: Place, fields: dict, ts: int, batch: _Batch | None) -> list[BalanceEvent]:
        order = cmd.order
        if not self._known_shard(cmd.matching_shard, fields, batch):
            return []
        events = self.shard.apply(Reserve(order.owner, cmd.amount, cmd.matching_shard, ts))
        ticket = next((event.ticket for event in events if type(event) is Reserved), None)
        if batch is not None:  # refused: on as REFUSED, for the matching shard to number and reject
            funded = FundedOrder(order, REFUSED, 0) if ticket is None else \
                FundedOrder(order, ticket, cmd.amount)
            self._forward(batch, cmd.matching_shard, encode_command(funded), fields)
        return events

    def _place_amend(self, cmd: PlaceAmend, fields: dict, ts: int, batch: _Batch | None
                     ) -> list[BalanceEvent]:
        amend = cmd.amend
        if not self._known_shard(cmd.matching_shard, fields, batch):
            return []
        held = self.shard.reservation(cmd.ticket)
        extra = 0 if held is None else max(0, cmd.needed - held.amount)
        events: list[BalanceEvent] = []
        if extra:
            events = self.shard.apply(Extend(amend.owner, cmd.ticket, extra, ts))
            refused = next((event for event in events if type(event) is ExtendRefused), None)
            if refused is not None:
                # not enough cash; else the ticket is not this owner's (a wrong ticket from the caller)
                funds = refused.reason == BalanceRefusal.INSUFFICIENT_FUNDS
                reason = RejectReason.INSUFFICIENT_FUNDS if funds else RejectReason.UNKNOWN_ORDER
                rejected = AmendRejected(amend.order_id, amend.owner, amend.symbol, reason, ts)
                self._answer(batch, fields, Reply(0, amend.order_id, [rejected], False, amend))
                return events
        if batch is not None:
            payload = encode_command(FundedAmend(amend, cmd.ticket, extra) if extra else amend)
            self._forward(batch, cmd.matching_shard, payload, fields)
        return events

    def _adjust(self, cmd: Adjust, fields: dict, ts: int, batch: _Batch | None) -> list[BalanceEvent]:
        events = self.shard.apply(Adjust(cmd.owner, cmd.amount, cmd.ref, ts))
        answer: list[Any] = []
        for event in events:
            if type(event) is Adjusted:
                answer.append(AdminApplied(AdminKind.ADJUST_CASH, str(event.owner), ts))
            elif type(event) is AdjustRefused:
                reason = (AdminRejectReason.BELOW_RESERVED if event.reason == BalanceRefusal.BELOW_RESERVED
                          else AdminRejectReason.INVALID_VALUE)
                answer.append(AdminRejected(AdminKind.ADJUST_CASH, str(event.owner), reason, "", ts))
        self._answer(batch, fields, Reply(0, 0, answer))
        return events

    def _forward(self, batch: _Batch, matching_shard: int, payload: bytes, fields: dict) -> None:
        """Queue the funded command for the matching shard, addressed to the web's caller."""
        entry = entry_fields(payload, reply_key=fields.get(b"r"), request_id=fields.get(b"i"))
        batch.forwards.append((stream_key(self.prefix, matching_shard), entry))

    def _answer(self, batch: _Batch | None, fields: dict, reply: Reply) -> None:
        """Queue the reply onto the entry's reply list `r` (addressed to `i`), as StreamRunner answers."""
        key = fields.get(b"r")
        if batch is None or not key:
            return
        encoded = encode_reply(reply)
        request_id = fields.get(b"i")
        if request_id is not None:
            encoded = address(request_id, encoded)
        batch.replies.setdefault(key, []).append(encoded)

    # ---- snapshots and heartbeat ------------------------------------------------------------

    def snapshot(self) -> None:
        if self.snapshots is not None:
            state = {"format": SNAPSHOT_FORMAT, "stream": self.stream, "stream_id": self.stream_id,
                     "seq": self.seq, "last_timestamp": self.last_timestamp, "balances": self.shard.state()}
            self.snapshots.save(self.seq, state)
        self._since_snapshot = 0

    def heartbeat(self) -> None:
        """SET the balance shard's heartbeat (seq, queue lag) with a short TTL: its absence means down."""
        self._last_heartbeat = time.monotonic()
        try:
            added = self.redis.xinfo_stream(self.stream).get("entries-added")
            self._lag = max(0, added - self.seq) if added is not None else 0
        except redis.ResponseError:  # no stream yet
            self._lag = 0
        value = {"seq": self.seq, "lag": self._lag, "stream_id": self.stream_id, "pid": os.getpid(),
                 "time": time.time()}
        self.redis.set(self.heartbeat_key, json.dumps(value), px=self.heartbeat_ttl_ms)
