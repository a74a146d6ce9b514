#!/usr/bin/env bash
# The production topology on this machine, without Docker (docker-compose.yml runs the same parts):
#   PostgreSQL   DATABASE_URL (default postgres://postgres@127.0.0.1:5432/exchange; created if missing)
#   Redis        the command log, durable: REDIS_URL, or (unset) a private redis-server started here with
#                appendonly yes + appendfsync always on REDIS_PORT (6380), its data in $PRODUCTION_DIR/redis;
#                and REDIS_CACHE_URL, or a second private redis-server keeping nothing on disk on
#                REDIS_CACHE_PORT (6381): the cache, the rate limits and the channel layer
#   2 matcher shards (MATCHER_SHARDS, default 0=AAPL,GOOGL;1=MSFT,TSLA), journals in $PRODUCTION_DIR
#   BALANCE_SHARDS (2) balance shards: the accounts, by user (runbalances; 0: cash split in the matchers)
#   WEB_WORKERS (2) web processes: uvicorn --workers on HOST:PORT (127.0.0.1:8000)
#   the demo market maker (runmarketmaker)
# SECRET_KEY is required (DEBUG is off). Ctrl-C or SIGTERM stops everything it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements.txt
cd "$ROOT"

export DEBUG=false EXCHANGE_MODE=production
export SECRET_KEY="${SECRET_KEY:?set SECRET_KEY to a long random string}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/exchange}"
export MATCHER_SHARDS="${MATCHER_SHARDS:-0=AAPL,GOOGL;1=MSFT,TSLA}"
export BALANCE_SHARDS="${BALANCE_SHARDS:-2}"
export DEMO_MARKET_MAKER=1  # the web tier's /health reports the market maker
PRODUCTION_DIR="${PRODUCTION_DIR:-$ROOT/var/production}"
export MATCHER_DATA_DIR="${MATCHER_DATA_DIR:-$PRODUCTION_DIR/matcher}"
mkdir -p "$PRODUCTION_DIR" "$MATCHER_DATA_DIR"

pids=()
stop_all() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 143' INT TERM

if [ -z "${REDIS_URL:-}" ]; then
    REDIS_PORT="${REDIS_PORT:-6380}"
    mkdir -p "$PRODUCTION_DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --appendonly yes --appendfsync always \
        --dir "$PRODUCTION_DIR/redis" --save "" --logfile "$PRODUCTION_DIR/redis/redis.log" &
    pids+=($!)
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
if [ -z "${REDIS_CACHE_URL:-}" ]; then
    REDIS_CACHE_PORT="${REDIS_CACHE_PORT:-6381}"
    mkdir -p "$PRODUCTION_DIR/redis"
    redis-server --port "$REDIS_CACHE_PORT" --bind 127.0.0.1 --appendonly no --save "" \
        --logfile "$PRODUCTION_DIR/redis/redis-cache.log" &
    pids+=($!)
    export REDIS_CACHE_URL="redis://127.0.0.1:$REDIS_CACHE_PORT/0"
    for _ in $(seq 50); do redis-cli -p "$REDIS_CACHE_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

.venv/bin/python scripts/build_engine.py build
.venv/bin/python - <<'PY'
import os
from urllib.parse import urlsplit

import psycopg

url = urlsplit(os.environ["DATABASE_URL"])
name = url.path.lstrip("/")
with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as admin:
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
        admin.execute(f'CREATE DATABASE "{name}"')
        print(f"Created database {name}")
PY
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
.venv/bin/python manage.py ensure_demo_users

for ((shard = 0; shard < BALANCE_SHARDS; shard++)); do
    .venv/bin/python manage.py runbalances --shard "$shard" &
    pids+=($!)
done
for shard in $(echo "$MATCHER_SHARDS" | tr ';' '\n' | cut -d= -f1); do
    .venv/bin/python manage.py runmatcher --shard "$shard" &
    pids+=($!)
done
.venv/bin/python manage.py runmarketmaker &
pids+=($!)
echo "Serving on http://${HOST:-127.0.0.1}:${PORT:-8000} with ${WEB_WORKERS:-2} web processes"
.venv/bin/uvicorn exchange.asgi:application --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
    --workers "${WEB_WORKERS:-2}" --loop uvloop --http httptools --ws websockets-sansio --lifespan on \
    --no-access-log &
pids+=($!)
wait -n "${pids[@]}"  # one part stopped: stop the rest
echo "A process of the topology exited; stopping the others" >&2
exit 1
