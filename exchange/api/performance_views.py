"""GET /api/performance/system: throughput, latency percentiles per stage, queue depth, batch sizes.

The figures come from `matching.worker.metrics`: this web process's own registry (its API requests,
`api.<view>.<method>`, and its callers' acknowledgement times, `bus.ack_*`), and per matcher shard
the `matcher.*` stages: read from the same registry in the embedded mode, from each shard's heartbeat
in production (the runner publishes a summary with it every half second). Percentiles cannot be
merged from summaries, so shards are shown one by one; only the command rates are added up.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api import schemas
from exchange.api.views import ERRORS
from exchange.env import Mode
from exchange.gc_tuning import gc_figures
from matching import services
from matching.worker.metrics import METRICS, WINDOWS

MATCHER_PREFIX = "matcher."
BATCH_SIZE = "matcher.batch_size"
COMMANDS = "matcher.commands"


class SystemPerformanceView(APIView):
    """GET /api/performance/system: how fast the exchange is running, per stage (any logged-in user:
    it reveals nothing about anyone's orders)."""

    @extend_schema(responses={200: schemas.SystemPerformance, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(system_figures())


def system_figures() -> dict[str, Any]:
    """This process's figures and each matcher shard's (the response of GET /api/performance/system)."""
    shards = [shard_figures(entry) for entry in services.matcher_metrics()]
    own = METRICS.summary()
    return {
        "mode": "redis" if settings.EXCHANGE_MODE == Mode.PRODUCTION else "embedded",
        "uptime_seconds": own["uptime_seconds"],
        "throughput": combined_rates([s["throughput"] for s in shards if s["throughput"] is not None]),
        "shards": shards,
        "stages": {name: value for name, value in own["stages"].items()
                   if not name.startswith(MATCHER_PREFIX)},
        "gc": gc_figures(),
    }


def shard_figures(entry: dict[str, Any]) -> dict[str, Any]:
    """A shard's status and its metrics summary, split into throughput, batch sizes and stages."""
    summary = entry.get("metrics") or {}
    stages = dict(summary.get("stages", {}))
    return {
        "shard": entry["shard"],
        "status": entry["status"],
        "seq": entry["seq"],
        "queue_depth": entry["queue_depth"],
        "age_seconds": entry["age_seconds"],
        "uptime_seconds": summary.get("uptime_seconds"),
        "throughput": summary.get("throughput", {}).get(COMMANDS),
        "batch_size": stages.pop(BATCH_SIZE, None),
        "stages": stages,
    }


def combined_rates(rates: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [f"last_{w}s" for w in WINDOWS]
    out: dict[str, Any] = {key: round(sum(r.get(key, 0.0) for r in rates), 1) for key in keys}
    out["total"] = sum(int(r.get("total", 0)) for r in rates)
    return out
