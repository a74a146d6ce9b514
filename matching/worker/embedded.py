"""The embedded default: one matcher thread inside the server process, fed by a bounded queue.

The thread drains whatever is queued (up to `max_batch`) into one `Matcher.process` call, so
one fsync covers the whole batch (group commit) and the queue never waits on a disk flush per
order. Async callers (the web tier) are answered with one wake-up of their event loop per batch,
not one per order; sync callers through a `concurrent.futures.Future`. Listeners (the projector,
the market-data cache) see every batch after its callers have been answered.

Metrics (`matching.worker.metrics`, the registry passed in, METRICS by default), recorded per batch
on the matcher thread except the callers' own acknowledgement times:

    matcher.queue_wait      per command: enqueued -> its batch starts (the enqueue time travels with it)
    matcher.process         per batch: Matcher.process (sequence, journal, apply, snapshot)
    matcher.journal_write   per batch: the journal's write of the batch record
    matcher.journal_fsync   per batch: its fsync (on the sync thread while a large batch is applied)
    matcher.listeners       per batch: the projector's and the market-data cache's hand-off
    matcher.batch_size      per batch: commands in it (unit "commands")
    matcher.commands        throughput: commands processed
    bus.ack_sync            per command: submit() -> its reply, in the caller's thread
    bus.ack_async           per command: submit_async() -> its reply, in the caller's event loop

The journal reports its two stages itself (`Journal.on_write`, `on_sync`), so the compiled matcher
stays free of metrics code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from heapq import heappop, heappush

from matching.engine import AdvanceTime, Command
from matching.worker.bus import Unavailable
from matching.worker.codec import WorkerCommand
from matching.worker.matcher import Matcher, Reply
from matching.worker.metrics import METRICS, Registry

log = logging.getLogger(__name__)

Listener = Callable[[list[Reply]], object]  # what it returns is ignored
_STOP = object()
_now = time.perf_counter_ns


class _LoopWaiters:
    """The asyncio callers waiting on one event loop, and their timeouts.

    One sweep per loop, not a timer per command: a timer handle per order cost as much as the
    rest of the hand-off. Deadlines sit in a heap; the sweep runs every `SWEEP_EVERY` seconds while
    anything waits, drops the answered entries from the front and fails the overdue ones."""

    SWEEP_EVERY = 0.1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int, asyncio.Future]] = []
        self._count = 0
        self._armed = False

    def add(self, timeout: float) -> asyncio.Future:
        future = self.loop.create_future()
        self._count += 1
        heappush(self._heap, (self.loop.time() + timeout, self._count, future))
        if not self._armed:
            self._armed = True
            self.loop.call_later(self.SWEEP_EVERY, self._sweep)
        return future

    def _sweep(self) -> None:
        heap, now = self._heap, self.loop.time()
        while heap and (heap[0][2].done() or heap[0][0] <= now):
            future = heappop(heap)[2]
            if not future.done():
                future.set_exception(Unavailable("the matcher did not answer in time"))
        self._armed = bool(heap)
        if heap:
            self.loop.call_later(self.SWEEP_EVERY, self._sweep)


def _settle_all(pairs: list[tuple[asyncio.Future, Reply | BaseException]]) -> None:
    for future, outcome in pairs:
        if future.done():
            continue  # timed out already; the command was still applied (retry is idempotent)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class EmbeddedBus:
    def __init__(self, matcher: Matcher, *, max_queue: int = 10_000, max_batch: int = 1_000,
                 tick: float = 0.5, metrics: Registry = METRICS) -> None:
        self.matcher = matcher
        self.max_batch = max_batch
        self.tick = tick  # when idle this long, let time pass in the books (DAY/GTD expiry)
        self.failure: BaseException | None = None
        self.max_queue = max_queue
        # A deque and an Event rather than queue.Queue: appends are atomic, and the matcher thread
        # is woken only when it sleeps, so a put costs no lock at all under load.
        self._items: deque = deque()
        self._wakeup = threading.Event()
        self._running = False
        self._waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaiters] = (
            weakref.WeakKeyDictionary()
        )
        self._listeners: list[Listener] = []
        self._thread = threading.Thread(target=self._run, name=f"matcher-{matcher.shard}", daemon=True)
        self.metrics = metrics
        self._queue_wait = metrics.stage("matcher.queue_wait")
        self._process_time = metrics.stage("matcher.process")
        self._listener_time = metrics.stage("matcher.listeners")
        self._batch_sizes = metrics.stage("matcher.batch_size", unit="commands")
        self._commands = metrics.throughput("matcher.commands")
        self._ack_sync = metrics.stage("bus.ack_sync")
        self._ack_async = metrics.stage("bus.ack_async")
        if matcher.journal is not None:
            matcher.journal.on_write = metrics.stage("matcher.journal_write").record
            matcher.journal.on_sync = metrics.stage("matcher.journal_fsync").record

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._items.append(_STOP)
        self._wakeup.set()
        self._thread.join(timeout)

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(replies)` on the matcher thread after each batch; keep it quick."""
        self._listeners.append(listener)

    # ---- CommandBus -------------------------------------------------------------------------

    def submit(self, cmd: WorkerCommand, timeout: float) -> Reply:
        started = _now()
        future = self.enqueue(cmd)
        try:
            reply = future.result(timeout)
        except TimeoutError:
            raise Unavailable("the matcher did not answer in time") from None
        self._ack_sync.record(_now() - started)
        return reply

    def submit_many(self, cmds: Sequence[WorkerCommand], timeout: float) -> list[Reply | Unavailable]:
        """Queue every command at once (so they reach the matcher in one batch, in order, unless the
        batch limit splits them), then wait for all until one deadline; per command its Reply or
        `Unavailable`. Raises Unavailable at once, queuing nothing, if they cannot all be queued."""
        started = _now()
        futures = self.enqueue_many(cmds)
        deadline = time.monotonic() + timeout
        out: list[Reply | Unavailable] = []
        acks: list[int] = []
        for future in futures:
            try:
                out.append(future.result(max(0.0, deadline - time.monotonic())))
                acks.append(_now() - started)
            except TimeoutError:
                out.append(Unavailable("the matcher did not answer in time"))
            except Unavailable as exc:
                out.append(exc)
        self._ack_sync.record_many(acks)
        return out

    async def submit_async(self, cmd: WorkerCommand, timeout: float) -> Reply:
        loop = asyncio.get_running_loop()
        waiters = self._waiters.get(loop)
        if waiters is None:
            waiters = self._waiters[loop] = _LoopWaiters(loop)
        self._check_open()
        started = _now()
        future = waiters.add(timeout)
        self._put(cmd, future)
        # A caller that gives up (timeout, disconnect) only cancels its own future; the command stays
        # with the matcher, applied or not, and a retry with the same client_order_id is safe.
        reply = await future
        self._ack_async.record(_now() - started)
        return reply

    def enqueue(self, cmd: WorkerCommand) -> Future:
        """Queue a command; its Future resolves to the Reply. Raises Unavailable at once if it cannot."""
        self._check_open()
        future: Future = Future()
        self._put(cmd, future)
        return future

    def enqueue_many(self, cmds: Sequence[WorkerCommand]) -> list[Future]:
        """Queue commands together (one append of them all); their Futures, in order. Raises
        Unavailable at once, queuing nothing, if the matcher is down or the queue cannot take them all."""
        self._check_open()
        if len(self._items) + len(cmds) > self.max_queue:
            raise Unavailable("the matcher queue is full")
        now = _now()
        items: list[tuple[WorkerCommand, Future[Reply], int]] = [(cmd, Future(), now) for cmd in cmds]
        self._items.extend(items)  # one C call under the GIL: the matcher thread sees all or none
        if not self._wakeup.is_set():
            self._wakeup.set()
        return [future for _, future, _ in items]

    def health(self) -> dict:
        return {
            "status": "ok" if self._running and self.failure is None else "down",
            "mode": "embedded",
            "seq": self.matcher.seq,
            "queue_depth": len(self._items),
            **({"error": repr(self.failure)} if self.failure is not None else {}),
        }

    # ---- the matcher thread -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.failure is not None or not self._running:
            raise Unavailable("the matcher is not running", retry_after=5.0)

    def _put(self, cmd: WorkerCommand, waiter: Future | asyncio.Future) -> None:
        if len(self._items) >= self.max_queue:
            raise Unavailable("the matcher queue is full")
        self._items.append((cmd, waiter, _now()))
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _take_batch(self) -> tuple[list[tuple[Command, Future | asyncio.Future, int]], bool]:
        items = self._items
        if not items:
            self._wakeup.clear()
            if not items:  # checked again after the clear, so a put in between is not slept through
                self._wakeup.wait(self.tick)
        batch: list = []
        while items and len(batch) < self.max_batch:
            item = items.popleft()
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _answer(self, waiters: list[Future | asyncio.Future], outcomes: list[Reply] | BaseException) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = defaultdict(list)
        for i, waiter in enumerate(waiters):
            outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[i]
            if isinstance(waiter, asyncio.Future):
                by_loop[waiter.get_loop()].append((waiter, outcome))
            elif isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        for loop, pairs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that caller's loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle_all, pairs)

    def _fail_waiting(self, batch: list) -> None:
        """Answer the failed batch and everything still queued, rather than let callers time out."""
        while self._items:
            item = self._items.popleft()
            if item is not _STOP:
                batch.append(item)
        self._answer([waiter for _, waiter, _ in batch], Unavailable("the matcher failed", retry_after=5.0))

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._running = False

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._take_batch()
            if not batch:
                if not stopping and self.matcher.expiry_due():
                    # Time passes only through the log: an AdvanceTime is journaled like any command,
                    # so replay expires the same orders at the same point.
                    batch = [(AdvanceTime(0), Future(), _now())]
                else:
                    continue
            started = _now()
            self._queue_wait.record_many([started - enqueued for _, _, enqueued in batch])
            try:
                replies = self.matcher.process([cmd for cmd, _, _ in batch])
            except BaseException as exc:  # a failed journal write: stop taking commands
                log.exception("matcher failed; no further commands are accepted")
                self.failure = exc
                self._fail_waiting(batch)
                return
            # Recorded before the callers are answered (about a microsecond a batch), so a caller that
            # has its reply sees its batch counted; only the listeners' time comes after.
            self._process_time.record(_now() - started)
            self._batch_sizes.record(len(batch))
            self._commands.add(len(batch))
            self._answer([waiter for _, waiter, _ in batch], replies)
            answered = _now()
            for listener in self._listeners:
                try:
                    listener(replies)
                except Exception:
                    log.exception("matcher listener %r failed", listener)
            self._listener_time.record(_now() - answered)
