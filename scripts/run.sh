#!/usr/bin/env bash
# Serve the exchange locally on http://${HOST:-127.0.0.1}:${PORT:-8000} (SQLite, in-memory channel layer),
# one uvicorn process holding the matcher thread. `daphne exchange.asgi:application` serves the same app.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements.txt
ensure_ui_assets  # the trading page's chart (npm's lightweight-charts into static/vendor/); skipped without npm
cd "$ROOT"
.venv/bin/python scripts/build_engine.py build
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
.venv/bin/python manage.py ensure_demo_users
# The demo market maker quotes every instrument from the server's start (DEMO_MARKET_MAKER=0: off).
export DEMO_MARKET_MAKER="${DEMO_MARKET_MAKER:-1}"
echo "Serving on http://${HOST:-127.0.0.1}:${PORT:-8000}"
# uvicorn rather than daphne: daphne (Twisted) answers a malformed multipart body itself with a bare 400
# before Django sees it, and uvicorn serves the same application faster (docs/PERFORMANCE.md).
exec .venv/bin/uvicorn exchange.asgi:application --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
    --loop uvloop --http httptools --ws websockets-sansio --lifespan on
