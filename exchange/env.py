"""The process environment, read in one place.

`read_env` turns environment variables into typed values with safe local defaults;
`settings.py` turns those values into Django settings. Every variable is listed in `.env.example`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

DEV_SECRET_KEY = "django-insecure-local-development-only"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Env:
    debug: bool
    secret_key: str
    database_url: str
    redis_url: str | None  # None: embedded mode with an in-memory channel layer
    allowed_hosts: list[str]
    csrf_trusted_origins: list[str]


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


def read_env(environ: Mapping[str, str], *, base_dir: Path) -> Env:
    """Read settings from `environ`; an empty variable counts as unset."""

    def get(name: str, default: str) -> str:
        return environ.get(name, "").strip() or default

    debug = parse_bool("DEBUG", get("DEBUG", "true"))
    secret_key = get("SECRET_KEY", DEV_SECRET_KEY if debug else "")
    if not secret_key:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    return Env(
        debug=debug,
        secret_key=secret_key,
        database_url=get("DATABASE_URL", f"sqlite:///{base_dir / 'db.sqlite3'}"),
        redis_url=get("REDIS_URL", "") or None,
        allowed_hosts=parse_list(get("ALLOWED_HOSTS", "127.0.0.1,localhost")),
        csrf_trusted_origins=parse_list(get("CSRF_TRUSTED_ORIGINS", "")),
    )
