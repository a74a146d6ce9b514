"""The matcher process of the production transport: one shard's Redis Stream in, replies out.

The stream `{prefix}:commands:{shard}` IS the shard's durable, ordered command log (Redis runs with
`appendonly yes` and `appendfsync always`, so an XADD is answered only once it is on disk). Web
processes XADD `{v: command format, c: encoded command, r: reply list, i: request id}` (`entry_fields`);
this runner is the stream's only reader:

    XREAD BLOCK from the last applied entry id (no consumer group: one reader, its position is state)
    for each entry: seq = matcher.seq + 1, timestamp from the entry id (ms * 10^6 + sequence part,
                    never below the previous + 1), Matcher.apply_encoded (undecodable: an empty reply)
    replies while the batch is applied: every `push_every` replies, per reply list one RPUSH of them +
                    EXPIRE, sent without waiting (the answers are read before the next batch, so the
                    first callers get to work while the rest of the batch is applied); then listeners
    every `snapshot_every` commands: snapshot {"stream_id", "matcher": matcher.state()}
    every `heartbeat_every` seconds: SET {prefix}:heartbeat:{shard} {seq, lag, metrics, ...} with a short TTL

Replies are addressed by the entry: with `i`, `[i, encoded reply]` (`replies.address`) goes onto the
list `r`, the web process's one reply list, which its reader drains, handing each reply to the caller
waiting on that request id; the list expires `reply_ttl` seconds after its last push, so the lists of
web processes that died go away. An entry with `r` but no `i` (from a web process before request ids)
gets the bare encoded reply on `r`, a key of its caller's own, as before; one with no `r` no reply.

An entry whose `v` names a command format this build does not read (`formats.UnsupportedFormat`) is
never skipped as undecodable: the entries before it in its batch are applied and answered, then the
runner stops without a snapshot (recovery, or `replay_stream`, raises the same), so the shard stays
down until software that reads it runs. An entry without `v` is the legacy format (command format 1).

Seq and timestamp are pure functions of the entry's position and id and of the state before it, so
restarting from the latest snapshot and reading on from its stream id replays exactly: the recovered
state is the one a full replay of the stream from its start gives (`replay_stream`).

A projection that has written up to seq N recovers the runner with `recover(replay_after=N)`: it
starts from the newest snapshot at or below N (or the stream's start), so listeners see every reply
after N again. Entries the newest snapshot already covers are replayed silently (their callers were
answered, or gave up, before it was taken); only later ones are answered again.

Metrics (the registry passed in, METRICS by default), recorded once per batch; the heartbeat carries
their summary (`metrics`: the `matcher.*` stages and counters), which the web tier reads:

    matcher.apply       applying the batch's entries (and sending all but the last of its reply pushes)
    matcher.replies     sending the batch's last reply push (RPUSH + EXPIRE per reply list)
    matcher.listeners   the projector's and the market-data writer's hand-off
    matcher.batch_size  entries per batch (unit "commands"); matcher.commands: throughput
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

from matching.engine import AdvanceTime
from matching.worker.balance_codec import balance_entry, balance_stream_key, encode_balance_command
from matching.worker.codec import encode_command
from matching.worker.entries import stream_entry
from matching.worker.formats import (
    COMMAND_FORMAT,
    COMMAND_FORMATS_READ,
    LEGACY_COMMAND_FORMAT,
    UnsupportedFormat,
    check_format,
)
from matching.worker.matcher import Matcher, Reply
from matching.worker.metrics import METRICS, Registry
from matching.worker.replies import address, encode_reply
from matching.worker.runner_control import RunnerControl
from matching.worker.snapshots import SnapshotStore
from risk.core.balances import Settle, Void
from risk.core.events import Settlement, Voids

try:
    from hiredis import pack_command as _pack_command
except ImportError:  # redis-py packs in Python then
    _pack_command = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Listener = Callable[[list[Reply]], None]
SNAPSHOT_FORMAT = "stream-runner/1"
START = "0-0"


class StreamLost(RuntimeError):
    """The stream no longer holds what the snapshot says was applied: refuse to guess."""


def stream_key(prefix: str, shard: int) -> str:
    return f"{prefix}:commands:{shard}"


def heartbeat_key(prefix: str, shard: int) -> str:
    return f"{prefix}:heartbeat:{shard}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    ms, _, part = (entry_id.partition(b"-") if isinstance(entry_id, bytes) else entry_id.partition("-"))
    return int(ms), int(part or 0)


def entry_timestamp(entry_id: bytes | str, previous: int) -> int:
    """Nanosecond-ish timestamp of a stream entry: ms * 10^6 + its sequence part, strictly increasing."""
    ms, part = parse_id(entry_id)
    return max(ms * 1_000_000 + part, previous + 1)


def entry_fields(payload: bytes, reply_key: str | bytes | None = None,
                 request_id: bytes | None = None) -> dict[Any, Any]:
    """The fields of a command's stream entry (entries.stream_entry, in the command format)."""
    return stream_entry(COMMAND_FORMAT, payload, reply_key, request_id)


# `v` values this build reads, as they come back from Redis (bytes): checked without parsing them
_READABLE_V = frozenset(str(version).encode() for version in COMMAND_FORMATS_READ)


def entry_format(stream: str, entry_id: bytes | str, fields: dict) -> int:
    """The command format of an entry (its `v`; none: the legacy format); `UnsupportedFormat` if this
    build does not read it."""
    raw = fields.get(b"v")
    if raw in _READABLE_V:
        return int(raw)
    version: object = LEGACY_COMMAND_FORMAT
    if raw is not None:
        try:
            version = int(raw)
        except ValueError:
            version = raw
    return check_format("command", f"stream {stream} entry {_text(entry_id)}", version, COMMAND_FORMATS_READ)


def apply_entry(matcher: Matcher, entry_id: bytes | str, fields: dict, stream: str = "?") -> Reply:
    """Apply one stream entry as the next command; deterministic given the matcher's state. An entry in
    a command format this build does not read raises `UnsupportedFormat` (it is never skipped)."""
    entry_format(stream, entry_id, fields)
    timestamp = entry_timestamp(entry_id, matcher.last_timestamp)
    return matcher.apply_encoded(matcher.seq + 1, timestamp, fields.get(b"c", b""))


def replay_stream(matcher: Matcher, client: redis.Redis, stream: str, after: str = START,
                  *, count: int = 1000, on_reply: Callable[[Reply], None] | None = None) -> str:
    """Apply every entry after `after` (exclusive) to `matcher`, sending no replies; the last id read.
    Raises `UnsupportedFormat` at an entry in a command format this build does not read."""
    last = after
    while True:
        entries = cast(list, client.xrange(stream, f"({last}" if last != START else "-", "+", count=count))
        if not entries:
            return last
        for entry_id, fields in entries:
            reply = apply_entry(matcher, entry_id, fields, stream)
            last = _text(entry_id)
            if on_reply is not None:
                on_reply(reply)


class StreamRunner(RunnerControl[Listener]):
    def __init__(
        self,
        matcher: Matcher,
        redis_client: redis.Redis,
        shard: int | None = None,
        snapshots: SnapshotStore | None = None,
        snapshot_every: int = 10_000,
        *,
        prefix: str = "exchange",
        max_batch: int = 1_000,
        push_every: int = 128,
        block_ms: int = 500,
        reply_ttl: int = 60,
        heartbeat_ttl: float = 3.0,
        heartbeat_every: float = 0.5,
        metrics: Registry = METRICS,
    ) -> None:
        if redis_client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the stream runner needs a Redis client with decode_responses=False")
        self.matcher = matcher
        self.redis = redis_client
        self.shard = matcher.shard if shard is None else shard
        if self.shard != matcher.shard:
            raise ValueError(f"runner for shard {self.shard} given the matcher of shard {matcher.shard}")
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self.prefix = prefix
        self.stream = stream_key(prefix, self.shard)
        self.heartbeat_key = heartbeat_key(prefix, self.shard)
        self.max_batch = max_batch
        self.push_every = max(1, push_every)
        self._push_conn: Any = None  # where replies are pushed (answers read by `_drain`)
        self._unread = 0
        self.block_ms = max(1, block_ms)  # BLOCK 0 would wait forever
        self.reply_ttl = reply_ttl
        self.heartbeat_ttl_ms = int(heartbeat_ttl * 1000)
        self.heartbeat_every = heartbeat_every
        self.stream_id = START  # the last entry applied
        self.recovered = False
        super().__init__()
        self._since_snapshot = 0
        self._answered_through = 0  # entries up to this seq were answered before a restart
        # Settlements for balance shards elsewhere (Matcher.balance_shards), not sent yet: (stream, fields)
        self._unrouted: list[tuple[str, dict]] = []
        self._last_heartbeat = 0.0
        self._lag = 0
        self.heartbeat_extra: Callable[[], dict[str, Any]] | None = None  # merged into each heartbeat
        self.metrics = metrics
        self._apply_time = metrics.stage("matcher.apply")
        self._reply_time = metrics.stage("matcher.replies")
        self._listener_time = metrics.stage("matcher.listeners")
        self._batch_sizes = metrics.stage("matcher.batch_size", unit="commands")
        self._commands = metrics.throughput("matcher.commands")

    # ---- recovery ---------------------------------------------------------------------------

    def restore_snapshot(self, at_most: int | None = None) -> None:
        """Load the newest snapshot (at seq <= `at_most` when given), if any, into the matcher and the
        stream position."""
        if self.snapshots is None:
            return
        latest = self.snapshots.latest()
        if latest is None:
            return
        self._answered_through = latest[0]
        if at_most is not None and latest[0] > at_most:
            latest = self.snapshots.latest(at_most=at_most)
            if latest is None:  # every kept snapshot is newer: replay the stream from its start
                log.info("shard %d: no snapshot at or below seq %d; replaying the stream from its start",
                         self.shard, at_most)
                return
        state = cast(dict, latest[1])
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"{self.snapshots.directory} holds other snapshots, not {SNAPSHOT_FORMAT}")
        if state["stream"] != self.stream:
            raise ValueError(f"snapshot is of stream {state['stream']!r}, not {self.stream!r}")
        self.matcher.restore(state["matcher"])
        self.stream_id = state["stream_id"]

    def check_stream(self) -> None:
        """Refuse to run on a stream that lost entries the state says exist (Redis without its data)."""
        try:
            info = self.redis.xinfo_stream(self.stream)
        except redis.ResponseError:  # no such key
            if self.matcher.seq:
                raise StreamLost(f"{self.stream} is gone; snapshot at seq {self.matcher.seq}") from None
            return
        last_generated = parse_id(info.get("last-generated-id", b"0-0"))
        if last_generated < parse_id(self.stream_id):
            raise StreamLost(f"{self.stream} ends at {last_generated} before the snapshot's {self.stream_id}")
        added = info.get("entries-added")
        if added is not None and added < self.matcher.seq:
            raise StreamLost(f"{self.stream} holds {added} entries ever added, the state is at seq "
                             f"{self.matcher.seq}: it was recreated")
        deleted = parse_id(info.get("max-deleted-entry-id", b"0-0"))
        if deleted > parse_id(self.stream_id):
            raise StreamLost(f"{self.stream}: entries after {self.stream_id} were deleted (up to {deleted})")

    def check_durability(self) -> None:
        """Warn when Redis would acknowledge an XADD before it is on disk."""
        try:
            raw = cast(dict, self.redis.config_get("append*"))
        except redis.ResponseError:  # CONFIG disabled (managed Redis): cannot tell
            return
        config = {_text(k): _text(v) for k, v in raw.items() if v is not None}
        appendonly, fsync = config.get("appendonly", ""), config.get("appendfsync", "")
        if appendonly != "yes" or fsync != "always":
            log.warning("Redis runs with appendonly=%s appendfsync=%s: acknowledged commands can be lost "
                        "in a Redis crash (production needs appendonly yes, appendfsync always)",
                        appendonly, fsync)

    def recover(self, *, wait: bool = False, replay_after: int | None = None) -> int:
        """Latest snapshot, then apply (and answer) everything already in the stream after it.

        `replay_after=N` (a projection's cursor): start from the newest snapshot at or below seq N
        instead, or from the stream's start, so listeners subscribed before this call see every reply
        after N. Entries the newest snapshot covers are not answered again (see the module).

        Returns how many entries were replayed. With `wait`, keeps retrying while Redis is unreachable
        (until `stop()`, which leaves `recovered` false); otherwise connection errors propagate."""
        self.restore_snapshot(at_most=replay_after)
        snapshot_seq = self.matcher.seq
        delay = 0.1
        while True:
            try:
                self.check_stream()
                self.check_durability()
                while self.step(block_ms=None):
                    pass
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not wait:
                    raise
                log.warning("shard %d: Redis unreachable during recovery (%s); retrying", self.shard, exc)
                self._pause(delay)
                delay = min(delay * 2, 2.0)
                if self.stopping:
                    return self.matcher.seq - snapshot_seq
        self.recovered = True
        with contextlib.suppress(redis.RedisError):
            self._drain()
        replayed = self.matcher.seq - snapshot_seq
        log.info("shard %d recovered at seq %d, stream id %s (%d replayed after seq %d)",
                 self.shard, self.matcher.seq, self.stream_id, replayed, snapshot_seq)
        return replayed

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until `stop()`: read, apply, answer; snapshot and withdraw the heartbeat on the way out."""
        if not self.recovered:
            self.recover(wait=True)
            if not self.recovered:
                return
        clean = False
        try:
            self._serve(lambda: self.step(self.block_ms), f"shard {self.shard}")
            clean = True
        finally:
            # After any other failure the state may be half-applied: never snapshot it. The process
            # exits; a restart replays from the last good snapshot (and meets the same failure, since
            # apply is deterministic, so the shard stays down rather than diverge).
            self._close_push_connection()
            if clean and self._since_snapshot:
                self.snapshot()
            with contextlib.suppress(redis.RedisError):
                self.redis.delete(self.heartbeat_key)  # callers fail fast from now on

    def step(self, block_ms: int | None) -> int:
        """Read one batch (waiting up to block_ms; None: not at all), apply and answer it; its size."""
        if self._unrouted:  # a previous batch's settlements that could not be sent
            self._route()
        response = cast(list, self.redis.xread({self.stream: self.stream_id}, count=self.max_batch,
                                               block=block_ms))
        entries = response[0][1] if response else []
        if entries:
            self._apply_batch(entries)
        elif self.matcher.expiry_due():
            # Time passes only through the log (as in the embedded bus): an AdvanceTime entry, which
            # the next step reads and applies like any command, so replay expires the same orders.
            self.redis.xadd(self.stream, entry_fields(encode_command(AdvanceTime(0))))
        if time.monotonic() - self._last_heartbeat >= self.heartbeat_every:
            self.heartbeat()
        return len(entries)

    def _apply_batch(self, entries: list[tuple[bytes, dict]]) -> None:
        """Apply and answer a batch; at an entry this build cannot read, apply and answer the ones
        before it, then raise `UnsupportedFormat` (the runner stops: never skip a command)."""
        for index, (entry_id, fields) in enumerate(entries):
            try:
                entry_format(self.stream, entry_id, fields)
            except UnsupportedFormat:
                if index:
                    self._apply_batch(entries[:index])
                raise
        matcher = self.matcher
        apply = matcher.apply_encoded
        answered_through = self._answered_through
        routing = matcher.balance_shards > 0
        replies: list[Reply] = []
        consistent = True  # False once applying failed: the state may be half-applied
        pushes: dict[bytes, list[bytes]] = {}  # reply list -> its replies not sent yet, in stream order
        queued = 0
        push_every = self.push_every
        started = time.perf_counter_ns()
        applied = answered = 0
        self._drain()  # the previous batch's push answers: there long since
        try:
            for entry_id, fields in entries:  # as apply_entry does (the formats are checked above)
                reply = apply(matcher.seq + 1, entry_timestamp(entry_id, matcher.last_timestamp),
                              fields.get(b"c", b""))
                if routing:
                    self._take_settlements(reply)
                replies.append(reply)
                key = fields.get(b"r")
                if key and reply.seq > answered_through:
                    encoded = encode_reply(reply)
                    request_id = fields.get(b"i")
                    if request_id is not None:
                        encoded = address(request_id, encoded)
                    waiting = pushes.get(key)
                    if waiting is None:
                        pushes[key] = [encoded]
                    else:
                        waiting.append(encoded)
                    queued += 1
                    if queued >= push_every:  # send these now: their callers get to work while the
                        self._push(pushes)    # rest of the batch is applied
                        pushes, queued = {}, 0
            applied = time.perf_counter_ns()
            if self._unrouted:
                self._route()
            if pushes:
                self._push(pushes)
            answered = time.perf_counter_ns()
        except redis.RedisError:
            # The entries applied so far stay applied (stream_id is theirs) and their listeners see
            # them; the next step reads on from there. Their replies may be lost.
            self._unread = 0
            raise
        except BaseException:
            consistent = False  # no stream position, no listener, no snapshot
            raise
        finally:
            if consistent:
                if replies:  # position and state advance together: up to the last entry applied
                    self.stream_id = _text(entries[len(replies) - 1][0])
                    self._since_snapshot += len(replies)
                self._after_batch(replies, started, applied, answered)  # listeners see every batch

    def _after_batch(self, replies: list[Reply], started: int, applied: int, answered: int) -> None:
        """Listeners, metrics and maybe a snapshot after a batch (its replies sent, or lost)."""
        now = time.perf_counter_ns()
        applied = applied or now
        answered = answered or now
        for listener in self._listeners:
            try:
                listener(replies)
            except Exception:
                log.exception("stream runner listener %r failed", listener)
        self._apply_time.record(applied - started)
        self._reply_time.record(answered - applied)
        self._listener_time.record(time.perf_counter_ns() - answered)
        self._batch_sizes.record(len(replies))
        self._commands.add(len(replies))
        if self.snapshots is not None and self._since_snapshot >= self.snapshot_every and not self._unrouted:
            with contextlib.suppress(redis.RedisError):
                self.heartbeat()  # a large snapshot must not let the heartbeat lapse
            self.snapshot()

    def _take_settlements(self, reply: Reply) -> None:
        """With balance shards elsewhere: the reply's Settlement and Voids events leave it (they are for
        the balance shards, not the caller) and wait to be routed, as that shard's Settle or Void."""
        events = reply.events
        if not any(type(event) is Settlement or type(event) is Voids for event in events):
            return
        kept: list = []
        shard, seq = self.shard, reply.seq
        for event in events:
            if type(event) is Settlement:
                cmd: Settle | Void = Settle(shard, seq, event.lines, event.timestamp)
            elif type(event) is Voids:
                cmd = Void(shard, event.tickets, event.timestamp)
            else:
                kept.append(event)
                continue
            self._unrouted.append((balance_stream_key(self.prefix, event.balance_shard),
                                   balance_entry(encode_balance_command(cmd))))
        reply.events = kept

    def _route(self) -> None:
        """Send the settlements waiting (one MULTI/EXEC of XADDs, in seq order, so in order per balance
        shard). A failure keeps them for the next batch, and no snapshot is taken meanwhile: a restart
        replays their commands from the last snapshot and sends them again (the balance shard's cursor
        skips what it has already)."""
        pipe = self.redis.pipeline(transaction=True)
        for stream, fields in self._unrouted:
            pipe.xadd(stream, fields)
        pipe.execute()
        self._unrouted = []

    def _push(self, pushes: dict[bytes, list[bytes]]) -> None:
        """Send an RPUSH of its replies and an EXPIRE for each reply list on the runner's push
        connection, without waiting for Redis: `_drain` reads the answers later."""
        conn = self._push_conn
        if conn is None:
            conn = self._push_conn = self.redis.connection_pool.get_connection()
        commands: list[tuple] = []
        for key, encoded_replies in pushes.items():
            commands.append((b"RPUSH", key, *encoded_replies))
            commands.append((b"EXPIRE", key, self.reply_ttl))
        try:
            if _pack_command is not None:
                conn.send_packed_command([b"".join([_pack_command(command) for command in commands])])
            else:
                conn.send_packed_command(conn.pack_commands(commands))
        except redis.RedisError:
            self._unread = 0  # the connection is closed: nothing more comes on it
            raise
        self._unread += len(commands)

    def _drain(self) -> None:
        """Read the answers to the pushes sent so far (a failed push loses its replies: logged)."""
        unread, self._unread = self._unread, 0
        conn = self._push_conn
        try:
            for _ in range(unread):
                try:
                    conn.read_response()
                except redis.ResponseError as exc:  # e.g. a key of another type: that list only
                    log.warning("shard %d: a reply push failed: %s", self.shard, exc)
        except redis.RedisError:
            conn.disconnect()
            raise

    def _close_push_connection(self) -> None:
        if self._push_conn is not None:
            with contextlib.suppress(redis.RedisError):
                self._drain()
            self._unread = 0
            conn, self._push_conn = self._push_conn, None
            self.redis.connection_pool.release(conn)

    def snapshot(self) -> None:
        if self.snapshots is not None:
            state = {"format": SNAPSHOT_FORMAT, "stream": self.stream, "stream_id": self.stream_id,
                     "matcher": self.matcher.state()}
            self.snapshots.save(self.matcher.seq, state)
        self._since_snapshot = 0

    def heartbeat(self) -> None:
        """SET the shard's heartbeat (seq, queue lag) with a short TTL: its absence means down."""
        self._last_heartbeat = time.monotonic()
        try:
            added = self.redis.xinfo_stream(self.stream).get("entries-added")
            self._lag = max(0, added - self.matcher.seq) if added is not None else 0
        except redis.ResponseError:  # no stream yet
            self._lag = 0
        value: dict[str, Any] = {"seq": self.matcher.seq, "lag": self._lag, "stream_id": self.stream_id,
                                 "pid": os.getpid(), "time": time.time(),
                                 "metrics": self.metrics.summary(prefix="matcher.")}
        if self.heartbeat_extra is not None:
            try:
                value.update(self.heartbeat_extra())
            except Exception:
                log.exception("shard %d: heartbeat_extra failed", self.shard)
        self.redis.set(self.heartbeat_key, json.dumps(value), px=self.heartbeat_ttl_ms)
