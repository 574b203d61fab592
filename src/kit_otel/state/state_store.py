"""Read and write KIT's extension-state sidecar (``<session>.ext-state.json``).

KIT (internal/extensions ``Runner.SaveStateToFile``) stores extension key/value
state as ``json.MarshalIndent(map[string]string, "", "  ")`` and replaces the
file by writing ``<file>.tmp`` and renaming it over.  ``StateStore`` produces
byte-identical files so KIT and Python can share one sidecar, and adds what a
multi-process writer needs: a unique temp name, fsync, and a lock file.
See docs/extension-state.md.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path

from kit_otel.state.atomic_file import remove_stale_temps, write_atomically
from kit_otel.state.regular_file import open_regular, read_regular
from typing import Callable, Iterator

__all__ = [
    "StateFileError",
    "StateStore",
    "decode_state",
    "encode_state",
    "sidecar_path",
]

_SUFFIX = ".ext-state.json"


class StateFileError(Exception):
    """A sidecar file exists but does not hold a JSON object of string values."""

    def __init__(self, path: os.PathLike | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def sidecar_path(session_path: os.PathLike | str) -> Path:
    """``abc.jsonl`` -> ``abc.ext-state.json``; other paths get the suffix appended."""
    s = os.fspath(session_path)
    if not s:
        raise ValueError("session path is empty (ephemeral sessions have no sidecar)")
    if s.endswith(".jsonl"):
        s = s[: -len(".jsonl")]
    return Path(s + _SUFFIX)


# --- encoding ---------------------------------------------------------------

# Go's encoder escapes these even inside strings (HTML safety and JavaScript
# line terminators); Python's json leaves them alone.  They can only occur
# inside strings, so replacing them in the serialised text is safe.
_GO_EXTRA_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_EXTRA_RE = re.compile("[<>&\u2028\u2029]")


def _check_str(kind: str, s: object) -> str:
    if not isinstance(s, str):
        raise TypeError(f"extension state {kind}s must be str, not {type(s).__name__}")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be written as UTF-8 and Go could not read it back.
        raise ValueError(f"extension state {kind} {s!r} is not valid Unicode") from None
    return s


def encode_state(state: dict[str, str]) -> bytes:
    """Serialise exactly like Go's ``json.MarshalIndent(m, "", "  ")``.

    Python's escaping otherwise matches Go >= 1.22 (the toolchain KIT is built
    with): ``\\b \\f \\n \\r \\t``, other control characters as lowercase
    ``\\u00xx``, and non-ASCII kept as UTF-8.  Python's code-point key order
    equals Go's byte-wise order of the UTF-8 keys.
    """
    for k, v in state.items():
        _check_str("key", k)
        _check_str("value", v)
    text = json.dumps(state, ensure_ascii=False, sort_keys=True, indent=2, separators=(",", ": "))
    return _GO_EXTRA_RE.sub(lambda m: _GO_EXTRA_ESCAPES[m.group()], text).encode("utf-8")


def _go_replace(exc: UnicodeDecodeError) -> tuple[str, int]:
    # Go's decoder turns every invalid byte into its own U+FFFD; Python's
    # "replace" handler would merge some runs, so state read by KIT and by us
    # could differ.
    return "\ufffd", exc.start + 1


codecs.register_error("kit_otel.go_replace", _go_replace)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_state(data: bytes, path: os.PathLike | str = "<bytes>") -> dict[str, str]:
    """Parse sidecar bytes the way KIT does; raise StateFileError if KIT's view is not a string map.

    An empty file is an empty state (KIT's rule), anything else must be one
    JSON object whose values are all strings.
    """
    if not data:
        return {}
    try:
        obj = json.loads(data.decode("utf-8", "kit_otel.go_replace"))
    except ValueError as e:
        raise StateFileError(path, f"malformed JSON: {e}") from None
    if not isinstance(obj, dict):
        raise StateFileError(path, f"expected a JSON object, got {type(obj).__name__}")
    out: dict[str, str] = {}
    for k, v in obj.items():
        if not isinstance(v, str):
            raise StateFileError(path, f"value of key {k!r} is {type(v).__name__}, not a string")
        # "\ud800" escapes decode to lone surrogates in Python but to U+FFFD in Go.
        out[_LONE_SURROGATE.sub("\ufffd", k)] = _LONE_SURROGATE.sub("\ufffd", v)
    return out


# KIT keeps a session's state small; a sidecar over this is refused, not read into memory
MAX_STATE_BYTES = 1 << 20


def _read_file(path: Path) -> dict[str, str]:
    try:  # O_NONBLOCK and bounded: a FIFO, a directory or a 1 GiB file is an error, not a hang
        data = read_regular(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise StateFileError(path, f"cannot read: {e.strerror or e}") from None
    return decode_state(data, path)


# --- writing ----------------------------------------------------------------

# flock() normally serialises separate open()s even inside one process, but
# where it is emulated with POSIX locks (NFS) it is per process, so threads
# also take an in-process lock per lock file.
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(os.fspath(path), threading.Lock())


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (0o644 minus umask, like KIT's ``os.WriteFile(tmp, data,
    0o644)``). The caller holds the lock, so every temp file of ours that exists now was left by
    a crashed writer and is removed."""
    remove_stale_temps(path)
    write_atomically(path, data, mode=0o644)


class StateStore:
    """KIT extension state of one session, shared with KIT through the sidecar file.

    Every call reads the file, so changes by KIT or other processes are seen
    immediately.  Writes are read-modify-write under an exclusive lock on
    ``<sidecar>.lock`` and replace the sidecar atomically.  KIT itself does
    not take that lock: a KIT write racing ours is last-writer-wins, as
    between two KIT processes.
    """

    def __init__(self, session_path: os.PathLike | str) -> None:
        self.path = sidecar_path(session_path)
        self.lock_path = Path(f"{self.path}.lock")

    def __repr__(self) -> str:
        return f"StateStore({os.fspath(self.path)!r})"

    # Reads need no lock: the file is only ever replaced by rename.
    def get(self, key: str, default: str | None = None) -> str | None:
        return _read_file(self.path).get(key, default)

    def list(self) -> list[str]:
        return sorted(_read_file(self.path))

    def snapshot(self) -> dict[str, str]:
        return _read_file(self.path)

    def set(self, key: str, value: str) -> None:
        _check_str("key", key)
        _check_str("value", value)
        self._update(lambda state: state.__setitem__(key, value))

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is a no-op and writes nothing (as in KIT)."""
        _check_str("key", key)
        self._update(lambda state: state.pop(key, None))

    def _update(self, mutate: Callable[[dict[str, str]], object]) -> None:
        with self._locked():
            # A malformed file raises here: refusing to write keeps whatever
            # is in it for a human to inspect instead of silently dropping it.
            before = _read_file(self.path)
            after = dict(before)
            mutate(after)
            if after != before:  # no-op updates leave the file (and watchers) alone
                data = encode_state(after)
                if len(data) > MAX_STATE_BYTES:  # it could not be read back
                    raise ValueError(f"extension state of {self.path} would be {len(data)} "
                                     f"bytes, over the limit of {MAX_STATE_BYTES}")
                _atomic_write(self.path, data)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _thread_lock(self.lock_path):
            # The lock file is never deleted: unlinking it would let a waiter
            # lock an orphaned inode while a newcomer locks a fresh file.
            # Never through a link (it could create or lock any file of ours),
            # never a FIFO (the open would block).
            try:
                fd = open_regular(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644,
                                  follow_symlinks=False)
            except OSError as e:
                raise StateFileError(self.lock_path,
                                     f"cannot use as lock file: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if we die
                yield
            finally:
                os.close(fd)
