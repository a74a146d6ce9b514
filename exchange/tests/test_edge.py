"""What the edge answers to odd requests: never a 500 or a leaked secret (issue 9's "500s and leaks"
and its small papercuts). The NUL checks run on PostgreSQL too, where NUL in a query is a 500."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client, RequestFactory
from django.views.debug import technical_500_response

from exchange.env import read_env
from exchange.status_phrases import register_with_twisted

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-never-shown-4242"
DB_PASSWORD = "db-pass-never-shown-4242"

NUL_REQUESTS = [
    ("GET", "/api/book/AA%00PL", {}),
    ("GET", "/api/orders?symbol=AA%00PL", {}),
    ("GET", "/api/orders/client/AAPL/abc%00def", {}),
    ("GET", "/api/fills?symbol=%00", {}),
    ("GET", "/api/account", {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"de\x00mo:demo").decode()}),
]


def test_no_settings_object_prints_a_secret():
    env = read_env({"SECRET_KEY": SECRET, "DEBUG": "false",
                    "DATABASE_URL": f"postgres://app:{DB_PASSWORD}@db:5432/exchange",
                    "REDIS_URL": f"redis://:{DB_PASSWORD}@redis:6379/0"}, base_dir=ROOT)
    assert SECRET not in repr(env) and DB_PASSWORD not in repr(env)
    assert env.secret_key == SECRET  # still there to use
    assert "debug=False" in repr(env)


def test_the_debug_page_masks_secrets_and_urls(settings):
    settings.DEBUG = True
    settings.SECRET_KEY = SECRET
    settings.ENV = dataclasses.replace(settings.ENV, secret_key=SECRET,
                                       database_url=f"postgres://app:{DB_PASSWORD}@db/x")
    settings.REDIS_URL = f"redis://:{DB_PASSWORD}@redis:6379/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": settings.REDIS_URL}}
    request = RequestFactory().get("/api/book/AAPL")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        page = technical_500_response(request, *sys.exc_info()).content.decode()
    assert "RuntimeError" in page  # it is the debug page
    assert SECRET not in page
    assert DB_PASSWORD not in page


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "extra"), NUL_REQUESTS)
def test_nul_bytes_are_400_in_the_api_shape(method, path, extra, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("nul", password="pw"))
    answer = client.generic(method, path, **extra)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_request"


@pytest.mark.django_db
def test_a_nul_in_a_cookie_or_a_page_path_is_400():
    assert Client(HTTP_COOKIE="sessionid=ab\x00cd").get("/").status_code == 400
    assert Client().get("/accounts/login/%00").status_code == 400


def test_nul_bytes_on_postgresql(tmp_path):
    """The same requests against a PostgreSQL database, where they used to raise in the query."""
    from matching.tests.worker.stream_driver import scratch_postgres_or_skip

    with scratch_postgres_or_skip() as url:
        env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "exchange.settings",
               "MATCHER_DATA_DIR": str(tmp_path)}
        env.pop("REDIS_URL", None)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=120)
        script = (
            "import json, django; django.setup()\n"
            "from django.test import Client\n"
            "from django.contrib.auth import get_user_model\n"
            "user = get_user_model().objects.create_user('nul', password='pw')\n"
            "client = Client(); client.force_login(user)\n"
            f"requests = {NUL_REQUESTS!r}\n"
            "print(json.dumps([client.generic(m, p, **x).status_code for m, p, x in requests]))\n"
            "print(json.dumps(client.post('/api/submit', {'symbol': 'AA\\x00PL', 'side': 'buy',"
            " 'quantity': '1', 'price': '1', 'client_order_id': 'a\\x00b'},"
            " content_type='application/json').status_code))\n")
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        statuses, submit = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
        assert statuses == [400] * len(NUL_REQUESTS)
        assert submit == 400


@pytest.mark.django_db
def test_a_malformed_multipart_body_gets_the_api_shape(django_user_model):
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("mp", password="pw"))
    client.get("/accounts/login/")  # the CSRF cookie, so the CSRF middleware reads the body
    answer = client.generic("POST", "/api/submit", b"garbage", content_type="multipart/form-data",
                            HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert answer.status_code == 400
    assert answer.json()["code"] == "malformed_request"


@pytest.mark.django_db
def test_head_and_the_favicon(client):
    assert client.head("/").status_code == 200
    assert client.head("/health").status_code in (200, 503)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 302
    assert finders.find(icon["Location"].removeprefix(settings.STATIC_URL).removeprefix("/static/"))
    assert 'rel="icon"' in client.get("/").content.decode()


def test_status_lines_under_daphne_name_422_and_429():
    from twisted.web import http

    register_with_twisted()
    assert http.RESPONSES[422] == b"Unprocessable Entity"
    assert http.RESPONSES[429] == b"Too Many Requests"
    assert http.RESPONSES[404] == b"Not Found"  # Twisted's own are kept


@pytest.mark.django_db(transaction=True)
def test_a_websocket_to_an_unknown_path_is_refused_not_a_500():
    from exchange.asgi import application

    async def handshake() -> tuple:
        communicator = WebsocketCommunicator(application, "/no/such/socket",
                                             headers=[(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")])
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    connected, _ = async_to_sync(handshake)()
    assert connected is False


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'{"orders": null}', b'{"orders": {}}'])
def test_the_batch_endpoint_refuses_empty_and_odd_bodies_with_400(body, django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("batcher", password="pw"))
    answer = client.generic("POST", "/api/orders/batch", body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["code"] in ("invalid_request", "malformed_request")
