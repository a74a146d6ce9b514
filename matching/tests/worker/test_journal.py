"""The command log: framing, group commit, torn tails, corruption and kill -9 recovery."""

from __future__ import annotations

import logging
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from matching.worker.formats import COMMAND_FORMAT, JOURNAL_FORMAT
from matching.worker.journal import BackgroundSync, Journal, JournalCorrupt, JournalRecord, Segments

# The documented frame and file header, built independently of the module under test.
HEADER = struct.Struct("<IIqqI")
# magic, journal format, command format
FILE_HEADER = b"XMJOURNL" + struct.pack("<HH", JOURNAL_FORMAT, COMMAND_FORMAT)
REPO = Path(__file__).resolve().parents[3]


def frame(seq: int, timestamp: int, payload: bytes, count: int = 1) -> bytes:
    crc = zlib.crc32(struct.pack("<qqI", seq, timestamp, count) + payload)
    return HEADER.pack(len(payload), crc, seq, timestamp, count) + payload


def payload_for(seq: int) -> bytes:
    return f"cmd-{seq}:".encode() * (seq % 7)  # varied lengths, including empty


def write_log(path: Path, n: int) -> list[int]:
    """n records through the Journal; returns the byte offset where each record starts."""
    offsets, pos = [], len(FILE_HEADER)
    with Journal(path, fsync=False) as j:
        for seq in range(1, n + 1):
            j.append(seq, 1000 + seq, payload_for(seq))
            offsets.append(pos)
            pos += HEADER.size + len(payload_for(seq))
    assert path.stat().st_size == pos
    return offsets


def seqs(path: Path, start_seq: int = 1) -> list[int]:
    return [r.seq for r in Journal.read(path, start_seq)]


def test_round_trip_of_many_records_in_random_batches(tmp_path):
    rnd = random.Random(7)
    path = tmp_path / "j.log"
    expected = []
    with Journal(path) as j:
        seq = 0
        while seq < 3000:
            for _ in range(rnd.choice([1, 2, 10, 100, 500])):
                seq += 1
                rec = JournalRecord(
                    seq, rnd.randrange(-(2**63), 2**63), rnd.randbytes(rnd.choice([0, 1, 100, 5000]))
                )
                j.append(rec.seq, rec.timestamp, rec.payload)
                expected.append(rec)
            j.commit()
            assert j.last_seq == seq
    assert list(Journal.read(path)) == expected
    assert path.read_bytes() == FILE_HEADER + b"".join(frame(r.seq, r.timestamp, r.payload) for r in expected)


def test_seq_must_be_contiguous_from_one(tmp_path):
    with Journal(tmp_path / "j.log") as j:
        with pytest.raises(ValueError, match="expected 1"):
            j.append(2, 0, b"x")
        j.append(1, 0, b"x")
        for bad in (1, 3, 0):
            with pytest.raises(ValueError, match="expected 2"):
                j.append(bad, 0, b"x")
        j.append(2, 0, b"y")  # the rejected appends left no trace
    assert seqs(tmp_path / "j.log") == [1, 2]


def test_commit_makes_records_visible_and_durable_across_reopen(tmp_path):
    path = tmp_path / "j.log"
    j = Journal(path)
    j.append(1, 10, b"a")
    j.append(2, 20, b"b")
    assert j.last_seq == 0 and seqs(path) == []  # buffered only: not written, not durable
    j.commit()
    assert j.last_seq == 2
    assert list(Journal.read(path)) == [JournalRecord(1, 10, b"a"), JournalRecord(2, 20, b"b")]
    j.append(3, 30, b"c")
    j.close()  # close commits what is pending
    with Journal(path) as again:
        assert again.last_seq == 3
        again.append(4, 40, b"d")
    assert seqs(path) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="closed"):
        j.append(4, 0, b"")


def test_read_from_a_start_seq(tmp_path):
    path = tmp_path / "j.log"
    write_log(path, 20)
    assert seqs(path, 1) == list(range(1, 21))
    assert seqs(path, 15) == list(range(15, 21))
    assert [r.payload for r in Journal.read(path, 20)] == [payload_for(20)]
    assert seqs(path, 21) == []


def test_commit_is_one_write_and_one_fsync_and_append_does_no_io(tmp_path, monkeypatch):
    calls: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes) -> int:
        calls.append("write")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    with Journal(tmp_path / "j.log") as j:
        calls.clear()  # creating the file fsyncs its directory
        for seq in range(1, 501):
            j.append(seq, seq, b"x" * 100)
        assert calls == []
        j.commit()
        assert calls == ["write", "fsync"]
        j.commit()  # nothing pending: no I/O at all
        assert calls == ["write", "fsync"]


def test_fsync_false_writes_without_fsync(tmp_path, monkeypatch):
    fsyncs: list[int] = []
    monkeypatch.setattr(os, "fsync", fsyncs.append)
    path = tmp_path / "j.log"
    with Journal(path, fsync=False) as j:
        j.append(1, 5, b"fast")
        j.commit()
        assert j.last_seq == 1
    assert fsyncs == []
    assert list(Journal.read(path)) == [JournalRecord(1, 5, b"fast")]


def test_empty_file(tmp_path):
    path = tmp_path / "j.log"
    path.touch()
    assert seqs(path) == []
    with Journal(path) as j:
        assert j.last_seq == 0
        j.append(1, 1, b"")
    assert list(Journal.read(path)) == [JournalRecord(1, 1, b"")]


def test_a_second_writer_is_refused(tmp_path):
    with Journal(tmp_path / "j.log"), pytest.raises(RuntimeError, match="already open"):
        Journal(tmp_path / "j.log")


@pytest.mark.parametrize("n", [1, 5])
def test_torn_last_record_is_dropped_at_every_cut(tmp_path, caplog, n):
    path = tmp_path / "j.log"
    offsets = write_log(path, n)
    whole = path.read_bytes()
    last = offsets[-1]
    assert len(whole) - last > HEADER.size  # the last record has a payload to cut into too
    for cut in range(last + 1, len(whole)):
        path.write_bytes(whole[:cut])
        assert seqs(path) == list(range(1, n))  # read stops quietly ...
        assert path.stat().st_size == cut  # ... and leaves the file alone
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="matching.worker.journal"):
            j = Journal(path)
        assert f"dropped {cut - last} bytes" in caplog.text
        assert j.last_seq == n - 1
        assert path.stat().st_size == last
        j.append(n, 1000 + n, b"again")
        j.close()
        records = list(Journal.read(path))
        assert [r.seq for r in records] == list(range(1, n + 1))
        assert [r.payload for r in records[:-1]] == [payload_for(s) for s in range(1, n)]
        assert records[-1].payload == b"again"


def test_crc_mismatch_in_last_record_drops_it(tmp_path, caplog):
    path = tmp_path / "j.log"
    offsets = write_log(path, 6)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert seqs(path) == [1, 2, 3, 4, 5]
    with caplog.at_level(logging.WARNING), Journal(path) as j:
        assert j.last_seq == 5
    assert "dropped" in caplog.text
    assert path.stat().st_size == offsets[-1]


def test_garbage_after_the_last_record_is_dropped(tmp_path):
    """A crashed write can leave zeros or junk past the last complete record."""
    path = tmp_path / "j.log"
    write_log(path, 3)
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\0" * 4096 + b"junk")
    with Journal(path) as j:
        assert j.last_seq == 3
    assert path.stat().st_size == size


def test_damage_to_any_byte_of_a_middle_record_is_refused(tmp_path):
    path = tmp_path / "j.log"
    offsets = write_log(path, 5)
    whole = path.read_bytes()
    start, end = offsets[2], offsets[3]  # seq 3
    for pos in range(start, end):
        damaged = bytearray(whole)
        damaged[pos] ^= 0x40
        path.write_bytes(bytes(damaged))
        with pytest.raises(JournalCorrupt) as opened:
            Journal(path)
        message = str(opened.value)
        assert str(path) in message and f"byte offset {start}" in message and "expected seq 3" in message
        assert path.read_bytes() == bytes(damaged)  # refused, not "repaired"
        with pytest.raises(JournalCorrupt, match=f"byte offset {start}"):
            list(Journal.read(path))


def test_read_yields_the_intact_prefix_before_raising(tmp_path):
    path = tmp_path / "j.log"
    offsets = write_log(path, 5)
    data = bytearray(path.read_bytes())
    data[offsets[3] + HEADER.size] ^= 0xFF  # payload of seq 4
    path.write_bytes(bytes(data))
    got: list[int] = []
    with pytest.raises(JournalCorrupt, match="expected seq 4"):
        got.extend(r.seq for r in Journal.read(path))
    assert got == [1, 2, 3]


@pytest.mark.parametrize(
    ("seq_list", "bad_index"),
    [([1, 2, 4, 5], 2), ([1, 2, 2, 3], 2), ([2, 3], 0), ([1, 2, 3, 5], 3)],
    ids=["gap", "duplicate", "not-from-one", "gap-in-last"],
)
def test_a_seq_out_of_order_is_refused(tmp_path, seq_list, bad_index):
    path = tmp_path / "j.log"
    frames = [frame(s, s, b"p" * s) for s in seq_list]
    path.write_bytes(b"".join(frames))
    offset = sum(len(f) for f in frames[:bad_index])
    expected = seq_list[bad_index - 1] + 1 if bad_index else 1
    pattern = f"byte offset {offset} has seq {seq_list[bad_index]}, expected seq {expected}"
    with pytest.raises(JournalCorrupt, match=pattern):
        Journal(path)
    with pytest.raises(JournalCorrupt, match=pattern):
        list(Journal.read(path))


def test_a_failed_commit_disables_the_journal(tmp_path, monkeypatch):
    path = tmp_path / "j.log"
    j = Journal(path)
    j.append(1, 1, b"x")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        j.commit()
    assert j.last_seq == 0
    with pytest.raises(RuntimeError, match="reopen"):
        j.append(2, 2, b"y")
    j.close()
    monkeypatch.undo()
    with Journal(path) as again:  # written but never confirmed: its caller got an error, not an ack
        assert again.last_seq == 1


CHILD = """
import random, sys
from matching.worker.journal import Journal
path, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
with Journal(path) as j:
    seq = j.last_seq
    while True:
        for _ in range(rnd.randint(1, 50)):
            seq += 1
            j.append(seq, seq * 1000, (b"%d;" % seq) * rnd.randint(0, 40))
        j.commit()
        print(j.last_seq, flush=True)
"""


def test_kill_9_never_loses_a_committed_record(tmp_path):
    path = tmp_path / "j.log"
    rnd = random.Random(2024)
    committed = 0
    for cycle in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(cycle)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.readline()  # the child is up and has committed at least once
        assert first, child.stderr.read()
        time.sleep(rnd.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        printed = [int(line) for line in (first + out).split()]
        assert printed == sorted(printed) and printed[0] > committed
        committed = printed[-1]
        with Journal(path) as j:
            assert j.last_seq >= committed
            durable = j.last_seq
        records = list(Journal.read(path))
        assert [r.seq for r in records] == list(range(1, durable + 1))
        for r in records:
            assert r.timestamp == r.seq * 1000
            assert r.payload == b"%d;" % r.seq * (len(r.payload) // len(b"%d;" % r.seq))
        committed = durable
    assert committed > 5


def test_a_record_may_hold_a_batch_of_seqs(tmp_path):
    path = tmp_path / "j.log"
    with Journal(path) as j:
        j.append(1, 100, b"three", count=3)
        with pytest.raises(ValueError, match="expected 4"):
            j.append(2, 0, b"x")
        with pytest.raises(ValueError, match="at least one"):
            j.append(4, 0, b"x", count=0)
        j.append(4, 200, b"one")
        j.commit()
        assert j.last_seq == 4
    assert path.read_bytes() == FILE_HEADER + frame(1, 100, b"three", 3) + frame(4, 200, b"one")
    assert [(r.seq, r.last_seq) for r in Journal.read(path, 2)] == [(1, 3), (4, 4)]  # seq 2 is inside
    assert [r.seq for r in Journal.read(path, 4)] == [4]
    with Journal(path) as again:
        assert again.last_seq == 4


def test_write_then_sync_on_another_thread(tmp_path):
    path = tmp_path / "j.log"
    with Journal(path) as j:
        syncer = BackgroundSync(j, "test-sync")
        j.append(1, 1, b"a", count=2)
        j.write()
        assert j.last_seq == 0  # written, not yet durable
        syncer.start()
        syncer.wait()
        assert j.last_seq == 2
        syncer.close()


def test_segments_rotate_and_read_as_one_log(tmp_path):
    segments = Segments(tmp_path / "j.log")
    j = segments.open(fsync=False)
    assert segments.rotate(j) is j  # nothing written yet: nothing to retire
    for seq in range(1, 4):
        j.append(seq, seq, payload_for(seq))
    writes: list[int] = []
    syncs: list[int] = []
    j.on_write, j.on_sync = writes.append, syncs.append
    j.commit()
    assert len(writes) == len(syncs) == 1 and writes[0] >= 0  # each reported in ns
    j = segments.rotate(j)
    assert (j.on_write, j.on_sync) == (writes.append, syncs.append)  # the new segment reports alike
    assert [(first, last) for first, last, _ in segments.retired()] == [(1, 3)]
    assert (j.first_seq, j.last_seq) == (4, 3)
    j.append(4, 4, b"four", count=2)
    j.commit()
    j.close()
    assert [(r.seq, r.last_seq) for r in segments.read()] == [(1, 1), (2, 2), (3, 3), (4, 5)]
    assert [r.seq for r in segments.read(3)] == [3, 4]
    assert [r.seq for r in segments.read(5)] == [4]
    with segments.open(fsync=False) as again:  # reopened: the segment being written starts at 4
        assert (again.first_seq, again.last_seq) == (4, 5)
        with pytest.raises(ValueError, match="expected 6"):
            again.append(4, 0, b"x")


def test_a_segment_must_start_where_the_last_one_ended(tmp_path):
    path = tmp_path / "j.log"
    path.write_bytes(frame(1, 1, b"a"))
    with pytest.raises(JournalCorrupt, match="has seq 1, expected seq 5"):
        Journal(path, first_seq=5)
    (tmp_path / "j.log.00000000000000000001-00000000000000000003").write_bytes(b"")
    (tmp_path / "j.log.00000000000000000005-00000000000000000009").write_bytes(b"")
    with pytest.raises(JournalCorrupt, match="starts at seq 5, not 4"):
        Segments(path).retired()
