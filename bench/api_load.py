"""Order entry through the real server: daphne or uvicorn, the embedded default or production mode.

    python bench/api_load.py [--commands 2000] [--runs 3] [--servers daphne,uvicorn]
                             [--modes embedded,production]

Per mode, a scratch setup: embedded is a SQLite database and matcher directory in a temporary
directory (the matcher thread journals with fsync); production is a private redis-server (appendonly,
appendfsync always, as production requires), a scratch PostgreSQL database on 127.0.0.1:5432 and one
`manage.py runmatcher --shard 0` process (skipped, saying so, when either service is missing). Both are
migrated, with one user and API token per client. Then per server, that server is started on a free
port and, for each concurrency level, that many client threads send `POST /api/submit` over keep-alive
HTTP/1.1 (alternating buy and sell limit orders that rest and cross, so trades occur) as fast as answers
come back. Prints orders/second and submit latency p50/p99 (medians over runs), measured at the client:
from the request leaving to the answer arriving.

The clients are plain sockets with the requests built beforehand (http.client cost more per request
than the server's whole fast path). They run in this process, on the same two cores as the server.
Rate limits are lifted for the run (API_RATES) with one-second windows: DRF's throttles keep a list of
each caller's request times per window, and at a thousand requests a second a one-minute window would
make that list, not the server, what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import deployed_settings, percentile, print_header

ROOT = Path(__file__).resolve().parent.parent
LEVELS = [1, 8, 32]
RATES = "submit=1000000/s,burst=1000000/s,sustained=1000000/s"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SERVERS = {
    "daphne": lambda port: [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                            "exchange.asgi:application"],
    # uvloop and httptools: what `uvicorn[standard]` would pick; no access log, like daphne's default
    "uvicorn": lambda port: [sys.executable, "-m", "uvicorn", "exchange.asgi:application", "--host",
                             "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                             "--no-access-log", "--log-level", "warning"],
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=2000, help="orders per concurrency level and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7, help="unused: the orders are a fixed pattern")
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument("--modes", default="embedded,production")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout


def tokens_for(env: dict, count: int) -> list[str]:
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from rest_framework.authtoken.models import Token\n"
        f"for n in range({count}):\n"
        "    user, _ = get_user_model().objects.get_or_create(username=f'load{n}')\n"
        "    print(Token.objects.get_or_create(user=user)[0].key)\n"
    )
    # the shell also prints a line about its automatic imports: keep the 40-hex keys only
    return [w for w in manage(env, "shell", "-c", script).split() if len(w) == 40][:count]


def requests_for(token: str) -> list[bytes]:
    """The client's requests, in order: buy and sell alternately over seven prices."""
    out = []
    for n in range(14):
        body = json.dumps({"symbol": "AAPL", "side": "buy" if n % 2 else "sell", "quantity": "1",
                           "price": f"{100 + (n % 7) * 0.01:.2f}"}).encode()
        out.append(b"POST /api/submit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token " + token.encode()
                   + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                   + b"\r\n\r\n" + body)
    return out


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """(status, body) of the next response on a keep-alive connection (Content-Length framed)."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in head[1:]
                  if line.lower().startswith("content-length:"))
    while len(buffer) < end + 4 + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    body = bytes(buffer[end + 4:end + 4 + length])
    del buffer[:end + 4 + length]
    return int(head[0].split()[1]), body


def client_run(port: int, requests: list[bytes], count: int, latencies: list[int], errors: list[str]) -> None:
    """One keep-alive connection sending `requests` round and round, `count` in all, one at a time;
    each latency from the request leaving to its answer arriving."""
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for n in range(count):
            t0 = time.perf_counter_ns()
            sock.sendall(requests[n % len(requests)])
            status, body = read_response(sock, buffer)
            latencies.append(time.perf_counter_ns() - t0)
            if status not in (200, 201, 422):  # 422: a post-only or similar refusal is an answer too
                errors.append(f"{status} {body[:200]!r}")


def load(port: int, tokens: list[str], clients: int, total: int) -> tuple[float, list[int], list[str]]:
    latencies: list[int] = []
    errors: list[str] = []
    per_client = max(1, total // clients)
    threads = [threading.Thread(target=client_run, args=(port, requests_for(tokens[i]), per_client, latencies,
                                                             errors))
               for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"    e.g. {errors[0]}")
    return per_client * clients / (time.perf_counter() - t0), sorted(latencies), errors


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start listening")


# ---- the two modes ------------------------------------------------------------------------------------

@contextlib.contextmanager
def embedded(scratch: str) -> Iterator[dict]:
    yield {**os.environ, "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3",
           "MATCHER_DATA_DIR": f"{scratch}/matcher", "DEBUG": "true", "REDIS_URL": "", "API_RATES": RATES}


@contextlib.contextmanager
def production(scratch: str) -> Iterator[dict | None]:
    """A durable redis-server, a scratch PostgreSQL database and a runmatcher for shard 0; None (with
    the reason printed) when redis-server or PostgreSQL is missing."""

    binary = shutil.which("redis-server")
    if binary is None:
        print("production mode skipped: redis-server is not installed")
        yield None
        return
    admin = postgres_admin()
    if admin is None:
        yield None
        return
    name = f"bench_api_{uuid.uuid4().hex[:8]}"
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", scratch, "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", f"{scratch}/redis.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    matcher = None
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}",
               "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "MATCHER_DATA_DIR": f"{scratch}/matcher",
               **deployed_settings(), "API_RATES": RATES,
               "MATCHER_SHARDS": "0=AAPL,GOOGL,MSFT,TSLA", "DJANGO_SETTINGS_MODULE": "exchange.settings",
               "PYTHONUNBUFFERED": "1"}
        wait_listening(redis_port, redis_proc)
        manage(env, "migrate", "--noinput")
        matcher = subprocess.Popen([sys.executable, "manage.py", "runmatcher", "--shard", "0"], cwd=ROOT,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert matcher.stdout is not None
        output = matcher.stdout
        said = []
        for line in output:
            said.append(line)
            if " recovered at seq " in line:
                break
        else:
            raise RuntimeError("runmatcher exited before it recovered: " + "".join(said[-20:]))
        threading.Thread(target=lambda: [None for _ in output], daemon=True).start()  # drain it
        yield env
    finally:
        if matcher is not None:
            matcher.terminate()
            matcher.wait(30)
        redis_proc.terminate()
        redis_proc.wait(10)
        drop_database(admin, name)


def postgres_admin() -> Any | None:
    """An autocommit connection to POSTGRES_URL, or None (saying why) when there is no PostgreSQL."""
    import psycopg

    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=2)
    except psycopg.Error as exc:
        print(f"production mode skipped: no PostgreSQL at {POSTGRES_URL} ({str(exc).strip()})")
        return None


def drop_database(admin: Any, name: str) -> None:
    """Drop a scratch database (its connections ended first) and close the admin connection."""
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
    admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


MODES = {
    "embedded": (embedded, "embedded default (SQLite, matcher thread, journal with fsync)"),
    "production": (production, "production (Redis streams with appendfsync always, runmatcher, PostgreSQL)"),
}


def run_server(server: str, env: dict, tokens: list[str], args: argparse.Namespace) -> None:
    port = free_port()
    proc = subprocess.Popen(SERVERS[server](port), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        load(port, tokens, 1, 200)  # warm up: starts the matcher or the Redis bus, fills the caches
        load(port, tokens, max(LEVELS), 20 * max(LEVELS))
        print(f"\n{server}: {args.commands} orders per level, medians of {args.runs} runs:")
        for clients in LEVELS:
            rates, p50s, p99s, failures = [], [], [], 0
            for _ in range(args.runs):
                rate, latencies, errors = load(port, tokens, clients, args.commands)
                rates.append(rate)
                p50s.append(percentile(latencies, 0.5))
                p99s.append(percentile(latencies, 0.99))
                failures += len(errors)
            p50, p99 = statistics.median(p50s) / 1000, statistics.median(p99s) / 1000
            note = f"   ({failures} non-201 answers)" if failures else ""
            print(f"  {clients:>3} clients  {statistics.median(rates):>8,.0f} orders/s   submit latency "
                  f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{note}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    args = parse()
    print_header()
    for mode in args.modes.split(","):
        setup, description = MODES[mode]
        print(f"\nmode:    {description}", flush=True)
        with tempfile.TemporaryDirectory() as scratch, setup(scratch) as env:
            if env is None:
                continue
            if mode == "embedded":
                manage(env, "migrate", "--noinput")
            tokens = tokens_for(env, max(LEVELS))
            for server in args.servers.split(","):
                run_server(server, env, tokens, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
