"""Django settings. Environment variables are read only by `exchange.env.read_env`."""

import os
import tempfile
from pathlib import Path

import dj_database_url

from exchange.env import Mode, read_env, redis_channel_layer

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = read_env(os.environ, base_dir=BASE_DIR)

DEBUG = ENV.debug
EXCHANGE_MODE = ENV.mode  # Mode.EMBEDDED or Mode.PRODUCTION (exchange/env.py): code asks this, once
SECRET_KEY = ENV.secret_key
ALLOWED_HOSTS = ENV.allowed_hosts
CSRF_TRUSTED_ORIGINS = ENV.csrf_trusted_origins
CORS_ALLOWED_ORIGINS = ENV.cors_allowed_origins  # configured origins only; the API alone
CORS_URLS_REGEX = r"^/api/.*$"

INSTALLED_APPS = [
    "daphne",  # first, so `manage.py runserver` serves ASGI through daphne
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",  # API tokens for programs (POST /api/token, or the admin)
    "drf_spectacular",
    "corsheaders",
    "drf_spectacular_sidecar",  # Swagger UI's files served from here, not from a CDN
    "exchange",
    "matching",
    "risk",
    "marketdata",
]

MIDDLEWARE = [
    "exchange.api.metrics_middleware.api_metrics",  # first: times all the server does for an /api/ call
    "exchange.middleware.reject_nul_bytes",  # before anything reads the path, cookies or credentials
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # before CommonMiddleware, as its docs require
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "exchange.urls"
# the debug page (DEBUG on) masks URLs with passwords in them too, not only Django's secret-looking names
DEFAULT_EXCEPTION_REPORTER_FILTER = "exchange.debug.ExchangeReporterFilter"
ASGI_APPLICATION = "exchange.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections: HTTP requests run in a fixed pool of WEB_THREADS threads (exchange/asgi.py), so
# each thread keeps one connection (checked before reuse) instead of opening one per request, which cost
# more than the rest of a simple read. (Django's ASGI handler would use a new thread per request.)
WEB_THREADS = ENV.web_threads
DATABASES = {"default": dj_database_url.parse(ENV.database_url, conn_max_age=600, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: the projector and the market maker write while requests read. WAL lets
    # readers go on during a write; IMMEDIATE takes the write lock up front, so two writers queue on
    # the busy timeout instead of failing on a lock upgrade. Tests use a file too (per process): an
    # in-memory database's shared cache locks whole tables and refuses instead of waiting.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"exchange-test-{os.getpid()}.sqlite3")
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Production keeps two Redis roles apart: REDIS_URL is the shards' command log (appendonly, appendfsync
# always: every write is on disk before it is answered); REDIS_CACHE_URL (default: REDIS_URL) holds what
# may be lost and changes on every request: Django's cache, the API's rate limits
# (exchange/api/rate_limits.py) and the channel layer. The embedded default keeps them in the process.
REDIS_URL = ENV.redis_url
REDIS_CACHE_URL = ENV.redis_cache_url
if EXCHANGE_MODE == Mode.PRODUCTION:
    assert REDIS_CACHE_URL is not None  # production mode has one (exchange/env.py)
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_CACHE_URL}
    }
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_CACHE_URL)}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The matcher (matching/worker): where the embedded one keeps its journal, how symbols map to shards.
MATCHER_DATA_DIR = ENV.matcher_data_dir
MATCHER_SHARDS = ENV.matcher_shards
BALANCE_SHARDS = ENV.balance_shards
MATCHER_TIMEOUT = ENV.matcher_timeout
MATCHER_FSYNC = ENV.matcher_fsync
MATCHER_SNAPSHOT_EVERY = ENV.matcher_snapshot_every
MATCHER_STREAM_PREFIX = ENV.matcher_stream_prefix
MATCHER_MAX_LAG = ENV.matcher_max_lag
MATCHER_MAX_IN_FLIGHT = ENV.matcher_max_in_flight
PROJECTION_WAIT_TIMEOUT = ENV.projection_wait_timeout

# Accounts (risk/): the simulated cash a new account opens with (the risk stage's SetDefaultCash).
ACCOUNT_STARTING_CASH = ENV.account_starting_cash

# The demo market maker (exchange/marketmaker): started with the embedded matcher when on (scripts/run.sh
# turns it on; off by default, so tests start nothing); production runs `manage.py runmarketmaker`.
DEMO_MARKET_MAKER = ENV.demo_market_maker
MARKET_MAKER_INTERVAL = ENV.market_maker_interval

# The garbage collector of the server and shard processes (exchange/gc_tuning.py): the heap of startup is
# frozen and young collections run every GC_YOUNG_THRESHOLD allocations (0: Python's defaults).
GC_YOUNG_THRESHOLD = ENV.gc_young_threshold

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Every login (the API's token and basic auth, the login page, the admin) goes through this backend:
# LOGIN_FAILURES failed logins per username and per client address, then 429 without hashing.
AUTHENTICATION_BACKENDS = ["exchange.api.authentication.LoginThrottledBackend"]
LOGIN_FAILURES = ENV.login_failures
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # first, so an unauthenticated call gets 401 with "WWW-Authenticate: Token" (not a browser prompt)
        "exchange.api.authentication.TokenAuthentication",  # programs: Authorization: Token <key>
        "rest_framework.authentication.SessionAuthentication",  # the browser; CSRF enforced
        # curl -u user:password; 429 past the failed-login budget (exchange/api/authentication.py)
        "exchange.api.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # per user, for every view (exchange/api/throttles.py): 10 orders a second on order entry ("submit");
    # 100 calls a second and 1,000 a minute, for order entry and for everything else separately
    "DEFAULT_THROTTLE_CLASSES": ["exchange.api.throttles.ApiThrottle"],
    "DEFAULT_THROTTLE_RATES": ENV.api_rates,
    "EXCEPTION_HANDLER": "exchange.api.errors.exception_handler",
    # JSON numbers kept exact (never floats), nesting bounded; forms for the browsable API
    "DEFAULT_PARSER_CLASSES": [
        "exchange.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Exchange simulator API",
    "DESCRIPTION": "Prices and quantities are decimal strings in the instrument's tick and lot size. "
    'Errors: {"code", "message"}.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # one schema name for the self-trade prevention modes (orders' stp, the account's stp_default)
    "ENUM_NAME_OVERRIDES": {"STPMode": "exchange.api.serializers.STP_MODES"},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
