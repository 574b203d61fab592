"""Replacing a file so that readers, and a crash at any moment, see the old or the new bytes.

The temp file has a unique name in the same directory: a fixed name (KIT's `<file>.tmp`) lets
two writers interleave into one temp file and rename a torn one. Data is fsynced before the
rename and the directory after it, so the rename itself survives a power cut.
"""

from __future__ import annotations

import errno
import glob
import os
import secrets
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems refuse fsync on directories
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def temp_pattern(path: Path) -> str:
    """Glob of the temp files `write_atomically` makes for `path` (never KIT's `<file>.tmp`)."""
    return glob.escape(os.fspath(path)) + ".*.tmp"


def remove_stale_temps(path: Path) -> None:
    """Remove temp files a crashed writer left; only call it while no other writer can run."""
    for stale in glob.glob(temp_pattern(path)):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    tmp = Path(f"{path}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)  # the data must be on disk before the rename is
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
