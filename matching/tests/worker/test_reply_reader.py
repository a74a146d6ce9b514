"""The RedisBus's reply path against a real Redis: one reply list and one reader per bus (per web
process), replies matched to their callers by request id, commands of concurrent callers pipelined.

Each test uses its own key prefix (the root conftest's `redis_prefix`), deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from matching.engine import NewOrder, OrderAccepted, Side
from matching.tests.worker.stream_driver import REDIS_URL
from matching.worker.bus import Unavailable
from matching.worker.codec import decode_command, encode_command
from matching.worker.formats import COMMAND_FORMAT
from matching.worker.matcher import Reply
from matching.worker.metrics import Registry
from matching.worker.redis_bus import RedisBus
from matching.worker.replies import decode_reply, unaddress
from matching.worker.stream_runner import entry_fields, heartbeat_key, stream_key


@pytest.fixture
def buses(redis_prefix):
    made: list[RedisBus] = []

    def make(**kw) -> RedisBus:
        options = {"timeout": 5, "prefix": redis_prefix, "metrics": Registry(), **kw}
        bus = RedisBus(REDIS_URL, {"AAPL": 0, "MSFT": 0}, **options)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


def order(owner: int, coid: str, price: int = 100, side: Side = Side.BUY) -> NewOrder:
    return NewOrder(0, owner, "AAPL", side, 1, price, client_order_id=coid)


def fresh_heartbeat(client, prefix: str, ttl_ms: int = 10_000) -> None:
    """A heartbeat as a runner that is up but not reading publishes it."""
    client.set(heartbeat_key(prefix, 0), json.dumps({"seq": 0, "lag": 0, "time": time.time()}), px=ttl_ms)


def bus_connections(client, bus: RedisBus) -> list[str]:
    """The names of this bus's connections that Redis knows of (its sender's and its reader's)."""
    return sorted(c["name"] for c in client.client_list()
                  if c.get("name", "").startswith(f"{bus.client_name}:"))


def applied(reply: Reply) -> NewOrder:
    """The order as the matcher applied it (these tests send only new orders)."""
    assert isinstance(reply.command, NewOrder)
    return reply.command


def own(reply: Reply, owner: int, coid: str) -> None:
    command = applied(reply)
    assert (command.owner, command.client_order_id) == (owner, coid)
    accepted = reply.events[0]
    assert isinstance(accepted, OrderAccepted) and accepted.owner == owner


def test_many_threads_and_event_loops_each_get_exactly_their_own_reply(serve, buses):
    serve()
    bus = buses(max_in_flight=1_000)
    got: list[tuple[int, str, Reply]] = []
    lock = threading.Lock()

    def thread_caller(owner: int) -> None:
        for i in range(15):
            coid = f"t{owner}-{i}"
            reply = bus.submit(order(owner, coid, price=90 + i % 20), timeout=5)
            with lock:
                got.append((owner, coid, reply))

    async def loop_callers(base: int) -> None:
        async def caller(owner: int) -> None:
            for i in range(5):
                coid = f"a{owner}-{i}"
                reply = await bus.submit_async(order(owner, coid, price=110 + i, side=Side.SELL), timeout=5)
                with lock:
                    got.append((owner, coid, reply))

        await asyncio.gather(*(caller(base + n) for n in range(60)))

    threads = [threading.Thread(target=thread_caller, args=(n,)) for n in range(1, 33)]
    threads += [threading.Thread(target=asyncio.run, args=(loop_callers(base),)) for base in (1000, 2000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(got) == 32 * 15 + 2 * 60 * 5
    for owner, coid, reply in got:
        own(reply, owner, coid)
    assert sorted(reply.seq for _, _, reply in got) == list(range(1, len(got) + 1))
    assert bus.dropped_replies == 0


def test_one_reader_and_one_sender_connection_however_many_wait(serve, buses, redis_client, redis_prefix):
    bus = buses(max_in_flight=200)
    fresh_heartbeat(redis_client, redis_prefix)  # the runner starts later: callers wait meanwhile
    got: list[tuple[int, Reply]] = []

    def caller(owner: int) -> None:
        got.append((owner, bus.submit(order(owner, f"c{owner}"), timeout=10)))

    async def async_callers() -> list[Reply]:
        return await asyncio.gather(*(bus.submit_async(order(500 + n, f"c{500 + n}"), timeout=10)
                                      for n in range(64)))

    async_got: list[Reply] = []
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(1, 65)]
    threads.append(threading.Thread(target=lambda: async_got.extend(asyncio.run(async_callers()))))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while redis_client.xlen(stream_key(redis_prefix, 0)) < 128 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis_client.xlen(stream_key(redis_prefix, 0)) == 128  # all sent, all waiting
    name = bus.client_name
    assert bus_connections(redis_client, bus) == [f"{name}:reader", f"{name}:sender"]
    reader = next(c for c in redis_client.client_list() if c.get("name") == f"{name}:reader")
    assert reader["cmd"] == "blmpop"  # the one reader, waiting on the bus's reply list

    serve()
    for thread in threads:
        thread.join(20)
    assert len(got) == 64 and len(async_got) == 64
    for owner, reply in got:
        own(reply, owner, f"c{owner}")
    for n, reply in enumerate(async_got):
        own(reply, 500 + n, f"c{500 + n}")
    assert bus_connections(redis_client, bus) == [f"{name}:reader", f"{name}:sender"]
    entries = redis_client.xrange(stream_key(redis_prefix, 0))
    assert {fields[b"r"] for _, fields in entries} == {bus.reply_key.encode()}  # one list for all
    assert len({fields[b"i"] for _, fields in entries}) == 128  # a request id each
    assert {fields[b"v"] for _, fields in entries} == {str(COMMAND_FORMAT).encode()}


def test_a_timeout_is_unavailable_and_its_late_reply_is_dropped(serve, buses, redis_client, redis_prefix):
    bus = buses()
    fresh_heartbeat(redis_client, redis_prefix)  # up, but nobody reads the stream yet
    with pytest.raises(Unavailable, match=r"did not answer within 0\.3s") as info:  # its deadline, not 5 s
        bus.submit(order(1, "late-sync"), timeout=0.3)
    assert info.value.retry_after > 0

    async def late_async() -> None:
        with pytest.raises(Unavailable, match="did not answer"):
            await bus.submit_async(order(2, "late-async"), timeout=0.3)

    asyncio.run(late_async())
    assert redis_client.xlen(stream_key(redis_prefix, 0)) == 2  # both written: the runner applies them

    serve()  # answers both; nobody waits for those replies any more
    deadline = time.monotonic() + 5
    while bus.dropped_replies < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bus.dropped_replies == 2
    reply = bus.submit(order(3, "on-time"), timeout=5)  # the bus goes on as before
    own(reply, 3, "on-time")
    assert reply.seq == 3
    retry = bus.submit(order(1, "late-sync"), timeout=5)  # retrying the timed-out one is safe
    assert retry.duplicate and retry.seq == 4


def test_a_down_shard_is_unavailable_at_once_and_nothing_is_written(buses, redis_client, redis_prefix, serve):
    bus = buses()
    # "down": refused on the missing heartbeat, not "did not answer" after waiting out the 5 s
    with pytest.raises(Unavailable, match="down") as info:
        bus.submit(order(1, "a"), timeout=5)
    assert info.value.retry_after >= 1

    async def down() -> None:
        with pytest.raises(Unavailable, match="down"):
            await bus.submit_async(order(1, "b"), timeout=5)

    asyncio.run(down())
    replies = bus.submit_many([order(1, "c"), order(1, "d")], timeout=5)
    assert all(isinstance(r, Unavailable) and "down" in str(r) for r in replies)
    assert redis_client.xlen(stream_key(redis_prefix, 0)) == 0

    runner = serve()
    assert bus.submit(order(1, "e"), timeout=5).seq == 1  # a runner that comes up is used at once
    runner.stop()  # withdraws its heartbeat
    time.sleep(0.6)  # the bus trusts the heartbeat it read for 0.5 s
    with pytest.raises(Unavailable, match="down"):
        bus.submit(order(1, "f"), timeout=5)


def test_two_buses_on_one_shard_never_get_each_others_replies(serve, buses):
    serve()
    first, second = buses(), buses()
    got: dict[str, list[tuple[int, str, Reply]]] = {"first": [], "second": []}
    lock = threading.Lock()

    def caller(bus: RedisBus, name: str, owner: int) -> None:
        for i in range(20):
            coid = f"{name}-{owner}-{i}"
            reply = bus.submit(order(owner, coid, price=95 + i % 10, side=Side.BUY if i % 2 else Side.SELL),
                               timeout=5)
            with lock:
                got[name].append((owner, coid, reply))

    async def async_callers(bus: RedisBus, name: str) -> None:
        async def one(owner: int) -> None:
            coid = f"{name}-{owner}-async"
            reply = await bus.submit_async(order(owner, coid), timeout=5)
            with lock:
                got[name].append((owner, coid, reply))

        await asyncio.gather(*(one(owner) for owner in range(300, 340)))

    threads = [threading.Thread(target=caller, args=(bus, name, owner))
               for bus, name, owners in ((first, "first", range(1, 9)), (second, "second", range(101, 109)))
               for owner in owners]
    threads += [threading.Thread(target=asyncio.run, args=(async_callers(bus, name),))
                for bus, name in ((first, "first"), (second, "second"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name in ("first", "second"):
        assert len(got[name]) == 8 * 20 + 40
        for owner, coid, reply in got[name]:
            own(reply, owner, coid)
    seqs = sorted(reply.seq for name in got for _, _, reply in got[name])
    assert seqs == list(range(1, 2 * (8 * 20 + 40) + 1))  # one shard sequenced both buses' commands
    assert first.reply_key != second.reply_key
    assert first.dropped_replies == second.dropped_replies == 0  # none arrived where nobody waited


def test_pipelined_commands_keep_their_order_per_shard(serve, buses, redis_client, redis_prefix):
    serve()
    bus = buses()
    cmds = [order(1, f"m{i}", price=100 + i) for i in range(50)]
    replies = [r for r in bus.submit_many(cmds, timeout=5) if isinstance(r, Reply)]
    assert [r.seq for r in replies] == list(range(1, 51))
    assert [applied(r).client_order_id for r in replies] == [f"m{i}" for i in range(50)]
    stream = redis_client.xrange(stream_key(redis_prefix, 0))
    assert [coid_of(fields) for _, fields in stream] == [f"m{i}" for i in range(50)]


def coid_of(fields: dict) -> str | None:
    command = decode_command(fields[b"c"])
    assert isinstance(command, NewOrder)
    return command.client_order_id


def test_reply_lists_expire_and_old_style_entries_are_still_answered(serve, redis_client, redis_prefix):
    runner = serve(reply_ttl=1)
    stream = stream_key(redis_prefix, 0)
    shared, own_key = f"{redis_prefix}:reply:gone-process", f"{redis_prefix}:reply:legacy-caller"
    redis_client.xadd(stream, entry_fields(encode_command(order(1, "new")), shared, b"7"))
    redis_client.xadd(stream, {"v": 1, "c": encode_command(order(2, "old")), "r": own_key})  # no `i`
    _, raw = redis_client.blpop([own_key], timeout=5)
    assert applied(decode_reply(raw)).client_order_id == "old"  # the bare reply, as before request ids
    request_id, encoded = unaddress(redis_client.lindex(shared, 0))
    assert request_id == b"7" and applied(decode_reply(encoded)).client_order_id == "new"
    assert 0 < redis_client.pttl(shared) <= 1000  # nobody reads it (its process died): it expires
    deadline = time.monotonic() + 5
    while redis_client.exists(shared) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not redis_client.exists(shared)
    assert runner.runner.matcher.seq == 2


def test_closing_the_bus_answers_its_waiting_callers(buses, redis_client, redis_prefix):
    bus = buses()
    fresh_heartbeat(redis_client, redis_prefix)
    outcome: list[BaseException] = []

    def wait_in_vain() -> None:
        try:
            bus.submit(order(1, "x"), timeout=5)
        except Unavailable as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait_in_vain)
    thread.start()
    deadline = time.monotonic() + 5
    while redis_client.xlen(stream_key(redis_prefix, 0)) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    bus.close()
    thread.join(5)
    assert outcome and "closed" in str(outcome[0])  # answered by close, not by its 5 s deadline
    with pytest.raises(Unavailable, match="closed"):
        bus.submit(order(1, "y"), timeout=5)
    assert bus_connections(redis_client, bus) == []
