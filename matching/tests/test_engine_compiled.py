"""The guard that keeps a stale compiled engine from running instead of its edited sources."""

import pytest

from matching.engine import compiled


def test_stale_compiled_modules_are_refused(monkeypatch):
    monkeypatch.setattr(compiled, "is_compiled", lambda: True)
    monkeypatch.setattr(compiled, "source_digest", lambda: "not the recorded digest")
    with pytest.raises(ImportError, match="older than its sources"):
        compiled.check_fresh()


def test_interpreted_engine_needs_no_stamp(monkeypatch):
    monkeypatch.setattr(compiled, "is_compiled", lambda: False)
    monkeypatch.setattr(compiled, "source_digest", lambda: "anything")
    compiled.check_fresh()


def test_digest_covers_every_compiled_source(tmp_path, monkeypatch):
    for name in compiled.COMPILED_MODULES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{name}.py").write_text(name)
    monkeypatch.setattr(compiled, "_ROOT", tmp_path)
    before = compiled.source_digest()
    for name in compiled.COMPILED_MODULES:
        (tmp_path / f"{name}.py").write_text(name + " changed")
        assert compiled.source_digest() != before
        before = compiled.source_digest()
