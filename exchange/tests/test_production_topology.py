"""scripts/run_production.sh end to end: PostgreSQL (a scratch database), a private durable Redis, two
matcher shards, two balance shards, two uvicorn web processes and the market maker, started by the
script as an operator would; orders driven through HTTP on both shards, the account's cash from its
balance shard; SIGTERM stops every process it started.

Skips loudly without PostgreSQL or redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.tests.live_server import call_json
from matching.tests.worker.stream_driver import free_port, scratch_postgres_or_skip

ROOT = Path(__file__).resolve().parents[2]


def call(port: int, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple:
    return call_json(f"http://127.0.0.1:{port}{path}", method, token=token, body=body)


def wait_healthy(port: int, script: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert script.poll() is None, log.read_text()[-4000:]
        try:
            status, health = call(port, "GET", "/health")
            if status == 200 and "marketmaker" in health["components"]:
                return health
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"not healthy in time:\n{log.read_text()[-4000:]}")


def test_the_production_topology_serves_orders_on_both_shards(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("!!! redis-server NOT INSTALLED: the production topology script is NOT tested. !!!")
    with scratch_postgres_or_skip() as database_url:
        web, redis_port, cache_port = free_port(), free_port(), free_port()
        env = {**os.environ, "SECRET_KEY": "test-only-secret-key-for-the-topology-run",
               "DATABASE_URL": database_url, "PORT": str(web), "REDIS_PORT": str(redis_port),
               "PRODUCTION_DIR": str(tmp_path / "production"), "MARKET_MAKER_INTERVAL": "0.5",
               "REDIS_CACHE_PORT": str(cache_port)}
        for name in ("REDIS_URL", "REDIS_CACHE_URL", "EXCHANGE_MODE", "MATCHER_DATA_DIR", "DEBUG",
                     "DJANGO_SETTINGS_MODULE"):
            env.pop(name, None)
        log = tmp_path / "topology.log"
        with log.open("w") as out:
            script = subprocess.Popen(["bash", "scripts/run_production.sh"], cwd=ROOT, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            health = wait_healthy(web, script, log)
            assert set(health["components"]["matcher"]["shards"]) == {"0", "1"}
            assert set(health["components"]["matcher"]["balance_shards"]) == {"0", "1"}  # the accounts
            manage_env = {**env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "DEBUG": "false",
                          "REDIS_CACHE_URL": f"redis://127.0.0.1:{cache_port}/0"}
            created = subprocess.run([sys.executable, "manage.py", "create_users", "--count", "1", "--prefix",
                                      "topo"], cwd=ROOT, env=manage_env, capture_output=True, text=True,
                                     timeout=60, check=True)
            token = created.stdout.strip().splitlines()[-1].split(",")[1]

            # AAPL (shard 0): buy what the market maker offers
            deadline = time.monotonic() + 30
            while not call(web, "GET", "/api/book/AAPL", token)[1]["asks"]:
                assert time.monotonic() < deadline, "the market maker never quoted AAPL"
                time.sleep(0.5)
            best_ask = call(web, "GET", "/api/book/AAPL", token)[1]["asks"][0]["price"]
            status, bought = call(web, "POST", "/api/submit", token, {
                "symbol": "AAPL", "side": "buy", "quantity": "1", "price": best_ask, "time_in_force": "ioc"})
            assert status == 201, bought
            assert bought["status"] == "filled"
            assert Decimal(bought["trades"][0]["price"]) <= Decimal(best_ask)

            # MSFT (shard 1): rest far below the market, then cancel at once (routed by the order id)
            bid = call(web, "GET", "/api/book/MSFT", token)[1]["bids"]
            price = str((Decimal(bid[0]["price"]) if bid else Decimal("420")) * Decimal("0.95"))
            price = str(Decimal(price).quantize(Decimal("0.01")))
            status, resting = call(web, "POST", "/api/submit", token,
                                   {"symbol": "MSFT", "side": "buy", "quantity": "2", "price": price})
            assert status == 201, resting
            assert resting["status"] == "open"
            answer = call(web, "DELETE", f"/api/cancel/{resting['order_id']}", token)
            assert answer == (200, {"success": True, "order_id": resting["order_id"], "status": "canceled",
                                    "canceled_quantity": "2"})

            # read-your-writes: the fill's answer came once shard 0's projection held it
            account = call(web, "GET", "/api/account", token)[1]
            assert [p["quantity"] for p in account["positions"] if p["symbol"] == "AAPL"] == ["1"]
            # one account across the shards (issue 13): its balance shard projects the fill's cost
            paid = Decimal(bought["trades"][0]["price"])
            deadline = time.monotonic() + 20
            while Decimal(call(web, "GET", "/api/account", token)[1]["cash"]) != Decimal(1_000_000) - paid:
                assert time.monotonic() < deadline, call(web, "GET", "/api/account", token)[1]
                time.sleep(0.2)
        finally:
            os.killpg(script.pid, signal.SIGTERM)
            try:
                script.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(script.pid, signal.SIGKILL)
                raise
        leftovers = subprocess.run(["pgrep", "-f", f"--port {web}|--port {redis_port}|--port {cache_port}"],
                                   capture_output=True, text=True).stdout.split()
        assert leftovers == []  # nothing of the topology outlives the script
