"""`manage.py runmarketmaker`: the demo market maker as a separate client of the matchers (production).

The same loop as the embedded default's thread (exchange/marketmaker/runner.py), in this process's main
thread, sending through the RedisBus like the web tier. After every step its heartbeat goes to Redis
(`{prefix}:marketmaker:heartbeat`, expiring after a few intervals), where the web tier's `/health` reads
it when DEMO_MARKET_MAKER is on. SIGTERM/SIGINT: finish the step, cancel the quotes, exit.

Without REDIS_URL it refuses: in the embedded default the matcher lives in the server process, which
runs the market maker itself (DEMO_MARKET_MAKER=1); a second process would open the same journal.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exchange.env import Mode
from exchange.marketmaker import accounts, runner


class Command(BaseCommand):
    help = "Run the demo market maker against the matcher shards (production mode: REDIS_URL)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--interval", type=float, help="seconds between quote updates; "
                                                           "default: MARKET_MAKER_INTERVAL (1)")
        parser.add_argument("--seed", type=int, default=0, help="the random walk's seed (default 0)")
        parser.add_argument("--symbols", help="comma-separated; default: every instrument")
        parser.add_argument("--leave-quotes", action="store_true", help="do not cancel the quotes on exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.EXCHANGE_MODE != Mode.PRODUCTION:
            raise CommandError("runmarketmaker needs REDIS_URL (production mode); in the embedded default "
                               "the server runs the market maker itself: DEMO_MARKET_MAKER=1")
        interval = options["interval"]
        if interval is not None and not interval > 0:
            raise CommandError("--interval must be positive")
        symbols = None
        if options["symbols"]:
            symbols = [s.strip().upper() for s in options["symbols"].split(",") if s.strip()]
        maker = runner.start(thread=False, interval=interval, seed=options["seed"], symbols=symbols,
                             publish=self._publisher(interval))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: maker.request_stop())
        self.stdout.write(f"market maker quoting every {maker.interval:g} s as {accounts.USERNAME}")
        self.stdout.flush()
        try:
            maker.run()
        finally:
            runner.stop(cancel=not options["leave_quotes"])
        beat = maker.heartbeat
        self.stdout.write(f"market maker stopped after {beat.steps} steps ({beat.errors} failed); "
                          f"{beat.quotes_live} quotes left")

    @staticmethod
    def _publisher(interval: float | None) -> Any:
        from marketdata.redis_cache import connect

        assert settings.REDIS_URL is not None  # production mode (checked in handle) has one
        client = connect(settings.REDIS_URL)
        key = runner.heartbeat_key(settings.MATCHER_STREAM_PREFIX)
        ttl = max(10, int(5 * (interval or settings.MARKET_MAKER_INTERVAL)))

        def publish(beat: dict[str, Any]) -> None:
            client.set(key, json.dumps(beat), ex=ttl)

        return publish
