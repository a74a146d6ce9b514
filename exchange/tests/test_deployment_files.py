"""docker-compose.yml can't be run here (no Docker engine on these machines), so what can be checked
without one is: every service runs a command that exists, the shards cover the instruments, and the
Redis it starts is the durable one the matchers need."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from exchange.env import parse_shards

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
MANAGED = [name for name, service in SERVICES.items() if "manage.py" in " ".join(service.get("command", []))]


@pytest.mark.parametrize("name", MANAGED)
def test_each_management_command_exists(name):
    words = " ".join(SERVICES[name]["command"]).replace("&&", " ").split()
    commands = [words[i + 1] for i, word in enumerate(words) if word == "manage.py"]
    assert commands and all(command in get_commands() for command in commands), commands


@pytest.mark.django_db
def test_the_shards_cover_every_seeded_instrument_once():
    from exchange.models import Instrument

    shards = parse_shards(SERVICES["web"]["environment"]["MATCHER_SHARDS"])
    runners = sorted(int(s["command"][-1]) for s in SERVICES.values() if "runmatcher" in s.get("command", []))
    assert runners == sorted(shards)
    symbols = [symbol for symbols in shards.values() for symbol in symbols]
    assert sorted(symbols) == sorted(Instrument.objects.values_list("symbol", flat=True))


def test_redis_keeps_every_acknowledged_command():
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"


def test_what_may_be_lost_is_kept_off_the_command_log():
    environment = SERVICES["web"]["environment"]
    log, cache = environment["REDIS_URL"], environment["REDIS_CACHE_URL"]
    assert log.split("//")[1].split(":")[0] == "redis"
    assert cache.split("//")[1].split(":")[0] == "redis-cache"
    command = SERVICES["redis-cache"]["command"]
    assert command[command.index("--appendonly") + 1] == "no"
