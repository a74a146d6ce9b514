"""The embedded bus: a matcher thread answering sync and async callers, failing fast when it can't."""

from __future__ import annotations

import asyncio
import threading

import pytest

from matching.engine import NewOrder, OrderAccepted, OrderExpired, Side, TimeInForce
from matching.tests.worker.load import SYMBOLS
from matching.worker.bus import Unavailable
from matching.worker.embedded import EmbeddedBus
from matching.worker.matcher import Matcher, Reply


def order(owner: int = 1, price: int = 100, coid: str | None = None) -> NewOrder:
    return NewOrder(0, owner, "AAPL", Side.BUY, 1, price, client_order_id=coid)


@pytest.fixture
def bus(tmp_path):
    bus = EmbeddedBus(Matcher.open(SYMBOLS, tmp_path, fsync=False))
    bus.start()
    yield bus
    bus.stop()
    bus.matcher.close()


def test_sync_submit_gets_its_own_reply(bus):
    reply = bus.submit(order(coid="one"), timeout=5)
    assert reply.seq == 1
    assert isinstance(reply.events[0], OrderAccepted)
    assert reply.events[0].order_id == reply.order_id


def test_async_submit(bus):
    async def main() -> list[Reply]:
        return await asyncio.gather(*(bus.submit_async(order(owner=n), timeout=5) for n in range(1, 51)))

    replies = asyncio.run(main())
    assert sorted(r.seq for r in replies) == list(range(1, 51))
    firsts = [r.events[0] for r in replies]
    assert [e.owner if isinstance(e, OrderAccepted) else e for e in firsts] == list(range(1, 51))  # its own


def test_many_threads_all_answered_with_contiguous_seqs(bus):
    replies: list[Reply] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(40):
            reply = bus.submit(order(owner=n, coid=f"{n}-{i}"), timeout=10)
            with lock:
                replies.append(reply)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.seq for r in replies) == list(range(1, 321))
    assert bus.health()["seq"] == 320


def test_listeners_see_every_batch(bus):
    seen: list[int] = []
    bus.subscribe(lambda replies: seen.extend(r.seq for r in replies))
    for _ in range(5):
        bus.submit(order(), timeout=5)
    bus.submit(order(), timeout=5)
    assert seen == [1, 2, 3, 4, 5, 6]


def test_full_queue_is_refused_at_once(tmp_path):
    bus = EmbeddedBus(Matcher.open(SYMBOLS, tmp_path, fsync=False), max_queue=2, max_batch=1)
    gate = threading.Event()
    bus.subscribe(lambda replies: gate.wait(5))  # the matcher thread stalls after its first batch
    bus.start()
    bus.submit(order(), timeout=5)
    queued = [bus.enqueue(order()), bus.enqueue(order())]
    with pytest.raises(Unavailable, match="full"):
        bus.enqueue(order())
    gate.set()
    assert [f.result(5).seq for f in queued] == [2, 3]
    bus.stop()
    bus.matcher.close()


def test_not_started_is_unavailable(tmp_path):
    matcher = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    with pytest.raises(Unavailable, match="not running"):
        EmbeddedBus(matcher).submit(order(), timeout=1)
    matcher.close()


def test_a_failed_journal_stops_the_matcher_and_callers_hear_it(bus):
    bus.submit(order(), timeout=5)
    bus.matcher.journal.close()  # the next commit fails
    with pytest.raises(Unavailable, match="failed"):
        bus.submit(order(), timeout=5)
    assert bus.health()["status"] == "down"
    with pytest.raises(Unavailable):
        bus.submit(order(), timeout=5)


def test_slow_matcher_times_out_fast(bus):
    gate = threading.Event()
    bus.subscribe(lambda replies: gate.wait(5))  # hold the matcher thread after the first batch
    bus.submit(order(), timeout=5)
    with pytest.raises(Unavailable, match="in time"):
        bus.submit(order(), timeout=0.2)
    gate.set()


def test_async_caller_times_out_fast_and_the_command_still_applies(bus):
    gate = threading.Event()
    bus.subscribe(lambda replies: gate.wait(5))

    async def main() -> None:
        await bus.submit_async(order(), timeout=5)  # the matcher thread now stalls in the listener
        with pytest.raises(Unavailable, match="in time"):
            await bus.submit_async(order(coid="late"), timeout=0.2)
        gate.set()
        retry = await bus.submit_async(order(coid="late"), timeout=5)
        assert retry.duplicate  # the timed-out command was applied; its retry changes nothing

    asyncio.run(main())


def test_async_callers_on_two_loops(bus):
    results: dict[int, list[int]] = {}

    def client(n: int) -> None:
        async def main() -> list[int]:
            replies = await asyncio.gather(*(bus.submit_async(order(owner=n), timeout=5) for _ in range(20)))
            return [r.events[0].owner for r in replies]

        results[n] = asyncio.run(main())

    threads = [threading.Thread(target=client, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {1: [1] * 20, 2: [2] * 20}


def test_day_orders_expire_on_time_without_other_order_flow(tmp_path):
    clock = [1_000]
    matcher = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    matcher.clock = lambda: clock[0]
    bus = EmbeddedBus(matcher, tick=0.02)
    expired = threading.Event()

    def on_replies(replies: list[Reply]) -> None:
        if any(isinstance(e, OrderExpired) for r in replies for e in r.events):
            expired.set()

    bus.subscribe(on_replies)
    bus.start()
    day = NewOrder(0, 1, "AAPL", Side.BUY, 1, 100, tif=TimeInForce.DAY, expire_at=5_000)
    bus.submit(day, timeout=5)
    assert not expired.wait(0.2)  # not due yet: nothing happens, nothing is journaled
    assert matcher.seq == 1
    clock[0] = 5_000
    assert expired.wait(5)
    assert matcher.engine.books["AAPL"].orders == {}
    bus.stop()
    matcher.close()
    replayed = Matcher.open(SYMBOLS, tmp_path, fsync=False)  # the expiry is in the journal
    assert replayed.seq == 2 and replayed.engine.books["AAPL"].orders == {}
    replayed.close()
