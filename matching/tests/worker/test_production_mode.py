"""The production mode end to end: two `manage.py runmatcher --shard N` processes configured by the
environment (DATABASE_URL: a scratch PostgreSQL database, REDIS_URL, MATCHER_SHARDS, MATCHER_DATA_DIR),
a RedisBus in this process with callers in threads and event loops, real users, and the projection in
PostgreSQL checked against what the callers were told and against a full replay of each stream:

1. both shards under load; SIGTERM; the projection holds exactly the replies' orders, trades and audit rows
2. shard 0's projection deleted (cursor and rows): its restart rebuilds it from the stream's start
3. shard 1's projection stalled (its cursor row locked) while it serves on past newer snapshots, then
   kill -9 mid-load: the restart recovers from the snapshot at the cursor and projects every reply again

Without PostgreSQL or Redis the test skips with a loud reason.

Client order ids are unique per load here. Idempotency is per shard (the matcher's (owner, client_order_id)
map), but the projection's `order_unique_client_order_id` constraint is per user across shards: the same
id used by one user on symbols of two shards is accepted by both matchers and then stalls the second
shard's projection on that constraint (retried forever). The API has to keep ids unique per user.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
import typing
from collections import Counter
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from marketdata.redis_cache import RedisMarketData
from matching.engine import (
    BookDelta,
    CancelOrder,
    CancelRejected,
    NewOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderStatus,
    OrderType,
    Side,
    Trade,
)
from matching.tests.worker.stream_driver import (
    REDIS_URL,
    ROOT,
    RunmatcherProcess,
    delete_prefix,
    free_port,
    new_prefix,
    redis_or_skip,
    scratch_postgres_or_skip,
)
from matching.worker.bus import Unavailable
from matching.worker.matcher import ORDER_ID_STRIDE, Matcher, Reply
from matching.worker.redis_bus import RedisBus, symbol_shards
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import heartbeat_key, replay_stream, stream_key
from risk.core import AccountUpdate, AdminApplied, AdminCommand, PositionUpdate

SHARDS = {0: ["AAPL", "GOOGL"], 1: ["MSFT", "TSLA"]}
SYMBOLS = [s for group in SHARDS.values() for s in group]
SNAPSHOT_EVERY = 40
USERS = 8


def shard_of(order_id: int) -> int:
    return order_id // ORDER_ID_STRIDE


# ---- the deployment: a database, Redis keys, shard processes ------------------------------------------

class Deployment:
    def __init__(self, database_url: str, prefix: str, data_dir: Path) -> None:
        self.database_url = database_url
        self.prefix = prefix
        self.data_dir = data_dir
        self.env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "MATCHER_SHARDS": ";".join(f"{n}={','.join(symbols)}" for n, symbols in SHARDS.items()),
            "MATCHER_DATA_DIR": str(data_dir),
            "MATCHER_SNAPSHOT_EVERY": str(SNAPSHOT_EVERY),
            "MATCHER_TIMEOUT": "5",
        }
        self.procs: list[RunmatcherProcess] = []
        self.users: list[int] = []

    def manage(self, *args: str) -> str:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "exchange.settings", **self.env}
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def set_up(self) -> None:
        self.manage("migrate", "--noinput")
        code = ("import json; from django.contrib.auth import get_user_model; User = get_user_model(); "
                f"print(json.dumps([User.objects.create_user(f'trader{{i}}').pk for i in range({USERS})]))")
        self.users = json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])

    def start(self, shard: int) -> RunmatcherProcess:
        # configured by the environment; only the key prefix is the test's own
        proc = RunmatcherProcess(shard, ["--prefix", self.prefix], self.env)
        self.procs.append(proc)
        return proc

    def snapshots(self, shard: int) -> SnapshotStore:
        return SnapshotStore(self.data_dir / f"shard-{shard}-stream-snapshots")

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)


def stop(proc: RunmatcherProcess) -> None:
    """SIGTERM: finish the batch, snapshot, write out the projection, exit 0."""
    assert proc.terminate(timeout=40) == 0, proc.errors
    assert f"shard {proc.shard} projection written" in proc.lines, "\n".join(proc.lines + proc.errors)


@pytest.fixture
def deployment(tmp_path):
    client = redis_or_skip()
    prefix = new_prefix()
    with scratch_postgres_or_skip() as database_url:
        deployment = Deployment(database_url, prefix, tmp_path)
        try:
            deployment.set_up()
            yield deployment
        finally:
            for proc in deployment.procs:
                proc.ensure_dead()
            delete_prefix(client, prefix)
            client.close()


# ---- callers ---------------------------------------------------------------------------------------

Sent = NewOrder | CancelOrder  # what the callers send


def shard_of_reply(reply: Reply) -> int:
    """The shard that answered a caller's command."""
    assert isinstance(reply.command, Sent)
    return SHARD_OF[reply.command.symbol]


class Callers:
    """Sync callers in threads and async callers in an event loop; every reply is an acknowledgement."""

    def __init__(self, bus: RedisBus, users: list[int], *, threads: int = 6, per_thread: int | None = None,
                 async_batches: int = 2, async_batch: int = 30, pause: float = 0.0, tag: str = "") -> None:
        self.bus = bus
        self.tag = tag  # in every client_order_id: see test_production_mode's note on them
        self.users = users
        self.per_thread = per_thread  # None: until stop()
        self.pause = pause
        self.acked: list[tuple[Sent, Reply]] = []
        self.unavailable = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._caller, args=(n,), daemon=True)
                         for n in range(threads)]
        self._threads.append(threading.Thread(target=asyncio.run, daemon=True,
                                              args=(self._async_callers(async_batches, async_batch),)))

    def start(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def max_seq(self, shard: int) -> int:
        with self._lock:
            return max((r.seq for cmd, r in self.acked if SHARD_OF[cmd.symbol] == shard), default=0)

    def _record(self, cmd: Sent, reply: Reply) -> None:
        with self._lock:
            self.acked.append((cmd, reply))

    def _new_order(self, rng: random.Random, owner: int, coid: str) -> NewOrder:
        symbol, side, qty = rng.choice(SYMBOLS), rng.choice((Side.BUY, Side.SELL)), rng.randint(1, 5)
        if rng.random() < 0.1:
            return NewOrder(0, owner, symbol, side, qty, None, OrderType.MARKET, client_order_id=coid)
        return NewOrder(0, owner, symbol, side, qty, 100 + rng.randint(-3, 3), client_order_id=coid)

    def _caller(self, n: int) -> None:
        rng = random.Random(n)
        owner = self.users[n % len(self.users)]
        live: list[tuple[int, str]] = []
        i = 0
        while not self._stop.is_set() and (self.per_thread is None or i < self.per_thread):
            i += 1
            cmd: Sent
            if live and rng.random() < 0.2:
                order_id, symbol = live.pop(rng.randrange(len(live)))
                cmd = CancelOrder(order_id, owner, symbol)
            else:
                cmd = self._new_order(rng, owner, f"{self.tag}t{n}-{i}")
            try:
                reply = self.bus.submit(cmd, timeout=2)
            except Unavailable:
                if self.per_thread is not None:
                    raise
                with self._lock:
                    self.unavailable += 1
                self._stop.wait(0.05)
                continue
            self._record(cmd, reply)
            if isinstance(cmd, NewOrder) and any(type(e) is OrderAccepted for e in reply.events):
                live.append((reply.order_id, cmd.symbol))
            if self.pause:
                self._stop.wait(self.pause)

    async def _async_callers(self, batches: int, size: int) -> None:
        rng = random.Random(1000 + len(self._threads))
        batch = 0
        while not self._stop.is_set() and (self.per_thread is None or batch < batches):
            batch += 1
            cmds = [self._new_order(rng, self.users[(batch + k) % len(self.users)], f"{self.tag}a{batch}-{k}")
                    for k in range(size)]
            results = await asyncio.gather(*(self.bus.submit_async(c, timeout=2) for c in cmds),
                                           return_exceptions=True)
            for cmd, result in zip(cmds, results, strict=True):
                if isinstance(result, Unavailable) and self.per_thread is None:
                    with self._lock:
                        self.unavailable += 1
                elif isinstance(result, BaseException):
                    raise result
                else:
                    self._record(cmd, result)
            if self.pause:
                await asyncio.sleep(self.pause * 5)


# (symbol_shards takes Mapping[int | str, ...], whose key type is invariant: a dict[int, ...] is refused
# until redis_bus.py, being rewritten, types it as it is used. Remove the ignore then.)
SHARD_OF = symbol_shards(SHARDS)  # type: ignore[arg-type]


# ---- what the projection must hold -------------------------------------------------------------------

def expected_projection(by_shard: dict[int, list[Reply]]) -> dict:
    """Orders, trades, audit rows and cursors that these replies (every seq of each shard, in order)
    must project to: the accounting of docs/ARCHITECTURE.md, computed independently of the projector.
    (Accounts and positions: each shard keeps its own here, see docs/RISK.md; risk/tests check them.)"""
    orders: dict[int, dict] = {}
    trades: set[tuple] = set()
    audit: Counter = Counter()
    cursors: dict[str, int] = {}
    for shard, reply in ((shard, r) for shard, replies in by_shard.items() for r in replies):
        cursors[f"shard-{shard}"] = reply.seq
        if reply.duplicate:
            continue
        for e in reply.events:
            if isinstance(e, OrderAccepted):
                orders[e.order_id] = {"user": e.owner, "symbol": e.symbol, "side": e.side.value,
                                      "status": OrderStatus.OPEN.value, "qty": e.qty, "filled": 0,
                                      "remaining": e.qty, "canceled": 0}
                audit[(reply.seq, "accepted", e.order_id)] += 1
            elif isinstance(e, OrderRejected):
                cmd = reply.command
                assert isinstance(cmd, NewOrder)
                orders[e.order_id] = {"user": e.owner, "symbol": e.symbol, "side": cmd.side.value,
                                      "status": OrderStatus.REJECTED.value, "qty": cmd.qty, "filled": 0,
                                      "remaining": 0, "canceled": 0}
                audit[(reply.seq, "rejected", e.order_id)] += 1
            elif isinstance(e, Trade):
                trades.add((e.symbol, e.trade_id, e.price, e.qty, e.taker_order_id, e.maker_order_id,
                            e.taker_owner, e.maker_owner, reply.seq))
                for order_id, remaining in ((e.taker_order_id, e.taker_remaining),
                                            (e.maker_order_id, e.maker_remaining)):
                    order = orders[order_id]
                    order["filled"] += e.qty
                    order["remaining"] = remaining
                    status = OrderStatus.FILLED if remaining == 0 else OrderStatus.PARTIALLY_FILLED
                    order["status"] = status.value
                    audit[(reply.seq, "filled" if remaining == 0 else "partially_filled", order_id)] += 1
            elif isinstance(e, OrderCanceled):
                order = orders[e.order_id]
                order["canceled"] += e.canceled_qty
                order["remaining"] -= e.canceled_qty
                order["status"] = OrderStatus.CANCELED.value
                audit[(reply.seq, "canceled", e.order_id)] += 1
            elif isinstance(e, CancelRejected):
                audit[(reply.seq, "cancel_rejected", e.order_id)] += 1
            else:
                assert isinstance(e, BookDelta | AccountUpdate | PositionUpdate | AdminApplied), (
                    f"the load produced {e!r}: extend this model")
    return {"orders": orders, "trades": trades, "audit": audit, "cursors": cursors}


def check_cash_across_shards(deployment: Deployment) -> None:
    """Each shard holds half of every account's starting cash (docs/RISK.md) and trades move cash only
    between the accounts of one shard, so each shard's balances add up to its accounts' shares, and
    every account is the sum of its balances: no cash created or lost."""
    share = Decimal(1_000_000) / 2  # ACCOUNT_STARTING_CASH's default, split between the two shards
    with deployment.db() as db:
        rows = db.execute("SELECT shard, count(*), sum(cash) FROM risk_balance GROUP BY shard ORDER BY shard"
                          ).fetchall()
        unequal = db.execute("SELECT count(*) FROM risk_account a WHERE a.cash <> (SELECT sum(b.cash) "
                             "FROM risk_balance b WHERE b.user_id = a.user_id)").fetchone()
    assert [shard for shard, _, _ in rows] == [0, 1]
    for shard, accounts, total in rows:
        assert total == accounts * share, (shard, accounts, total)
    assert unequal == (0,)


def projected(deployment: Deployment) -> dict:
    with deployment.db() as db:
        orders = {
            row[0]: dict(zip(("user", "symbol", "side", "status", "qty", "filled", "remaining", "canceled"),
                             row[1:], strict=True))
            for row in db.execute("SELECT order_id, user_id, symbol, side, status, qty_lots, filled_lots, "
                                  "remaining_lots, canceled_lots FROM matching_order")
        }
        trade_rows = db.execute(
            "SELECT symbol, trade_id, price_ticks, qty_lots, taker_order_id, maker_order_id, taker_user_id, "
            "maker_user_id, seq FROM matching_trade"
        ).fetchall()
        audit = Counter(db.execute("SELECT seq, kind, order_id FROM matching_auditevent").fetchall())
        cursors: dict[str, int] = dict(db.execute("SELECT name, last_seq FROM matching_projectioncursor")
                                       .fetchall())
    assert len(set(trade_rows)) == len(trade_rows), "a trade was projected twice"
    return {"orders": orders, "trades": set(trade_rows), "audit": audit, "cursors": cursors}


def assert_projection(actual: dict, expected: dict) -> None:
    assert actual["cursors"] == expected["cursors"]
    assert actual["orders"].keys() == expected["orders"].keys()
    wrong = {oid: (actual["orders"][oid], row) for oid, row in expected["orders"].items()
             if actual["orders"][oid] != row}
    assert not wrong, f"{len(wrong)} orders differ (projected, expected), e.g. {next(iter(wrong.items()))}"
    assert actual["trades"] == expected["trades"]
    assert actual["audit"] == expected["audit"]


ADMIN_COMMANDS = typing.get_args(AdminCommand)  # the risk configuration each shard starts with


def full_replay(client, prefix: str) -> dict[int, list[Reply]]:
    """Every shard's stream replayed from its start into a fresh matcher: every reply, by shard."""
    replies: dict[int, list[Reply]] = {}
    for shard, symbols in SHARDS.items():
        replies[shard] = []
        replay_stream(Matcher(symbols, shard=shard), client, stream_key(prefix, shard),
                      on_reply=replies[shard].append)
    return replies


def check_published_books(client, prefix: str) -> None:
    """What the shards published for the web tier (depth per symbol) equals the books a full replay builds."""
    published = RedisMarketData(client, prefix)
    for shard, symbols in SHARDS.items():
        matcher = Matcher(symbols, shard=shard)
        replay_stream(matcher, client, stream_key(prefix, shard))
        for symbol in symbols:
            book = matcher.engine.books[symbol].depth(50)
            depth = published.depth(symbol, 50)
            assert depth["seq"] > 0
            for side in ("bids", "asks"):
                assert [tuple(level) for level in depth[side]] == [(p, q) for p, q, _ in book[side]], symbol


def check_acknowledged(acked: list[tuple[Sent, Reply]], replay: dict[int, list[Reply]]) -> None:
    """Each caller got the reply to its own command, from its symbol's shard, at the seq the log gives it."""
    for cmd, reply in acked:
        shard = SHARD_OF[cmd.symbol]
        assert reply == replay[shard][reply.seq - 1]
        command = reply.command
        assert isinstance(command, Sent) and command.owner == cmd.owner and command.symbol == cmd.symbol
        if isinstance(cmd, NewOrder):
            assert isinstance(command, NewOrder) and command.client_order_id == cmd.client_order_id
            assert shard_of(reply.order_id) == shard and reply.order_id % ORDER_ID_STRIDE > 0
        else:
            assert reply.order_id == cmd.order_id


# ---- the test --------------------------------------------------------------------------------------

def test_production_mode_projects_every_reply_across_restarts_and_kill_9(deployment):
    client = redis_or_skip()
    dep = deployment
    users = dep.users
    bus = RedisBus(REDIS_URL, SHARD_OF, timeout=5, prefix=dep.prefix)
    try:
        # 1. two shards under load from threads and an event loop; SIGTERM; the projection is exact
        shards = [dep.start(0), dep.start(1)]
        assert [p.wait_recovered() for p in shards] == [0, 0]
        load = Callers(bus, users, per_thread=30, tag="1").start()
        load.join()
        acked = list(load.acked)
        assert len(acked) == 6 * 30 + 2 * 30
        retried = [(cmd, r) for cmd, r in acked if isinstance(cmd, NewOrder)][:6]
        for order, original in retried:  # a retry answers the original order and projects nothing new
            reply = bus.submit(dataclasses.replace(order), timeout=5)
            assert reply.duplicate and reply.order_id == original.order_id and not reply.events
            acked.append((order, reply))
        raw_beat = client.get(heartbeat_key(dep.prefix, 0))
        assert raw_beat is not None
        beat = json.loads(raw_beat)
        assert beat["projector"]["status"] == "ok", beat
        by_shard: dict[int, list[int]] = {0: [], 1: []}
        for cmd, reply in acked:
            by_shard[SHARD_OF[cmd.symbol]].append(reply.seq)
        for shard, seqs in by_shard.items():  # each shard numbers its own commands, without gaps (after
            first = min(seqs)                   # its risk configuration)
            assert sorted(seqs) == list(range(first, first + len(seqs))), shard
        n0, n1 = max(by_shard[0]), max(by_shard[1])  # each shard's last seq
        assert n0 > SNAPSHOT_EVERY and n1 > SNAPSHOT_EVERY
        for proc in shards:
            stop(proc)
        replay = full_replay(client, dep.prefix)
        check_acknowledged(acked, replay)
        check_published_books(client, dep.prefix)
        replies = sorted((r for _, r in acked), key=lambda r: (shard_of_reply(r), r.seq))
        assert replies == [r for r in replay[0] + replay[1] if not isinstance(r.command, ADMIN_COMMANDS)]
        expected = expected_projection({n: [r for r in replies if shard_of_reply(r) == n]
                                        for n in SHARDS})
        assert expected["cursors"] == {"shard-0": n0, "shard-1": n1}
        assert expected["trades"] and any(o["status"] == "canceled" for o in expected["orders"].values())
        assert_projection(projected(dep), expected)

        # 2. shard 0's projection is lost: cursor and rows. 3. shard 1's is stalled: its cursor row locked.
        with dep.db() as db:
            db.execute("DELETE FROM matching_auditevent WHERE order_id < %s", [ORDER_ID_STRIDE])
            db.execute("DELETE FROM matching_trade WHERE symbol = ANY(%s)", [SHARDS[0]])
            db.execute("DELETE FROM matching_order WHERE order_id < %s", [ORDER_ID_STRIDE])
            db.execute("DELETE FROM matching_projectioncursor WHERE name = 'shard-0'")
        stall = psycopg.connect(dep.database_url)  # a transaction holding shard 1's cursor row
        stall.execute("SELECT last_seq FROM matching_projectioncursor WHERE name = 'shard-1' FOR UPDATE")

        shard0, shard1 = dep.start(0), dep.start(1)
        assert shard0.recovered_line().endswith(f"projection cursor 0, {n0} replayed); symbols AAPL, GOOGL")
        assert f"projection cursor {n1}, 0 replayed)" in shard1.recovered_line()
        load = Callers(bus, users, threads=4, pause=0.004, tag="2").start()
        snapshots = dep.snapshots(1)
        deadline = time.monotonic() + 20
        while True:  # shard 1 serves on, past a snapshot newer than its (stalled) projection
            newest = snapshots.latest()[0]
            if newest > n1 and load.max_seq(1) > newest + 5:
                break
            assert time.monotonic() < deadline, "shard 1 made no progress"
            time.sleep(0.005)
        shard1.kill9()
        assert newest > n1 and snapshots.latest()[0] > n1
        assert snapshots.latest(at_most=n1)[0] == n1  # the snapshot the restart must start from
        with dep.db() as db:
            assert db.execute("SELECT last_seq FROM matching_projectioncursor WHERE name = 'shard-1'"
                              ).fetchone() == (n1,)  # nothing after n1 was projected

        shard1 = dep.start(1)
        recovered = shard1.wait_recovered()
        assert recovered > newest
        assert f"projection cursor {n1}, {recovered - n1} replayed)" in shard1.recovered_line()
        stall.rollback()  # the database is back: the restarted projector writes from n1 + 1
        stall.close()
        served = load.max_seq(1)
        deadline = time.monotonic() + 10
        while load.max_seq(1) < served + 20:  # the restarted shard serves
            assert time.monotonic() < deadline, "shard 1 serves no more after its restart"
            time.sleep(0.01)
        load.stop()  # (callers waiting on the killed shard were answered by its restart, or timed out)
        for proc in (shard0, shard1):
            stop(proc)

        replay = full_replay(client, dep.prefix)
        check_acknowledged(acked + load.acked, replay)
        expected = expected_projection(replay)
        assert expected["cursors"] == {f"shard-{n}": client.xlen(stream_key(dep.prefix, n)) for n in SHARDS}
        assert_projection(projected(dep), expected)  # every seq of both streams, each once
        check_cash_across_shards(dep)
        for cmd, reply in acked + load.acked:  # every acknowledged order is there
            if isinstance(cmd, NewOrder):
                assert reply.order_id in expected["orders"]
    finally:
        bus.close()
        client.close()


def test_runmatcher_waits_for_the_database_and_stops_on_sigterm(tmp_path):
    """The database may come up after the matcher: it keeps asking for its cursor, saying why, and
    serves nothing meanwhile (it cannot know where the projection stands)."""
    proc = RunmatcherProcess(0, [], {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nothing",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MATCHER_SHARDS": "0=AAPL",
        "MATCHER_DATA_DIR": str(tmp_path),
    })
    try:
        deadline = time.monotonic() + 20
        while not any("database unreachable" in line for line in proc.errors):
            assert time.monotonic() < deadline and proc.proc.poll() is None, proc.lines + proc.errors
            time.sleep(0.02)
        assert proc.terminate() == 0
        assert not any("recovered" in line for line in proc.lines)
    finally:
        proc.ensure_dead()
