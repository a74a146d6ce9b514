"""The production transport for the benchmarks: a private durable redis-server and a shard's matcher process.

    python bench/redis_runner.py --redis-url redis://127.0.0.1:PORT/0 [--prefix bench] [--shard 0]

Run as a script, this is the matcher process of one shard as `manage.py runmatcher` runs it, without
Django: `Matcher(SYMBOLS)` + `StreamRunner` on the shard's stream, no projection, no market data, no
snapshots (as the other rows of worker_bench.py take none), the cyclic garbage collector off. It prints
"ready" once recovered and serving, and "stopped at seq N" after SIGTERM or SIGINT.

Imported, it gives `RedisServer` (redis-server on a free port with `appendonly yes`, `appendfsync
always`, its data in a given directory, as stream_driver.py starts it for the tests) and
`RunnerProcess` (this script as a child process). No test code, so no pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.engine_bench import SYMBOLS
from matching.worker.balance_runner import BalanceRunner
from matching.worker.matcher import Matcher
from matching.worker.stream_runner import StreamRunner
from risk.core.balances import BalanceShard
from risk.core.commands import SetDefaultCash

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """`redis-server` on a free port, every write fsynced to an append-only file under `directory`.
    `RedisServer.binary()` is None when redis-server is not installed."""

    def __init__(self, directory: Path) -> None:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", str(directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def binary() -> str | None:
        return shutil.which("redis-server")

    def _wait_ready(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        try:
            while True:
                with contextlib.suppress(redis.RedisError):
                    if client.ping() and client.info("persistence").get("loading") == 0:
                        return
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start (see {self.directory / 'redis.log'})")
                time.sleep(0.02)
        finally:
            client.close()

    def version(self) -> str:
        client = redis.Redis.from_url(self.url)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()

    def flush(self) -> None:
        """Empty the database between measurements (the runner is stopped by then)."""
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM (redis-server exits cleanly on it), SIGKILL if it has not within 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class RunnerProcess:
    """This script as a child process: the shard's matcher, serving once `__init__` returns."""

    def __init__(self, redis_url: str, prefix: str, log: Path, shard: int = 0, *, balance_shards: int = 0,
                 role: str = "matching") -> None:
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--redis-url", redis_url, "--prefix", prefix,
             "--shard", str(shard), "--balance-shards", str(balance_shards), "--role", role],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log_file, text=True,
        )
        try:
            line = self.proc.stdout.readline() if self.proc.stdout else ""  # blocks until ready or exit
            if line.strip() != "ready":
                raise RuntimeError(f"the stream runner did not start: {line!r}, see {log}")
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM: the runner finishes its batch and returns; the seq it stopped at."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the stream runner did not stop in {timeout:g}s, see {self.log}") from None
        finally:
            self._log_file.close()
        if self.proc.returncode != 0 or "stopped at seq " not in out:
            raise RuntimeError(f"the stream runner failed (exit {self.proc.returncode}), see {self.log}")
        return int(out.split("stopped at seq ")[1].split()[0])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log_file.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--balance-shards", type=int, default=0,
                        help="matching role: the accounts live in that many balance shards (issue 13)")
    parser.add_argument("--role", choices=("matching", "balance"), default="matching",
                        help="balance: balance shard --shard's runner, for matching shard 0, every account "
                             "opening with 10**15 cash units")
    args = parser.parse_args()

    gc.disable()  # as the other rows of worker_bench.py: nothing in a book forms a cycle
    # the client as runmatcher builds it
    client = redis.Redis.from_url(args.redis_url, socket_timeout=10, socket_connect_timeout=5,
                                  health_check_interval=30)
    runner: StreamRunner | BalanceRunner
    if args.role == "balance":
        shard = BalanceShard(args.shard)
        shard.apply(SetDefaultCash(10**15))
        runner = BalanceRunner(shard, client, args.shard, None, args.prefix, [0])
    else:
        matcher = Matcher(SYMBOLS, shard=args.shard, balance_shards=args.balance_shards)
        runner = StreamRunner(matcher, client, args.shard, None, prefix=args.prefix)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stop())
    try:
        runner.recover()
        runner.heartbeat()  # RedisBus refuses a shard without one
        print("ready", flush=True)
        runner.run()
        seq = runner.seq if isinstance(runner, BalanceRunner) else runner.matcher.seq
        print(f"stopped at seq {seq}", flush=True)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
