"""The project uses Django, DRF and Channels through their public APIs only: no import of a private
name from them, and no access to a private attribute that our own code does not define.

Attribute access is checked by name: `x._name` is allowed only when some module of ours defines
`_name` (a function, class attribute or `self._name`), or when it is one of the documented
underscore APIs below. So a private attribute of a framework object cannot creep in unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("django", "rest_framework", "channels", "daphne", "asgiref", "drf_spectacular", "whitenoise",
              "corsheaders", "channels_redis")
# Underscore names that are documented public API: Model._meta (the Options API), Model._state
# (documented in "Model instance reference"), namedtuple's methods.
DOCUMENTED = frozenset({"_meta", "_state", "_replace", "_fields", "_asdict", "_make", "_field_defaults"})
# Not a framework's: the peer order book bench/engine_bench.py compares against numbers its orders from
# this module counter, which the benchmark must read to translate ids.
PEERS = frozenset({"_order_counter"})


def project_files() -> list[Path]:
    skip = {".venv", "node_modules", "staticfiles", ".git", "var"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined_private_names(trees: list[ast.AST]) -> set[str]:
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and private(node.name):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and private(node.id):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and private(node.attr):
                names.add(node.attr)
            elif isinstance(node, ast.arg) and private(node.arg):
                names.add(node.arg)
    return names


def test_no_private_framework_names() -> None:
    files = project_files()
    assert len(files) > 50  # the walk found the project
    trees = {path: ast.parse(path.read_text(), str(path)) for path in files}
    ours = defined_private_names(list(trees.values()))
    found = []
    for path, tree in trees.items():
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FRAMEWORKS:
                if any(private(part) for part in node.module.split(".")):
                    found.append(f"{where}:{node.lineno} imports from {node.module}")
                found += [f"{where}:{node.lineno} imports {alias.name} from {node.module}"
                          for alias in node.names if private(alias.name)]
            elif isinstance(node, ast.Import):
                found += [f"{where}:{node.lineno} imports {alias.name}" for alias in node.names
                          if alias.name.split(".")[0] in FRAMEWORKS
                          and any(private(part) for part in alias.name.split("."))]
            elif (isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in ours
                  and node.attr not in DOCUMENTED | PEERS):
                found.append(f"{where}:{node.lineno} uses .{node.attr}")
    assert found == []


def test_the_check_catches_a_private_use(tmp_path: Path) -> None:
    tree = ast.parse("from django.dispatch import Signal\nSignal()._live_receivers(None)\n")
    attrs = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and private(n.attr)]
    assert attrs == ["_live_receivers"]
    assert "_live_receivers" not in defined_private_names([tree])
