"""Helpers for the Redis transport tests: a reachable Redis or a loud skip, unique key prefixes, a
private durable redis-server, a scratch PostgreSQL database, and `manage.py runmatcher` processes.

Tests use TEST_REDIS_URL (default redis://127.0.0.1:6379/15) with a fresh key prefix each, deleted
afterwards; the crash test starts its own redis-server (appendonly, appendfsync always). The production
mode test creates its own PostgreSQL database on TEST_POSTGRES_URL's server (default
postgres://postgres@127.0.0.1:5432/test) and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def redis_or_skip(url: str = REDIS_URL) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"!!! REDIS UNREACHABLE at {url} ({exc}): the Redis transport is NOT tested. "
                    "Start Redis or set TEST_REDIS_URL. !!!")
    return client


def new_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- a scratch PostgreSQL database -------------------------------------------------------------

@contextlib.contextmanager
def scratch_postgres_or_skip(url: str = POSTGRES_URL) -> Iterator[str]:
    """A new, empty database on `url`'s server, as a URL; dropped afterwards (its connections ended)."""
    import psycopg

    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=2)
    except psycopg.Error as exc:
        pytest.skip(f"!!! POSTGRESQL UNREACHABLE at {url} ({str(exc).strip()}): the production mode is NOT "
                    "tested. Start PostgreSQL or set TEST_POSTGRES_URL. !!!")
    name = f"test_production_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(url)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.close()


# ---- a private, durable redis-server ------------------------------------------------------------

class RedisServer:
    """`redis-server` on a free port, every write fsynced to an append-only file under `directory`."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("!!! redis-server NOT INSTALLED: the kill -9 durability test does NOT run. !!!")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping() and client.info("persistence").get("loading") == 0:
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start (see {self.directory / 'redis.log'})")
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


# ---- runmatcher processes --------------------------------------------------------------------

class RunmatcherProcess:
    """`python manage.py runmatcher --shard N [args]` (or another such `command`: runbalances) with `env`
    over this process's environment; its stdout and stderr lines are collected in `lines` and `errors`."""

    def __init__(self, shard: int, args: list[str], env: dict[str, str] | None = None,
                 command: str = "runmatcher") -> None:
        self.shard = shard
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "exchange.settings", "PYTHONUNBUFFERED": "1",
               **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", command, "--shard", str(shard), *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(out, into), daemon=True)
                         for out, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_recovered(self, timeout: float = 30) -> int:
        """The seq it recovered to, once it says so (it serves from then on)."""
        return int(self.recovered_line(timeout).split(" recovered at seq ")[1].split()[0])

    def recovered_line(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if " recovered at seq " in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"shard {self.shard} did not recover: {self.lines + self.errors}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def ensure_dead(self) -> None:
        if self.proc.poll() is None:
            self.kill9()


class MatcherProcess(RunmatcherProcess):
    """A transport-only shard: everything given as options, and no projection (no database touched;
    `test_production_mode.py` runs shards configured by the environment, with their projection)."""

    def __init__(self, shard: int, symbols: list[str], redis_url: str, prefix: str, data_dir: Path,
                 snapshot_every: int = 10_000) -> None:
        super().__init__(shard, ["--symbols", ",".join(symbols), "--redis-url", redis_url, "--prefix", prefix,
                                 "--data-dir", str(data_dir), "--snapshot-every", str(snapshot_every),
                                 "--no-projection"])
