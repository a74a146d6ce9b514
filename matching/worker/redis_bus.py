"""The web side of the production transport: a `CommandBus` over one Redis Stream per shard.

Callers never touch Redis themselves. Per bus (one per web process) two threads do, each on one
connection of its own:

    caller (a thread: submit, submit_many; or an event loop: submit_async)
        registers a waiter under a request id (a lock, or a future of its loop), queues
        (shard, encoded command, request id) and waits until its deadline
    sender thread: takes whatever callers queued since its last round trip; GETs the heartbeats of
        the shards among them that are not fresh (one MGET); refuses the commands of shards that are
        down or overloaded; sends the others as one pipeline, MULTI, then per command
        XADD {prefix}:commands:{shard} {v: format, c: command, r: this bus's reply list, i: request id},
        then EXEC (one round trip, one fsync in Redis, in queue order, so in order per shard; the
        transaction makes the runner, blocked in XREAD, wake to all of them rather than the first)
    reply reader thread: BLMPOP on this bus's reply list {prefix}:reply:{token}, up to 1024 replies a
        round trip; each is `[request id, encoded reply]` (`replies.address`): the waiter registered
        under that id gets the encoded reply (decoded by the caller); a reply nobody waits for (its
        caller timed out) is dropped. Sync callers are woken by their lock, each event loop once per
        batch (one call_soon_threadsafe for all of its callers in it)

So a bus holds two connections (three with `health()`'s), whatever the number of callers, and
commands of concurrent callers share round trips and fsyncs. The matcher (`stream_runner`) pushes a
batch's replies for this bus with one RPUSH per 128 and renews the list's expiry (60 s), so the list
of a process that died goes away by itself.

Every failure is `Unavailable`, raised fast: a shard whose heartbeat is missing (its runner is
down) or whose queue lag is over `max_lag` is refused before anything is written; more than
`max_in_flight` callers waiting on this bus are refused at once; an unreachable Redis fails the call
when the sender meets it (no client-side retries, which could append a command twice); a reply that
does not come in time fails at the deadline (a command whose caller gave up before the sender took
it is not sent). The command may still be applied after a timeout: retrying with the same
client_order_id is safe. A present heartbeat is trusted for `check_every` seconds per shard and
process, so the check costs one GET per half second, not one per command; a missing one is read
again for every round trip (a restarted runner is used at once), and a timeout or connection error
forgets the cached heartbeat.

Callers' acknowledgement times go to the metrics registry (`bus.ack_sync`, `bus.ack_async`, as in the
embedded bus), the sender's round trips to `bus.send` and `bus.send_batch` (commands per pipeline);
`heartbeats()` returns what each shard's runner last published, its metrics summary included.
Needs Redis 7 (BLMPOP).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from heapq import heappop, heappush
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from matching.engine import AdvanceTime, AmendOrder, CancelOrder, NewOrder
from matching.worker.balance_codec import (
    BalanceStreamCommand,
    balance_entry,
    balance_stream_key,
    encode_balance_command,
)
from matching.worker.balance_runner import balance_heartbeat_key
from matching.worker.bus import Unavailable
from matching.worker.codec import CodecError, WorkerCommand, encode_command
from matching.worker.matcher import ORDER_ID_STRIDE, Reply
from matching.worker.metrics import METRICS, Registry
from matching.worker.replies import decode_reply, unaddress
from matching.worker.stream_runner import entry_fields, heartbeat_key, stream_key
from risk.core import (
    AdjustCash,
    Fence,
    FundedAmend,
    FundedOrder,
    RejectHeld,
    ReleaseHeld,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
)

try:
    from hiredis import pack_command as _pack_command
except ImportError:  # redis-py packs in Python then
    _pack_command = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DOWN_RETRY_AFTER = 5.0
BUSY_RETRY_AFTER = 1.0
READ_BLOCK = 1.0  # seconds a BLMPOP waits for replies before it asks again
READ_COUNT = 1024  # replies taken per round trip at most
SEND_COUNT = 4096  # commands per pipeline at most
_ORDER_COMMANDS = frozenset((NewOrder, CancelOrder, AmendOrder))  # routed by their own symbol
_perf = time.perf_counter_ns


def symbol_shards(shards: Mapping[Any, Iterable[str]]) -> dict[str, int]:
    """{shard: [symbols]} (the MATCHER_SHARDS setting) -> {symbol: shard}; a symbol on two shards is
    an error."""
    out: dict[str, int] = {}
    for shard, symbols in shards.items():
        for symbol in symbols:
            if symbol in out and out[symbol] != int(shard):
                raise ValueError(f"{symbol} is assigned to shards {out[symbol]} and {shard}")
            out[symbol] = int(shard)
    return out


# Where a command goes: a matching shard s (target s >= 0, its stream `stream_key`) or, with balance shards
# (issue 13), balance shard b (target -1 - b, its stream `balance_stream_key`, entries in the balance format).
def balance_target(balance_shard: int) -> int:
    return -1 - balance_shard


def _stream_of(prefix: str, target: int) -> str:
    return stream_key(prefix, target) if target >= 0 else balance_stream_key(prefix, -1 - target)


def _heartbeat_of(prefix: str, target: int) -> str:
    return heartbeat_key(prefix, target) if target >= 0 else balance_heartbeat_key(prefix, -1 - target)


def _entry(target: int, payload: bytes, reply_key: bytes, request_id: bytes) -> dict[Any, Any]:
    if target >= 0:
        return entry_fields(payload, reply_key, request_id)
    return balance_entry(payload, reply_key, request_id)


def _name(target: int) -> str:
    return f"matcher shard {target}" if target >= 0 else f"balance shard {-1 - target}"


def _unreachable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the command stream is unreachable: {exc}", DOWN_RETRY_AFTER)


def _check(shard: int, beat: dict | None, max_lag: int) -> None:
    if not isinstance(beat, dict):
        raise Unavailable(f"{_name(shard)} is down (no heartbeat)", DOWN_RETRY_AFTER)
    if int(beat.get("lag", 0)) > max_lag:
        raise Unavailable(f"{_name(shard)} is overloaded (queue full)", BUSY_RETRY_AFTER)


class _SyncWaiter:
    """A caller in a thread: `lock` is held until `outcome` (the encoded reply or an Unavailable) is set."""

    __slots__ = ("lock", "outcome")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.outcome: bytes | BaseException | None = None


Waiter = _SyncWaiter | asyncio.Future


def _settle(pairs: list[tuple[asyncio.Future, bytes | BaseException]]) -> None:
    """On the callers' event loop: resolve their futures (a cancelled one is left alone)."""
    for future, outcome in pairs:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _deliver(pairs: Iterable[tuple[Waiter, bytes | BaseException]]) -> None:
    """From a bus thread: wake each sync waiter, and each event loop once for all of its waiters."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for waiter, outcome in pairs:
        if isinstance(waiter, _SyncWaiter):
            waiter.outcome = outcome
            waiter.lock.release()
        else:
            loop = waiter.get_loop()
            batch = by_loop.get(loop)
            if batch is None:
                by_loop[loop] = [(waiter, outcome)]
            else:
                batch.append((waiter, outcome))
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, batch)


class _LoopDeadlines:
    """The deadlines of one event loop's callers: one sweep every SWEEP_EVERY s while any waits,
    not a timer per call. An overdue caller still registered is taken out (a reply coming later is
    dropped) and its future fails with TimeoutError; one already taken by the reader is left to it."""

    SWEEP_EVERY = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop, pending: dict[bytes, Waiter]) -> None:
        self._loop = weakref.ref(loop)  # kept in a WeakKeyDictionary by that loop: no strong reference
        self.pending = pending
        self._heap: list[tuple[float, bytes, asyncio.Future]] = []
        self._armed = False

    def add(self, deadline: float, request_id: bytes, future: asyncio.Future) -> None:
        heappush(self._heap, (deadline, request_id, future))
        if not self._armed:
            self._armed = True
            future.get_loop().call_later(self.SWEEP_EVERY, self._sweep)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop()

    def _sweep(self) -> None:
        loop = self._loop()
        if loop is None:
            return
        heap, now, pending = self._heap, loop.time(), self.pending
        while heap and (heap[0][2].done() or heap[0][0] <= now):
            _, request_id, future = heappop(heap)
            if not future.done() and pending.pop(request_id, None) is not None:
                future.set_exception(TimeoutError())
        self._armed = bool(heap)
        if heap:
            loop.call_later(self.SWEEP_EVERY, self._sweep)


class _Link:
    """One bus's way to Redis in this process: the waiters, the send queue, the heartbeat cache, the
    sender and reply reader threads and their connections. It holds no reference to its bus, which
    closes it when closed or collected."""

    def __init__(self, bus: RedisBus) -> None:
        self.prefix = bus.prefix
        self.max_lag = bus.max_lag
        self.check_every = bus.check_every
        self.heartbeats = bus._heartbeats
        self.token = uuid.uuid4().hex
        self.reply_key = f"{bus.prefix}:reply:{self.token}".encode()
        self.name = f"{bus.prefix}:bus:{self.token}"  # its connections' CLIENT SETNAME: <name>:sender|reader
        self.pending: dict[bytes, Waiter] = {}
        self.lock = threading.Lock()  # around the in-flight check and registration
        self.queue: deque[tuple[int, bytes, bytes]] = deque()
        self.wakeup = threading.Event()
        self.closed = False
        self.dropped = 0  # replies nobody waited for any more (late, after a timeout)
        self._counter = itertools.count(1)
        self._send_time = bus.metrics.stage("bus.send")
        self._send_batch = bus.metrics.stage("bus.send_batch", unit="commands")
        options = dict(bus._client_options, max_connections=1)
        self.sender = redis.Redis.from_url(bus.redis_url, retry=Retry(NoBackoff(), 0),
                                           client_name=f"{self.name}:sender", **options)
        self._conn: Any = None  # the sender thread's connection, taken from `sender` at its first send
        self.streams: dict[int, bytes] = {}  # shard -> its stream's key
        self.spare = bus._redis  # for close()'s wake-up of the reader
        self.reader = redis.Redis.from_url(bus.redis_url, retry=Retry(NoBackoff(), 0),
                                           client_name=f"{self.name}:reader",
                                           **dict(options, socket_timeout=READ_BLOCK + bus.timeout + 1.0))
        self._threads = [threading.Thread(target=self._send_loop, name="redis-bus-sender", daemon=True),
                         threading.Thread(target=self._read_loop, name="redis-bus-reader", daemon=True)]
        for thread in self._threads:
            thread.start()

    def request_id(self) -> bytes:
        return b"%x" % next(self._counter)

    def register(self, request_id: bytes, waiter: Waiter, max_in_flight: int) -> None:
        """Admit a caller under its request id, unless `max_in_flight` callers already wait."""
        with self.lock:
            if self.closed:
                raise Unavailable("the command bus is closed", DOWN_RETRY_AFTER)
            if len(self.pending) >= max_in_flight:
                raise Unavailable(f"{len(self.pending)} commands already in flight", BUSY_RETRY_AFTER)
            self.pending[request_id] = waiter

    def send(self, items: Iterable[tuple[int, bytes, bytes]]) -> None:
        self.queue.extend(items)  # one C call: the sender sees all of them or none
        if not self.wakeup.is_set():
            self.wakeup.set()

    def close(self) -> None:
        """Stop both threads; every caller still waiting gets Unavailable."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            waiting = list(self.pending.items())
            self.pending.clear()
        self.wakeup.set()
        _deliver((waiter, Unavailable("the command bus is closed", DOWN_RETRY_AFTER))
                 for _, waiter in waiting)
        sender, reader = self._threads
        current = threading.current_thread()
        if sender is not current:
            sender.join(self.sender.get_connection_kwargs()["socket_timeout"] + 1.0)
        with contextlib.suppress(redis.RedisError):  # wake the reader from its BLMPOP (an empty item)
            pipe = self.spare.pipeline(transaction=False)
            pipe.rpush(self.reply_key, b"")
            pipe.expire(self.reply_key, 5)
            pipe.execute()
        if reader is not current:
            reader.join(READ_BLOCK + 1.0)
        self.sender.close()
        self.reader.close()

    # ---- the sender thread --------------------------------------------------------------------

    def _send_loop(self) -> None:
        queue, wakeup = self.queue, self.wakeup
        while not self.closed:
            if not queue:
                wakeup.clear()
                if not queue:  # checked again after the clear: a send in between is not slept through
                    wakeup.wait(1.0)
                continue
            items = [queue.popleft() for _ in range(min(len(queue), SEND_COUNT))]
            try:
                self._send(items)
            except Exception as exc:  # a bug must not silence the bus: fail this round, go on
                log.exception("redis bus: sending failed")
                self._fail_unreachable([request_id for _, _, request_id in items], exc)

    def _connection(self) -> Any:
        """The sender's one connection (redis-py reconnects it on the next send after an error)."""
        if self._conn is None:
            self._conn = self.sender.connection_pool.get_connection()
        return self._conn

    def _send(self, items: list[tuple[int, bytes, bytes]]) -> None:
        started = _perf()
        pending = self.pending
        items = [item for item in items if item[2] in pending]  # callers that gave up: not sent
        if not items:
            return
        shards = {shard for shard, _, _ in items}
        beats: dict[int, dict | None] = {}
        stale: list[int] = []
        now = time.monotonic()
        for shard in shards:  # a present heartbeat is trusted for check_every seconds
            entry = self.heartbeats.get(shard)
            if entry is not None and entry[1] is not None and now - entry[0] <= self.check_every:
                beats[shard] = entry[1]
            else:
                stale.append(shard)
        if stale:
            try:
                conn = self._connection()
                conn.send_command("MGET", *(_heartbeat_of(self.prefix, shard) for shard in stale))
                raws = conn.read_response()
            except redis.RedisError as exc:
                for shard in shards:
                    self.heartbeats.pop(shard, None)
                self._fail_unreachable([request_id for _, _, request_id in items], exc)
                return
            for shard, raw in zip(stale, raws, strict=True):
                beats[shard] = remember(self.heartbeats, shard, raw)
        refused: dict[int, Unavailable] = {}
        for shard, beat in beats.items():
            try:
                _check(shard, beat, self.max_lag)
            except Unavailable as exc:
                refused[shard] = exc
        streams = self.streams
        reply_key = self.reply_key
        commands: list[tuple] = []
        sent: list[tuple[bytes, int]] = []
        failed: list[tuple[bytes, Unavailable]] = []
        for shard, payload, request_id in items:
            refusal = refused.get(shard)
            if refusal is not None:
                failed.append((request_id, Unavailable(str(refusal), refusal.retry_after)))
                continue
            stream = streams.get(shard)
            if stream is None:
                stream = streams[shard] = _stream_of(self.prefix, shard).encode()
            fields = _entry(shard, payload, reply_key, request_id)
            commands.append((b"XADD", stream, b"*", *itertools.chain.from_iterable(fields.items())))
            sent.append((request_id, shard))
        if sent:
            # One write, one round trip. Several XADDs go in a MULTI/EXEC: Redis applies them at once,
            # so the shard's runner, blocked in XREAD, wakes to all of them rather than to the first.
            # Nothing is sent again: after a connection error the commands without an answer may or
            # may not be in the stream, and their callers are told so.
            results: list[Any] = []
            atomic = len(commands) > 1
            if atomic:
                commands = [(b"MULTI",), *commands, (b"EXEC",)]
            try:
                conn = self._connection()
                if _pack_command is not None:
                    packed = b"".join([_pack_command(command) for command in commands])
                else:
                    packed = b"".join([b"".join(conn.pack_command(*command)) for command in commands])
                conn.send_packed_command([packed])
                read = conn.read_response
                if atomic:
                    results = self._read_transaction(read, len(sent))
                else:
                    for _ in commands:
                        try:
                            results.append(read())
                        except redis.ResponseError as exc:  # e.g. Redis out of memory
                            results.append(exc)
            except redis.RedisError as exc:
                for shard in shards:
                    self.heartbeats.pop(shard, None)
                failed.extend((request_id, _unreachable(exc)) for request_id, _ in sent[len(results):])
            for (request_id, shard), result in zip(sent, results, strict=False):
                if isinstance(result, Exception):
                    failed.append((request_id, Unavailable(f"{_name(shard)} refused the command: "
                                                           f"{result}", DOWN_RETRY_AFTER)))
            self._send_time.record(_perf() - started)
            self._send_batch.record(len(sent))
        if failed:
            outcomes = dict(failed)
            self._fail(list(outcomes), outcomes.__getitem__)

    @staticmethod
    def _read_transaction(read: Callable[[], Any], count: int) -> list[Any]:
        """The answers to MULTI, `count` XADDs and EXEC: per XADD its entry id or its error."""
        read()  # MULTI: OK
        refused: redis.ResponseError | None = None
        for _ in range(count):
            try:
                read()  # QUEUED
            except redis.ResponseError as exc:  # e.g. out of memory: EXEC applies none of them
                refused = refused or exc
        try:
            results = read()
        except redis.ResponseError as exc:  # EXECABORT: nothing was written
            return [refused or exc] * count
        if not isinstance(results, list) or len(results) != count:
            return [redis.ResponseError("the transaction was discarded")] * count
        return results

    def _fail_unreachable(self, request_ids: list[bytes], error: BaseException) -> None:
        self._fail(request_ids, lambda _: _unreachable(error))

    def _fail(self, request_ids: list[bytes], outcome: Callable[[bytes], BaseException]) -> None:
        """Answer these callers (those still waiting) with their failure."""
        pending = self.pending
        pairs = []
        for request_id in request_ids:
            waiter = pending.pop(request_id, None)
            if waiter is not None:
                pairs.append((waiter, outcome(request_id)))
        _deliver(pairs)

    # ---- the reply reader thread ----------------------------------------------------------------

    def _read_loop(self) -> None:
        delay = 0.05
        failing = False
        while not self.closed:
            try:
                got = self.reader.execute_command("BLMPOP", READ_BLOCK, 1, self.reply_key, "LEFT",
                                                  "COUNT", READ_COUNT)
            except redis.RedisError as exc:
                if self.closed:
                    return
                if not failing:
                    log.warning("redis bus: the reply reader cannot read %s (%s); retrying",
                                self.reply_key.decode(), exc)
                    failing = True
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if failing:
                log.info("redis bus: the reply reader reads %s again", self.reply_key.decode())
                failing, delay = False, 0.05
            if got:
                self._dispatch(got[1])

    def _dispatch(self, items: list[bytes]) -> None:
        pending = self.pending
        pairs = []
        for data in items:
            if not data:
                continue  # close()'s wake-up
            try:
                request_id, encoded = unaddress(data)
            except CodecError:
                log.warning("redis bus: dropped a malformed item on %s", self.reply_key.decode())
                continue
            waiter = pending.pop(request_id, None)
            if waiter is None:
                self.dropped += 1  # its caller timed out (or went away): nobody to tell
            else:
                pairs.append((waiter, encoded))
        _deliver(pairs)


def remember(heartbeats: dict[int, tuple[float, dict | None]], shard: int, raw: bytes | str | None
             ) -> dict | None:
    beat = None
    if raw is not None:
        try:
            beat = json.loads(raw)
        except ValueError:
            beat = {}
    heartbeats[shard] = (time.monotonic(), beat)
    return beat


_BUSES: weakref.WeakSet[RedisBus] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child has none of its parent's threads: its buses start a link of their own."""
    for bus in list(_BUSES):
        bus._link = None
        bus._link_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class RedisBus:
    def __init__(
        self,
        redis_url: str,
        shard_of: Callable[[str], int] | Mapping[str, int],
        timeout: float = 5.0,
        *,
        shards: Iterable[int] | None = None,
        default_shard: int = 0,
        prefix: str = "exchange",
        max_lag: int = 10_000,
        max_in_flight: int = 256,
        check_every: float = 0.5,
        metrics: Registry = METRICS,
    ) -> None:
        """`shard_of` maps a symbol to its shard (a callable, or a dict; unknown symbols go to
        `default_shard`, whose matcher rejects them). `timeout` is the default and the longest wait
        for a reply; every Redis call is bounded by it plus a second. Beyond `max_in_flight` callers
        waiting on this bus, `Unavailable` at once. The sender and reader threads start with the
        first command."""
        if callable(shard_of):
            self._shard_of = shard_of
            self.shards = sorted(set(shards if shards is not None else [default_shard]))
        else:
            mapping = dict(shard_of)
            self._shard_of = lambda symbol: mapping.get(symbol, default_shard)
            self.shards = sorted(set(shards if shards is not None else [*mapping.values(), default_shard]))
        self.redis_url = redis_url
        self.timeout = timeout
        self.default_shard = default_shard
        self.prefix = prefix
        self.max_lag = max_lag
        self.max_in_flight = max_in_flight
        self.check_every = check_every
        self.metrics = metrics
        self._client_options: dict[str, Any] = {
            "socket_timeout": timeout + 1.0,
            "socket_connect_timeout": min(timeout, 1.0),
            "decode_responses": False,
        }
        # health() and heartbeats() only: commands and replies go through the link's two connections
        self._redis = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), max_connections=32,
                                           **self._client_options)
        self._heartbeats: dict[int, tuple[float, dict | None]] = {}  # shard -> (read at, heartbeat)
        self._link: _Link | None = None
        self._link_lock = threading.Lock()
        self._names: tuple[str, str] | None = None  # the link's reply key and client name
        self._closed = False
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopDeadlines] = (
            weakref.WeakKeyDictionary()
        )
        self._last_loop: _LoopDeadlines | None = None  # the last caller's loop's (usually the only one)
        self._ack_sync = metrics.stage("bus.ack_sync")
        self._ack_async = metrics.stage("bus.ack_async")
        _BUSES.add(self)

    @classmethod
    def from_settings(cls) -> RedisBus:
        """Built from Django settings (each read from the environment by exchange/env.py): REDIS_URL,
        MATCHER_SHARDS, MATCHER_TIMEOUT, MATCHER_STREAM_PREFIX, MATCHER_MAX_LAG, MATCHER_MAX_IN_FLIGHT."""
        from django.conf import settings

        return cls(
            str(settings.REDIS_URL),
            symbol_shards(settings.MATCHER_SHARDS),
            settings.MATCHER_TIMEOUT,
            shards=[int(s) for s in settings.MATCHER_SHARDS],
            default_shard=min((int(s) for s in settings.MATCHER_SHARDS), default=0),
            prefix=settings.MATCHER_STREAM_PREFIX,
            max_lag=settings.MATCHER_MAX_LAG,
            max_in_flight=settings.MATCHER_MAX_IN_FLIGHT,
        )

    def close(self) -> None:
        """Stop the sender and the reply reader (callers still waiting get Unavailable) and close the
        connections; later calls are refused."""
        self._closed = True
        with self._link_lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()
        self._redis.close()

    async def aclose(self) -> None:
        """Forget this event loop (the bus keeps no connection of its own per loop)."""
        loop = asyncio.get_running_loop()
        self._loops.pop(loop, None)
        if self._last_loop is not None and self._last_loop.loop is loop:
            self._last_loop = None

    @property
    def reply_key(self) -> str | None:
        """This bus's reply list (None before the first command; a forked child gets its own)."""
        return self._names[0] if self._names else None

    @property
    def client_name(self) -> str | None:
        """What its connections' client names start with (`<name>:sender`, `<name>:reader`)."""
        return self._names[1] if self._names else None

    @property
    def dropped_replies(self) -> int:
        """Replies that came after their caller had given up, and were dropped."""
        link = self._link
        return link.dropped if link is not None else 0

    # ---- CommandBus -------------------------------------------------------------------------

    def shard_for(self, cmd: WorkerCommand, shard: int | None = None) -> int:
        """The shard that owns the command's symbol (a held order's, or a cancel or amendment that names
        no symbol: the shard in its order id)."""
        if shard is not None:
            return shard
        if isinstance(cmd, CancelOrder | AmendOrder) and not cmd.symbol:
            return cmd.order_id // ORDER_ID_STRIDE  # routed by its order id: the shard that made it
        if type(cmd) in _ORDER_COMMANDS:
            return self._shard_of(cmd.symbol)  # type: ignore[union-attr]
        if isinstance(cmd, ReleaseHeld | RejectHeld):
            return cmd.order_id // ORDER_ID_STRIDE
        if isinstance(cmd, SetInstrumentRisk):
            return self._shard_of(cmd.config.symbol)
        if isinstance(cmd, SetUserLimit):
            return self._shard_of(cmd.limit.symbol)
        if isinstance(cmd, AdjustCash):
            return self.default_shard  # deposits and withdrawals: the default shard's balance (RISK.md)
        if isinstance(cmd, AdvanceTime | SetDefaultCash | Fence):
            raise ValueError(f"{type(cmd).__name__} has no symbol: pass shard=")
        if isinstance(cmd, FundedOrder):
            return self._shard_of(cmd.order.symbol)
        if isinstance(cmd, FundedAmend):
            return cmd.amend.order_id // ORDER_ID_STRIDE
        return self._shard_of(cmd.symbol)

    def submit(self, cmd: WorkerCommand, timeout: float | None = None, *, shard: int | None = None) -> Reply:
        return self._submit(self.shard_for(cmd, shard), encode_command(cmd), timeout)

    def submit_balance(self, cmd: BalanceStreamCommand, balance_shard: int, timeout: float | None = None
                       ) -> Reply:
        """A command for a balance shard (issue 13: a Place, a PlaceAmend, an Adjust ...), answered by
        whichever runner answers it (a funded order: its matching shard)."""
        return self._submit(balance_target(balance_shard), encode_balance_command(cmd), timeout)

    def _submit(self, shard: int, payload: bytes, timeout: float | None) -> Reply:
        started = _perf()
        wait = self._wait(timeout)
        deadline = time.monotonic() + wait
        self._precheck(shard)
        link = self._started()
        waiter = _SyncWaiter()
        request_id = link.request_id()
        link.register(request_id, waiter, self.max_in_flight)
        link.send(((shard, payload, request_id),))
        if not waiter.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            if link.pending.pop(request_id, None) is not None:
                raise self._no_answer(shard, wait)
            self._taken(waiter, shard)
        outcome = waiter.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None
        reply = decode_reply(outcome)
        self._ack_sync.record(_perf() - started)
        return reply

    def submit_many(self, cmds: Sequence[WorkerCommand], timeout: float | None = None
                    ) -> list[Reply | Unavailable]:
        """Queue every command at once (so they go out in one pipeline, in order within each shard),
        then wait for all their replies until one deadline; per command its Reply or `Unavailable` (a
        shard down or overloaded refuses its own commands only). Raises Unavailable at once, sending
        nothing, when the bus is already at `max_in_flight`. As with `submit`, a command that timed
        out, or was sent when Redis failed, may still be applied."""
        return self._submit_many([self.shard_for(cmd) for cmd in cmds], [encode_command(cmd) for cmd in cmds],
                                 timeout)

    def submit_balance_many(self, cmds: Sequence[tuple[BalanceStreamCommand, int]],
                            timeout: float | None = None) -> list[Reply | Unavailable]:
        """`submit_many` for (command, balance shard) pairs: one pipeline, per command its Reply or
        Unavailable."""
        return self._submit_many([balance_target(shard) for _, shard in cmds],
                                 [encode_balance_command(cmd) for cmd, _ in cmds], timeout)

    def _submit_many(self, shards: list[int], payloads: list[bytes], timeout: float | None
                     ) -> list[Reply | Unavailable]:
        started = _perf()
        wait = self._wait(timeout)
        deadline = time.monotonic() + wait
        if not payloads:
            return []
        link = self._started()
        waiters = [_SyncWaiter() for _ in payloads]
        request_ids = [link.request_id() for _ in payloads]
        with link.lock:
            if link.closed:
                raise Unavailable("the command bus is closed", DOWN_RETRY_AFTER)
            if len(link.pending) >= self.max_in_flight:
                raise Unavailable(f"{len(link.pending)} commands already in flight", BUSY_RETRY_AFTER)
            link.pending.update(zip(request_ids, waiters, strict=True))
        link.send(zip(shards, payloads, request_ids, strict=True))
        out: list[Reply | Unavailable] = []
        acks: list[int] = []
        for shard, request_id, waiter in zip(shards, request_ids, waiters, strict=True):
            if not waiter.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                if link.pending.pop(request_id, None) is not None:
                    out.append(self._no_answer(shard, wait))
                    continue
                self._taken(waiter, shard)
            outcome = waiter.outcome
            if isinstance(outcome, Unavailable):
                out.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                assert outcome is not None
                out.append(decode_reply(outcome))
                acks.append(_perf() - started)
        self._ack_sync.record_many(acks)
        return out

    async def submit_async(
        self, cmd: WorkerCommand, timeout: float | None = None, *, shard: int | None = None
    ) -> Reply:
        started = _perf()
        shard = self.shard_for(cmd, shard)
        wait = self._wait(timeout)
        payload = encode_command(cmd)
        self._precheck(shard)
        link = self._started()
        loop = asyncio.get_running_loop()
        deadlines = self._last_loop
        if deadlines is None or deadlines.loop is not loop or deadlines.pending is not link.pending:
            deadlines = self._loops.get(loop)
            if deadlines is None or deadlines.pending is not link.pending:
                deadlines = self._loops[loop] = _LoopDeadlines(loop, link.pending)
            self._last_loop = deadlines
        future = loop.create_future()
        request_id = link.request_id()
        link.register(request_id, future, self.max_in_flight)
        link.send(((shard, payload, request_id),))
        deadlines.add(loop.time() + wait, request_id, future)
        try:
            encoded = await future
        except TimeoutError:
            raise self._no_answer(shard, wait) from None
        finally:
            link.pending.pop(request_id, None)  # a cancelled caller leaves; no-op once answered
        reply = decode_reply(encoded)
        self._ack_async.record(_perf() - started)
        return reply

    def heartbeats(self, targets: Sequence[int] | None = None) -> dict[int, dict | None]:
        """Each shard's heartbeat as its runner last published it (None: down); raises redis.RedisError.
        `targets`: others than the matching shards (balance shards: `balance_target`)."""
        targets = self.shards if targets is None else list(targets)
        keys = [_heartbeat_of(self.prefix, target) for target in targets]
        raws = self._redis.mget(keys) if keys else []
        return {target: remember(self._heartbeats, target, raw)
                for target, raw in zip(targets, raws, strict=True)}

    def health(self, balance_shards: int = 0) -> dict:
        """Per matching shard: its runner's heartbeat (seq, queue depth, age) or down; overall ok only if
        all are. With `balance_shards`, the same for those under "balance_shards"."""
        report = self._health(self.shards, str)
        if balance_shards:
            balances = self._health([balance_target(b) for b in range(balance_shards)],
                                    lambda target: str(-1 - target))
            report["balance_shards"] = balances["shards"]
            if balances["status"] != "ok":
                report["status"] = "down"
        return report

    def _health(self, targets: list[int], name: Callable[[int], str]) -> dict:
        try:
            beats = self.heartbeats(targets)
        except redis.RedisError as exc:
            return {"status": "down", "mode": "redis", "error": f"Redis unreachable: {exc}",
                    "shards": {name(target): {"status": "unknown"} for target in targets}}
        shards: dict[str, dict] = {}
        for target, beat in beats.items():
            if beat is None:
                shards[name(target)] = {"status": "down"}
                continue
            lag = int(beat.get("lag", 0))
            shards[name(target)] = {
                "status": "ok" if lag <= self.max_lag else "overloaded",
                "seq": beat.get("seq"),
                "queue_depth": lag,
                "age": round(max(0.0, time.time() - float(beat.get("time", time.time()))), 3),
            }
        healthy = all(s["status"] == "ok" for s in shards.values())
        return {
            "status": "ok" if healthy else "down",
            "mode": "redis",
            "queue_depth": sum(s.get("queue_depth", 0) for s in shards.values()),
            "shards": shards,
        }

    # ---- internals --------------------------------------------------------------------------

    def _no_answer(self, shard: int, wait: float) -> Unavailable:
        """A caller's deadline passed: the heartbeat is looked at again on the next call."""
        self._heartbeats.pop(shard, None)
        return Unavailable(f"{_name(shard)} did not answer within {wait:g}s", BUSY_RETRY_AFTER)

    def _wait(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else min(timeout, self.timeout)

    def _started(self) -> _Link:
        link = self._link
        if link is None:
            with self._link_lock:
                if self._closed:
                    raise Unavailable("the command bus is closed", DOWN_RETRY_AFTER)
                link = self._link
                if link is None:
                    link = self._link = _Link(self)
                    self._names = (link.reply_key.decode(), link.name)
                    weakref.finalize(self, link.close).atexit = False  # daemon threads end with the process
        return link

    @staticmethod
    def _taken(waiter: _SyncWaiter, shard: int) -> None:
        """The caller's deadline passed just as a bus thread took its waiter: its outcome is being set."""
        if not waiter.lock.acquire(timeout=5.0):  # never hang, even if that thread died in between
            raise Unavailable(f"{_name(shard)} did not answer in time", BUSY_RETRY_AFTER)

    def _precheck(self, shard: int) -> None:
        """Refuse at once, queuing nothing, a shard whose fresh heartbeat says it is overloaded (a
        missing or stale one is left to the sender, which reads it before sending)."""
        entry = self._heartbeats.get(shard)
        if entry is not None and entry[1] is not None and time.monotonic() - entry[0] <= self.check_every:
            _check(shard, entry[1], self.max_lag)
