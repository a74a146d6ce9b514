"""Whether the engine runs compiled (mypyc) or interpreted, and a guard against stale builds.

Compiled extension modules sit next to their sources and Python prefers them, so a source edited
after a build would silently not run. `check_fresh()` compares the sources with the digest
recorded by `scripts/build_engine.py` and refuses stale modules.

Besides the engine, the worker's hot path around it (the codec, the matcher and the risk stage) is
compiled in the same build: it runs once per command, like the engine.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from pathlib import Path

# Paths relative to the repository root, without ".py".
COMPILED_MODULES = (
    "matching/engine/commands",
    "matching/engine/order",
    "matching/engine/stops",
    "matching/engine/book",
    "matching/engine/engine",
    "matching/worker/codec",
    "matching/worker/matcher",
    "risk/core/limits",
    "risk/core/commands",
    "risk/core/balances",
    "risk/core/cash",
    "risk/core/accounts",
    "risk/core/symbols",
    "risk/core/checks",
    "risk/core/admin",
    "risk/core/engine",
)
STAMP = "compiled.stamp"
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent.parent


def source_digest() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for name in COMPILED_MODULES:
        digest.update((_ROOT / f"{name}.py").read_bytes())
    return digest.hexdigest()


def is_compiled() -> bool:
    # Python's import system prefers an extension module to a source file in the same directory.
    return (_HERE / f"book{sysconfig.get_config_var('EXT_SUFFIX')}").exists()


def check_fresh() -> None:
    if not is_compiled():
        return
    stamp = _HERE / STAMP
    if not stamp.exists() or stamp.read_text() != source_digest():
        raise ImportError(
            "the compiled matching engine is older than its sources: run "
            "`python scripts/build_engine.py build` (or `clean` to run interpreted)"
        )
