"""Format versions: the journal's file header, the snapshot envelope and the stream entry's `v`.

For each: the current version round-trips, data from before versions (none named) is still read, and
an unknown version refuses with a clear message; recovery (Matcher.open, StreamRunner.recover,
`runmatcher`) refuses to start rather than skip it as undecodable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
import zlib
from pathlib import Path

import pytest

from matching.engine import NewOrder, OrderAccepted, Side
from matching.tests.worker.load import SYMBOLS
from matching.tests.worker.stream_driver import REDIS_URL, MatcherProcess
from matching.worker.codec import WorkerCommand, encode_command
from matching.worker.formats import (
    COMMAND_FORMAT,
    JOURNAL_FORMAT,
    SNAPSHOT_FORMAT,
    UnsupportedFormat,
    check_format,
)
from matching.worker.journal import Journal, JournalRecord, Segments
from matching.worker.matcher import Matcher, Reply
from matching.worker.redis_bus import RedisBus
from matching.worker.replies import decode_reply
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import StreamRunner, replay_stream, stream_key

# The documented layouts, built independently of the modules under test.
FRAME = struct.Struct("<IIqqI")  # payload length, crc32, first seq, first timestamp, count
MAGIC = b"XMJOURNL"


def file_header(journal: int = 1, command: int = COMMAND_FORMAT) -> bytes:
    return MAGIC + struct.pack("<HH", journal, command)


def frame(seq: int, timestamp: int, payload: bytes, count: int = 1) -> bytes:
    crc = zlib.crc32(struct.pack("<qqI", seq, timestamp, count) + payload)
    return FRAME.pack(len(payload), crc, seq, timestamp, count) + payload


def order(owner: int = 1, price: int = 100, side: Side = Side.BUY, coid: str | None = None) -> NewOrder:
    return NewOrder(0, owner, "AAPL", side, 1, price, client_order_id=coid)


def batches() -> list[list[WorkerCommand]]:
    pairs: list[list[WorkerCommand]] = [[order(1, 100 + i), order(2, 100 + i, Side.SELL)] for i in range(5)]
    return [*pairs, [order(3, 90, coid="x")]]


def latest_snapshot(store: SnapshotStore) -> tuple[int, dict]:
    latest = store.latest()
    assert latest is not None and isinstance(latest[1], dict), latest
    return latest[0], latest[1]


def refused_by(exc: pytest.ExceptionInfo | BaseException | None, where: str, kind: str, found: object
               ) -> None:
    assert exc is not None
    message = str(exc.value if isinstance(exc, pytest.ExceptionInfo) else exc)
    assert where in message, message
    assert f"written in {kind} format {found!r}" in message, message
    assert f"this build reads only {kind} format 1" in message, message
    assert "upgrade the software" in message and "restore data written by this version" in message


def no_skip_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert "undecodable" not in caplog.text and "skipping damaged" not in caplog.text


def test_the_check_names_where_what_and_which_versions():
    assert check_format("journal", "here", 1, (1,)) == 1
    for found in (2, 0, "1", b"1", None, True):
        with pytest.raises(UnsupportedFormat) as refused:
            check_format("journal", "here", found, (1,))
        refused_by(refused, "here", "journal", found)
    assert issubclass(UnsupportedFormat, ValueError)
    assert (JOURNAL_FORMAT, COMMAND_FORMAT, SNAPSHOT_FORMAT) == (1, 2, 2)


# ---- the journal ------------------------------------------------------------------------------------

def test_a_new_journal_file_starts_with_its_header_and_round_trips(tmp_path):
    path = tmp_path / "j.log"
    with Journal(path, fsync=False) as j:
        assert (j.format, j.command_format) == (1, COMMAND_FORMAT)
        j.append(1, 10, b"abc", count=2)
        j.append(3, 20, b"d")
    assert path.read_bytes() == file_header() + frame(1, 10, b"abc", 2) + frame(3, 20, b"d")
    assert list(Journal.read(path)) == [JournalRecord(1, 10, b"abc", 2, COMMAND_FORMAT),
                                        JournalRecord(3, 20, b"d", 1, COMMAND_FORMAT)]
    with Journal(path, fsync=False) as again:
        assert again.last_seq == 3 and again.format == 1
        again.append(4, 30, b"e")
    assert [r.seq for r in Journal.read(path)] == [1, 3, 4]


def test_an_empty_or_torn_header_is_a_new_file(tmp_path, caplog):
    """A crash as the file was created leaves at most part of its header: nothing was ever in it."""
    for torn in (b"", MAGIC[:3], MAGIC, file_header()[:-1]):
        path = tmp_path / f"torn-{len(torn)}.log"
        path.write_bytes(torn)
        assert list(Journal.read(path)) == []
        with Journal(path, fsync=False) as j:
            assert j.last_seq == 0
            j.append(1, 1, b"x")
        assert path.read_bytes() == file_header() + frame(1, 1, b"x")


def test_the_matcher_recovers_from_a_versioned_journal(tmp_path):
    first = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    for batch in batches():
        first.process(batch)
    first.close()
    assert (tmp_path / "shard-0.journal").read_bytes().startswith(file_header())
    again = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    try:
        assert again.seq == first.seq == 11 and again.state() == first.state()
    finally:
        again.close()


def test_a_legacy_journal_without_header_is_read_then_retired(tmp_path, caplog):
    """A deployment from before versions: its headerless segment is replayed, retired as it is, and
    the log goes on in a new segment with the header."""
    reference = Matcher.open(SYMBOLS, tmp_path / "reference", fsync=False)
    for batch in batches():
        reference.process(batch)
    reference.close()
    current = (tmp_path / "reference" / "shard-0.journal").read_bytes()
    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    legacy = legacy_dir / "shard-0.journal"
    legacy.write_bytes(current[len(file_header()):])  # the same records, no header: the old layout
    assert [r.seq for r in Journal.read(legacy)] == [1, 3, 5, 7, 9, 11]

    with caplog.at_level(logging.INFO):
        matcher = Matcher.open(SYMBOLS, legacy_dir, fsync=False)
    try:
        assert matcher.seq == 11 and matcher.state() == reference.state()
        retired = Segments(legacy).retired()
        assert [(first, last) for first, last, _ in retired] == [(1, 11)]
        assert retired[0][2].read_bytes() == current[len(file_header()):]  # untouched, never appended to
        assert legacy.read_bytes() == file_header()
        matcher.process([order(4, 95)])
    finally:
        matcher.close()
    no_skip_logged(caplog)
    again = Matcher.open(SYMBOLS, legacy_dir, fsync=False)
    try:
        assert again.seq == 12
        assert [r.seq for r in Segments(legacy).read()] == [1, 3, 5, 7, 9, 11, 12]
    finally:
        again.close()


def test_a_legacy_journal_is_never_appended_to(tmp_path):
    path = tmp_path / "j.log"
    path.write_bytes(frame(1, 1, b"old"))
    with Journal(path, fsync=False) as j:
        assert (j.format, j.last_seq) == (0, 1)
        with pytest.raises(ValueError, match="read, never appended to"):
            j.append(2, 2, b"new")
    assert path.read_bytes() == frame(1, 1, b"old")


@pytest.mark.parametrize(("header", "kind", "found"), [
    (file_header(journal=2), "journal", 2),
    (file_header(journal=0), "journal", 0),
    (file_header(command=7), "command", 7),
], ids=["newer-journal", "journal-0-in-a-header", "newer-commands"])
def test_an_unknown_journal_version_refuses(tmp_path, header, kind, found):
    path = tmp_path / "j.log"
    data = header + frame(1, 1, b"written by a newer build")
    path.write_bytes(data)
    with pytest.raises(UnsupportedFormat) as refused:
        Journal(path, fsync=False)
    refused_by(refused, str(path), kind, found)
    with pytest.raises(UnsupportedFormat):
        list(Journal.read(path))
    assert path.read_bytes() == data  # refused, not "repaired"


def test_a_header_of_an_unknown_version_refuses_even_without_records(tmp_path):
    path = tmp_path / "j.log"
    path.write_bytes(file_header(journal=2))
    with pytest.raises(UnsupportedFormat):
        Journal(path, fsync=False)
    assert path.read_bytes() == file_header(journal=2)


def test_a_file_with_neither_header_nor_record_refuses(tmp_path):
    path = tmp_path / "j.log"
    path.write_bytes(b"PK\x03\x04 some other file entirely" * 4)
    with pytest.raises(UnsupportedFormat, match="neither the journal header") as refused:
        Journal(path, fsync=False)
    assert str(path) in str(refused.value)
    with pytest.raises(UnsupportedFormat):
        list(Journal.read(path))


def newer(path: Path, journal: int = 2) -> None:
    """Make a journal file's header name another journal format."""
    data = bytearray(path.read_bytes())
    assert data.startswith(MAGIC)
    struct.pack_into("<H", data, len(MAGIC), journal)
    path.write_bytes(bytes(data))


def test_the_matcher_refuses_to_start_on_an_unknown_journal_version(tmp_path, caplog):
    first = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    for batch in batches():
        first.process(batch)
    first.close()
    journal = tmp_path / "shard-0.journal"
    newer(journal)
    before = journal.read_bytes()
    with caplog.at_level(logging.INFO), pytest.raises(UnsupportedFormat) as refused:
        Matcher.open(SYMBOLS, tmp_path, fsync=False)
    refused_by(refused, str(journal), "journal", 2)
    assert journal.read_bytes() == before
    assert "recovered" not in caplog.text
    no_skip_logged(caplog)


def test_the_matcher_refuses_a_retired_segment_of_an_unknown_version(tmp_path, caplog):
    first = Matcher.open(SYMBOLS, tmp_path, fsync=False, snapshot_every=4, segment_bytes=1)
    for batch in batches():
        first.process(batch)
    first.close()
    retired = Segments(tmp_path / "shard-0.journal").retired()
    assert len(retired) >= 2
    newer(retired[0][2], journal=9)
    # The newest snapshot needs only the later segments; a projection behind it replays the first one.
    Matcher.open(SYMBOLS, tmp_path, fsync=False).close()
    with caplog.at_level(logging.INFO), pytest.raises(UnsupportedFormat) as refused:
        Matcher.open(SYMBOLS, tmp_path, fsync=False, replay_after=0)
    refused_by(refused, str(retired[0][2]), "journal", 9)
    no_skip_logged(caplog)


# ---- snapshots --------------------------------------------------------------------------------------

STATE = {"seq": 7, "format": "stream-runner/1", "books": [[1, None, True]], "name": "é"}


def test_a_snapshot_carries_its_format_and_round_trips(tmp_path):
    store = SnapshotStore(tmp_path)
    path = store.save(7, STATE)
    digest, body = path.read_bytes().split(b"\n")
    assert digest == hashlib.sha256(body).hexdigest().encode()
    assert json.loads(body) == {"snapshot_format": 2, "state": STATE}
    assert store.latest() == (7, STATE)
    for state in ([1, 2], None, "text", {"snapshot": 1}):  # any JSON value is a state
        store.save(8, state)
        assert store.latest() == (8, state)


def legacy_snapshot(path: Path, state: object) -> None:
    """A snapshot as written before versions: the digest line, then the state itself."""
    body = json.dumps(state, separators=(",", ":")).encode()
    path.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def test_a_legacy_snapshot_without_envelope_is_read_as_format_1(tmp_path):
    legacy_snapshot(tmp_path / "snapshot-0000000000000007.json", STATE)
    assert SnapshotStore(tmp_path).latest() == (7, STATE)


def versioned_snapshot(path: Path, state: object, version: object) -> None:
    body = json.dumps({"snapshot_format": version, "state": state}, separators=(",", ":")).encode()
    path.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


@pytest.mark.parametrize("version", [3, 0, "1", None])
def test_an_unknown_snapshot_version_refuses_rather_than_falling_back(tmp_path, caplog, version):
    store = SnapshotStore(tmp_path)
    store.save(5, {"at": 5})  # an older snapshot that a skip would silently fall back to
    newest = tmp_path / "snapshot-0000000000000009.json"
    versioned_snapshot(newest, {"at": 9}, version)
    with caplog.at_level(logging.WARNING), pytest.raises(UnsupportedFormat) as refused:
        store.latest()
    refused_by(refused, str(newest), "snapshot", version)
    no_skip_logged(caplog)
    assert store.latest(at_most=5) == (5, {"at": 5})  # one that recovery does not need is not read


def test_the_matcher_recovers_from_current_and_legacy_snapshots_and_refuses_unknown_ones(tmp_path, caplog):
    first = Matcher.open(SYMBOLS, tmp_path, fsync=False)
    for batch in batches():
        first.process(batch)
    first.snapshot()
    first.close()
    store = SnapshotStore(tmp_path / "shard-0-snapshots")
    seq, state = latest_snapshot(store)
    assert seq == 11

    def reopened() -> dict:
        matcher = Matcher.open(SYMBOLS, tmp_path, fsync=False)
        try:
            return matcher.state()
        finally:
            matcher.close()

    assert reopened() == first.state()
    path = tmp_path / "shard-0-snapshots" / "snapshot-0000000000000011.json"
    legacy_snapshot(path, state)
    assert reopened() == first.state()
    versioned_snapshot(path, state, 3)
    with caplog.at_level(logging.INFO), pytest.raises(UnsupportedFormat) as refused:
        Matcher.open(SYMBOLS, tmp_path, fsync=False)
    refused_by(refused, str(path), "snapshot", 3)
    no_skip_logged(caplog)


# ---- stream entries ---------------------------------------------------------------------------------

def runner(client, prefix, directory=None) -> StreamRunner:
    snapshots = SnapshotStore(directory) if directory is not None else None
    return StreamRunner(Matcher(SYMBOLS), client, 0, snapshots, prefix=prefix, block_ms=50)


class Serving:
    """A recovered runner serving in a thread; `failure` is what stopped it, if anything did."""

    def __init__(self, runner: StreamRunner) -> None:
        self.runner = runner
        self.failure: BaseException | None = None
        runner.recover()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:
            self.failure = exc

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_the_bus_writes_the_command_format_and_the_runner_serves_it(redis_client, redis_prefix):
    serving = Serving(runner(redis_client, redis_prefix))
    bus = RedisBus(REDIS_URL, {"AAPL": 0, "MSFT": 0}, timeout=5, prefix=redis_prefix)
    try:
        reply = bus.submit(order(coid="a"), timeout=5)
        assert reply.seq == 1 and isinstance(reply.events[0], OrderAccepted)
        replies = bus.submit_many([order(coid="b"), order(coid="c")], timeout=5)
        assert [r.seq if isinstance(r, Reply) else r for r in replies] == [2, 3]
    finally:
        bus.close()
        serving.stop()
    entries = redis_client.xrange(stream_key(redis_prefix, 0))
    assert [fields[b"v"] for _, fields in entries] == [str(COMMAND_FORMAT).encode()] * 3


def test_a_legacy_entry_without_v_is_read(redis_client, redis_prefix):
    stream = stream_key(redis_prefix, 0)
    redis_client.xadd(stream, {"c": encode_command(order(coid="legacy"))})
    redis_client.xadd(stream, {"v": 1, "c": encode_command(order(coid="current"))})
    r = runner(redis_client, redis_prefix)
    assert r.recover() == 2
    assert sorted(coid for _, _, coid in r.matcher.client_order_ids) == ["current", "legacy"]


@pytest.mark.parametrize(("raw", "found"), [(b"3", 3), (b"0", 0), (b"abc", b"abc")])
def test_an_unknown_entry_version_refuses_to_recover_rather_than_skip(redis_client, redis_prefix, caplog,
                                                                       raw, found):
    stream = stream_key(redis_prefix, 0)
    redis_client.xadd(stream, {"v": 1, "c": encode_command(order(coid="before"))})
    bad_id = redis_client.xadd(stream, {"v": raw, "c": b"from a newer build"}).decode()
    redis_client.xadd(stream, {"v": 1, "c": encode_command(order(coid="after"))})
    r = runner(redis_client, redis_prefix)
    with caplog.at_level(logging.INFO), pytest.raises(UnsupportedFormat) as refused:
        r.recover()
    refused_by(refused, f"stream {stream} entry {bad_id}", "command", found)
    assert not r.recovered and r.matcher.seq == 1  # the entry before it applied, nothing after
    with pytest.raises(UnsupportedFormat):
        replay_stream(Matcher(SYMBOLS), redis_client, stream)
    no_skip_logged(caplog)


def test_a_live_runner_answers_what_precedes_an_unknown_entry_then_stops(redis_client, redis_prefix, tmp_path,
                                                                         caplog):
    serving = Serving(runner(redis_client, redis_prefix, tmp_path))
    stream = stream_key(redis_prefix, 0)
    key = f"{redis_prefix}:reply:before"
    pipe = redis_client.pipeline(transaction=False)  # a good entry, then an unknown one
    pipe.xadd(stream, {"v": 1, "c": encode_command(order(coid="before")), "r": key})
    pipe.xadd(stream, {"v": 5, "c": b"?", "r": f"{redis_prefix}:reply:newer"})
    pipe.execute()
    with caplog.at_level(logging.INFO):
        got = redis_client.blpop([key], timeout=5)
        serving.thread.join(10)
    assert got is not None and decode_reply(got[1]).seq == 1
    assert not serving.thread.is_alive()
    assert isinstance(serving.failure, UnsupportedFormat)
    refused_by(serving.failure, stream, "command", 5)
    assert serving.runner.matcher.seq == 1
    assert not redis_client.exists(f"{redis_prefix}:reply:newer")
    assert not redis_client.exists(serving.runner.heartbeat_key)  # callers fail fast from now on
    assert SnapshotStore(tmp_path).latest() is None  # stopped without a snapshot
    no_skip_logged(caplog)


def test_an_undecodable_entry_of_a_known_version_is_still_skipped(redis_client, redis_prefix):
    """Genuinely corrupt single entries keep their old handling: a seq and an empty reply."""
    stream = stream_key(redis_prefix, 0)
    redis_client.xadd(stream, {"v": 1, "c": b"\xc1garbage"})
    redis_client.xadd(stream, {"v": 1, "c": encode_command(order())})
    replies: list[Reply] = []
    matcher = Matcher(SYMBOLS)
    replay_stream(matcher, redis_client, stream, on_reply=replies.append)
    assert (replies[0].seq, replies[0].events) == (1, [])
    assert matcher.seq == 2 and isinstance(replies[1].events[0], OrderAccepted)


def test_a_stream_runner_refuses_a_snapshot_of_an_unknown_version(redis_client, redis_prefix, tmp_path):
    first = Serving(runner(redis_client, redis_prefix, tmp_path))
    bus = RedisBus(REDIS_URL, {"AAPL": 0, "MSFT": 0}, timeout=5, prefix=redis_prefix)
    try:
        bus.submit(order(), timeout=5)
    finally:
        bus.close()
        first.stop()  # snapshots on the way out
    seq, state = latest_snapshot(SnapshotStore(tmp_path))
    assert seq == 1 and state["format"] == "stream-runner/1"
    path = tmp_path / "snapshot-0000000000000001.json"
    legacy_snapshot(path, state)
    again = runner(redis_client, redis_prefix, tmp_path)
    assert again.recover() == 0 and again.matcher.seq == 1
    versioned_snapshot(path, state, 3)
    with pytest.raises(UnsupportedFormat) as refused:
        runner(redis_client, redis_prefix, tmp_path).recover()
    refused_by(refused, str(path), "snapshot", 3)


def test_runmatcher_exits_non_zero_with_the_message(redis_client, redis_prefix, tmp_path):
    stream = stream_key(redis_prefix, 0)
    redis_client.xadd(stream, {"c": encode_command(order())})
    bad_id = redis_client.xadd(stream, {"v": 3, "c": b"from a newer build"}).decode()
    process = MatcherProcess(0, list(SYMBOLS), REDIS_URL, redis_prefix, tmp_path)
    try:
        code = process.proc.wait(60)
    finally:
        process.ensure_dead()
    for reader in process._readers:
        reader.join(5)
    errors = "\n".join(process.errors)
    assert code != 0
    assert f"stream {stream} entry {bad_id}: written in command format 3" in errors, errors
    assert "this build reads only command format 1, 2" in errors
    assert not any(" recovered at seq " in line for line in process.lines)
    assert "undecodable" not in errors
    assert not redis_client.exists(f"{redis_prefix}:heartbeat:0")
