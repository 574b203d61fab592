"""Reading NDJSON files that are still being written: whole lines only, from a known offset.

A line without its newline yet is left for the next read, so a reader never decodes half a line
and the offset it reports is always the start of the next whole line (what a checkpoint needs).
A file truncated under the reader, or replaced by another one at its path (rotation), is noticed
as soon as the old content is read to its end, and the new content is read from its start; one
truncated and written again past the reader's offset is noticed by the byte before the offset,
which is a newline in the content that was read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from kit_otel.model.decoder import DEFAULT_MAX_LINE_BYTES, OversizeLine
from kit_otel.state.regular_file import open_regular


@dataclass(slots=True)
class Line:
    lineno: int
    data: bytes  # an OversizeLine for a line over the limit
    end_offset: int  # file offset just past this line


class FileTailer:
    def __init__(self, path: str, *, offset: int = 0, lineno: int = 0,
                 max_bytes: int = DEFAULT_MAX_LINE_BYTES, chunk: int = 1 << 16,
                 follow_symlinks: bool = True):
        self.path = path
        self.follow_symlinks = follow_symlinks
        self.offset = offset  # start of the first line not yet returned
        self.lineno = lineno  # number of the last line returned
        self.max_bytes = max_bytes
        self.chunk = chunk
        self._file: BinaryIO | None = None
        self._skipping = 0  # bytes of an oversize line being skipped
        self.resets = 0  # times the file was found truncated or replaced, and read anew
        self.reset_reason = ""
        self.read_end = offset  # the file's end as the last read found it

    def _open(self) -> BinaryIO | None:
        if self._file is None:
            try:  # a FIFO or device in its place must not block or feed us forever
                self._file = os.fdopen(open_regular(
                    self.path, follow_symlinks=self.follow_symlinks), "rb")
            except FileNotFoundError:
                return None
        return self._file

    def read_available(self, max_lines: int = 1 << 30) -> list[Line]:
        fh = self._open()
        if fh is None:
            return []
        lines = self._read(fh, max_lines)
        if not lines and self._replaced(fh):
            fh = self._open()  # start over: the content now at the path is all new
            if fh is not None:
                lines = self._read(fh, max_lines)
        return lines

    def _replaced(self, fh: BinaryIO) -> bool:
        """Called once the open file has nothing more: was it truncated, or is another file
        at the path now (rotated)? Then read from the start again (`resets`, `reset_reason`).
        Only checked when idle, so a file being read is never given up half-way."""
        try:
            opened = os.fstat(fh.fileno())
        except OSError:
            return False
        if opened.st_size < self.offset + self._skipping:
            self.reset_reason = (f"truncated to {opened.st_size} bytes while read (was at "
                                 f"{self.offset})")
        else:
            try:
                now = os.stat(self.path)
            except OSError:
                return False  # removed: what was read stays read
            if (now.st_ino, now.st_dev) == (opened.st_ino, opened.st_dev):
                return False
            self.reset_reason = "replaced by another file (rotated)"
            self.close()
        self._start_over()
        return True

    def _start_over(self) -> None:
        self.offset = self.lineno = self._skipping = 0
        self.resets += 1

    def _read(self, fh: BinaryIO, max_lines: int) -> list[Line]:
        if self.offset and not self._skipping:
            # The offset is always just past a newline. If the byte before it is something
            # else, the file was truncated and written again past the offset between two reads
            # (or, after a restart, another file took the name): what is there now is new.
            fh.seek(self.offset - 1)
            before = fh.read(1)
            if before and before != b"\n":
                self.reset_reason = "rewritten (truncated and written again, or another file at its name)"
                self._start_over()
        fh.seek(self.offset + self._skipping)
        lines: list[Line] = []
        pending = b""
        position = self.offset + self._skipping
        while len(lines) < max_lines:
            block = fh.read(self.chunk)
            if not block:
                break
            position += len(block)
            pending += block
            # lines are cut out at a moving start: slicing the rest off after every line would
            # copy the whole block once per line
            start, size = 0, len(pending)
            while len(lines) < max_lines:
                newline = pending.find(b"\n", start)
                if newline < 0:
                    if size - start > self.max_bytes:  # an oversize line: skip it to its end
                        self._skipping += size - start
                        start = size
                    break
                line = pending[start: newline + 1]
                start = newline + 1
                self.lineno += 1
                end = position - (size - start)
                if self._skipping:
                    lines.append(Line(self.lineno, OversizeLine(self._skipping + len(line)), end))
                    self._skipping = 0
                elif len(line) > self.max_bytes:
                    lines.append(Line(self.lineno, OversizeLine(len(line)), end))
                else:
                    lines.append(Line(self.lineno, line, end))
                self.offset = end
            pending = pending[start:]
        self.read_end = position
        return lines

    def opened_identity(self) -> tuple[int, int] | None:
        """(inode, device) of the file open for reading, if one is."""
        if self._file is None:
            return None
        try:
            opened = os.fstat(self._file.fileno())
        except OSError:
            return None
        return opened.st_ino, opened.st_dev

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
