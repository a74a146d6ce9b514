"""The process environment, read in one place.

`read_env` turns environment variables into typed values with safe local defaults;
`settings.py` turns those values into Django settings. Every variable is listed in `.env.example`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

DEV_SECRET_KEY = "django-insecure-local-development-only"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Mode(StrEnum):
    """How the exchange runs: the settings choose it once; code asks `settings.EXCHANGE_MODE`."""

    EMBEDDED = "embedded"  # one process: matcher thread, SQLite by default, in-memory channel layer
    PRODUCTION = "production"  # matcher shards over Redis Streams, channels-redis, several web processes


@dataclass(frozen=True)
class Env:
    debug: bool
    mode: Mode
    # never in a repr (Django's debug page prints settings objects): they may carry passwords
    secret_key: str = field(repr=False)
    database_url: str = field(repr=False)
    redis_url: str | None = field(repr=False)  # production: the shards' command log (durable Redis)
    redis_cache_url: str | None = field(repr=False)  # production: cache, rate limits, channel layer
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]
    cors_allowed_origins: list[str]  # other sites whose pages may call the API; none by default
    api_rates: dict[str, str]  # per-user rate limits by scope (submit, burst, sustained)
    login_failures: str  # failed logins allowed per username and per client address, e.g. 10/5min
    matcher_data_dir: Path  # the embedded matcher's journal and snapshots
    matcher_shards: dict[int, list[str]]  # shard -> symbols; empty: one shard with every instrument
    balance_shards: int  # production: accounts in this many balance shards (issue 13); 0: in the matchers
    matcher_timeout: float  # seconds a request waits for the matcher before "unavailable, retry"
    matcher_fsync: bool  # false only for throwaway runs: acknowledged orders may be lost on a crash
    matcher_snapshot_every: int  # commands between snapshots
    matcher_stream_prefix: str  # production: the prefix of the shards' Redis keys
    matcher_max_lag: int  # production: a shard this many commands behind is refused at once (503)
    matcher_max_in_flight: int  # production: commands a web process may have waiting at once
    projection_wait_timeout: float  # seconds an answer waits for the projection (read-your-writes)
    web_threads: int  # threads per web process serving HTTP (each keeps its database connection)
    account_starting_cash: Decimal  # the simulated cash every new account opens with
    demo_market_maker: bool  # the embedded default starts the demo market maker with its matcher
    market_maker_interval: float  # seconds between the market maker's quote updates
    gc_young_threshold: int  # the collector's first-generation threshold in server processes; 0: Python's


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true/false, 1/0, yes/no or on/off, not {value!r}")


def parse_list(value: str) -> list[str]:
    """Split a comma-separated value, dropping blanks."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_shards(value: str) -> dict[int, list[str]]:
    """`0=AAPL,GOOGL;1=MSFT,TSLA` -> {0: ["AAPL", "GOOGL"], 1: ["MSFT", "TSLA"]}."""
    shards: dict[int, list[str]] = {}
    seen: set[str] = set()
    for part in filter(None, (p.strip() for p in value.split(";"))):
        number, _, symbols = part.partition("=")
        if not number.strip().isdigit() or not parse_list(symbols):
            raise ImproperlyConfigured(f"MATCHER_SHARDS: expected N=SYM,SYM;... not {part!r}")
        listed = [s.upper() for s in parse_list(symbols)]
        if seen.intersection(listed) or int(number) in shards:
            raise ImproperlyConfigured(f"MATCHER_SHARDS: a symbol or shard appears twice in {value!r}")
        seen.update(listed)
        shards[int(number)] = listed
    return shards


DEFAULT_API_RATES = {"submit": "10/s", "burst": "100/s", "sustained": "1000/min"}


def parse_rates(value: str) -> dict[str, str]:
    """`submit=10/s,burst=100/s` over the defaults; a rate is N/s, N/min, N/h or N/day."""
    rates = dict(DEFAULT_API_RATES)
    for item in parse_list(value):
        scope, _, rate = item.partition("=")
        count, _, period = rate.partition("/")
        valid = count.isdigit() and int(count) >= 1 and period in {"s", "min", "h", "day"}
        if scope not in rates or not valid:
            raise ImproperlyConfigured(
                f"API_RATES: expected scope=N/period (scopes {', '.join(rates)}), not {item!r}"
            )
        rates[scope] = rate
    return rates


def parse_login_failures(value: str) -> str:
    """`N/period` with an optional number of periods: `10/5min` is 10 in 5 minutes."""
    count, _, period = value.partition("/")
    periods = period.rstrip("sminhday")
    unit = period[len(periods):]
    periods_ok = periods == "" or (periods.isdigit() and int(periods) >= 1)
    if not (count.isdigit() and int(count) >= 1 and periods_ok and unit in {"s", "min", "h", "day"}):
        raise ImproperlyConfigured(f"LOGIN_FAILURES: expected N/period, e.g. 10/5min or 20/h, not {value!r}")
    return value


def parse_mode(value: str, redis_url: str | None) -> Mode:
    try:
        mode = Mode(value.lower())
    except ValueError:
        raise ImproperlyConfigured(f"EXCHANGE_MODE must be embedded or production, not {value!r}") from None
    if mode is Mode.PRODUCTION and not redis_url:
        raise ImproperlyConfigured("EXCHANGE_MODE=production needs REDIS_URL (the shards' command log)")
    if mode is Mode.EMBEDDED and redis_url:
        raise ImproperlyConfigured("REDIS_URL is set but EXCHANGE_MODE=embedded: unset one of them")
    return mode


def parse_seconds(name: str, value: str) -> float:
    """A number of seconds, 0 included."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ImproperlyConfigured(f"{name} must be a number of seconds (0 or more), not {value!r}")
    return seconds


def parse_positive(name: str, value: str, kind: type[int] | type[float]) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        number = 0
    if not number > 0 or number == float("inf"):
        raise ImproperlyConfigured(f"{name} must be a positive number, not {value!r}")
    return number


def parse_cash(name: str, value: str) -> Decimal:
    """A non-negative amount with at most 4 decimal places (the risk stage counts 10**-4 units)."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal amount, not {value!r}") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.0001")):
        raise ImproperlyConfigured(f"{name} must be >= 0 with at most 4 decimal places, not {value!r}")
    return amount


def parse_count(name: str, value: str) -> int:
    """A whole number >= 0."""
    try:
        count = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number >= 0, not {value!r}") from None
    if count < 0:
        raise ImproperlyConfigured(f"{name} must be a whole number >= 0, not {value!r}")
    return count


def read_env(environ: Mapping[str, str], *, base_dir: Path) -> Env:
    """Read settings from `environ`; an empty variable counts as unset."""

    def get(name: str, default: str) -> str:
        return environ.get(name, "").strip() or default

    debug = parse_bool("DEBUG", get("DEBUG", "true"))
    secret_key = get("SECRET_KEY", DEV_SECRET_KEY if debug else "")
    if not secret_key:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    redis_url = get("REDIS_URL", "") or None
    mode = parse_mode(get("EXCHANGE_MODE", Mode.PRODUCTION if redis_url else Mode.EMBEDDED), redis_url)
    return Env(
        debug=debug,
        mode=mode,
        secret_key=secret_key,
        database_url=get("DATABASE_URL", f"sqlite:///{base_dir / 'db.sqlite3'}"),
        redis_url=redis_url,
        redis_cache_url=get("REDIS_CACHE_URL", "") or redis_url,
        allowed_hosts=parse_list(get("ALLOWED_HOSTS", "127.0.0.1,localhost")),
        csrf_trusted_origins=parse_list(get("CSRF_TRUSTED_ORIGINS", "")),
        cors_allowed_origins=parse_list(get("CORS_ALLOWED_ORIGINS", "")),
        api_rates=parse_rates(get("API_RATES", "")),
        login_failures=parse_login_failures(get("LOGIN_FAILURES", "10/5min")),
        matcher_data_dir=Path(get("MATCHER_DATA_DIR", str(base_dir / "var" / "matcher"))),
        matcher_shards=parse_shards(get("MATCHER_SHARDS", "")),
        balance_shards=parse_count("BALANCE_SHARDS", get("BALANCE_SHARDS", "0")),
        matcher_timeout=float(parse_positive("MATCHER_TIMEOUT", get("MATCHER_TIMEOUT", "2"), float)),
        matcher_fsync=parse_bool("MATCHER_FSYNC", get("MATCHER_FSYNC", "true")),
        matcher_snapshot_every=int(
            parse_positive("MATCHER_SNAPSHOT_EVERY", get("MATCHER_SNAPSHOT_EVERY", "100000"), int)
        ),
        matcher_stream_prefix=get("MATCHER_STREAM_PREFIX", "exchange"),
        matcher_max_lag=int(parse_positive("MATCHER_MAX_LAG", get("MATCHER_MAX_LAG", "10000"), int)),
        matcher_max_in_flight=int(
            parse_positive("MATCHER_MAX_IN_FLIGHT", get("MATCHER_MAX_IN_FLIGHT", "256"), int)
        ),
        projection_wait_timeout=parse_seconds("PROJECTION_WAIT_TIMEOUT", get("PROJECTION_WAIT_TIMEOUT", "1")),
        web_threads=int(parse_positive("WEB_THREADS", get("WEB_THREADS", "8"), int)),
        account_starting_cash=parse_cash("ACCOUNT_STARTING_CASH", get("ACCOUNT_STARTING_CASH", "1000000")),
        demo_market_maker=parse_bool("DEMO_MARKET_MAKER", get("DEMO_MARKET_MAKER", "false")),
        market_maker_interval=float(
            parse_positive("MARKET_MAKER_INTERVAL", get("MARKET_MAKER_INTERVAL", "1"), float)
        ),
        gc_young_threshold=parse_count("GC_YOUNG_THRESHOLD", get("GC_YOUNG_THRESHOLD", "10000")),
    )


def redis_channel_layer(url: str) -> dict[str, object]:
    """The channel layer on the Redis at `url` (production: REDIS_CACHE_URL). channels-redis waits for a
    consumer's messages with a 5 s BZPOPMIN; redis-py 8 times a connection's reads out after 5 s by
    default, so the wait raised TimeoutError and ended every WebSocket left idle for 5 s. Its
    connections get a socket timeout well above the wait."""
    return {"BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_timeout": 30}]}}
