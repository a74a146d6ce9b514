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
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future

from matching.engine import AdvanceTime, Command
from matching.worker.bus import Unavailable
from matching.worker.matcher import Matcher, Reply

log = logging.getLogger(__name__)

Listener = Callable[[list[Reply]], None]
_STOP = object()


class _AsyncWaiter:
    """An asyncio caller waiting on its loop; resolved from the matcher thread in one batch call."""

    __slots__ = ("future", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.timer = loop.call_later(timeout, self._expire)

    def _expire(self) -> None:
        if not self.future.done():
            self.future.set_exception(Unavailable("the matcher did not answer in time"))

    def settle(self, outcome: Reply | BaseException) -> None:  # on the waiter's own loop
        self.timer.cancel()
        if self.future.done():
            return  # timed out already; the command was still applied (retry is idempotent)
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


def _settle_all(pairs: list[tuple[_AsyncWaiter, Reply | BaseException]]) -> None:
    for waiter, outcome in pairs:
        waiter.settle(outcome)


class EmbeddedBus:
    def __init__(self, matcher: Matcher, *, max_queue: int = 10_000, max_batch: int = 1_000,
                 tick: float = 0.5) -> None:
        self.matcher = matcher
        self.max_batch = max_batch
        self.tick = tick  # when idle this long, let time pass in the books (DAY/GTD expiry)
        self.failure: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._listeners: list[Listener] = []
        self._thread = threading.Thread(target=self._run, name=f"matcher-{matcher.shard}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(replies)` on the matcher thread after each batch; keep it quick."""
        self._listeners.append(listener)

    # ---- CommandBus -------------------------------------------------------------------------

    def submit(self, cmd: Command, timeout: float) -> Reply:
        future = self.enqueue(cmd)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise Unavailable("the matcher did not answer in time") from None

    async def submit_async(self, cmd: Command, timeout: float) -> Reply:
        waiter = _AsyncWaiter(asyncio.get_running_loop(), timeout)
        self._put(cmd, waiter)
        # A caller that gives up (timeout, disconnect) only cancels its own future; the command stays
        # with the matcher, applied or not, and a retry with the same client_order_id is safe.
        return await waiter.future

    def enqueue(self, cmd: Command) -> Future:
        """Queue a command; its Future resolves to the Reply. Raises Unavailable at once if it cannot."""
        future: Future = Future()
        self._put(cmd, future)
        return future

    def health(self) -> dict:
        return {
            "status": "ok" if self._thread.is_alive() and self.failure is None else "down",
            "mode": "embedded",
            "seq": self.matcher.seq,
            "queue_depth": self._queue.qsize(),
            **({"error": repr(self.failure)} if self.failure is not None else {}),
        }

    # ---- the matcher thread -------------------------------------------------------------------

    def _put(self, cmd: Command, waiter: Future | _AsyncWaiter) -> None:
        if self.failure is not None or not self._thread.is_alive():
            raise Unavailable("the matcher is not running", retry_after=5.0)
        try:
            self._queue.put_nowait((cmd, waiter))
        except queue.Full:
            raise Unavailable("the matcher queue is full") from None

    def _take_batch(self) -> tuple[list[tuple[Command, Future | _AsyncWaiter]], bool]:
        try:
            item = self._queue.get(timeout=self.tick)
        except queue.Empty:
            return [], False
        if item is _STOP:
            return [], True
        batch = [item]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _answer(self, waiters: list[Future | _AsyncWaiter], outcomes: list[Reply] | BaseException) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = defaultdict(list)
        for i, waiter in enumerate(waiters):
            outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[i]
            if isinstance(waiter, _AsyncWaiter):
                by_loop[waiter.loop].append((waiter, outcome))
            elif isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        for loop, pairs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that caller's loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle_all, pairs)

    def _fail_waiting(self, batch: list) -> None:
        """Answer the failed batch and everything still queued, rather than let callers time out."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                batch.append(item)
        self._answer([waiter for _, waiter in batch], Unavailable("the matcher failed", retry_after=5.0))

    def _run(self) -> None:
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
