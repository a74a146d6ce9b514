"""Periodic snapshots of the worker's state, so a restart replays only the journal's tail.

A file is `snapshot-{seq:016d}.json`: the first line is the sha256 hex digest of the rest, the
rest is compact JSON, `{"snapshot_format": N, "state": ...}` (a body without that envelope, written
before format versions, is the state itself in format 1). It is written to a temporary name, fsynced
and renamed, so a crash leaves either the whole new snapshot or none of it; the digest catches later
damage, and `latest` then falls back to an older snapshot (the journal still holds the longer tail).
An intact snapshot in a format this build does not read is never skipped: `latest` raises
`formats.UnsupportedFormat`, and the matcher refuses to start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from matching.worker.formats import (
    LEGACY_SNAPSHOT_FORMAT,
    SNAPSHOT_FORMAT,
    SNAPSHOT_FORMATS_READ,
    UnsupportedFormat,
    check_format,
)
from matching.worker.journal import fsync_dir

log = logging.getLogger(__name__)

_NAME = re.compile(r"snapshot-(\d{16})\.json")
_TMP_SUFFIX = ".tmp"
_FORMAT_KEY = "snapshot_format"


class SnapshotStore:
    def __init__(self, directory: str | os.PathLike, *, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def save(self, seq: int, state: object) -> Path:
        """Write the state as of `seq` atomically and durably, then prune old snapshots."""
        if seq < 0:
            raise ValueError(f"seq must not be negative, got {seq}")
        body = json.dumps({_FORMAT_KEY: SNAPSHOT_FORMAT, "state": state}, separators=(",", ":")).encode()
        path = self.directory / f"snapshot-{seq:016d}.json"
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        with open(tmp, "wb") as f:
            f.write(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(self.directory)  # make the rename itself durable
        self._prune()
        return path

    def latest(self, at_most: int | None = None) -> tuple[int, object] | None:
        """(seq, state) of the newest snapshot that loads intact (and is at seq <= `at_most` when
        given); None if there is none. An intact one in a format this build does not read raises
        `UnsupportedFormat` (never skipped for an older one)."""
        for seq, path in self._snapshots():
            if at_most is not None and seq > at_most:
                continue
            try:
                digest, newline, body = path.read_bytes().partition(b"\n")
                if not newline or digest != hashlib.sha256(body).hexdigest().encode():
                    raise ValueError("checksum mismatch")
                return seq, _state(path, json.loads(body))
            except UnsupportedFormat:
                raise
            except (OSError, ValueError) as exc:  # JSON and Unicode errors are ValueErrors
                log.warning("skipping damaged snapshot %s: %s", path, exc)
        return None

    def discard_older_than(self, seq: int) -> None:
        """Delete every snapshot before `seq` (a state rewritten in place must be the only one a
        restart can start from: matching.reshard)."""
        for older, path in self._snapshots():
            if older < seq:
                path.unlink(missing_ok=True)
        fsync_dir(self.directory)

    def _snapshots(self) -> list[tuple[int, Path]]:
        """(seq, path) of every snapshot file, newest first; temporary files do not match."""
        found = [(int(m[1]), p) for p in self.directory.iterdir() if (m := _NAME.fullmatch(p.name))]
        return sorted(found, reverse=True)

    def _prune(self) -> None:
        for _seq, path in self._snapshots()[self.keep :]:
            path.unlink(missing_ok=True)
        for path in self.directory.glob(f"snapshot-*.json{_TMP_SUFFIX}"):  # left by a crashed save
            path.unlink(missing_ok=True)


def _state(path: Path, document: object) -> object:
    """The state in a snapshot's body, once its format is known to be readable."""
    if isinstance(document, dict) and _FORMAT_KEY in document:
        check_format("snapshot", str(path), document[_FORMAT_KEY], SNAPSHOT_FORMATS_READ)
        if set(document) != {_FORMAT_KEY, "state"}:
            raise ValueError(f"unexpected keys in a snapshot envelope: {sorted(document)}")
        return document["state"]
    check_format("snapshot", str(path), LEGACY_SNAPSHOT_FORMAT, SNAPSHOT_FORMATS_READ)
    return document  # from before format versions: the state itself
