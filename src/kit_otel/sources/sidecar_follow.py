"""Feeds the ext-state sidecars of the sessions the translator knows into its state timeline.

Used by `replay --follow` and `serve`: every session with a file in the sessions root gets its
`<session>.ext-state.json` watched; a change read from it reaches the translator as external
state, for sessions whose envelopes carry none (a bridge's `state` is exactly ordered with the
events, so for those it is the only source).

Where inotify works, a rename or creation in a session directory wakes the reader at once
(`fileno()` / `wait()`); the `stat` comparison decides what changed and also runs on a timer,
the fallback everywhere else.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol

from kit_otel.model.sessions import is_inside
from kit_otel.sources.dir_watch import DirectoryWatcher
from kit_otel.sources.sidecar import SidecarWatcher

log = logging.getLogger("kit_otel")


class StateTimeline(Protocol):
    """What the follower needs of the translator: a source knows no translator, only this."""

    def session_paths(self) -> set[str]: ...

    def apply_external_state(self, session_path: str, state: dict[str, str]) -> int: ...


class SidecarFollower:
    def __init__(self, translator: StateTimeline, sessions_root: str | None,
                 watcher: SidecarWatcher | None = None):
        self.translator = translator
        self.root = Path(sessions_root).expanduser() if sessions_root else None
        self.watcher = watcher or SidecarWatcher(root=self.root)
        self._watched: set[str] = set()
        self._inside: dict[str, bool] = {}  # session path → inside the sessions root
        self.errors = 0
        try:
            self.directories: DirectoryWatcher | None = DirectoryWatcher()
        except OSError as exc:
            log.info("no inotify (%s): ext-state sidecars are polled only", exc)
            self.directories = None

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when a watched directory changes (or None)."""
        return self.directories.fileno() if self.directories is not None else None

    def wait(self, timeout: float) -> None:
        """Sleep up to `timeout`, waking early when a session directory changes."""
        if self.directories is not None:
            self.directories.wait(timeout)
        else:
            time.sleep(timeout)

    def close(self) -> None:
        if self.directories is not None:
            self.directories.close()

    def sync(self) -> None:
        """Watch the sidecar of every session seen so far (inside the sessions root only:
        session paths come from the input), forget the ones the translator forgot."""
        if self.root is None:
            return
        inside = self._inside  # resolving a path costs system calls: once per session
        live = set()
        for path in self.translator.session_paths():
            known = inside.get(path)
            if known is None:
                known = inside[path] = is_inside(Path(path), self.root)
            if known:
                live.add(path)
        for path in live - self._watched:
            self.watcher.watch(path)
            if self.directories is not None:
                self.directories.watch(Path(path).parent)
        for path in self._watched - live:
            self.watcher.unwatch(path)
        self._watched = live
        if len(inside) > 2 * len(live) + 64:  # forget what the translator forgot
            paths = self.translator.session_paths()
            for path in [p for p in inside if p not in paths]:
                del inside[path]

    def poll(self) -> int:
        """Apply what changed on disk; returns how many sessions' state changed."""
        if self.directories is not None:
            self.directories.changed()  # consumed: the stat comparison below decides
        self.sync()
        changed = 0
        for change in self.watcher.poll():
            if change.error:
                self.errors += 1
                log.warning("ext-state sidecar of %s: %s (keeping the last good state)",
                            change.session_path, change.error)
                continue
            changed += self.translator.apply_external_state(str(change.session_path),
                                                            change.state)
        return changed
