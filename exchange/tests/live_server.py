"""The real embedded exchange in a subprocess, for tests that need a server on a port (a browser, a
WebSocket client): `with live_exchange(tmp_path) as live: ... live.base_url ... live.ws_url`.

What scripts/run.sh does, in a scratch directory: a SQLite database and the matcher's journal in
`tmp_path`, `migrate`, `collectstatic` (into the shared STATIC_ROOT, as run.sh does: settings fix it,
so concurrent runs take a lock around it), `ensure_demo_users` (demo/demo, admin/admin, the market
maker's user), then uvicorn with the ASGI lifespan on a free port (the matcher, its projector and the
demo market maker start with it). It waits for `/health`, and at exit stops the server (SIGTERM, then
SIGKILL); a server that fails to start raises with the end of its output.

Nothing here touches pytest-django's test database: the server has its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matching.tests.worker.stream_driver import free_port

ROOT = Path(__file__).resolve().parents[2]
STATIC_LOCK = ROOT / "var" / "collectstatic.lock"  # var/ is git-ignored
START_TIMEOUT = 120.0  # seconds: migrations and collectstatic on a slow 2-core machine
# Variables of the caller's environment that would point the server somewhere else.
_DROPPED = ("REDIS_URL", "REDIS_CACHE_URL", "EXCHANGE_MODE", "DEBUG", "DATABASE_URL", "MATCHER_DATA_DIR",
            "MATCHER_SHARDS", "SECRET_KEY", "PORT", "HOST")


class ServerFailed(RuntimeError):
    """The live server did not start (its output is in the message)."""


@dataclass
class LiveExchange:
    base_url: str  # http://127.0.0.1:PORT
    ws_url: str  # ws://127.0.0.1:PORT/ws
    port: int
    directory: Path  # the database, the matcher's data and the server's log
    env: dict[str, str] = field(repr=False)
    log: Path = field(repr=False)

    def url(self, path: str) -> str:
        return self.base_url + path

    def manage(self, *args: str, timeout: float = 120) -> str:
        """`manage.py ARGS` against this server's database; its standard output."""
        return _run([sys.executable, "manage.py", *args], self.env, timeout=timeout)

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")

    def get_json(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        return call_json(self.url(path), token=token)


def call_json(url: str, method: str = "GET", *, token: str | None = None,
              body: dict | None = None) -> tuple[int, Any]:
    """One JSON call to a running server: (status, decoded body), 4xx and 5xx included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, method=method, data=data)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _run(command: list[str], env: Mapping[str, str], *, timeout: float) -> str:
    done = subprocess.run(command, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ServerFailed(f"{' '.join(command[1:])} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-6000:]}")
    return done.stdout


def collectstatic(env: Mapping[str, str]) -> None:
    """Collect into the shared STATIC_ROOT under a lock, so two test runs never copy at once."""
    STATIC_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with STATIC_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], env,
                 timeout=300)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def server_env(directory: Path, *, market_maker: bool, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _DROPPED}
    env.update({
        "DJANGO_SETTINGS_MODULE": "exchange.settings",
        "DEBUG": "true",  # the local demo's settings: demo logins exist
        "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
        "MATCHER_DATA_DIR": str(directory / "matcher"),
        "DEMO_MARKET_MAKER": "1" if market_maker else "0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra_env or {})
    return env


def wait_healthy(base_url: str, server: subprocess.Popen, log: Path, *,
                 timeout: float = START_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = log.read_text(errors="replace")[-6000:]
            raise ServerFailed(f"the server exited {server.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=5) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:  # 503: a component not ready yet
            last = error.read()[:500]
        except (OSError, ValueError) as error:
            last = error
        time.sleep(0.25)
    raise ServerFailed(f"/health not ok after {timeout:.0f}s (last: {last!r}):\n"
                       f"{log.read_text(errors='replace')[-6000:]}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@contextlib.contextmanager
def live_exchange(tmp_path: Path, *, market_maker: bool = True, extra_env: Mapping[str, str] | None = None,
                  static: bool = True) -> Iterator[LiveExchange]:
    """The embedded exchange serving on a free port until the block ends. `market_maker`: the demo
    market maker quotes every instrument (DEMO_MARKET_MAKER); `extra_env` overrides any variable
    (e.g. MARKET_MAKER_INTERVAL, API_RATES); `static=False` skips collectstatic (DEBUG serves the
    files from their sources anyway)."""
    directory = Path(tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    env = server_env(directory, market_maker=market_maker, extra_env=extra_env)
    _run([sys.executable, "manage.py", "migrate", "--noinput"], env, timeout=300)
    if static:
        collectstatic(env)
    _run([sys.executable, "manage.py", "ensure_demo_users"], env, timeout=120)
    port = free_port()
    log = directory / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "exchange.asgi:application", "--host", "127.0.0.1", "--port",
             str(port), "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
             "--lifespan", "on"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, server, log)
        yield LiveExchange(base_url=base_url, ws_url=f"ws://127.0.0.1:{port}/ws", port=port,
                           directory=directory, env=env, log=log)
    finally:
        stop(server)
