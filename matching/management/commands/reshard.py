"""`manage.py reshard --balance-shards N [--matcher-shards "0=AAPL;1=MSFT,GOOGL"]`: change the shard layout
of a stopped production exchange (issue 13; the procedure is in docs/ARCHITECTURE.md, "Changing the
shard layout").

Run it with the settings of the layout in place (MATCHER_SHARDS, BALANCE_SHARDS, REDIS_URL,
MATCHER_DATA_DIR, MATCHER_STREAM_PREFIX, DATABASE_URL) after draining: no web process, every runner
stopped cleanly, no open order. It loads every shard's state (matching.reshard), moves the accounts
and symbols, checks that the total cash is unchanged, then writes each shard's new snapshot and the
projection's balances (each account's row in its new balance shard; the positions and status of moved
symbols re-keyed to their new shard's seq) in one database transaction. `--dry-run` checks and
prints without writing. Afterwards start the runners and web tier with the new settings, and run
`manage.py check_cash`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from exchange.env import parse_shards
from exchange.models import Instrument
from matching import reshard
from matching.selectors import projected_seq
from matching.shard import cursor_name
from risk.config import starting_cash_units, units_to_cash
from risk.models import Account, Balance, Position


class Command(BaseCommand):
    help = "Move accounts and symbols to a new shard layout (exchange drained and stopped); check the cash."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--balance-shards", type=int, required=True,
                            help="the new BALANCE_SHARDS (>= 1)")
        parser.add_argument("--matcher-shards",
                            help="the new MATCHER_SHARDS (N=SYM,SYM;...); default: as now")
        parser.add_argument("--prefix", help="Redis key prefix; default: MATCHER_STREAM_PREFIX")
        parser.add_argument("--dry-run", action="store_true", help="check and print, write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError("no Redis: set REDIS_URL (resharding is for the production layout)")
        old = reshard.Layout({int(m): list(s) for m, s in settings.MATCHER_SHARDS.items()},
                             settings.BALANCE_SHARDS)
        if not old.matching:
            raise CommandError("MATCHER_SHARDS is empty: the layout in place must be named")
        try:
            matching = parse_shards(options["matcher_shards"]) if options["matcher_shards"] else old.matching
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        new = reshard.Layout(matching, options["balance_shards"])
        data_dir = Path(settings.MATCHER_DATA_DIR)
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=5)
        try:
            projected = {m: projected_seq(cursor_name=cursor_name(m)) for m in old.matching}
            prefix = options["prefix"] or settings.MATCHER_STREAM_PREFIX
            plan = reshard.plan(client, data_dir, prefix, old, new, starting_cash_units(), projected)
        except (reshard.ReshardError, redis.RedisError, ValueError) as exc:  # ValueError: a foreign snapshot
            raise CommandError(str(exc)) from exc
        finally:
            client.close()
        for symbol, (source, target) in sorted(plan.moved.items()):
            self.stdout.write(f"{symbol}: matching shard {source} -> {target}")
        for b, runner in sorted(plan.balances.items()):
            self.stdout.write(f"balance shard {b}: {len(runner.shard.accounts)} accounts")
        self.stdout.write(f"cash before {units_to_cash(plan.cash_before)}, "
                          f"after {units_to_cash(plan.cash_after)}")
        if options["dry_run"]:
            self.stdout.write("dry run: nothing written")
            return
        with transaction.atomic():
            self.rewrite_projection(plan, new.balance_shards)
            reshard.write(plan)  # last: a failure here rolls the projection back
        self.stdout.write(f"written; start the exchange with MATCHER_SHARDS={_spec(new.matching)} "
                          f"BALANCE_SHARDS={new.balance_shards}, then run check_cash")

    @staticmethod
    def rewrite_projection(plan: reshard.Plan, balance_shards: int) -> None:
        """Each account's one Balance row in its new balance shard (at that shard's seq, so its next
        update lands), the Account as their sum; rows of moved symbols re-keyed to the new shard's seq."""
        users = set(get_user_model().objects.filter(pk__in=plan.accounts).values_list("pk", flat=True))
        Balance.objects.all().delete()
        Balance.objects.bulk_create([
            Balance(user_id=owner, shard=owner % balance_shards, cash=units_to_cash(cash), reserved=0,
                    seq=plan.balances[owner % balance_shards].seq)
            for owner, cash in sorted(plan.accounts.items()) if owner in users])
        for owner, cash in plan.accounts.items():
            if owner in users:
                Account.objects.filter(user_id=owner).update(cash=units_to_cash(cash), reserved=0)
        for symbol, (_source, target) in plan.moved.items():
            seq = plan.matchers[target].matcher.seq
            Position.objects.filter(instrument__symbol=symbol).update(seq=seq)
            Instrument.objects.filter(symbol=symbol).update(status_seq=seq)


def _spec(matching: dict[int, list[str]]) -> str:
    return ";".join(f"{m}={','.join(symbols)}" for m, symbols in sorted(matching.items()))
