"""A seeded stream of realistic commands for driving a matcher (tests and benchmarks).

It knows which orders rest only through the matcher it feeds (`observe`), so a stream can be
resumed after a restart from the recovered books.
"""

from __future__ import annotations

import random

from matching.engine import CancelOrder, MatchingEngine, NewOrder, OrderType, Side, TimeInForce
from matching.worker.codec import WorkerCommand

SYMBOLS = ("AAPL", "MSFT")


class LoadGenerator:
    def __init__(self, seed: int, symbols: tuple[str, ...] = SYMBOLS, owners: int = 20) -> None:
        self.rng = random.Random(seed)
        self.symbols = symbols
        self.owners = owners
        self.client_ids = 0
        self.prefix = f"s{seed}-"  # distinct client order ids per seed, so a new run's are new

    def batch(self, engine: MatchingEngine, size: int) -> list[WorkerCommand]:
        """The next `size` commands given the books as they are now."""
        rng = self.rng
        out: list[WorkerCommand] = []
        for _ in range(size):
            symbol = rng.choice(self.symbols)
            owner = rng.randint(1, self.owners)
            live = list(engine.books[symbol].orders.values())
            roll = rng.random()
            if roll < 0.25 and live:
                order = rng.choice(live)
                out.append(CancelOrder(order.order_id, order.owner, symbol))
                continue
            side = rng.choice((Side.BUY, Side.SELL))
            self.client_ids += 1
            if roll < 0.35:
                out.append(NewOrder(0, owner, symbol, side, rng.randint(1, 50), None, OrderType.MARKET,
                                    client_order_id=f"{self.prefix}{self.client_ids}"))
            else:
                price = 10_000 + rng.randint(-20, 20)
                tif = TimeInForce.IOC if roll > 0.95 else TimeInForce.GTC
                out.append(NewOrder(0, owner, symbol, side, rng.randint(1, 50), price, tif=tif,
                                    client_order_id=f"{self.prefix}{self.client_ids}"))
        return out
