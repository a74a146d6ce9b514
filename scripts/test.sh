#!/usr/bin/env bash
# Lint, type-check, then run the tests; arguments go to pytest (e.g. ./scripts/test.sh -k instruments -n auto).
# Without arguments the engine's tests run twice: interpreted, then compiled by mypyc (as served).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements.txt requirements-dev.txt requirements-bench.txt
ensure_ui_assets; ensure_chromium  # the chart's npm package; Debian's chromium for exchange/tests/ui
cd "$ROOT"
.venv/bin/ruff check .
.venv/bin/mypy  # what it checks and how: [tool.mypy] in pyproject.toml
if [ "$#" -eq 0 ]; then
    echo "== engine tests, interpreted"
    .venv/bin/python scripts/build_engine.py clean
    .venv/bin/python -m pytest -q matching/tests
fi
.venv/bin/python scripts/build_engine.py build
echo "== all tests"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit "$status"
