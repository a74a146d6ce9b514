"""Where one order entry request spends its time: each stage alone, in process, one at a time.

    python bench/api_stages.py [--commands 2000] [--runs 3]

Embedded default (scratch SQLite database, matcher thread, journal with fsync), Django set up as the
server runs it. Each stage is timed on its own over --commands calls (medians of per-run medians, µs):

  server floor      daphne and uvicorn answering a trivial ASGI app (a fixed 201 JSON), through the
                    same socket client as bench/api_load.py: HTTP parsing, the event loop, the client
  django, empty     an async view that returns at once, through exchange.asgi's handler and the
                    middleware (before: Django's handler and middleware)
  the view's steps  authenticate, throttle, parse, validate, matcher round trip, answer
  whole request     POST /api/submit through the handler, in process (no HTTP)

"before" rows time the same steps as DRF's SubmitView did them (database lookups, the pickling
cache, Django's own handler and middleware) for comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import parse_args, print_header

ROOT = Path(__file__).resolve().parent.parent
# IOC into an empty book: the whole path (journal, fsync, engine) every time, and nothing left open
# to accumulate against the risk limits over thousands of calls
ORDER = {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "100.00", "time_in_force": "ioc"}
STOCK_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


async def floor_app(scope: dict, receive, send) -> None:
    """The server floor: answers any HTTP request with a fixed 201 JSON body."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"success":true}'
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def server_floor(args) -> list[tuple[str, float, float]]:
    from bench import api_load

    rows = []
    for server in ("daphne", "uvicorn"):
        port = api_load.free_port()
        command = [part if part != "exchange.asgi:application" else "bench.api_stages:floor_app"
                   for part in api_load.SERVERS[server](port)]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            api_load.wait_listening(port, proc)
            tokens = ["0" * 40] * 32
            api_load.load(port, tokens, 1, 200)
            p50s, rates = [], []
            for _ in range(args.runs):
                _, latencies, _ = api_load.load(port, tokens, 1, args.commands)
                p50s.append(statistics.median(latencies) / 1000)
                rates.append(api_load.load(port, tokens, 32, args.commands)[0])
            rows.append((server, statistics.median(p50s), statistics.median(rates)))
        finally:
            proc.terminate()
            proc.wait(10)
    return rows


def setup(scratch: str) -> str:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "exchange.settings",
                       "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3",
                       "MATCHER_DATA_DIR": f"{scratch}/matcher",
                       "DEBUG": "true", "REDIS_URL": "",
                       "API_RATES": "submit=1000000/s,burst=1000000/s,sustained=1000000/s"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connections
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("stages")
    key = Token.objects.create(user=user).key
    connections.close_all()
    return key


def asgi_call(app, path: str, body: bytes, key: str):
    async def call() -> int:
        sent: list[dict] = []
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        done = asyncio.Event()

        async def receive() -> dict:
            if pending:
                return pending.pop()
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                   "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                   "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                   "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Token {key}".encode()),
                               (b"content-type", b"application/json"),
                               (b"content-length", str(len(body)).encode())]}, receive, send)
        return sent[0]["status"]

    return call


def timed(fn, n: int, runs: int) -> float:
    """Median over runs of the median µs of one call of `fn`; a call that returns a coroutine is
    awaited (in an event loop), anything else runs outside one (the ORM refuses to run in one)."""
    probe = fn()
    is_async = asyncio.iscoroutine(probe)
    if is_async:
        probe.close()

    async def run_async() -> float:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            await fn()
            samples.append(time.perf_counter_ns() - t0)
        return statistics.median(samples) / 1000

    def run_sync() -> float:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
        return statistics.median(samples) / 1000

    if not is_async:
        run_sync()  # warm up
        return statistics.median(run_sync() for _ in range(runs))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run_async())  # warm up
        return statistics.median(loop.run_until_complete(run_async()) for _ in range(runs))
    finally:
        loop.close()


def main() -> int:
    args = parse_args(__doc__, commands=2000, runs=3)
    print_header()
    print("\nserver floor (a trivial ASGI app; client in this process):")
    for server, p50, rate in server_floor(args):
        print(f"  {server:<8} 1 client p50 {p50:6.0f} µs    32 clients {rate:8,.0f} requests/s")
    with tempfile.TemporaryDirectory() as scratch:
        key = setup(scratch)
        stages(args, key)
    return 0


def stages(args, key: str) -> None:
    from types import SimpleNamespace

    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler as DjangoHandler
    from django.http import JsonResponse
    from django.test import RequestFactory, override_settings
    from django.urls import include, path
    from rest_framework.authtoken.models import Token
    from rest_framework.parsers import JSONParser

    from exchange.api import lookups, order_entry, serializers, views
    from exchange.asgi import django_asgi_app
    from exchange.models import Instrument
    from matching import services
    from matching.engine import OrderType, Side, TimeInForce
    from risk.models import Account

    async def empty(request):
        return JsonResponse({"success": True}, status=201)

    empty.csrf_exempt = True
    urls = type(sys)("bench_stage_urls")
    urls.urlpatterns = [path("bench/empty", empty), path("", include("exchange.urls"))]
    sys.modules["bench_stage_urls"] = urls
    n, runs = args.commands, args.runs
    body = json.dumps(ORDER).encode()
    rows: list[tuple[str, float | None, float | None]] = []

    with override_settings(ROOT_URLCONF="bench_stage_urls"):
        new_empty = timed(asgi_call(django_asgi_app, "/bench/empty", body, key), n, runs)
        new_whole = timed(asgi_call(django_asgi_app, "/api/submit", body, key), n, runs)
        with override_settings(MIDDLEWARE=STOCK_MIDDLEWARE,
                               CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                                   "LOCATION": "stock"}}):
            stock = DjangoHandler()
            old_empty = timed(asgi_call(stock, "/bench/empty", body, key), n, runs)
            drf = order_entry._drf_view
            order_entry._drf_view = views.SubmitView.as_view()
            real_fast = order_entry._fast_path_token
            order_entry._fast_path_token = lambda request: None  # every request to SubmitView, in a thread
            try:
                old_whole = timed(asgi_call(stock, "/api/submit", body, key), n, runs)
            finally:
                order_entry._fast_path_token, order_entry._drf_view = real_fast, drf

    rows.append(("Django handler and middleware, an empty async view", old_empty, new_empty))

    # the view's steps, new (in the event loop) and as SubmitView did them (database, pickling cache)
    user = Token.objects.select_related("user").get(key=key).user
    aapl = Instrument.objects.get(symbol="AAPL")
    rows.append(("authenticate: token -> user",
                 timed(lambda: Token.objects.select_related("user").get(key=key), n, runs),
                 timed(lambda: lookups.atoken_get(key), n, runs)))
    import rest_framework.throttling as drf_throttling
    from django.core.cache.backends.locmem import LocMemCache

    pickling = LocMemCache("bench-pickling", {})
    caller = SimpleNamespace(user=user)

    def old_throttles() -> None:
        for throttle_class in views.SubmitView.throttle_classes:
            throttle = throttle_class()
            throttle.cache = pickling
            throttle.allow_request(caller, None)

    assert drf_throttling is not None
    rows.append(("throttle: 3 rate limits (one-second windows, one caller)",
                 timed(old_throttles, n, runs), timed(lambda: order_entry._check_throttles(user), n, runs)))
    request = RequestFactory().post("/api/submit", body, content_type="application/json")
    rows.append(("parse the JSON body", None, timed(lambda: order_entry.parse_json(request.body), n, runs)))

    def old_validate() -> None:
        lookups.INSTRUMENTS.clear()  # SubmitView read the instrument from the database every time
        form = serializers.OrderRequest(data=ORDER)
        form.is_valid(raise_exception=True)

    rows.append(("validate (and the instrument)", timed(old_validate, n, runs),
                 timed(lambda: serializers.quick_order(ORDER, aapl), n, runs)))
    rows.append(("self-trade default: stp_default",
                 timed(lambda: Account.objects.filter(user_id=user.pk).values_list("stp_default", flat=True)
                       .first(), n, runs),
                 None))
    services.command_bus()
    order = services.OrderSpec(symbol="AAPL", side=Side.BUY, order_type=OrderType.LIMIT, qty_lots=1,
                               price_ticks=9000, tif=TimeInForce.IOC)
    rows.append(("matcher round trip (journal fsync included)",
                 timed(lambda: services.order_submit(user_id=user.pk, order=order), n, runs),
                 timed(lambda: services.order_submit_async(user_id=user.pk, order=order), n, runs)))
    reply = services.order_submit(user_id=user.pk, order=order)
    started = time.perf_counter_ns()
    rows.append(("answer: outcome and JSON", None,
                 timed(lambda: order_entry.json_response(views.submit_outcome(reply, aapl, started), 201),
                       n, runs)))
    rows.append(("whole request in process, no HTTP", old_whole, new_whole))
    services.command_bus_stop()
    assert settings.MATCHER_FSYNC and JSONParser

    print(f"\nstages in process, µs, medians of {runs} runs of {n} calls each:")
    print(f"  {'stage':<58} {'before':>8} {'now':>8}")
    for name, before, now in rows:
        text = [f"{v:8.0f}" if v is not None else f"{'':>8}" for v in (before, now)]
        print(f"  {name:<58} {text[0]} {text[1]}")


if __name__ == "__main__":
    sys.exit(main())
