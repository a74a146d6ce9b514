"""The durable command log: append-only, group-committed, checked on every read.

A command is acknowledged only after it is journaled, so `commit` returns only once the batch
is on disk (one write, one fsync for the whole batch; `append` never touches the disk). Each
record is framed as header `<IIqqI` (payload length, crc32, seq, timestamp, count) then the
payload; the CRC covers everything after itself. A record may carry a whole batch: `count`
commands with seqs seq .. seq + count - 1 (and timestamps timestamp .. timestamp + count - 1),
so a group commit frames, checksums and encodes once per batch rather than once per command.

A crash can leave only the last write torn, so a damaged record with nothing valid after it
is an unacknowledged tail and is dropped. Damage anywhere else would silently lose
acknowledged commands, so it is refused (`JournalCorrupt`) and left for an operator.

Each file starts with a header `<8sHH` (`formats.JOURNAL_MAGIC`, the journal format, the command
format of its payloads), written and made durable when the file is created. A file whose header
names a version this build does not read is refused (`formats.UnsupportedFormat`), never skipped. A
file without the header (written before versions existed: the legacy format 0) is read if it starts
with a valid record, never appended to (`Segments.open` retires it and starts a new segment); a file
that starts with neither is refused.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from matching.worker.formats import (
    COMMAND_FORMAT,
    COMMAND_FORMATS_READ,
    JOURNAL_FORMAT,
    JOURNAL_FORMATS_READ,
    JOURNAL_MAGIC,
    LEGACY_COMMAND_FORMAT,
    LEGACY_JOURNAL_FORMAT,
    UnsupportedFormat,
    check_format,
)

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIqqI")  # payload length, crc32, first seq, first timestamp, count
_SEQ_TS_COUNT = struct.Struct("<qqI")
_CRC_FROM = 8  # the CRC covers the frame from the seq field to the end of the payload
FILE_HEADER = struct.Struct("<8sHH")  # magic, journal format, command format (of every record's payload)


@dataclass(frozen=True, slots=True)
class JournalRecord:
    seq: int  # of the first command in it; contiguous across records: 1, 2, 3 ...
    timestamp: int  # ns, of the first command; assigned once by the sequencer and reused on replay
    payload: bytes  # `count` encoded commands (opaque here)
    count: int = 1
    command_format: int = COMMAND_FORMAT  # the payload's encoding, from the file header

    @property
    def last_seq(self) -> int:
        return self.seq + self.count - 1


class JournalCorrupt(Exception):
    """The log is damaged before its last record: starting would lose acknowledged commands."""


class Journal:
    """The writer side. Single-threaded; an exclusive lock keeps a second writer out."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True, first_seq: int = 1) -> None:
        """`first_seq`: the seq the file starts at (a segment after the first: see `Segments`). A new
        file gets the header of the current formats; an existing one is checked (`UnsupportedFormat`)."""
        self.path = Path(path)
        self._fsync = fsync
        self.first_seq = first_seq
        self.format = JOURNAL_FORMAT  # of the file: LEGACY_JOURNAL_FORMAT for a headerless one
        self.command_format = COMMAND_FORMAT  # of its records' payloads
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"{self.path} is already open for writing by another Journal") from None
            self._last_seq = self._recover()
            if created and fsync:
                fsync_dir(self.path.parent)  # make the new file's directory entry durable too
        except BaseException:
            os.close(self._fd)
            raise
        self._next_seq = self._last_seq + 1
        self._written_seq = self._last_seq
        self._pending: list[bytes] = []
        # Told how long each write and each sync took (ns), for metrics; carried across rotations.
        self.on_write: Callable[[int], None] | None = None
        self.on_sync: Callable[[int], None] | None = None
        self._failed = False

    @property
    def fsync(self) -> bool:
        return self._fsync

    @property
    def size(self) -> int:
        """Bytes in the file (written, not necessarily durable)."""
        return os.fstat(self._fd).st_size

    @property
    def last_seq(self) -> int:
        """Seq of the last durable record (0 for an empty log)."""
        return self._last_seq

    def append(self, seq: int, timestamp: int, payload: bytes, count: int = 1) -> None:
        """Buffer one record of `count` commands in memory; not durable until `commit` returns."""
        self._check_usable()
        if self.format != JOURNAL_FORMAT or self.command_format != COMMAND_FORMAT:
            raise ValueError(
                f"{self.path} is in journal format {self.format} (commands {self.command_format}), not "
                f"the current {JOURNAL_FORMAT} ({COMMAND_FORMAT}): it is read, never appended to; retire it "
                f"and start a new file (Segments.open does)"
            )
        if seq != self._next_seq:
            raise ValueError(f"journal append out of order: got seq {seq}, expected {self._next_seq}")
        if count < 1:
            raise ValueError(f"a record holds at least one command, not {count}")
        crc = zlib.crc32(payload, zlib.crc32(_SEQ_TS_COUNT.pack(seq, timestamp, count)))
        self._pending.append(HEADER.pack(len(payload), crc, seq, timestamp, count))
        self._pending.append(payload)
        self._next_seq += count

    def commit(self) -> None:
        """Group commit: one write and one fsync for every buffered record."""
        self.write()
        self.sync()

    def write(self) -> None:
        """Write every buffered record (one write). Not durable, and `last_seq` unchanged, until
        `sync` returns; the two are apart so that the caller can apply the batch meanwhile."""
        _timed(self._write, self.on_write)

    def sync(self) -> None:
        """Make what `write` wrote durable (fsync; may run on another thread than `write`)."""
        _timed(self._sync, self.on_sync)

    def _write(self) -> None:
        self._check_usable()
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        try:
            while data:  # a regular file takes it in one write; loop only for a short write
                data = data[os.write(self._fd, data) :]
        except BaseException:
            # After a failed write or fsync the file's state is unknown (and a retried fsync may
            # lie), so refuse further use; reopening truncates any torn tail.
            self._failed = True
            raise
        self._pending.clear()
        self._written_seq = self._next_seq - 1

    def _sync(self) -> None:
        self._check_usable()
        if self._written_seq == self._last_seq:
            return
        try:
            if self._fsync:
                os.fsync(self._fd)
        except BaseException:
            self._failed = True
            raise
        self._last_seq = self._written_seq

    def close(self) -> None:
        """Commit what is pending, then release the file and its lock."""
        if self._fd < 0:
            return
        try:
            if not self._failed:
                self.commit()
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @staticmethod
    def read(path: str | os.PathLike, start_seq: int = 1, first_seq: int = 1) -> Iterator[JournalRecord]:
        """Records holding seqs >= start_seq (the first may begin earlier) of a file that starts at
        `first_seq`. Stops quietly at a torn last record; never writes. A file in a format this build
        does not read raises `UnsupportedFormat` before any record."""
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                fmt = _file_format(path, buf)
                if fmt is None:  # a header torn as the file was created: nothing was ever in it
                    return
                for _end, record in _scan(path, buf, first_seq, fmt):
                    if record.last_seq >= start_seq:
                        yield record

    def _check_usable(self) -> None:
        if self._fd < 0:
            raise ValueError(f"journal {self.path} is closed")
        if self._failed:
            raise RuntimeError(f"journal {self.path} failed to commit earlier; reopen it to recover")

    def _recover(self) -> int:
        """Check the file's format, validate the whole file, truncate a torn tail, and return the last
        seq. A new file (or one without records) gets the header of the current formats."""
        size = os.fstat(self._fd).st_size
        fmt: _FileFormat | None = None
        end, last_seq = 0, self.first_seq - 1
        if size:
            with mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) as buf:
                fmt = _file_format(self.path, buf)
                if fmt is not None:
                    end = fmt.start
                    for valid_end, record in _scan(self.path, buf, self.first_seq, fmt):
                        end, last_seq = valid_end, record.last_seq
        current = fmt is not None and (fmt.journal, fmt.command) == (JOURNAL_FORMAT, COMMAND_FORMAT)
        if fmt is None or (end == fmt.start and not current):
            # New, a header torn as the file was created, or an older header with no record after it:
            # nothing in it was ever acknowledged, so it starts over in the current formats.
            if size:
                log.warning("%s: rewrote the header of a journal file without records (%d bytes)", self.path,
                            size)
                os.ftruncate(self._fd, 0)
            os.write(self._fd, FILE_HEADER.pack(JOURNAL_MAGIC, JOURNAL_FORMAT, COMMAND_FORMAT))
            if self._fsync:
                os.fsync(self._fd)
            return self.first_seq - 1
        self.format, self.command_format = fmt.journal, fmt.command
        if end < size:
            dropped = size - end  # an unacknowledged batch cut short by a crash
            log.warning(
                "%s: dropped %d bytes of a torn last record at byte offset %d", self.path, dropped, end
            )
            os.ftruncate(self._fd, end)
            if self._fsync:
                os.fsync(self._fd)
        return last_seq


def _timed(step: Callable[[], None], report: Callable[[int], None] | None) -> None:
    if report is None:
        step()
        return
    started = time.perf_counter_ns()
    try:
        step()
    finally:
        report(time.perf_counter_ns() - started)


class BackgroundSync:
    """Runs a journal's `sync` on a thread of its own, so the caller can work while the disk flushes.

    `start` returns only once the sync thread is inside the flush (the fsync releases the GIL): a
    compiled caller that never yields the GIL on its own would otherwise keep the thread from
    starting until it waited for the result, and nothing would overlap."""

    def __init__(self, journal: Journal, name: str) -> None:
        self._journal = journal
        self._go = threading.Event()
        self._started = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def start(self) -> None:
        self._done.wait()
        self._error = None
        self._started.clear()
        self._done.clear()
        self._go.set()
        self._started.wait()

    def wait(self) -> None:
        """Block until the flush has finished; re-raise its failure."""
        self._done.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._done.wait()
        self._closing = True
        self._go.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self._closing:
                return
            self._started.set()
            try:
                self._journal.sync()
            except BaseException as exc:
                self._error = exc
            self._done.set()


@dataclass(frozen=True, slots=True)
class _FileFormat:
    journal: int  # LEGACY_JOURNAL_FORMAT: a file without the header
    command: int  # of every record's payload
    start: int  # byte offset of the first record


def _file_format(path: str | os.PathLike, buf: mmap.mmap) -> _FileFormat | None:
    """The format of a (non-empty) journal file, from its first bytes; None when it holds only part of
    a header (torn as the file was created, so nothing was ever in it). Raises `UnsupportedFormat` for
    a version this build does not read, or a file that starts with neither a header nor a record."""
    size, magic = len(buf), len(JOURNAL_MAGIC)
    if size < FILE_HEADER.size and buf[: min(size, magic)] == JOURNAL_MAGIC[: min(size, magic)]:
        return None
    if buf[:magic] == JOURNAL_MAGIC:
        _magic, journal, command = FILE_HEADER.unpack_from(buf, 0)
        check_format("journal", str(path), journal, JOURNAL_FORMATS_READ)
        check_format("command", str(path), command, COMMAND_FORMATS_READ)
        return _FileFormat(journal, command, FILE_HEADER.size)
    if _frame_end(buf, 0) is not None:  # from before versions: records from the first byte
        command = check_format("command", str(path), LEGACY_COMMAND_FORMAT, COMMAND_FORMATS_READ)
        return _FileFormat(LEGACY_JOURNAL_FORMAT, command, 0)
    raise UnsupportedFormat(
        f"{path}: not a journal file this build can read: it starts with neither the journal header "
        f"{JOURNAL_MAGIC!r} nor a valid record (of a journal from before format versions). The matcher "
        f"does not start rather than skip it: upgrade the software to a version that reads it, or restore "
        f"data written by this version."
    )


def _scan(
    path: str | os.PathLike, buf: mmap.mmap, first_seq: int = 1, fmt: _FileFormat | None = None
) -> Iterator[tuple[int, JournalRecord]]:
    """Yield (end offset, record) for each valid record from the format's start (the file header's
    end); stop at a torn tail, raise on corruption."""
    start, command_format = (0, LEGACY_COMMAND_FORMAT) if fmt is None else (fmt.start, fmt.command)
    off, expected, size = start, first_seq, len(buf)
    while off < size:
        end = _frame_end(buf, off)
        if end is None:
            later = _next_valid_frame(buf, off + 1, expected)
            if later is None:
                return  # a torn tail: nothing durable follows it
            raise JournalCorrupt(
                f"{path}: damaged record at byte offset {off} (expected seq {expected}); "
                f"a valid record follows at byte offset {later}"
            )
        _length, _crc, seq, timestamp, count = HEADER.unpack_from(buf, off)
        if seq != expected:
            raise JournalCorrupt(
                f"{path}: record at byte offset {off} has seq {seq}, expected seq {expected}"
            )
        if count < 1:
            raise JournalCorrupt(f"{path}: record at byte offset {off} holds {count} commands")
        yield end, JournalRecord(seq, timestamp, buf[off + HEADER.size : end], count, command_format)
        off, expected = end, expected + count


def _frame_end(buf: mmap.mmap, off: int) -> int | None:
    """End offset of an intact frame at `off` (complete and CRC-valid), else None."""
    if len(buf) - off < HEADER.size:
        return None
    length, crc, _seq, _timestamp, _count = HEADER.unpack_from(buf, off)
    end = off + HEADER.size + length
    if end > len(buf) or zlib.crc32(buf[off + _CRC_FROM : end]) != crc:
        return None
    return end


def _next_valid_frame(buf: mmap.mmap, start: int, expected: int) -> int | None:
    """Offset of an intact frame after a damaged one, if any. Only the tail of a crashed write
    is scanned in practice, since real corruption is followed by a valid frame right away."""
    for off in range(start, len(buf) - HEADER.size + 1):
        seq = HEADER.unpack_from(buf, off)[2]
        # Every command takes at least one byte, which bounds the seqs that can be here.
        if expected <= seq <= expected + (off - start) + 1 and _frame_end(buf, off):
            return off
    return None


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a new or renamed file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Segments:
    """The command log as a chain of files, so that a restart scans only what its snapshot lacks.

    `path` is the segment being written. After a snapshot at seq S (everything up to S durable) the
    matcher may retire it as `<path>.<first>-<last>` (zero-padded seqs, so names sort by seq) and start
    a new one at S + 1. A retired segment never changes again; it was validated while written and is
    checked again (CRC, contiguous seqs) whenever it is read. None is ever deleted: a projection that
    lags behind the newest snapshot recovers from an older one and needs the segments after it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def retired(self) -> list[tuple[int, int, Path]]:
        """(first seq, last seq, file) of each retired segment, oldest first."""
        out = []
        for file in self.path.parent.glob(f"{self.path.name}.*-*"):
            low, _, high = file.name[len(self.path.name) + 1 :].partition("-")
            if low.isdigit() and high.isdigit():
                out.append((int(low), int(high), file))
        out.sort()
        for (_, last, file), (first, _, _) in itertools.pairwise(out):
            if first != last + 1:
                raise JournalCorrupt(f"{file}: the next segment starts at seq {first}, not {last + 1}")
        return out

    def first_seq(self) -> int:
        """The seq the segment being written starts at."""
        retired = self.retired()
        return retired[-1][1] + 1 if retired else 1

    def open(self, *, fsync: bool = True) -> Journal:
        """The segment being written. One in an older format (a legacy file without the header) is
        read, never appended to: it is retired as it is and a new one starts in the current formats."""
        journal = Journal(self.path, fsync=fsync, first_seq=self.first_seq())
        if (journal.format, journal.command_format) != (JOURNAL_FORMAT, COMMAND_FORMAT):
            log.info("%s: journal format %d (commands %d) retired; a new segment starts in format %d (%d)",
                     self.path, journal.format, journal.command_format, JOURNAL_FORMAT, COMMAND_FORMAT)
            journal = self.rotate(journal)
        return journal

    def rotate(self, journal: Journal) -> Journal:
        """Retire `journal` (the segment being written; nothing pending) and open the next one."""
        first, last, fsync = journal.first_seq, journal.last_seq, journal.fsync
        if last < first:
            return journal  # nothing written since the last rotation
        journal.close()
        os.rename(self.path, self.path.with_name(f"{self.path.name}.{first:020d}-{last:020d}"))
        if fsync:
            fsync_dir(self.path.parent)  # the rename is durable before anything lands in the new file
        new = Journal(self.path, fsync=fsync, first_seq=last + 1)
        new.on_write, new.on_sync = journal.on_write, journal.on_sync
        return new

    def read(self, start_seq: int = 1) -> Iterator[JournalRecord]:
        """Records holding seqs >= start_seq, across the segments."""
        for first, last, file in self.retired():
            if last >= start_seq:
                yield from Journal.read(file, start_seq, first)
        if self.path.exists():
            yield from Journal.read(self.path, start_seq, self.first_seq())
