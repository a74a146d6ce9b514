"""The ASGI lifespan protocol: this process's part of the exchange starts with the server and stops
with it (uvicorn sends lifespan events; exchange/asgi.py routes them here).

Startup: the command bus (embedded default: the matcher thread recovered from its journal, its
projector and market-data cache, the demo market maker when DEMO_MARKET_MAKER is on; production: the
client of the shards), and the embedded matcher's market-data publisher, whose loop runs in the server's
event loop beside the in-memory channel layer (marketdata/publisher.py). Shutdown: the publisher, the
market maker (its quotes canceled), then the matcher, the projection written out and the journal closed.
Once started, the heap of startup is frozen out of garbage collection (exchange/gc_tuning.py).
A server without lifespan events (daphne) starts the bus
with the first request that needs it, and leaves it to the process's exit.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from exchange.gc_tuning import settle_heap
from marketdata import publisher
from matching import services


async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await sync_to_async(services.command_bus, thread_sensitive=False)()
            except Exception as exc:  # the server refuses to start, saying why
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            publisher.ensure_running()  # embedded: WebSocket feeds from this loop (production: runmatcher's)
            settle_heap(settings.GC_YOUNG_THRESHOLD)  # started: what exists now lives as long as the process
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            running = publisher.installed()
            if running is not None:
                await running.aclose()
            await sync_to_async(services.command_bus_stop, thread_sensitive=False)()
            await send({"type": "lifespan.shutdown.complete"})
            return
