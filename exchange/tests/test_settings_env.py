import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from exchange.env import DEV_SECRET_KEY, parse_bool, parse_list, read_env

BASE_DIR = Path("/srv/exchange")


def test_defaults_are_local_and_embedded():
    env = read_env({}, base_dir=BASE_DIR)
    assert env.debug is True
    assert env.secret_key == DEV_SECRET_KEY
    assert env.database_url == "sqlite:////srv/exchange/db.sqlite3"
    assert env.redis_url is None
    assert env.allowed_hosts == ["127.0.0.1", "localhost"]
    assert env.csrf_trusted_origins == []


def test_empty_values_count_as_unset():
    env = read_env({"DEBUG": "", "REDIS_URL": " ", "DATABASE_URL": ""}, base_dir=BASE_DIR)
    assert env.debug is True
    assert env.redis_url is None
    assert env.database_url.startswith("sqlite:///")


def test_production_values_are_read():
    env = read_env(
        {
            "DEBUG": "false",
            "SECRET_KEY": "s3cret",
            "DATABASE_URL": "postgres://app:pw@db:5432/exchange",
            "REDIS_URL": "redis://redis:6379/0",
            "ALLOWED_HOSTS": "exchange.example, ,api.example,",
            "CSRF_TRUSTED_ORIGINS": "https://exchange.example",
        },
        base_dir=BASE_DIR,
    )
    assert (env.debug, env.secret_key) == (False, "s3cret")
    assert env.database_url == "postgres://app:pw@db:5432/exchange"
    assert env.redis_url == "redis://redis:6379/0"
    assert env.allowed_hosts == ["exchange.example", "api.example"]
    assert env.csrf_trusted_origins == ["https://exchange.example"]


def test_secret_key_is_required_without_debug():
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        read_env({"DEBUG": "0"}, base_dir=BASE_DIR)


@pytest.mark.parametrize("value", ["1", "TRUE", " yes ", "on"])
def test_parse_bool_true(value):
    assert parse_bool("DEBUG", value) is True


@pytest.mark.parametrize("value", ["0", "False", "no", "off"])
def test_parse_bool_false(value):
    assert parse_bool("DEBUG", value) is False


def test_parse_bool_rejects_anything_else():
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        parse_bool("DEBUG", "maybe")


def test_parse_list_drops_blanks():
    assert parse_list(" a , ,b,") == ["a", "b"]
    assert parse_list("") == []


@pytest.mark.parametrize(
    ("extra_env", "engine", "layer"),
    [
        ({}, "django.db.backends.sqlite3", "channels.layers.InMemoryChannelLayer"),
        (
            {"DATABASE_URL": "postgres://app:pw@db:5432/exchange", "REDIS_URL": "redis://redis:6379/0"},
            "django.db.backends.postgresql",
            "channels_redis.core.RedisChannelLayer",
        ),
    ],
)
def test_settings_module_follows_the_environment(extra_env, engine, layer):
    names = ("DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS")
    environ = {key: value for key, value in os.environ.items() if key not in names}
    environ |= {"DJANGO_SETTINGS_MODULE": "exchange.settings", **extra_env}
    code = (
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [engine, layer]


def test_matcher_defaults():
    env = read_env({}, base_dir=BASE_DIR)
    assert env.matcher_data_dir == BASE_DIR / "var" / "matcher"
    assert env.matcher_shards == {}
    assert env.matcher_timeout == 2.0
    assert env.matcher_fsync is True
    assert env.matcher_snapshot_every == 100_000


def test_matcher_shards_parse():
    env = read_env({"MATCHER_SHARDS": "0=aapl, GOOGL; 1=MSFT,TSLA"}, base_dir=BASE_DIR)
    assert env.matcher_shards == {0: ["AAPL", "GOOGL"], 1: ["MSFT", "TSLA"]}


@pytest.mark.parametrize("value", ["AAPL", "x=AAPL", "0=", "0=AAPL;1=AAPL", "0=AAPL;0=MSFT"])
def test_bad_matcher_shards_are_refused(value):
    with pytest.raises(ImproperlyConfigured, match="MATCHER_SHARDS"):
        read_env({"MATCHER_SHARDS": value}, base_dir=BASE_DIR)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *(("MATCHER_TIMEOUT", v) for v in ("0", "-1", "nan", "inf", "soon")),
        *(("MATCHER_SNAPSHOT_EVERY", v) for v in ("0", "1.5")),
    ],
)
def test_bad_matcher_numbers_are_refused(name, value):
    with pytest.raises(ImproperlyConfigured, match=name):
        read_env({name: value}, base_dir=BASE_DIR)


def test_cors_origins_are_none_unless_configured():
    assert read_env({}, base_dir=BASE_DIR).cors_allowed_origins == []
    env = read_env({"CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example"}, base_dir=BASE_DIR)
    assert env.cors_allowed_origins == ["https://a.example", "https://b.example"]


def test_api_rates_default_and_override():
    defaults = {"submit": "10/s", "burst": "100/s", "sustained": "1000/min"}
    assert read_env({}, base_dir=BASE_DIR).api_rates == defaults
    env = read_env({"API_RATES": "submit=500/s, sustained=100000/min"}, base_dir=BASE_DIR)
    assert env.api_rates == {"submit": "500/s", "burst": "100/s", "sustained": "100000/min"}


@pytest.mark.parametrize("value", ["submit", "submit=0/s", "submit=10/week", "orders=10/s", "submit=x/s"])
def test_bad_api_rates_are_refused(value):
    with pytest.raises(ImproperlyConfigured, match="API_RATES"):
        read_env({"API_RATES": value}, base_dir=BASE_DIR)


def test_account_starting_cash():
    assert read_env({}, base_dir=BASE_DIR).account_starting_cash == Decimal("1000000")
    env = read_env({"ACCOUNT_STARTING_CASH": " 2500.25 "}, base_dir=BASE_DIR)
    assert env.account_starting_cash == Decimal("2500.25")
    for bad in ("lots", "-1", "1.00001", "NaN", "Infinity"):
        with pytest.raises(ImproperlyConfigured, match="ACCOUNT_STARTING_CASH"):
            read_env({"ACCOUNT_STARTING_CASH": bad}, base_dir=BASE_DIR)


def test_demo_market_maker_is_off_unless_asked():
    env = read_env({}, base_dir=BASE_DIR)
    assert env.demo_market_maker is False and env.market_maker_interval == 1.0
    env = read_env({"DEMO_MARKET_MAKER": "1", "MARKET_MAKER_INTERVAL": "0.25"}, base_dir=BASE_DIR)
    assert env.demo_market_maker is True and env.market_maker_interval == 0.25
    for name, bad in (("DEMO_MARKET_MAKER", "maybe"), ("MARKET_MAKER_INTERVAL", "0")):
        with pytest.raises(ImproperlyConfigured, match=name):
            read_env({name: bad}, base_dir=BASE_DIR)


def test_one_explicit_mode():
    from exchange.env import Mode

    assert read_env({}, base_dir=BASE_DIR).mode is Mode.EMBEDDED
    production = read_env({"REDIS_URL": "redis://log:6379/0"}, base_dir=BASE_DIR)
    assert production.mode is Mode.PRODUCTION
    assert production.redis_cache_url == "redis://log:6379/0"  # one Redis for both unless told
    split = read_env({"EXCHANGE_MODE": "Production", "REDIS_URL": "redis://log:6379/0",
                      "REDIS_CACHE_URL": "redis://cache:6379/0"}, base_dir=BASE_DIR)
    assert (split.mode, split.redis_cache_url) == (Mode.PRODUCTION, "redis://cache:6379/0")
    with pytest.raises(ImproperlyConfigured, match="needs REDIS_URL"):
        read_env({"EXCHANGE_MODE": "production"}, base_dir=BASE_DIR)
    with pytest.raises(ImproperlyConfigured, match="unset one"):
        read_env({"EXCHANGE_MODE": "embedded", "REDIS_URL": "redis://log:6379/0"}, base_dir=BASE_DIR)
    with pytest.raises(ImproperlyConfigured, match="embedded or production"):
        read_env({"EXCHANGE_MODE": "cluster"}, base_dir=BASE_DIR)


def test_every_matcher_setting_is_read_from_the_environment():
    env = read_env({"MATCHER_STREAM_PREFIX": "ex2", "MATCHER_MAX_LAG": "50", "MATCHER_MAX_IN_FLIGHT": "8",
                    "PROJECTION_WAIT_TIMEOUT": "0.5"}, base_dir=BASE_DIR)
    assert (env.matcher_stream_prefix, env.matcher_max_lag, env.matcher_max_in_flight,
            env.projection_wait_timeout) == ("ex2", 50, 8, 0.5)
    assert read_env({"PROJECTION_WAIT_TIMEOUT": "0"}, base_dir=BASE_DIR).projection_wait_timeout == 0
    with pytest.raises(ImproperlyConfigured, match="PROJECTION_WAIT_TIMEOUT"):
        read_env({"PROJECTION_WAIT_TIMEOUT": "-1"}, base_dir=BASE_DIR)
    example = (Path(settings.BASE_DIR) / ".env.example").read_text()
    for name in ("EXCHANGE_MODE", "REDIS_CACHE_URL", "MATCHER_STREAM_PREFIX", "MATCHER_MAX_LAG",
                 "MATCHER_MAX_IN_FLIGHT", "PROJECTION_WAIT_TIMEOUT"):
        assert f"\n{name}=" in example, name


def test_balance_shards_is_a_count_defaulting_to_none():
    assert read_env({}, base_dir=BASE_DIR).balance_shards == 0
    assert read_env({"BALANCE_SHARDS": "2"}, base_dir=BASE_DIR).balance_shards == 2
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(ImproperlyConfigured, match="BALANCE_SHARDS"):
            read_env({"BALANCE_SHARDS": bad}, base_dir=BASE_DIR)
    assert "\nBALANCE_SHARDS=" in (Path(settings.BASE_DIR) / ".env.example").read_text()
