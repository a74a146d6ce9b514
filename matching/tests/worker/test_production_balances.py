"""Production mode with balance shards (issue 13), end to end in processes: two `runmatcher` (AAPL on
shard 0, MSFT on shard 1, BALANCE_SHARDS=2) and two `runbalances`, configured by the environment, their
projection in a scratch PostgreSQL database, and a RedisBus in this process as the web tier's.

One user spends 99% of their cash on AAPL, sells it, and spends the proceeds on MSFT (with the cash
split across the matching shards, as before balance shards, half of it could not have been spent
there); a deposit is usable at once. Then each kind of process is killed with SIGKILL between orders
and restarted, trading goes on, and the projection shows every user's cash conserved: the sum is the
starting cash of all plus the deposit, and what is reserved is exactly what the open buys hold.

Without PostgreSQL or Redis the test skips with a loud reason.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from matching import services
from matching.engine import (
    AmendOrder,
    AmendRejected,
    CancelOrder,
    NewOrder,
    OrderRejected,
    OrderType,
    RejectReason,
    Side,
    Trade,
)
from matching.tests.worker.stream_driver import (
    REDIS_URL,
    ROOT,
    RunmatcherProcess,
    delete_prefix,
    new_prefix,
    redis_or_skip,
    scratch_postgres_or_skip,
)
from matching.worker.balance_codec import Place, PlaceAmend, balance_stream_key
from matching.worker.balance_runner import balance_heartbeat_key
from matching.worker.bus import Unavailable
from matching.worker.matcher import Reply
from matching.worker.redis_bus import RedisBus
from risk.core import FundedOrder
from risk.core.balances import Adjust

CASH = Decimal(100_000)  # ACCOUNT_STARTING_CASH
TICK = 100  # ticks per 1.00 (tick size 0.01)
PER_TICK_LOT = 100  # cash units per tick and lot (tick 0.01 x lot 1, 10^-4 cash units)
MATCHING = {"AAPL": 0, "MSFT": 1}


class Deployment:
    def __init__(self, database_url: str, prefix: str, data_dir: str) -> None:
        self.database_url, self.prefix = database_url, prefix
        self.env = {
            "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "MATCHER_SHARDS": "0=AAPL;1=MSFT",
            "BALANCE_SHARDS": "2", "MATCHER_DATA_DIR": data_dir, "MATCHER_SNAPSHOT_EVERY": "5",
            "MATCHER_TIMEOUT": "5", "ACCOUNT_STARTING_CASH": str(CASH),
        }
        self.procs: dict[tuple[str, int], RunmatcherProcess] = {}

    def manage(self, *args: str) -> str:
        result = self.run_manage(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def run_manage(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "exchange.settings", **self.env}
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    def start(self, command: str, shard: int) -> None:
        proc = RunmatcherProcess(shard, ["--prefix", self.prefix], self.env, command=command)
        self.procs[(command, shard)] = proc
        proc.recovered_line()

    def kill9_and_restart(self, command: str, shard: int) -> None:
        self.procs[(command, shard)].kill9()
        self.start(command, shard)

    def stop_drained(self) -> None:
        """Stopped as the resharding procedure says: the matching runners first (each sends its last
        settlements as it stops), then each balance runner once its heartbeat says it has read its
        stream to the end."""
        client = redis_or_skip()
        try:
            for key in [key for key in self.procs if key[0] == "runmatcher"]:
                assert self.procs.pop(key).terminate() == 0
            def caught_up(shard: int) -> bool:
                beat = client.get(balance_heartbeat_key(self.prefix, shard))
                end = client.xinfo_stream(balance_stream_key(self.prefix, shard))["last-generated-id"]
                return beat is not None and json.loads(beat)["stream_id"] == end.decode()

            for key in list(self.procs):
                wait_for(lambda shard=key[1]: caught_up(shard))
                assert self.procs.pop(key).terminate() == 0
        finally:
            client.close()

    def ticket(self, order_id: int) -> int:
        """The order's ticket as the projection keeps it (once it holds the order)."""
        found: list[int] = []

        def projected() -> bool:
            with psycopg.connect(self.database_url, autocommit=True) as db:
                row = db.execute("SELECT ticket FROM matching_order WHERE order_id = %s",
                                 [order_id]).fetchone()
            if row is not None and row[0] is not None:
                found.append(row[0])
            return bool(found)

        wait_for(projected)
        return found[0]

    def order_row(self, order_id: int) -> tuple[str, str, int]:
        """The projected order's status and reject reason, and how many audit events name it (once
        projected)."""
        found: list[tuple[str, str, int]] = []

        def projected() -> bool:
            with psycopg.connect(self.database_url, autocommit=True) as db:
                row = db.execute("SELECT status, reject_reason FROM matching_order WHERE order_id = %s",
                                 [order_id]).fetchone()
                audited = db.execute("SELECT count(*) FROM matching_auditevent WHERE order_id = %s",
                                     [order_id]).fetchone()
            if row is not None and audited is not None:
                found.append((row[0], row[1], audited[0]))
            return bool(found)

        wait_for(projected)
        return found[-1]

    def accounts(self, users: list[int]) -> dict[int, tuple[Decimal, Decimal]]:
        with psycopg.connect(self.database_url, autocommit=True) as db:
            rows = db.execute("SELECT user_id, cash, reserved FROM risk_account WHERE user_id = ANY(%s)",
                              [users]).fetchall()
        return {user: (cash, reserved) for user, cash, reserved in rows}


@pytest.fixture
def running(tmp_path: Any) -> Iterator[tuple[Deployment, list[int], RedisBus]]:
    """The deployment serving (a scratch database with 8 users, two balance and two symbol shard
    processes) and the web tier's bus; everything stopped and deleted afterwards."""
    client = redis_or_skip()
    prefix = new_prefix()
    with scratch_postgres_or_skip() as database_url:
        d = Deployment(database_url, prefix, str(tmp_path))
        bus = None
        try:
            d.manage("migrate", "--noinput")
            code = ("import json; from django.contrib.auth import get_user_model; User = get_user_model(); "
                    "print(json.dumps([User.objects.create_user(f'trader{i}').pk for i in range(8)]))")
            users = json.loads(d.manage("shell", "-c", code).strip().splitlines()[-1])
            for shard in (0, 1):
                d.start("runbalances", shard)
                d.start("runmatcher", shard)
            bus = RedisBus(REDIS_URL, MATCHING, timeout=5, prefix=prefix)
            yield d, users, bus
        finally:
            if bus is not None:
                bus.close()
            for proc in d.procs.values():
                proc.ensure_dead()
            delete_prefix(client, prefix)
            client.close()


def place(bus: RedisBus, owner: int, symbol: str, side: Side, qty: int, price: str, *,
          matching: dict[str, int] = MATCHING, balance_shards: int = 2, **kw: object) -> Reply:
    """As the web tier does (matching.services.place): the user's balance shard, what to reserve."""
    ticks = int(Decimal(price) * TICK)
    order = NewOrder(0, owner, symbol, side, qty, ticks, **kw)  # type: ignore[arg-type]
    amount = qty * ticks * PER_TICK_LOT if side is Side.BUY else 0
    return bus.submit_balance(Place(order, matching[symbol], amount), owner % balance_shards, timeout=5)


def wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.05)


def test_one_account_across_two_matching_and_two_balance_shards_survives_kill_9(running, settings, db):
    d, everyone, bus = running
    prefix = d.prefix
    users = everyone[:4]
    one, two, three, four = users
    place(bus, two, "AAPL", Side.SELL, 990, "100.00")
    bought = place(bus, one, "AAPL", Side.BUY, 990, "100.00")  # 99,000 of 100,000
    assert sum(t.qty for t in bought.events if isinstance(t, Trade)) == 990
    place(bus, four, "AAPL", Side.BUY, 990, "101.00")
    sold = place(bus, one, "AAPL", Side.SELL, 990, "101.00", order_type=OrderType.MARKET)
    assert sum(t.qty for t in sold.events if isinstance(t, Trade)) == 990  # 99,990 back
    place(bus, three, "MSFT", Side.SELL, 1_000, "101.00")
    spent = place(bus, one, "MSFT", Side.BUY, 999, "101.00")  # 100,899 of its 100,990
    assert sum(t.qty for t in spent.events if isinstance(t, Trade)) == 999
    refused = place(bus, one, "MSFT", Side.BUY, 1, "101.00")  # 101 > 91 left
    assert [e.reason for e in refused.events if isinstance(e, OrderRejected)] == [
        RejectReason.INSUFFICIENT_FUNDS]
    # refused at R1, numbered by its matching shard: in the history as rejected, and in the audit trail
    assert refused.order_id > 0 and d.order_row(refused.order_id) == ("rejected", "insufficient_funds", 1)
    deposit = bus.submit_balance(Adjust(one, 2_000 * 10**4), one % 2, timeout=5)  # 2,000.0000
    assert deposit.events, deposit
    again = place(bus, one, "MSFT", Side.BUY, 1, "101.00")  # the deposit, usable at once
    assert sum(t.qty for t in again.events if isinstance(t, Trade)) == 1
    wait_for(lambda: d.accounts(users).get(one) == (Decimal("1990.0000"), Decimal(0)))

    # An amendment that needs more cash goes through the balance shard, on the order's ticket
    # (the projection keeps it); one beyond the cash left is refused there.
    resting = place(bus, one, "MSFT", Side.BUY, 10, "99.00")  # 990 of its 1,990
    ticket = d.ticket(resting.order_id)
    up = AmendOrder(resting.order_id, one, "MSFT", None, 100 * TICK)
    assert [type(e).__name__ for e in bus.submit_balance(
        PlaceAmend(up, 1, ticket, 10 * 100 * TICK * PER_TICK_LOT), one % 2, timeout=5).events
            ][:1] == ["OrderAmended"]  # 1,000 held now, 10 more than before
    too_far = AmendOrder(resting.order_id, one, "MSFT", None, 300 * TICK)  # 3,000 > 1,990
    refused_amend = bus.submit_balance(PlaceAmend(too_far, 1, ticket, 10 * 300 * TICK * PER_TICK_LOT),
                                       one % 2, timeout=5)
    assert [e.reason for e in refused_amend.events if isinstance(e, AmendRejected)] == [
        RejectReason.INSUFFICIENT_FUNDS]
    canceled = bus.submit(CancelOrder(resting.order_id, one, ""), timeout=5)
    assert canceled.events, canceled
    wait_for(lambda: d.accounts(users).get(one) == (Decimal("1990.0000"), Decimal(0)))

    # Each kind of process killed between orders, restarted; trading goes on.
    d.kill9_and_restart("runbalances", one % 2)
    place(bus, two, "MSFT", Side.BUY, 5, "100.00")  # rests: 500 reserved
    d.kill9_and_restart("runmatcher", 1)
    place(bus, four, "MSFT", Side.SELL, 2, "100.00")  # takes 2 of it
    d.kill9_and_restart("runbalances", two % 2)
    place(bus, four, "AAPL", Side.SELL, 10, "101.00")  # rests
    d.kill9_and_restart("runmatcher", 0)
    place(bus, three, "AAPL", Side.BUY, 4, "101.00")  # takes 4 of it

    total = CASH * 4 + Decimal(2_000)

    def conserved() -> bool:  # once every settlement is projected (none orphaned: else a timeout)
        accounts = d.accounts(users)
        return (len(accounts) == 4 and sum(cash for cash, _ in accounts.values()) == total
                and accounts[two][1] == Decimal(300)  # 3 lots at 100.00 still open
                and all(reserved == 0 for user, (_, reserved) in accounts.items() if user != two))
    wait_for(conserved)
    assert d.accounts(users)[one] == (Decimal("1990.0000"), Decimal(0))
    # The operator's check counts the deposits the audit trail records (the admin's path,
    # risk.services.adjust_cash, writes one): the raw Adjust above has none, so it finds 2,000 too many.
    check = d.run_manage("check_cash")
    assert check.returncode == 1 and "+2000.0000 more" in check.stderr
    assert check.stdout.splitlines() == [f"held {CASH * 8 + 2_000}.0000, expected {CASH * 8}.0000"]

    # The web tier's own path (matching.services) with these settings: a market buy naming no
    # protection is funded at one derived from the best ask and the price band.
    settings.EXCHANGE_MODE, settings.REDIS_URL, settings.BALANCE_SHARDS = "production", REDIS_URL, 2
    settings.MATCHER_SHARDS, settings.MATCHER_STREAM_PREFIX = {0: ["AAPL"], 1: ["MSFT"]}, prefix
    services.command_bus_stop()
    try:
        spec = services.OrderSpec("AAPL", Side.BUY, OrderType.MARKET, 2)
        reply = services.order_submit(user_id=three, order=spec)
        assert [(t.price, t.qty) for t in reply.events if isinstance(t, Trade)] == [(101 * TICK, 2)]
        assert isinstance(reply.command, FundedOrder)
        assert reply.command.order.price == int(101 * TICK * Decimal("1.10"))  # ask + 10% band
    finally:
        services.command_bus_stop()


def test_kill_9_of_each_kind_of_process_during_a_stream_of_orders_conserves_cash(running):
    d, users, bus = running
    stop = threading.Event()
    sent = [0]

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            price = rng.choice(["99.50", "100.00", "100.50"])
            try:
                place(bus, rng.choice(users), rng.choice(["AAPL", "MSFT"]), side, rng.randint(1, 5),
                      price)
                sent[0] += 1
            except Unavailable:
                time.sleep(0.05)  # a process is down: its callers are told so, and retry later

    callers = [threading.Thread(target=caller, args=(seed,), daemon=True) for seed in range(4)]
    for thread in callers:
        thread.start()
    try:
        for command, shard in (("runbalances", 0), ("runmatcher", 0), ("runbalances", 1),
                               ("runmatcher", 1)):
            time.sleep(1.0)
            d.kill9_and_restart(command, shard)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in callers:
            thread.join(30)
    assert sent[0] > 100

    seen: dict[str, int] = {}

    def settled() -> bool:
        with psycopg.connect(d.database_url, autocommit=True) as db:
            accounts = db.execute("SELECT user_id, cash, reserved FROM risk_account "
                                  "WHERE user_id = ANY(%s)", [users]).fetchall()
            holds: dict[int, Any] = dict(db.execute(
                "SELECT user_id, SUM(remaining_lots * price_ticks) FROM matching_order "
                "WHERE side = 'buy' AND status IN ('open', 'partially_filled') GROUP BY user_id"
            ).fetchall())
            positions = db.execute("SELECT i.symbol, SUM(p.qty) FROM risk_position p JOIN "
                                   "exchange_instrument i ON i.id = p.instrument_id GROUP BY i.symbol"
                                   ).fetchall()
        cash = {user: c for user, c, _ in accounts}
        reserved = {user: r for user, _, r in accounts}
        untraded = len(users) - len(cash)
        total = sum(cash.values(), Decimal(0)) + untraded * CASH
        held = {user: Decimal(holds.get(user) or 0) * PER_TICK_LOT / 10**4 for user in users}
        seen.update(traded=len(positions), holding=sum(1 for h in held.values() if h))
        return (total == CASH * len(users)
                and all(reserved.get(user, Decimal(0)) == held[user] for user in users)
                and all(qty == 0 for _, qty in positions))

    wait_for(settled, timeout=60)
    assert seen["traded"] == 2 and seen["holding"] > 0  # both symbols traded; buys still open
    assert d.manage("check_cash").splitlines()[-1] == "ok"  # the operator's check says the same


def test_resharding_moves_accounts_and_a_symbol_and_keeps_every_unit_of_cash(running):
    """The layout changes as an operation: drained (open orders canceled, every process stopped), then
    `manage.py reshard` moves every account to user % 3 and MSFT to a new matching shard 2 (shard 1
    retired); restarted with the new settings, the accounts and positions are what they were, check_cash
    agrees, and trading goes on: MSFT on shard 2, each user's cash at its new balance shard."""
    d, users, bus = running
    one, two, three = users[:3]
    place(bus, two, "AAPL", Side.SELL, 10, "100.00")
    place(bus, one, "AAPL", Side.BUY, 10, "100.00")  # one: +10 AAPL, -1,000
    place(bus, three, "MSFT", Side.SELL, 5, "100.00")
    place(bus, two, "MSFT", Side.BUY, 5, "100.00")  # two: +1,000 -500; three: -5 MSFT, +500
    resting = place(bus, one, "MSFT", Side.BUY, 3, "90.00")
    wait_for(lambda: d.accounts(users).get(one) == (CASH - 1_000, Decimal(270)))
    d.stop_drained()

    refused = d.run_manage("reshard", "--balance-shards", "3", "--matcher-shards", "0=AAPL;2=MSFT",
                           "--prefix", d.prefix)
    assert refused.returncode == 1 and "live orders" in refused.stderr  # the open buy: drain first
    d.start("runbalances", one % 2)
    d.start("runmatcher", 1)
    assert bus.submit(CancelOrder(resting.order_id, one, ""), timeout=5).events
    wait_for(lambda: d.accounts(users).get(one) == (CASH - 1_000, Decimal(0)))
    d.stop_drained()
    assert d.manage("check_cash").splitlines()[-1] == "ok"
    before = d.accounts(users)
    assert before[two] == (CASH + 1_000 - 500, 0)

    to_three = ("reshard", "--balance-shards", "3", "--matcher-shards", "0=AAPL;2=MSFT", "--prefix", d.prefix)
    dry = d.manage(*to_three, "--dry-run")
    assert "MSFT: matching shard 1 -> 2" in dry and dry.splitlines()[-1] == "dry run: nothing written"
    out = d.manage(*to_three)
    assert f"cash before {CASH * 3}.0000, after {CASH * 3}.0000" in out  # the three users who traded
    d.env.update(MATCHER_SHARDS="0=AAPL;2=MSFT", BALANCE_SHARDS="3")
    for shard in (0, 1, 2):
        d.start("runbalances", shard)
    for shard in (0, 2):
        d.start("runmatcher", shard)
    assert d.manage("check_cash").splitlines()[-1] == "ok"
    assert {user: cash for user, (cash, _) in d.accounts(users).items()} == {
        user: cash for user, (cash, _) in before.items()}

    moved = {"AAPL": 0, "MSFT": 2}
    after = RedisBus(REDIS_URL, moved, timeout=5, prefix=d.prefix)
    try:
        # three covers its MSFT short from two, on shard 2, paying from its balance shard three % 3
        place(after, two, "MSFT", Side.SELL, 5, "101.00", matching=moved, balance_shards=3)
        bought = place(after, three, "MSFT", Side.BUY, 5, "101.00", matching=moved, balance_shards=3)
        assert bought.order_id // 10**12 == 2  # numbered by matching shard 2
        assert sum(t.qty for t in bought.events if isinstance(t, Trade)) == 5
        # one spends all it has left on AAPL: its whole account is in one balance shard now
        place(after, two, "AAPL", Side.SELL, 990, "100.00", matching=moved, balance_shards=3)
        spent = place(after, one, "AAPL", Side.BUY, 990, "100.00", matching=moved, balance_shards=3)
        assert sum(t.qty for t in spent.events if isinstance(t, Trade)) == 990
    finally:
        after.close()
    expected = {one: CASH - 100_000, two: CASH + 1_000 - 500 + 505 + 99_000, three: CASH + 500 - 505}
    wait_for(lambda: {u: c for u, (c, _) in d.accounts([one, two, three]).items()} == expected)
    with psycopg.connect(d.database_url, autocommit=True) as db:
        rows = db.execute("SELECT user_id, shard FROM risk_balance WHERE user_id = ANY(%s)",
                          [users]).fetchall()
        positions: dict[int, Decimal] = dict(db.execute(
            "SELECT p.user_id, p.qty FROM risk_position p JOIN exchange_instrument i "
            "ON i.id = p.instrument_id WHERE i.symbol = 'MSFT'").fetchall())
    assert sorted(rows) == sorted((user, user % 3) for user in (one, two, three))
    assert positions[two] == 0 and positions[three] == 0  # projected from shard 2 past the old seqs
    assert d.manage("check_cash").splitlines()[-1] == "ok"
