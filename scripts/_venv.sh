# Sourced by run.sh and test.sh: defines ROOT and ensure_venv.
#
# ensure_venv FILE...  creates .venv with python3 when missing and pip-installs the requirement FILEs,
# skipping the install when their combined hash matches the stamp left by the last successful install.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "Creating $VENV"
        python3 -m venv "$VENV"
    fi
    local stamp hash file
    local pip_args=()
    for file in "$@"; do pip_args+=(-r "$file"); done
    stamp="$VENV/.installed-$(echo "$*" | tr ' /' '+_').sha256"
    hash="$(cd "$ROOT" && cat "$@" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
        echo "Installing $*"
        (cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}")
        echo "$hash" > "$stamp"
    fi
}

# ensure_ui_assets  installs the trading screen's front-end packages (package.json: TradingView's
# lightweight-charts) with npm and copies the standalone build and its licence into static/vendor/
# (git-ignored; collectstatic picks it up). Skipped when the copy matches package-lock.json already.
# Without npm, or when the install fails (no network), it says so and goes on: the page then shows
# that the chart is off, and everything else works.
ensure_ui_assets() {
    local vendor="$ROOT/static/vendor/lightweight-charts" stamp hash
    stamp="$vendor/.installed.sha256"
    hash="$(cd "$ROOT" && cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
    if [ -f "$vendor/lightweight-charts.standalone.production.js" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: the trading page's chart is off (install Node.js and npm to get it)" >&2
        return 0
    fi
    echo "Installing front-end assets (npm ci)"
    if ! (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
        echo "npm ci failed: the trading page's chart is off" >&2
        return 0
    fi
    mkdir -p "$vendor"
    cp "$ROOT/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js" \
       "$ROOT/node_modules/lightweight-charts/LICENSE" "$vendor/"
    echo "$hash" > "$stamp"
}

# ensure_chromium  installs Debian's chromium for the browser tests (exchange/tests/ui) when it is
# missing and we are root with apt-get; otherwise those tests skip, saying why. Playwright drives this
# browser (no browser download).
ensure_chromium() {
    if [ -x /usr/bin/chromium ] || [ -n "${CHROMIUM:-}" ]; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing chromium (apt) for the browser tests"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "apt-get install chromium failed: the browser tests will skip" >&2
    else
        echo "chromium missing and not root: the browser tests (exchange/tests/ui) will skip" >&2
    fi
}
