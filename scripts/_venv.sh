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
