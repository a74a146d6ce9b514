"""Format versions of what the matcher persists, and the check that refuses what this build cannot read.

Three things outlive the process that wrote them, so each carries the version of its layout:

    journal files   a file header: JOURNAL_MAGIC, the journal format, the command format of its records
                    (a file without the header, from before versions, is the legacy format 0: read)
    stream entries  a field `v`: the command format of `c` (an entry without it is the legacy format,
                    which is command format 1)
    snapshots       the JSON body is `{"snapshot_format": N, "state": ...}` (a body without the envelope,
                    from before versions, is format 1)

Data in a version this build does not read raises `UnsupportedFormat`: the matcher refuses to start
(or stops), since skipping it as undecodable would silently lose acknowledged commands or state. To
change a layout, bump its constant here; to keep reading the old one, teach the reader it and keep
its number in the `*_READ` tuple. A build never writes an old version.
"""

from __future__ import annotations

from typing import Final

# The journal file layout: the file header, then CRC-framed records (journal.HEADER). Headerless
# files written before versions existed are format 0, and are read (never written) by this build.
JOURNAL_FORMAT: Final = 1
JOURNAL_FORMATS_READ: Final = (1,)
LEGACY_JOURNAL_FORMAT: Final = 0
JOURNAL_MAGIC: Final = b"XMJOURNL"

# The command payload encoding (matching.worker.codec): of a journal record's batch and of a stream
# entry's command. Data from before versions existed is this format 1.
# Format 2 adds tags for what balance shards send a matching shard (FundedOrder, FundedAmend, Fence);
# the tags of format 1 are unchanged, so format 1 data reads the same.
COMMAND_FORMAT: Final = 2
COMMAND_FORMATS_READ: Final = (1, 2)
LEGACY_COMMAND_FORMAT: Final = 1  # of journal files and stream entries that name none

# The snapshot file layout (matching.worker.snapshots); a body without the envelope is format 1.
# Format 2: the risk state holds the balance stage's shard ("balances") and the ledger no cash; a
# format 1 state is converted as it is read (risk.core.engine.ledger_state_before_balances).
SNAPSHOT_FORMAT: Final = 2
SNAPSHOT_FORMATS_READ: Final = (1, 2)
LEGACY_SNAPSHOT_FORMAT: Final = 1  # of a body without the envelope


class UnsupportedFormat(ValueError):
    """Data written in a format version this build cannot read: refuse to start rather than skip it."""


def check_format(kind: str, where: str, found: object, readable: tuple[int, ...]) -> int:
    """`found` if it is one of the `readable` versions of `kind` (journal, command, snapshot); else
    raise `UnsupportedFormat` naming `where` (the file or stream), the version and what this build reads."""
    if type(found) is int and found in readable:
        return found
    versions = ", ".join(str(v) for v in readable)
    raise UnsupportedFormat(
        f"{where}: written in {kind} format {found!r}, but this build reads only {kind} format "
        f"{versions}. The matcher does not start (or go on) rather than skip it: upgrade the software to "
        f"a version that reads {kind} format {found!r}, or restore data written by this version."
    )
