"""Order entry through the real server: daphne, the embedded default, HTTP with keep-alive.

    python bench/api_load.py [--orders 2000] [--clients 1,8,32] [--runs 3]

Starts `daphne` on a free port against a scratch SQLite database and matcher directory (migrated,
one user and API token per client), then for each concurrency level has that many client threads
send `POST /api/submit` (alternating buy and sell limit orders that rest and cross, so trades occur)
as fast as answers come back. Prints orders/second and submit latency p50/p99 (medians over runs),
measured at the client: everything from the request leaving to the answer arriving.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import parse_args, percentile, print_header

ROOT = Path(__file__).resolve().parent.parent


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


def client_run(port: int, token: str, orders: int, latencies: list[int], errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    for n in range(orders):
        side = "buy" if n % 2 else "sell"
        body = json.dumps({"symbol": "AAPL", "side": side, "quantity": "1",
                           "price": f"{100 + (n % 7) * 0.01:.2f}"})
        t0 = time.perf_counter_ns()
        conn.request("POST", "/api/submit", body, headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter_ns() - t0)
        if response.status not in (201, 422):  # 422: a post-only or similar refusal is an answer too
            errors.append(f"{response.status} {payload[:200]!r}")
    conn.close()


def load(port: int, tokens: list[str], clients: int, total: int) -> tuple[float, list[int], list[str]]:
    latencies: list[int] = []
    errors: list[str] = []
    per_client = max(1, total // clients)
    threads = [threading.Thread(target=client_run, args=(port, tokens[i], per_client, latencies, errors))
               for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"    e.g. {errors[0]}")
    return per_client * clients / (time.perf_counter() - t0), sorted(latencies), errors


def main() -> int:
    args = parse_args(__doc__, commands=2000, runs=3)
    levels = [1, 8, 32]
    print_header()
    print("server:  daphne, embedded default (SQLite, matcher thread, journal with fsync)")
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3",
               "MATCHER_DATA_DIR": f"{scratch}/matcher", "DEBUG": "true", "REDIS_URL": "",
               "API_RATES": "submit=100000/s,burst=100000/s,sustained=10000000/min"}
        manage(env, "migrate", "--noinput")
        tokens = tokens_for(env, max(levels))
        server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                   "exchange.asgi:application"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            load(port, tokens, 1, 50)  # warm up: starts the matcher and the projector
            print(f"\n{args.commands} orders per level, medians of {args.runs} runs:")
            for clients in levels:
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
                      f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{note}")
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
