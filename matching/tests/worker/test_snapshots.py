"""Snapshots: atomic, checksummed, pruned, and skipped when damaged."""

from __future__ import annotations

import hashlib
import logging

import pytest

from matching.worker.snapshots import SnapshotStore

STATE = {"seq": 42, "books": {"T": [[1, 2, None, True], []]}, "name": "é", "empty": {}, "neg": -(2**70)}


def names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_save_then_latest_round_trips(tmp_path):
    store = SnapshotStore(tmp_path / "snaps" / "shard0")  # creates missing parents
    path = store.save(42, STATE)
    assert path == tmp_path / "snaps" / "shard0" / "snapshot-0000000000000042.json"
    assert store.latest() == (42, STATE)
    assert SnapshotStore(path.parent).latest() == (42, STATE)  # a new process sees the same
    digest, body = path.read_bytes().split(b"\n")
    assert digest == hashlib.sha256(body).hexdigest().encode()
    assert b" " not in body  # compact separators


def test_no_snapshot_gives_none(tmp_path):
    assert SnapshotStore(tmp_path).latest() is None


def test_keeps_only_the_newest(tmp_path):
    store = SnapshotStore(tmp_path, keep=2)
    for seq in (5, 100, 9, 1000, 20):  # not in order: newest means highest seq
        store.save(seq, {"at": seq})
    assert names(tmp_path) == ["snapshot-0000000000000100.json", "snapshot-0000000000001000.json"]
    assert store.latest() == (1000, {"at": 1000})


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        SnapshotStore(tmp_path, keep=0)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-5],  # truncated
        lambda data: data[:70] + bytes([data[70] ^ 1]) + data[71:],  # one flipped bit in the body
        lambda data: data.split(b"\n", 1)[1],  # digest line missing
        lambda data: b"",  # empty file
        lambda data: b"0" * 64 + b"\n" + data.split(b"\n", 1)[1],  # wrong digest
    ],
    ids=["truncated", "bit-flip", "no-digest", "empty", "wrong-digest"],
)
def test_a_damaged_newest_snapshot_falls_back_to_the_older_one(tmp_path, caplog, damage):
    store = SnapshotStore(tmp_path)
    store.save(10, {"at": 10})
    newest = store.save(20, {"at": 20, "padding": "x" * 100})
    newest.write_bytes(damage(newest.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="matching.worker.snapshots"):
        assert store.latest() == (10, {"at": 10})
    assert newest.name in caplog.text


def test_digest_ok_but_bad_json_is_skipped(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(1, [1])
    body = b'{"unterminated": '
    (tmp_path / "snapshot-0000000000000002.json").write_bytes(
        hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    )
    assert store.latest() == (1, [1])


def test_all_damaged_gives_none(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(1, [1]).write_bytes(b"garbage")
    assert store.latest() is None


def test_leftover_tmp_files_are_ignored_and_cleaned_up(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(10, {"at": 10})
    leftover = tmp_path / "snapshot-0000000000000099.json.tmp"  # a save that crashed before the rename
    leftover.write_bytes(b"half a snaps")
    (tmp_path / "notes.txt").write_text("not a snapshot")
    assert store.latest() == (10, {"at": 10})
    store.save(11, {"at": 11})
    assert not leftover.exists()
    assert names(tmp_path) == [
        "notes.txt",
        "snapshot-0000000000000010.json",
        "snapshot-0000000000000011.json",
    ]
