"""Opening files whose paths come from untrusted input or shared directories, without hanging.

`open()` of a FIFO blocks until a writer appears (forever, and SIGTERM cannot interrupt the
thread that waits), reading a device or `/proc` file has no end, and a directory raises
`IsADirectoryError`. So every input file is opened with O_NONBLOCK (a FIFO then opens at once)
and checked with `fstat` on the descriptor actually opened — not a `stat` of the path before,
which a swap could defeat — to be a regular file; reads are bounded.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["NotRegularFile", "open_regular", "read_regular"]


class NotRegularFile(OSError):
    """The path exists but is not a regular file (a FIFO, device, socket, directory, or a
    symbolic link where none is allowed); `str()` says which."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: os.PathLike | str, flags: int = os.O_RDONLY, mode: int = 0o644, *,
                 follow_symlinks: bool = True) -> int:
    """A descriptor of the regular file at `path` (never blocks on a FIFO); raises
    FileNotFoundError, NotRegularFile or another OSError. The descriptor is blocking again
    when returned (O_NONBLOCK means nothing for regular files, but callers may pass it on)."""
    flags |= os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise NotRegularFile(errno.ELOOP, "is a symbolic link", os.fspath(path)) from None
        if exc.errno == errno.EISDIR:
            raise NotRegularFile(errno.EISDIR, "is a directory", os.fspath(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, f"is {_kind(st.st_mode)}", os.fspath(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: os.PathLike | str, max_bytes: int, *,
                 follow_symlinks: bool = True) -> bytes:
    """The whole content of a regular file of at most `max_bytes` bytes; raises
    NotRegularFile, FileNotFoundError, `OSError(EFBIG)` for a larger file (also one that grows
    while read) or another OSError. Memory stays within `max_bytes` + one read."""
    fd = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise OSError(errno.EFBIG, f"is {size} bytes, over the limit of {max_bytes}",
                          os.fspath(path))
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise OSError(errno.EFBIG, f"grew over the limit of {max_bytes} bytes while read",
                          os.fspath(path))
        return b"".join(chunks)
    finally:
        os.close(fd)
