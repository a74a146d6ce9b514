"""The embedded default: one matcher thread inside the server process, fed by a bounded queue.

The thread drains whatever is queued (up to `max_batch`) into one `Matcher.process` call, so
one fsync covers the whole batch (group commit) and the queue never waits on a disk flush per
order. Async callers (the web tier) are answered with one wake-up of their event loop per batch,
not one per order; sync callers through a `concurrent.futures.Future`. Listeners (the projector,
the market-data cache) see every batch after its callers have been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future
from heapq import heappop, heappush

from matching.engine import AdvanceTime, Command
from matching.worker.bus import Unavailable
from matching.worker.codec import WorkerCommand
from matching.worker.matcher import Matcher, Reply

log = logging.getLogger(__name__)

Listener = Callable[[list[Reply]], None]
_STOP = object()


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
                 tick: float = 0.5) -> None:
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
        future = self.enqueue(cmd)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise Unavailable("the matcher did not answer in time") from None

    async def submit_async(self, cmd: WorkerCommand, timeout: float) -> Reply:
        loop = asyncio.get_running_loop()
        waiters = self._waiters.get(loop)
        if waiters is None:
            waiters = self._waiters[loop] = _LoopWaiters(loop)
        self._check_open()
        future = waiters.add(timeout)
        self._put(cmd, future)
        # A caller that gives up (timeout, disconnect) only cancels its own future; the command stays
        # with the matcher, applied or not, and a retry with the same client_order_id is safe.
        return await future

    def enqueue(self, cmd: WorkerCommand) -> Future:
        """Queue a command; its Future resolves to the Reply. Raises Unavailable at once if it cannot."""
        self._check_open()
        future: Future = Future()
        self._put(cmd, future)
        return future

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
        self._items.append((cmd, waiter))
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _take_batch(self) -> tuple[list[tuple[Command, Future | asyncio.Future]], bool]:
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
        self._answer([waiter for _, waiter in batch], Unavailable("the matcher failed", retry_after=5.0))

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
                    batch = [(AdvanceTime(0), Future())]
                else:
                    continue
            try:
                replies = self.matcher.process([cmd for cmd, _ in batch])
            except BaseException as exc:  # a failed journal write: stop taking commands
                log.exception("matcher failed; no further commands are accepted")
                self.failure = exc
                self._fail_waiting(batch)
                return
            self._answer([waiter for _, waiter in batch], replies)
            for listener in self._listeners:
                try:
                    listener(replies)
                except Exception:
                    log.exception("matcher listener %r failed", listener)
