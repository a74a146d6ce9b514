"""`manage.py runbalances --shard B`: one balance shard's process in production (issue 13, BALANCE_SHARDS):
the accounts of the users with id modulo BALANCE_SHARDS equal to B.

    runner = BalanceRunner(BalanceShard(B), ...)        (matching/worker/balance_runner.py: its stream is its
                                                         log; R1 forwards funded orders to the matching
                                                         shards, R2 applies their settlements)
    runner.subscribe(project)                           (each account it changes: a `Balance` row (user, B)
                                                         and the user's `Account`, risk.projection)
    runner.recover(wait=True)                           (snapshot, silent replay, then fences: the
                                                         reservations of orders that never reached their
                                                         matching shard are released)
    SetDefaultCash(ACCOUNT_STARTING_CASH) through its own stream, if it changed
    runner.run()                                        (until SIGTERM/SIGINT: finish the batch, snapshot)

Settings (each overridable by an option): REDIS_URL, MATCHER_SHARDS (the matching shards it forwards to
and fences), MATCHER_DATA_DIR (snapshots in `balance-B-snapshots/`), MATCHER_SNAPSHOT_EVERY,
MATCHER_STREAM_PREFIX; DATABASE_URL for the projection (`--no-projection`: none, for tests).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, transaction

from exchange.gc_tuning import settle_heap
from matching.worker.balance_codec import balance_entry, encode_balance_command
from matching.worker.balance_runner import BalanceRunner
from matching.worker.formats import UnsupportedFormat
from matching.worker.snapshots import SnapshotStore
from risk.config import starting_cash_units
from risk.core import AccountUpdate, SetDefaultCash
from risk.core.balances import BalanceShard, BalanceUpdate

log = logging.getLogger("matching.runbalances")


def projector(balance_shard: int) -> Any:
    """A listener writing each account the runner changed: the balance shard's row and the account.
    Seq-guarded upserts (risk.projection), so a replay after a restart writes nothing twice."""
    from risk.projection import apply_events

    def project(batch: list[tuple[int, list[Any]]]) -> None:
        updates = [(seq, AccountUpdate(e.owner, e.cash, e.reserved, e.timestamp))
                   for seq, events in batch for e in events if type(e) is BalanceUpdate]
        if not updates:
            return
        close_old_connections()
        try:
            with transaction.atomic():
                apply_events(updates, shard=balance_shard)
        except Exception:  # the next change of each account writes it again
            log.exception("balance shard %d: projection failed", balance_shard)

    return project


class Command(BaseCommand):
    help = "Run one balance shard: reserve, forward, settle; project the accounts; snapshot on SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--shard", type=int, required=True)
        parser.add_argument("--redis-url", help="default: REDIS_URL")
        parser.add_argument("--data-dir", help="default: MATCHER_DATA_DIR")
        parser.add_argument("--snapshot-every", type=int, help="default: MATCHER_SNAPSHOT_EVERY")
        parser.add_argument("--prefix", help="Redis key prefix; default: MATCHER_STREAM_PREFIX")
        parser.add_argument("--matching-shards", help="comma-separated; default: the MATCHER_SHARDS keys")
        parser.add_argument("--no-projection", action="store_true", help="no database (tests)")

    def handle(self, *args: Any, **options: Any) -> None:
        shard: int = options["shard"]
        redis_url = options["redis_url"] or settings.REDIS_URL
        if not redis_url:
            raise CommandError("no Redis: set REDIS_URL or pass --redis-url")
        if options["matching_shards"]:
            matching = [int(s) for s in options["matching_shards"].split(",") if s.strip()]
        else:
            matching = sorted(int(s) for s in settings.MATCHER_SHARDS) or [0]
        data_dir = Path(options["data_dir"] or settings.MATCHER_DATA_DIR)
        prefix = options["prefix"] or settings.MATCHER_STREAM_PREFIX
        client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5,
                                      health_check_interval=30)
        runner = BalanceRunner(BalanceShard(shard), client, shard,
                               SnapshotStore(data_dir / f"balance-{shard}-snapshots"), prefix, matching,
                               snapshot_every=options["snapshot_every"] or settings.MATCHER_SNAPSHOT_EVERY)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop())
        if not options["no_projection"]:
            runner.subscribe(projector(shard))
        try:
            runner.recover(wait=True)
            if not runner.recovered:  # stopped while Redis was unreachable
                return
            cash = starting_cash_units()
            if runner.shard.default_cash != cash:  # through the log, like any change of its state
                client.xadd(runner.stream, balance_entry(encode_balance_command(SetDefaultCash(cash))))
            runner.heartbeat()
            self.stdout.write(f"balance shard {shard} recovered at seq {runner.seq}; matching shards "
                              f"{', '.join(str(m) for m in matching)}")
            self.stdout.flush()
            settle_heap(settings.GC_YOUNG_THRESHOLD)  # recovered: that heap lives as long as we do
            runner.run()
            self.stdout.write(f"balance shard {shard} stopped at seq {runner.seq}")
            self.stdout.flush()
        except UnsupportedFormat as exc:
            raise CommandError(f"balance shard {shard}: {exc}") from exc
        finally:
            client.close()
