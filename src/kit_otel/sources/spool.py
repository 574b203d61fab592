"""Spool files and the streams they make up: the input side of `kit-otel serve`.

The bridge appends NDJSON envelopes to spool files, one file per bridge *instance*: a KIT process
runs one instance for the main agent, one per in-process subagent and one more after each
extension hot reload, and all of them draw `seq` from one per-process counter. So the events of
one KIT process - a **stream** - may be spread over several files (and duplicated on sockets),
and `seq` is contiguous across them: 1, 2, 3, ...

A `Stream` merges its sources by `seq`: the next event is always `next_seq`, from whichever file
(or socket) has it. Lines already seen (`seq < next_seq`, e.g. the spool copy of a line that came
first over the socket) are duplicates and skipped, so each event is translated exactly once and
in the order KIT produced it. When `next_seq` is missing from every source for `gap_wait_s`
(a line the bridge could not write), the stream skips to the lowest seq available, logs it and
counts the hole.

Lines without a seq, of another pid, or that do not decode are taken as they come (no order to
keep). Each `SpoolFile` knows the offset just past the last line it handed out (`consumed_offset`),
which is what a checkpoint saves.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable

from kit_otel.model.timestamps import parse_ts
from kit_otel.model.decoder import (DecodeError, DecodeFailure, OversizeLine, decode_line,
                                    line_position)
from kit_otel.model.events import Event
from kit_otel.state.regular_file import open_regular
from kit_otel.sources.tail import FileTailer

log = logging.getLogger("kit_otel.serve")

SPOOL_SUFFIX = ".ndjson"
MAX_SOCKET_AHEAD = 8192  # socket events buffered per stream ahead of the next expected seq
# The bridge numbers lines as it writes them (drops in its queue take no seq), so a real hole is
# a failed write: a few lines. A seq further ahead is a corrupted line or a lying peer; jumping
# to it would make every later real line of the process look like a duplicate.
MAX_SEQ_JUMP = 1 << 16


def seq_jump_error(source: str, lineno: int, seq: int, next_seq: int, why: str) -> DecodeError:
    return DecodeError(source, lineno, "seq", f"seq {seq} is {seq - next_seq} ahead of the "
                       f"stream's next seq {next_seq} ({why}); line rejected", "seq_jump")


@dataclass(slots=True)
class Item:
    """One input line: an event or why it was rejected; where it ends in its file."""

    event: Event | None
    error: DecodeError | None
    end_offset: int = 0  # file offset just past the line (0 for socket input)
    lineno: int = 0
    from_socket: bool = False
    pid: int = 0  # of a rejected line whose envelope still says where it stands (else 0)
    seq: int = 0


def decode_item(data: bytes, source: str, lineno: int, max_bytes: int,
                end_offset: int = 0, from_socket: bool = False) -> Item | None:
    """An Item for one raw line; None for a blank line."""
    if isinstance(data, OversizeLine):
        error = DecodeError(source, lineno, "", f"line of {data.length} bytes exceeds the limit "
                            f"of {max_bytes}", "oversize")
        return Item(None, error, end_offset, lineno, from_socket)
    if not data or data.isspace():  # (strip() would copy every line to find out)
        return None
    try:
        return Item(decode_line(data, source=source, lineno=lineno, max_bytes=max_bytes), None,
                    end_offset, lineno, from_socket)
    except DecodeFailure as failure:
        pid, seq = line_position(data, failure.error)
        return Item(None, failure.error, end_offset, lineno, from_socket, pid, seq)


def peek_first(path: str, max_bytes: int) -> Item | None:
    """The first line of a spool file, decoded; None while it is not complete yet."""
    try:
        with os.fdopen(open_regular(path, follow_symlinks=False), "rb") as fh:
            line = fh.readline(max_bytes + 1)
    except OSError:
        return None
    if not line.endswith(b"\n"):
        if len(line) > max_bytes:  # an oversize first line: the file is not a bridge's
            return Item(None, DecodeError(path, 1, "", "first line exceeds the line limit",
                                          "oversize"), 0, 1)
        return None
    return decode_item(line, path, 1, max_bytes) or Item(
        None, DecodeError(path, 1, "", "blank first line", "malformed_json"), 0, 1)


def _stat_key(path: str) -> tuple[int, int, int] | None:
    """What tells a file at `path` changed since a read found nothing (None: not there)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_dev, st.st_size


class SpoolFile:
    """One spool file being tailed: decoded lines waiting to be merged, and how far it was
    consumed."""

    def __init__(self, path: str, *, offset: int = 0, lineno: int = 0,
                 max_bytes: int = 1 << 20, buffer_lines: int = 1024):
        self.path = path
        self.name = os.path.basename(path)
        self.max_bytes = max_bytes
        self.buffer_lines = buffer_lines
        self.tailer = FileTailer(path, offset=offset, lineno=lineno, max_bytes=max_bytes,
                                 follow_symlinks=False)  # a spool file is never a link
        self.buffer: deque[Item] = deque()
        self.consumed_offset = offset
        self.consumed_lineno = lineno
        self.maybe_more = True  # reset by the daemon at every poll; False once a read found nothing
        self.missing = False
        self.unusable = ""  # why the file cannot be read (then it counts as read to its end)
        self.lines_read = 0
        # (inode, device, size) at the path when a read last found nothing: while it is the
        # same, a poll is one stat instead of a seek, a read, an fstat and two stats (an idle
        # daemon following 1,000 files spent ~29% of a core re-reading them every 0.1 s)
        self._idle_stat: tuple[int, int, int] | None = None
        try:
            self.last_growth = os.stat(path).st_mtime  # wall clock of the last new line
        except OSError:
            self.last_growth = time.time()

    def fill(self) -> int:
        """Read more whole lines into the buffer; the number of lines read."""
        if self.unusable:
            self.maybe_more = False
            return 0
        if self._idle_stat is not None:
            if not self.may_have_changed():
                self.maybe_more = False
                return 0
            self._idle_stat = None
        resets = self.tailer.resets
        try:
            lines = self.tailer.read_available(max_lines=self.buffer_lines)
        except OSError as exc:  # e.g. a FIFO put in its place: never block on it, never retry
            self.unusable = f"cannot be read: {exc.strerror or exc}"
            log.warning("spool file %s %s; it is no longer followed", self.path, self.unusable)
            self.tailer.close()
            self.maybe_more = False
            return 0
        if self.tailer.resets != resets:
            log.warning("spool file %s was %s: reading it from the start (lines already "
                        "translated are skipped by seq)", self.path, self.tailer.reset_reason)
            if not self.buffer:
                self.consumed_offset = self.consumed_lineno = 0
        if not lines:
            self.maybe_more = False
            key = _stat_key(self.path)
            if key is not None and (key[2] != self.tailer.read_end or
                                    key[:2] != self.tailer.opened_identity()):
                # changed between the read and the stat (grown, truncated, replaced): what
                # was read is not what is there, and remembering this as "idle" would leave
                # the new lines unread until the next write
                return 0
            self._idle_stat = key
            self.missing = key is None  # as of now: a name can be given to a file again
            return 0
        for line in lines:
            item = decode_item(line.data, self.path, line.lineno, self.max_bytes, line.end_offset)
            if item is None:  # a blank line: consumed at once if nothing is waiting before it
                if not self.buffer:
                    self.consumed_offset = line.end_offset
                    self.consumed_lineno = line.lineno
                continue
            self.buffer.append(item)
        self.lines_read += len(lines)
        self.last_growth = time.time()
        self.missing = False
        return len(lines)

    def may_have_changed(self) -> bool:
        """False while the file is as it was when a read last found nothing in it."""
        return self._idle_stat is None or self._idle_stat != _stat_key(self.path)

    def head(self) -> Item | None:
        if not self.buffer and self.maybe_more:
            self.fill()
        return self.buffer[0] if self.buffer else None

    def after_head(self) -> Item | None:
        """The line after the head (read now if it is there), to check the head against."""
        if len(self.buffer) < 2 and self.maybe_more:
            self.fill()
        return self.buffer[1] if len(self.buffer) > 1 else None

    def pop(self) -> Item:
        item = self.buffer.popleft()
        self.consumed_offset = item.end_offset
        self.consumed_lineno = item.lineno
        return item

    def size(self) -> int:
        return self.tailer.size()

    def fully_consumed(self) -> bool:
        return not self.buffer and not self.maybe_more and (
            bool(self.unusable) or self.consumed_offset >= self.size())

    def close(self) -> None:
        self.tailer.close()


class Stream:
    """The events of one KIT process, merged from its spool files and sockets (see module)."""

    def __init__(self, key: str, pid: int, *, next_seq: int | None = None,
                 first_file: str = "", ordered: bool = True, created_ns: int | None = None):
        self.key = key
        self.pid = pid
        self.pids: set[int] = {pid}  # pids of the events translated (the bridge's: just one)
        self.session_keys: set[tuple[int, str]] = set()
        self.next_seq = next_seq
        self.first_file = first_file  # the file holding seq 1 (a second one means a new process)
        self.first_started = ""  # StartedAt of the seq-1 bridge_start
        self.ordered = ordered
        self.created_ns = created_ns if created_ns is not None else time.time_ns()
        self.files: dict[str, SpoolFile] = {}
        self._unexamined: set[SpoolFile] = set()  # files whose head must be looked at
        self._by_head: dict[int, SpoolFile] = {}  # seq of an in-order head → its file
        self._drained: set[SpoolFile] = set()  # files read to their end (until `refresh`)
        self.positions: dict[str, tuple[int, int]] = {}  # file → (consumed offset, line number)
        self.socket_items: dict[int, Event] = {}
        self.socket_unordered: deque[Event] = deque()
        self.ledger: dict = {}  # counter totals attributed to this stream (checkpoint.Totals)
        self.pending_spans: list = []  # ended spans not yet handed to the exporter
        self.dirty = False  # something was consumed since the last checkpoint
        self.released = 0  # checkpoints handed to the exporter
        self.last_type = ""
        self.socket_activity = 0.0  # wall clock of the last socket input
        self.ended_since: float | None = None
        self.gap_since: float | None = None
        self.duplicates = 0
        self.missing_seqs = 0
        self.seq_jumps = 0  # lines refused because their seq jumped too far (see MAX_SEQ_JUMP)
        self._socket_overflow_logged = False

    @property
    def socket_only(self) -> bool:
        return not self.files

    def add_file(self, spool_file: SpoolFile) -> None:
        self.files[spool_file.name] = spool_file
        self.positions[spool_file.name] = (spool_file.consumed_offset,
                                           spool_file.consumed_lineno)
        self._unexamined.add(spool_file)

    def last_activity(self) -> float:
        """Wall clock of the newest input (file growth or socket line)."""
        return max([self.socket_activity, *(f.last_growth for f in self.files.values())])

    def _in_order(self, event: Event) -> bool:
        return self.ordered and event.seq > 0 and event.pid == self.pid

    # ── socket input ─────────────────────────────────────────────────────────────────────────

    def offer(self, event: Event) -> bool:
        """An event that came over a socket (the spool may have it too); False when its seq is
        too far ahead to be believed (the caller rejects the line)."""
        self.socket_activity = time.time()
        if not self._in_order(event):
            self.socket_unordered.append(event)
            return True
        if self.next_seq is not None and event.seq < self.next_seq:
            self.duplicates += 1
            return True
        if self.next_seq is not None and event.seq - self.next_seq > MAX_SEQ_JUMP:
            self.seq_jumps += 1
            return False
        if event.seq in self.socket_items:
            self.duplicates += 1
            return True
        if len(self.socket_items) >= MAX_SOCKET_AHEAD:
            if not self._socket_overflow_logged:
                self._socket_overflow_logged = True
                log.warning("stream %s: socket input runs more than %d events ahead; the rest "
                            "comes from the spool file", self.key, MAX_SOCKET_AHEAD)
            return True
        self.socket_items[event.seq] = event
        return True

    # ── merging ──────────────────────────────────────────────────────────────────────────────

    def _examine(self) -> Item | None:
        """Look at the heads of files whose head changed: lines to take at once are returned,
        duplicates dropped, in-order heads indexed by seq."""
        pending = self._unexamined
        while pending:
            spool_file = pending.pop()
            head = spool_file.head()
            if head is None:
                self._drained.add(spool_file)
                continue
            event = head.event
            if event is None:
                seq = head.seq if self.ordered and head.pid == self.pid else 0
                # (a stream's first line decides where it starts: only a good one may)
                if seq and seq not in self._by_head and (
                        seq <= 1 if self.next_seq is None else seq >= self.next_seq) \
                        and not self._outlier(spool_file, seq):
                    # rejected, but still at its seq: taken (and reported) in its turn, so
                    # the lines after it do not wait for a seq that "never came"
                    self._by_head[seq] = spool_file
                    continue
                pending.add(spool_file)
                return self._pop(spool_file)
            if not self._in_order(event):
                pending.add(spool_file)
                return self._pop(spool_file)
            if (self.next_seq is not None and event.seq < self.next_seq) \
                    or event.seq in self._by_head:
                self._pop(spool_file)  # already translated (came over a socket, or seen before)
                self.duplicates += 1
                pending.add(spool_file)
                continue
            why = self._outlier(spool_file, event.seq)
            if why:
                pending.add(spool_file)
                return self._reject_head(spool_file, why)
            self._by_head[event.seq] = spool_file
        return None

    def _outlier(self, spool_file: SpoolFile, seq: int) -> str:
        """Why a file head ahead of the stream cannot be a seq to continue at ("" if it can):
        too far ahead, or the line after it in the same file is lower (one bridge instance
        writes its lines in seq order, so the head is the corrupt one)."""
        expected = self.next_seq
        if expected is None or seq <= expected:
            return ""
        if seq - expected > MAX_SEQ_JUMP:
            return f"more than {MAX_SEQ_JUMP} ahead"
        after = spool_file.after_head()
        if after is not None and after.event is not None and self._in_order(after.event) \
                and expected <= after.event.seq < seq:
            return f"the next line of its file has seq {after.event.seq}"
        return ""

    def _reject_head(self, spool_file: SpoolFile, why: str) -> Item:
        item = self._pop(spool_file)
        if item.event is None:  # rejected already: the seq its envelope gave was not its own
            return item
        self.seq_jumps += 1
        return Item(None, seq_jump_error(spool_file.path, item.lineno, item.event.seq,
                                         self.next_seq, why), item.end_offset, item.lineno)

    def _take_file_head(self, seq: int) -> Item | None:
        spool_file = self._by_head.pop(seq, None)
        if spool_file is None:
            return None
        self._unexamined.add(spool_file)
        return self._pop(spool_file)

    def _pop(self, spool_file: SpoolFile) -> Item:
        item = spool_file.pop()
        self.positions[spool_file.name] = (item.end_offset, item.lineno)
        return item

    def next_item(self, now: float, gap_wait_s: float) -> Item | None:
        """The next input to translate, or None when nothing can be taken yet."""
        pending, seq = self._unexamined, self.next_seq
        if len(pending) == 1 and seq is not None and not self.socket_items \
                and not self.socket_unordered and seq not in self._by_head:
            # the common case, taken directly: the file the last line came from has the next
            # seq at its head (the same item and state as the general way below)
            for spool_file in pending:
                head = spool_file.head()
                event = head.event if head is not None else None
                if event is not None and event.seq == seq and self._in_order(event):
                    self.next_seq = seq + 1
                    self.gap_since = None
                    return self._pop(spool_file)
        while True:
            item = self._examine()
            if item is not None:
                return item
            if self.socket_unordered:
                return Item(self.socket_unordered.popleft(), None, from_socket=True)
            seq = self.next_seq
            if seq is not None:
                item = self._take_file_head(seq)
                event = self.socket_items.pop(seq, None)
                if event is not None and (item is None or item.event is None):
                    item = Item(event, None, from_socket=True)  # (a good copy beats a bad one)
                elif event is not None:
                    self.duplicates += 1
                if item is not None:
                    self.next_seq = seq + 1
                    self.gap_since = None
                    return item
                if self.socket_items:
                    for old in [s for s in self.socket_items if s < seq]:
                        del self.socket_items[old]
                        self.duplicates += 1
            available = list(self._by_head)
            if self.socket_items:
                available.append(min(self.socket_items))
            if not available:
                self.gap_since = None
                return None
            lowest = min(available)
            if self.next_seq is None and lowest <= 1:
                self.next_seq = lowest  # a process's first line
                continue
            # the expected seq is in no source: wait a little, it may still be written
            if self.gap_since is None:
                self.gap_since = now
                return None
            if now - self.gap_since < gap_wait_s:
                return None
            holder = self._by_head.get(lowest)
            why = self._outlier(holder, lowest) if holder is not None else ""
            if why:  # (its successor may have been written since it was examined)
                del self._by_head[lowest]
                self._unexamined.add(holder)
                self.gap_since = None
                return self._reject_head(holder, why)
            if self.next_seq is None:
                log.info("stream %s: starts at seq %d (earlier lines are not in the spool)",
                         self.key, lowest)
            else:
                self.missing_seqs += lowest - self.next_seq
                log.warning("stream %s: seq %d..%d never arrived after %.0fs; continuing at %d",
                            self.key, self.next_seq, lowest - 1, gap_wait_s, lowest)
            self.next_seq = lowest
            self.gap_since = None

    def fully_consumed(self) -> bool:
        return (not self.socket_items and not self.socket_unordered
                and all(f.fully_consumed() or f.missing for f in self.files.values()))

    def refresh(self) -> None:
        """A new poll: files that changed since they were read to their end are looked at
        again (a file that did not change costs one stat)."""
        changed = [f for f in self._drained if f.may_have_changed()]
        for spool_file in changed:
            spool_file.maybe_more = True
            self._drained.discard(spool_file)
        self._unexamined.update(changed)

    def has_input(self) -> bool:
        """Something to look at: a file to read, a head waiting for its seq, socket lines."""
        return bool(self._unexamined or self._by_head or self.socket_items
                    or self.socket_unordered)

    def close(self) -> None:
        for spool_file in self.files.values():
            spool_file.close()


def spool_names(spool_dir: str) -> Iterable[str]:
    try:
        names = os.listdir(spool_dir)
    except FileNotFoundError:
        return []
    return sorted(filter(is_spool_name, names))


def is_spool_name(name: str) -> bool:
    """A bridge's spool file name: `*.ndjson`, not hidden (temp and lock files are)."""
    return name.endswith(SPOOL_SUFFIX) and not name.startswith(".")


PID_MAX = (1 << 22)  # Linux's ceiling for pid_max: a larger pid cannot be a live process


def process_started_ns(pid: int) -> int | None:
    """When process `pid` started (wall clock, ns), from /proc; None where that is unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as fh:
            boot_s = next(int(line.split()[1]) for line in fh if line.startswith(b"btime "))
        ticks = os.sysconf("SC_CLK_TCK")
        return int((boot_s + int(fields[19]) / ticks) * 1e9)  # field 22: starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def still_running(pid: int, started_at: str) -> bool:
    """Is the KIT process whose bridge started at `started_at` (RFC 3339) still running? Its pid
    is alive, and not taken over by a process that started after that bridge did (pid reuse:
    a container's KIT as pid 7 leaves files that serve's pid 7, a different process, would
    otherwise keep forever)."""
    if not pid_alive(pid):
        return False
    if not started_at:
        return True
    try:
        bridge_ns = parse_ts(started_at)
    except ValueError:
        return True
    started = process_started_ns(pid)
    return started is None or started <= bridge_ns + 2_000_000_000  # (boot time is in seconds)


def pid_alive(pid: int) -> bool:
    if pid <= 0 or pid > PID_MAX:  # also: os.kill raises OverflowError beyond pid_t
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
