"""`manage.py runmatcher --shard N`: one shard's matcher process in production (Redis Streams transport).

Settings (each overridable by an option, which the tests use): MATCHER_SHARDS ({shard: [symbols]}),
REDIS_URL, MATCHER_DATA_DIR (snapshots go to `shard-N-stream-snapshots/` under it),
MATCHER_SNAPSHOT_EVERY, MATCHER_STREAM_PREFIX. SIGTERM or SIGINT: finish the batch, snapshot, exit 0.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any, ClassVar

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from matching.worker.matcher import Matcher
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import StreamRunner

log = logging.getLogger("matching.runmatcher")


def _setting(name: str, default: Any = None) -> Any:
    return getattr(settings, name, default)


class Command(BaseCommand):
    help = "Run one matcher shard: read its Redis Stream, match, reply; snapshot on SIGTERM."
    requires_system_checks: ClassVar[list[str]] = []  # touches no database, models or URLs

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--shard", type=int, required=True)
        parser.add_argument("--symbols", help="comma-separated; default: MATCHER_SHARDS[shard]")
        parser.add_argument("--redis-url", help="default: REDIS_URL")
        parser.add_argument("--data-dir", help="default: MATCHER_DATA_DIR")
        parser.add_argument("--snapshot-every", type=int, help="default: MATCHER_SNAPSHOT_EVERY or 10000")
        parser.add_argument("--prefix", help="Redis key prefix; default: MATCHER_STREAM_PREFIX or exchange")

    def handle(self, *args: Any, **options: Any) -> None:
        shard: int = options["shard"]
        symbols = self._symbols(shard, options["symbols"])
        redis_url = (options["redis_url"] or _setting("REDIS_URL")
                     or getattr(_setting("ENV"), "redis_url", None))
        if not redis_url:
            raise CommandError("no Redis: set REDIS_URL or pass --redis-url")
        data_dir = Path(options["data_dir"] or _setting("MATCHER_DATA_DIR")
                        or Path(settings.BASE_DIR) / "data")
        snapshot_every = options["snapshot_every"] or _setting("MATCHER_SNAPSHOT_EVERY", 10_000)
        prefix = options["prefix"] or _setting("MATCHER_STREAM_PREFIX", "exchange")

        client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5,
                                      health_check_interval=30)
        runner = StreamRunner(
            Matcher(symbols, shard=shard),
            client,
            shard,
            SnapshotStore(data_dir / f"shard-{shard}-stream-snapshots"),
            snapshot_every,
            prefix=prefix,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop())

        replayed = runner.recover(wait=True)
        if not runner.recovered:  # stopped while Redis was unreachable
            return
        self.stdout.write(f"shard {shard} recovered at seq {runner.matcher.seq} (stream id "
                          f"{runner.stream_id}, {replayed} replayed); symbols {', '.join(symbols)}")
        self.stdout.flush()
        runner.run()
        self.stdout.write(f"shard {shard} stopped at seq {runner.matcher.seq}")
        self.stdout.flush()
        client.close()

    @staticmethod
    def _symbols(shard: int, option: str | None) -> list[str]:
        if option:
            return [s.strip() for s in option.split(",") if s.strip()]
        shards = _setting("MATCHER_SHARDS") or {}
        symbols = shards.get(shard, shards.get(str(shard)))
        if not symbols:
            raise CommandError(f"shard {shard} has no symbols: set MATCHER_SHARDS or pass --symbols")
        return list(symbols)
