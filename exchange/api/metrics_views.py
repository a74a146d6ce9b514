"""GET /metrics: the figures of GET /api/performance/system in Prometheus' text format (version 0.0.4).

Staff only, through any of the API's ways to sign in: a scraper uses a staff account's token
(`authorization: {type: Token, credentials: <key>}` in its scrape config) or basic auth. Not in the
OpenAPI schema: it is text for a scraper, not part of the JSON API. Latencies are in seconds, as
Prometheus names them; a stage's `_sum` is its mean times its count (the histogram keeps no exact sum
below 0.1 µs). Each shard is a `shard` label; the web process's own stages have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api.performance_views import system_figures

QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("0.999", "p999"))


class PrometheusText(BaseRenderer):
    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        if isinstance(data, dict):  # an error (401, 403, 429): its code and message
            data = f"# {data.get('code', 'error')}: {data.get('message', '')}\n"
        return str(data).encode()


class PrometheusView(APIView):
    """GET /metrics (staff): throughput, stage latencies, batch sizes, seq and queue depth."""

    permission_classes = (IsAdminUser,)
    renderer_classes = (PrometheusText,)

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(exposition(system_figures()), content_type="text/plain; version=0.0.4; charset=utf-8")


def exposition(figures: dict[str, Any]) -> str:
    """The text format: one # TYPE line per metric family, then its samples."""
    families: dict[str, tuple[str, str, list[str]]] = {}

    def sample(name: str, kind: str, help_text: str, labels: dict[str, str], value: float) -> None:
        family = name.removesuffix("_sum").removesuffix("_count") if kind == "summary" else name
        lines = families.setdefault(family, (kind, help_text, []))[2]
        text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{text}}} {value:.9g}" if text else f"{name} {value:.9g}")

    def summary(name: str, help_text: str, labels: dict[str, str], stage: dict[str, Any],
                scale: float) -> None:
        for quantile, key in QUANTILES:
            sample(name, "summary", help_text, {**labels, "quantile": quantile}, stage[key] * scale)
        sample(f"{name}_sum", "summary", help_text, labels, stage["mean"] * stage["count"] * scale)
        sample(f"{name}_count", "summary", help_text, labels, stage["count"])

    stage_help = "time per stage: api.<view>.<method> requests, bus acknowledgements, matcher steps"
    sample("exchange_uptime_seconds", "gauge", "seconds since this web process started", {},
           figures["uptime_seconds"])
    for name, stage in figures["stages"].items():
        summary("exchange_stage_seconds", stage_help, {"stage": name}, stage, 1e-6)
    for shard in figures["shards"]:
        labels = {"shard": str(shard["shard"])}
        sample("exchange_matcher_up", "gauge", "1 if the shard's matcher is ok", labels,
               1 if shard["status"] == "ok" else 0)
        for key, help_text in (("seq", "the last command the matcher applied"),
                               ("queue_depth", "commands waiting for the matcher")):
            if shard[key] is not None:
                sample(f"exchange_matcher_{key}", "gauge", help_text, labels, shard[key])
        if shard["throughput"] is not None:
            sample("exchange_commands_total", "counter", "commands the matcher processed", labels,
                   shard["throughput"]["total"])
            for window in ("1s", "10s", "60s"):
                sample("exchange_commands_per_second", "gauge", "commands per second over a window",
                       {**labels, "window": window}, shard["throughput"][f"last_{window}"])
        if shard["batch_size"] is not None:
            summary("exchange_batch_size", "commands per matcher batch", labels, shard["batch_size"], 1.0)
        for name, stage in shard["stages"].items():
            summary("exchange_stage_seconds", stage_help, {**labels, "stage": name}, stage, 1e-6)
    collector = figures["gc"]
    sample("exchange_gc_frozen_objects", "gauge", "objects of startup frozen out of garbage collection", {},
           collector["frozen_objects"])
    for generation, counts in enumerate(collector["generations"]):
        sample("exchange_gc_collections_total", "counter", "garbage collections of this web process",
               {"generation": str(generation)}, counts["collections"])
    out = []
    for family, (kind, help_text, lines) in families.items():
        out += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}", *lines]
    return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
