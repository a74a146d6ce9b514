"""`manage.py runmatcher --shard N`: one shard's matcher process in production (Redis Streams transport),
with its projection into the database.

    cursor = projected_seq("shard-N")                      (waits while the database is unreachable)
    outputs = ShardOutputs(N, RedisMarketDataWriter)       (matching/shard.py, as the embedded matcher's)
    runner.subscribe(outputs.project); outputs.start()     (the projector's writer: retries, never drops)
    runner.recover(replay_after=cursor)                    (newest snapshot <= cursor, or the stream's start:
                                                            every reply after the cursor is projected again)
    outputs.recovered(matcher)                             (market data seeded from the recovered books; its
                                                            trade list, 24h window and candles rebuilt from
                                                            the projection + the replayed trades)
    runner.subscribe(outputs.market_listener()), the WebSocket publisher
    runner.run()                                           (until SIGTERM/SIGINT: finish the batch, snapshot)
    outputs.stop()                                         (write out what is queued), exit 0

A snapshot or stream entry in a format this build does not read (`formats.UnsupportedFormat`) stops it
with that message and a non-zero exit status (CommandError), at recovery or later: never skipped.

With BALANCE_SHARDS (issue 13) the accounts live in the balance shards (`manage.py runbalances`): this
shard takes funded orders and sends its settlements to them.

Settings (each overridable by an option, which the tests use): MATCHER_SHARDS ({shard: [symbols]}),
REDIS_URL, MATCHER_DATA_DIR (snapshots go to `shard-N-stream-snapshots/` under it),
MATCHER_SNAPSHOT_EVERY, MATCHER_STREAM_PREFIX; DATABASE_URL for the projection. `--no-projection` runs
the matcher alone, touching no database (transport tests and benchmarks; never in production, where the
web tier reads orders and trades from the projection).
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from exchange.gc_tuning import settle_heap
from marketdata.publisher import Publisher
from marketdata.redis_cache import RedisMarketDataWriter, connect
from matching.selectors import projected_seq
from matching.shard import ShardOutputs, cursor_name
from matching.worker.codec import encode_command
from matching.worker.formats import UnsupportedFormat
from matching.worker.matcher import Matcher
from matching.worker.projection_watch import ProjectionAnnouncer
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import StreamRunner, entry_fields
from risk.config import worker_config

log = logging.getLogger("matching.runmatcher")


class Command(BaseCommand):
    help = "Run one matcher shard: read its Redis Stream, match, reply, project; snapshot on SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--shard", type=int, required=True)
        parser.add_argument("--symbols", help="comma-separated; default: MATCHER_SHARDS[shard]")
        parser.add_argument("--redis-url", help="default: REDIS_URL")
        parser.add_argument("--data-dir", help="default: MATCHER_DATA_DIR")
        parser.add_argument("--snapshot-every", type=int, help="default: MATCHER_SNAPSHOT_EVERY")
        parser.add_argument("--prefix", help="Redis key prefix; default: MATCHER_STREAM_PREFIX")
        parser.add_argument("--balance-shards", type=int,
                            help="accounts in this many balance shards (runbalances); "
                                 "default: BALANCE_SHARDS")
        parser.add_argument("--no-projection", action="store_true",
                            help="run without the database: no projection of orders and trades, no risk "
                                 "configuration from it (tests, benchmarks)")

    def handle(self, *args: Any, **options: Any) -> None:
        shard: int = options["shard"]
        symbols = self._symbols(shard, options["symbols"])
        redis_url = options["redis_url"] or settings.REDIS_URL
        if not redis_url:
            raise CommandError("no Redis: set REDIS_URL or pass --redis-url")
        data_dir = Path(options["data_dir"] or settings.MATCHER_DATA_DIR)
        prefix = options["prefix"] or settings.MATCHER_STREAM_PREFIX
        projection = not options["no_projection"]

        client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5,
                                      health_check_interval=30)
        balance_shards = options["balance_shards"]
        if balance_shards is None:
            balance_shards = settings.BALANCE_SHARDS
        runner = StreamRunner(
            Matcher(symbols, shard=shard, balance_shards=balance_shards),
            client,
            shard,
            SnapshotStore(data_dir / f"shard-{shard}-stream-snapshots"),
            options["snapshot_every"] or settings.MATCHER_SNAPSHOT_EVERY,
            prefix=prefix,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop())

        cursor = self._projected_seq(shard, runner) if projection else None
        if projection and cursor is None:  # stopped while the database was unreachable
            client.close()
            return
        market_data = RedisMarketDataWriter(connect(redis_url), prefix)
        # the projector writes as soon as it has replies (what arrives during a write is the next batch):
        # web processes wait for the projection before answering an order (read-your-writes), so any
        # batch interval would be part of every order's latency (5 ms cost a lone order 20%, measured)
        announce = ProjectionAnnouncer(client, prefix, shard)  # web processes wait on it, not on the database
        outputs = ShardOutputs(shard, market_data, projection=projection, cursor=cursor,
                               flush_interval=0.0, on_written=announce)
        if cursor is not None:
            announce(cursor)
        runner.subscribe(outputs.project)  # replayed batches too: the projector skips seqs <= cursor
        if projection:
            runner.heartbeat_extra = lambda: {"projector": outputs.health()}
        outputs.start()
        feeds: Publisher | None = None
        try:
            replayed = runner.recover(wait=True, replay_after=cursor)
            if not runner.recovered:  # stopped while Redis was unreachable
                return
            # The risk stage's starting cash and this shard's limits, through the log like any admin
            # change: the stream holds every input the shard's state depends on.
            if projection:  # without a database the risk stage stays unconfigured
                shards = sorted(set(settings.MATCHER_SHARDS) | {shard})
                config = worker_config(symbols, shard=shards.index(shard), shards=len(shards))
                for cmd in runner.matcher.config_changes(config):
                    client.xadd(runner.stream, entry_fields(encode_command(cmd)))
            outputs.recovered(runner.matcher)
            runner.subscribe(outputs.market_listener())
            if projection:  # the WebSocket feeds, to every web process through the channel layer
                feeds = Publisher(market_data.cache, runner.matcher.engine)
                runner.subscribe(feeds.on_replies)
                feeds.start_thread()  # its own event loop, sending to the channels-redis groups
            since = "" if cursor is None else f", projection cursor {cursor}"
            self.stdout.write(f"shard {shard} recovered at seq {runner.matcher.seq} (stream id "
                              f"{runner.stream_id}{since}, {replayed} replayed); "
                              f"symbols {', '.join(symbols)}")
            self.stdout.flush()
            settle_heap(settings.GC_YOUNG_THRESHOLD)  # recovered: that heap lives as long as we do
            runner.run()
            self.stdout.write(f"shard {shard} stopped at seq {runner.matcher.seq}")
            self.stdout.flush()
        except UnsupportedFormat as exc:
            raise CommandError(f"shard {shard}: {exc}") from exc
        finally:
            if feeds is not None:
                feeds.stop_thread()  # the last publication out
            # Whatever is left unwritten (the database down past the timeout) is logged; the next
            # start recovers from the cursor and projects it again.
            outputs.stop()
            health = outputs.health()
            if health is not None and health["queue_depth"] == 0:
                self.stdout.write(f"shard {shard} projection written")
                self.stdout.flush()
            client.close()

    @staticmethod
    def _projected_seq(shard: int, runner: StreamRunner) -> int | None:
        """The shard's projection cursor, retried with backoff while the database is unreachable
        (None if asked to stop meanwhile)."""
        delay = 0.1
        while not runner.stopping:
            try:
                return projected_seq(cursor_name=cursor_name(shard))
            except DatabaseError as exc:
                log.warning("shard %d: database unreachable (%s); retrying in %.1fs", shard, exc, delay)
                deadline = time.monotonic() + delay
                while not runner.stopping and time.monotonic() < deadline:
                    time.sleep(0.05)
                delay = min(delay * 2, 2.0)
            finally:
                connections.close_all()  # this thread serves Redis from now on; the projector has its own
        return None

    @staticmethod
    def _symbols(shard: int, option: str | None) -> list[str]:
        if option:
            return [s.strip() for s in option.split(",") if s.strip()]
        symbols = settings.MATCHER_SHARDS.get(shard)
        if not symbols:
            raise CommandError(f"shard {shard} has no symbols: set MATCHER_SHARDS or pass --symbols")
        return list(symbols)
