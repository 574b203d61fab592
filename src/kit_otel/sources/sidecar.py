"""Follow the extension-state sidecars of live KIT sessions (docs/design.md#extension-state).

KIT replaces ``<session>.ext-state.json`` by renaming a finished temp file
over it, so a new inode, mtime or size means new content.  Polling one
``stat`` per watched session is cheap enough that no inotify dependency is
needed (docs/extension-state.md explains the decision).  Only the sidecar
path itself is ever opened: temp files (KIT's ``<file>.tmp`` or
``StateStore``'s unique ones) may be half written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

from kit_otel.state.regular_file import NotRegularFile, open_regular
from kit_otel.model.sessions import is_inside
from kit_otel.state.state_store import MAX_STATE_BYTES, StateFileError, decode_state, sidecar_path

__all__ = ["MAX_BYTES", "SidecarWatcher", "StateChange", "StateFileError", "load_state"]

MAX_BYTES = MAX_STATE_BYTES

log = logging.getLogger("kit_otel.sidecar")

# (st_ino, st_mtime_ns, st_size) of the file read; None when it is missing;
# ("unreadable", errno) when it cannot be opened.
_Sig = Union[tuple, None]

# A file changed again within the filesystem's timestamp granularity, into
# the same size and a recycled inode number, has an unchanged signature.
# Until its mtime is older than this, it is re-read on every poll (git's
# "racily clean" rule); the extra reads only cost anything right after a write.
_RACY_NS = 2_000_000_000


def _stat_sig(path: Path) -> _Sig:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return ("unreadable", e.errno)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _read(path: Path, max_bytes: int,
          root: Path | None = None) -> tuple[_Sig, dict[str, str] | StateFileError, bool]:
    """Return (signature of what was read, state or error, whether the signature can be trusted).
    With `root`, the sidecar must resolve to a place inside it (it may be a link planted to
    make us read anything else, and put it on spans)."""
    now = time.time_ns()
    if root is not None:
        try:
            resolved = path.resolve(strict=True)
        except FileNotFoundError:
            return None, {}, True
        except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
            return ("unresolvable", str(e)), StateFileError(path, f"cannot resolve: {e}"), True
        if not is_inside(resolved, root):
            return (("outside", os.fspath(resolved)),
                    StateFileError(path, f"resolves to {resolved}, outside the sessions root "
                                         f"{root}: not read"), True)
        path = resolved
    try:  # O_NONBLOCK and a regular-file check: a FIFO must not block the follower
        fd = open_regular(path, follow_symlinks=root is None)
    except FileNotFoundError:
        return None, {}, True
    except NotRegularFile as e:
        return ("not regular", e.strerror), StateFileError(path, f"cannot read: {e.strerror}"), True
    except OSError as e:
        return ("unreadable", e.errno), StateFileError(path, f"cannot open: {e.strerror}"), True
    try:
        # fstat, not stat: the signature must describe the inode actually read.
        st = os.fstat(fd)
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        settled = now - st.st_mtime_ns > _RACY_NS
        if st.st_size > max_bytes:
            return sig, StateFileError(path, f"file is {st.st_size} bytes, over the {max_bytes}-byte limit"), settled
        chunks, total = [], 0
        while total <= max_bytes:  # bounded even if the file grows in place
            chunk = os.read(fd, max_bytes + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        return ("unreadable", e.errno), StateFileError(path, f"cannot read: {e.strerror}"), True
    finally:
        os.close(fd)
    if total > max_bytes:
        return sig, StateFileError(path, f"file grew over the {max_bytes}-byte limit while read"), settled
    try:
        return sig, decode_state(b"".join(chunks), path), settled
    except StateFileError as e:
        return sig, e, settled


def load_state(path: os.PathLike | str, max_bytes: int = MAX_BYTES) -> dict[str, str]:
    """Read one sidecar file (not a session path); missing or empty means ``{}``.

    Raises StateFileError for malformed JSON, a non-object, a non-string
    value, a file larger than ``max_bytes`` or one that cannot be read.
    """
    _, result, _ = _read(Path(path), max_bytes)
    if isinstance(result, StateFileError):
        raise result
    return result


@dataclass(frozen=True)
class StateChange:
    """The state of a session's sidecar after a change.

    With ``error`` set, the file's new content was refused and ``state`` is
    still the last good state.
    """

    session_path: str
    state: dict[str, str]
    error: str | None = None


@dataclass
class _Watched:
    sidecar: Path
    sig: object = ...  # "never read": differs from every real signature
    settled: bool = False
    state: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class SidecarWatcher:
    """Poll the sidecars of a set of sessions and report their state changes.

    Call ``poll()`` yourself, or ``start()`` a daemon thread that does.  A
    session's first poll reports its state if the sidecar is non-empty (or
    malformed); a missing sidecar is an empty state and is not reported.
    """

    def __init__(self, max_bytes: int = MAX_BYTES, root: os.PathLike | str | None = None) -> None:
        self.max_bytes = max_bytes
        # sidecars that do not resolve inside `root` are refused (the session paths come
        # from untrusted input, and so may the sidecar file itself)
        self.root = Path(root).expanduser().resolve() if root is not None else None
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, session_path: os.PathLike | str) -> None:
        key = os.fspath(session_path)
        with self._lock:
            self._watched.setdefault(key, _Watched(sidecar_path(key)))

    def unwatch(self, session_path: os.PathLike | str) -> None:
        with self._lock:
            self._watched.pop(os.fspath(session_path), None)

    def watched(self) -> list[str]:
        with self._lock:
            return sorted(self._watched)

    def current(self, session_path: os.PathLike | str) -> dict[str, str]:
        """Last good state seen by ``poll()`` (``{}`` before the first poll); KeyError if not watched."""
        with self._lock:
            return dict(self._watched[os.fspath(session_path)].state)

    def poll(self) -> list[StateChange]:
        with self._lock:
            changes = [self._check(key, w) for key, w in self._watched.items()]
        return [c for c in changes if c is not None]

    def _check(self, key: str, w: _Watched) -> StateChange | None:
        if w.settled and _stat_sig(w.sidecar) == w.sig:
            return None
        sig, result, settled = _read(w.sidecar, self.max_bytes, self.root)
        file_changed = sig != w.sig
        w.sig, w.settled = sig, settled
        if isinstance(result, StateFileError):
            msg = str(result)
            # Once per change: a re-read of the same bad file stays quiet.
            if not file_changed and msg == w.error:
                return None
            w.error = msg
            return StateChange(key, dict(w.state), msg)
        if result == w.state and w.error is None:
            return None
        w.state, w.error = result, None
        return StateChange(key, dict(result), None)

    # --- background polling ---------------------------------------------

    def start(
        self,
        interval: float = 0.5,
        callback: Callable[[StateChange], None] | None = None,
    ) -> None:
        """Poll every ``interval`` seconds in a daemon thread, calling ``callback`` per change.

        Without a callback the thread just keeps ``current()`` up to date.
        """
        if self._thread is not None:
            raise RuntimeError("SidecarWatcher already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval, callback), name="kit-otel-sidecar", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout)

    def _run(self, interval: float, callback: Callable[[StateChange], None] | None) -> None:
        while True:
            try:
                for change in self.poll():
                    if callback is not None:
                        callback(change)
            except Exception:  # a failing callback must not end the watch
                log.exception("sidecar watcher poll/callback failed")
            if self._stop.wait(interval):
                return
