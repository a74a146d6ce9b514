"""Compile the matching engine's hot modules with mypyc, or remove the compiled modules.

    python scripts/build_engine.py build   # compile (reuses a cached build of the same sources)
    python scripts/build_engine.py clean   # back to interpreted Python
    python scripts/build_engine.py status

The engine is plain typed Python and runs as such; compiled, the same source runs about 1.7x
faster (docs/PERFORMANCE.md). Compiled modules sit next to their sources, where Python prefers
them, so `matching/engine/__init__.py` refuses to import them once a source has changed without
a rebuild. Without a C compiler `build` says so and leaves the engine interpreted.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "matching" / "engine"
CACHE = ROOT / ".venv" / "engine-build"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
IMPORTED_PACKAGES = ("matching", "risk")  # every package the compiled modules import from

# Loaded by path, not imported: importing the package would refuse a stale build before we fix it.
_spec = importlib.util.spec_from_file_location("engine_compiled", ENGINE / "compiled.py")
assert _spec is not None and _spec.loader is not None  # a .py file path always has a source loader
compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compiled)
COMPILED_MODULES, STAMP, source_digest = compiled.COMPILED_MODULES, compiled.STAMP, compiled.source_digest


def compiled_files() -> list[Path]:
    """Every extension module the build put in the tree (the engine's group library among them)."""
    dirs = sorted({(ROOT / name).parent for name in COMPILED_MODULES})
    return sorted(path for directory in dirs for path in directory.glob(f"*{SUFFIX}"))


def clean() -> None:
    for path in compiled_files():
        path.unlink()
    (ENGINE / STAMP).unlink(missing_ok=True)


def compile_into(target: Path) -> None:
    """Run mypyc in a scratch copy of the package, so nothing but the result touches the tree."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        # mypyc type-checks what the compiled modules import, so the whole packages go along.
        for package in IMPORTED_PACKAGES:
            shutil.copytree(ROOT / package, work / package,
                            ignore=shutil.ignore_patterns("*.so", "__pycache__", "tests", "migrations"))
        sources = [f"{name}.py" for name in COMPILED_MODULES]
        # mypy's defaults: mypy looks for a config file up from its working directory, and one above
        # the scratch directory (its Django plugin, say) must not change what mypyc checks.
        (work / "mypy.ini").write_text("[mypy]\n")
        setup = (
            "from mypyc.build import mypycify\n"
            "from setuptools import setup\n"
            f"setup(name='engine', ext_modules=mypycify({sources!r}, opt_level='3',"
            " group_name='matching.engine._compiled', target_dir='mypyc-build'),"
            " script_args=['build_ext', '--inplace'])\n"
        )
        result = subprocess.run([sys.executable, "-c", setup], cwd=work, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
        for directory in sorted({Path(name).parent for name in COMPILED_MODULES}):
            (target / directory).mkdir(parents=True, exist_ok=True)
            for built in (work / directory).glob(f"*{SUFFIX}"):
                shutil.copy2(built, target / directory / built.name)


def build() -> int:
    digest = source_digest()
    if (ENGINE / STAMP).exists() and (ENGINE / STAMP).read_text() == digest and compiled_files():
        print("engine: compiled modules are current")
        return 0
    clean()
    cached = CACHE / digest
    if not list(cached.rglob(f"*{SUFFIX}")):
        print("engine: compiling with mypyc ...", flush=True)
        try:
            compile_into(cached)
        except (RuntimeError, OSError) as exc:
            print(f"engine: mypyc build failed, the engine stays interpreted:\n{exc}", file=sys.stderr)
            return 0
    for built in cached.rglob(f"*{SUFFIX}"):
        shutil.copy2(built, ROOT / built.relative_to(cached))
    (ENGINE / STAMP).write_text(digest)
    print(f"engine: compiled ({', '.join(name.rsplit('/', 1)[1] for name in COMPILED_MODULES)})")
    return 0


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "build":
        return build()
    if command == "clean":
        clean()
        print("engine: interpreted")
        return 0
    if command == "status":
        print("engine: " + ("compiled" if compiled_files() else "interpreted"))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
