"""One matcher shard's outputs, assembled in one place for both ways a shard runs: the embedded default
(a thread in the server process: matching/services.py) and `manage.py runmatcher` (a process reading
its Redis Stream). Only the host differs: who feeds the matcher, and where market data goes.

    outputs = ShardOutputs(shard, market_data)      the projection's cursor is read here
    recovery hands every reply after `outputs.cursor` to `outputs.project` and `outputs.replay`
    outputs.start()                                  the projector's writer thread
    outputs.recovered(matcher)                       market data seeded from the recovered books; the
                                                     trade list, 24h window and candles rebuilt from
                                                     the projection and the replayed trades
    host.subscribe(outputs.project)                  every live batch (before or after recovery, as
    host.subscribe(outputs.market_listener())        the host's listeners work)
    outputs.stop()                                   the projection written out

Nothing here starts at import; each piece starts when its host says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections

from marketdata.book_cache import MarketDataCache
from marketdata.rebuild import TradeReplay, rebuild_from_trades
from marketdata.redis_cache import RedisMarketDataWriter
from matching.projector import Projector
from matching.selectors import projected_seq
from matching.worker.matcher import Matcher, Reply


def cursor_name(shard: int) -> str:
    """The shard's ProjectionCursor name (web processes wait on it for read-your-writes)."""
    return f"shard-{shard}"


class ShardOutputs:
    """The projection (orders, trades, accounts in the ORM), the trade replay that rebuilds market data
    after a restart, and the market-data sink (the embedded cache or the Redis writer). `cursor`: None
    reads it from the database now; `projection=False` runs without a database (transport tests and
    benchmarks). `on_written(seq)` hears of each batch the projector commits. The WebSocket publisher
    is the host's to add: it reaches clients differently in each."""

    def __init__(self, shard: int, market_data: MarketDataCache | RedisMarketDataWriter, *,
                 projection: bool = True, cursor: int | None = None, flush_interval: float = 0.05,
                 on_written: Callable[[int], None] | None = None) -> None:
        self.shard = shard
        self.market_data = market_data
        self.projector: Projector | None = None
        self.replay: TradeReplay | None = None
        self.cursor: int | None = None
        if projection:
            name = cursor_name(shard)
            self.cursor = projected_seq(cursor_name=name) if cursor is None else cursor
            self.projector = Projector(cursor_name=name, shard=shard, flush_interval=flush_interval,
                                       on_written=on_written)
            self.replay = TradeReplay(after=self.cursor)  # replayed trades the database may not hold yet

    def project(self, replies: Iterable[Reply]) -> None:
        """Recovery's and every live batch's replies, to the projector and the trade replay."""
        if self.projector is not None:
            replies = list(replies)
            self.projector.project(replies)
            if self.replay is not None:
                self.replay(replies)

    def start(self) -> None:
        if self.projector is not None:
            self.projector.start()

    def recovered(self, matcher: Matcher) -> None:
        """Seed market data from the recovered matcher (deltas before its state are not replayed), then
        the trade-derived state; call it on the thread that feeds the market data from now on."""
        self.market_data.seed_engine(matcher.engine, matcher.seq)
        if self.replay is not None:
            rebuild_from_trades(self.market_data, matcher.engine.books, self.replay,
                                now=matcher.last_timestamp)
            connections.close_all()  # the host's thread serves the matcher now; the projector has its own

    def market_listener(self) -> Callable[[list[Reply]], Any]:
        return self.market_data.apply

    def stop(self) -> None:
        """Write out what the projector holds (what it cannot write, the next start projects again)."""
        if self.projector is not None:
            self.projector.stop(flush=True)

    def health(self) -> dict | None:
        return None if self.projector is None else self.projector.health()
