"""The web tier per endpoint, from outside, beside the framework's floor: requests/s, latency and server
CPU per request, for the embedded default and the production topology.

    python bench/api_endpoints.py [--commands 3000] [--runs 3] [--clients 32] [--modes embedded,production]
                                  [--endpoints ping,book,account,orders,submit]

Endpoints (token auth, keep-alive HTTP/1.1, one user and token per client):
  ping     GET /api/ping: the framework floor (authentication, rate limits, DRF, the middleware; no work)
  book     GET /api/book/AAPL          account  GET /api/account          orders  GET /api/orders?limit=10
  submit   POST /api/submit (buy and sell limit orders alternately, resting and crossing)

Modes:
  embedded    what scripts/run.sh serves (one uvicorn process with the matcher thread; SQLite, journal with
              fsync), with DEBUG off and the market maker off, on a scratch database
  production  scripts/run_production.sh as it stands (scratch PostgreSQL database, a private durable Redis
              and a volatile one, two matcher shards, two uvicorn worker processes, the market maker)

Server CPU per request: the user+system CPU time of the server's processes (the uvicorn process and its
workers; in production also the shards and the Redis servers) over a run, divided by its requests.
The clients run in this process, on the same two cores: they are part of the load, as for any user
of this machine. Rate limits are lifted for the run (API_RATES).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api_load import (
    POSTGRES_URL,
    client_run,
    drop_database,
    free_port,
    manage,
    postgres_admin,
    wait_listening,
)
from bench.harness import deployed_settings, percentile, print_header

ROOT = Path(__file__).resolve().parent.parent
RATES = "submit=1000000/s,burst=1000000/s,sustained=1000000/s"
TICKS = os.sysconf("SC_CLK_TCK")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=3000, help="requests per endpoint and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--modes", default="embedded,production")
    parser.add_argument("--endpoints", default="ping,book,account,orders,submit")
    return parser.parse_args()


def get(path: str) -> Callable[[str, int], bytes]:
    def build(token: str, n: int) -> bytes:
        return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n\r\n").encode()

    return build


def submit(token: str, n: int) -> bytes:
    body = json.dumps({"symbol": "AAPL", "side": "buy" if n % 2 else "sell", "quantity": "1",
                       "price": f"{100 + (n % 7) * 0.01:.2f}"}).encode()
    return (b"POST /api/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token " + token.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


ENDPOINTS: dict[str, Callable[[str, int], bytes]] = {
    "ping": get("/api/ping"),
    "book": get("/api/book/AAPL"),
    "account": get("/api/account"),
    "orders": get("/api/orders?limit=10"),
    "submit": submit,
}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their live children (uvicorn's workers)."""
    total = 0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            todo += [int(child) for child in children]
    return total / TICKS


def load(port: int, tokens: list[str], build: Callable[[str, int], bytes], total: int,
         server: list[int]) -> tuple[float, list[int], float, list[str]]:
    latencies: list[int] = []
    errors: list[str] = []
    per_client = max(1, total // len(tokens))
    requests = [[build(token, n) for n in range(14)] for token in tokens]
    threads = [threading.Thread(target=client_run, args=(port, mine, per_client, latencies, errors))
               for mine in requests]
    cpu0, t0 = cpu_seconds(server), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server) - cpu0
    done = per_client * len(tokens)
    return done / elapsed, sorted(latencies), cpu / done * 1e6, errors


def tokens_for(env: dict, count: int) -> list[str]:
    out = manage(env, "create_users", "--count", str(count), "--prefix", f"bench{uuid.uuid4().hex[:6]}")
    return [line.split(",")[1] for line in out.strip().splitlines() if line.count(",") == 1][:count]


@contextlib.contextmanager
def embedded(scratch: str) -> Iterator[tuple[dict, int, list[int]]]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3",
           "MATCHER_DATA_DIR": f"{scratch}/m", "API_RATES": RATES, **deployed_settings(),
           "EXCHANGE_MODE": "embedded", "REDIS_URL": "",
           "DEMO_MARKET_MAKER": "0"}
    manage(env, "migrate", "--noinput")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "exchange.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
         "--no-access-log", "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        wait_listening(port, server)
        yield env, port, [server.pid]
    finally:
        server.terminate()
        server.wait(30)


@contextlib.contextmanager
def production(scratch: str) -> Iterator[tuple[dict, int, list[int]] | None]:
    admin = postgres_admin()
    if admin is None:
        yield None
        return
    name = f"bench_web_{uuid.uuid4().hex[:8]}"
    port, redis_port, cache_port = free_port(), free_port(), free_port()
    env = {**os.environ, "SECRET_KEY": "bench-only-" + uuid.uuid4().hex, "API_RATES": RATES,
           "DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", "PORT": str(port),
           "REDIS_PORT": str(redis_port), "REDIS_CACHE_PORT": str(cache_port), "PRODUCTION_DIR": scratch}
    for variable in ("REDIS_URL", "REDIS_CACHE_URL", "EXCHANGE_MODE", "MATCHER_DATA_DIR", "DEBUG"):
        env.pop(variable, None)
    script = subprocess.Popen(["bash", "scripts/run_production.sh"], cwd=ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, script, timeout=180)
        manage_env = {**env, "DEBUG": "false", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                      "REDIS_CACHE_URL": f"redis://127.0.0.1:{cache_port}/0"}
        yield manage_env, port, [script.pid]
    finally:
        os.killpg(script.pid, signal.SIGTERM)
        script.wait(60)
        drop_database(admin, name)


MODES = {
    "embedded": (embedded, "embedded default: one uvicorn process with the matcher thread, SQLite"),
    "production": (production, "production: run_production.sh (2 uvicorn workers, 2 shards, Redis, "
                               "PostgreSQL)"),
}


def main() -> int:
    args = parse()
    print_header()
    print(f"clients: {args.clients}, {args.commands} requests per endpoint and run, "
          f"medians of {args.runs} runs")
    for mode in args.modes.split(","):
        setup, description = MODES[mode]
        print(f"\nmode: {description}", flush=True)
        with tempfile.TemporaryDirectory() as scratch, setup(scratch) as started:
            if started is None:
                continue
            env, port, server = started
            tokens = tokens_for(env, args.clients)
            for name in args.endpoints.split(","):
                build = ENDPOINTS[name]
                load(port, tokens, build, 4 * args.clients, server)  # warm up
                rates, p50s, p99s, cpus, failures = [], [], [], [], 0
                for _ in range(args.runs):
                    rate, latencies, cpu, errors = load(port, tokens, build, args.commands, server)
                    rates.append(rate)
                    p50s.append(percentile(latencies, 0.5))
                    p99s.append(percentile(latencies, 0.99))
                    cpus.append(cpu)
                    failures += len(errors)
                    if errors:
                        print(f"    e.g. {errors[0]}")
                note = f"   ({failures} failed)" if failures else ""
                p50 = statistics.median(p50s) / 1000
                print(f"  {name:<8} {statistics.median(rates):>8,.0f} req/s   p50 {p50:7.2f} ms"
                      f"   p99 {statistics.median(p99s) / 1000:7.2f} ms   server CPU "
                      f"{statistics.median(cpus):7.0f} µs/request{note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
