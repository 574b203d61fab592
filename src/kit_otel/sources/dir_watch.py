"""Which entries of watched directories changed (Linux inotify).

KIT and `StateStore` replace a sidecar by renaming a finished temp file over it, so the file to
watch for is the directory's: `IN_MOVED_TO` / `IN_CREATE` / `IN_CLOSE_WRITE` name the entry.
serve's spool directory is watched for appends as well (`SPOOL_MASK`: `IN_MODIFY`, which a
truncation also raises, and renames and removals). This only says *when* and *where* to look:
what changed is still decided by the callers' `stat` comparisons, which also run on a timer as
the fallback (no inotify on this system, network filesystems, a full event queue). Called
through ctypes: a dependency for three system calls would not earn its place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800  # the watched directory itself was renamed
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000  # the watch is gone (its directory was removed)
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE
# (a spool directory renamed away, `mv spool spool.old && mkdir spool`, would be followed to
# its new name, the new directory never watched: moving or deleting it ends the watch)
SPOOL_MASK = _MASK | IN_MODIFY | IN_MOVED_FROM | IN_MOVE_SELF | IN_DELETE_SELF
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


class DirectoryWatcher:
    """`changed()` returns the paths named by events since the last call (None among them when
    the kernel dropped events: look at everything). Raises OSError where inotify is missing."""

    def __init__(self, mask: int = _MASK):
        self.mask = mask
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name, use_errno=True) if name else None
        if libc is None or not hasattr(libc, "inotify_init1"):
            raise OSError(errno.ENOSYS, "inotify is not available here")
        self._libc = libc
        self._fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._dirs: dict[int, Path] = {}
        self._wds: dict[Path, int] = {}

    def fileno(self) -> int:
        return self._fd

    def watch(self, directory: Path) -> bool:
        """Watch a directory (again, harmlessly); False when it cannot be watched (yet)."""
        directory = Path(directory)
        if directory in self._wds:
            return True
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory), self.mask)
        if wd < 0:
            return False
        self._dirs[wd] = directory
        self._wds[directory] = wd
        return True

    def watching(self, directory: Path) -> bool:
        return Path(directory) in self._wds

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for an event; True when one is waiting."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        return bool(ready)

    def changed(self) -> set[Path | None]:
        found: set[Path | None] = set()
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                raw = data[offset + _HEADER.size: offset + _HEADER.size + length]
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    found.add(None)
                    continue
                if mask & (IN_IGNORED | IN_MOVE_SELF | IN_DELETE_SELF):
                    # the directory watched is gone from its name: the caller looks at
                    # everything and watches the name again
                    gone = self._dirs.pop(wd, None)
                    if gone is not None:
                        self._wds.pop(gone, None)
                        if mask & IN_MOVE_SELF:  # still watched under its new name: stop
                            self._libc.inotify_rm_watch(self._fd, wd)
                    found.add(None)
                    continue
                directory = self._dirs.get(wd)
                name = raw.rstrip(b"\0")
                if directory is not None and name:
                    found.add(directory / os.fsdecode(name))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
