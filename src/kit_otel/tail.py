"""Reading NDJSON files that are still being written: whole lines only, from a known offset.

A line without its newline yet is left for the next read, so a reader never decodes half a line
and the offset it reports is always the start of the next whole line (what a checkpoint needs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from .decoder import DEFAULT_MAX_LINE_BYTES, OversizeLine


@dataclass
class Line:
    lineno: int
    data: bytes  # an OversizeLine for a line over the limit
    end_offset: int  # file offset just past this line


class FileTailer:
    def __init__(self, path: str, *, offset: int = 0, lineno: int = 0,
                 max_bytes: int = DEFAULT_MAX_LINE_BYTES, chunk: int = 1 << 16):
        self.path = path
        self.offset = offset  # start of the first line not yet returned
        self.lineno = lineno  # number of the last line returned
        self.max_bytes = max_bytes
        self.chunk = chunk
        self._file: BinaryIO | None = None
        self._skipping = 0  # bytes of an oversize line being skipped

    def _open(self) -> BinaryIO | None:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return None
        return self._file

    def read_available(self, max_lines: int = 1 << 30) -> list[Line]:
        fh = self._open()
        if fh is None:
            return []
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
        return lines

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
