"""serve's spool directory: finding spool files (new KIT processes, rotated files), attaching
each to the stream of its process, a new process reusing an old pid, which files to look at
again at a poll (those inotify named), and retention — exported files of processes that ended
are removed, their counter totals kept."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from kit_otel.serve.options import NEVER_NS, ServeError
from kit_otel.sources.dir_watch import SPOOL_MASK, DirectoryWatcher
from kit_otel.sources.spool import (Item, is_spool_name, peek_first, spool_names, still_running,
                                   SpoolFile, Stream)

log = logging.getLogger("kit_otel.serve")


def _own_directory(path: Path, what: str) -> os.stat_result | None:
    """Create `path` 0700 (None), or the stat of an existing directory that is ours."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)
        return None
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ServeError(f"{what} {path} is not a directory")
    if st.st_uid != os.getuid():
        raise ServeError(f"{what} {path} belongs to uid {st.st_uid}, not to us")
    return st


LIVE_IDLE_LIMIT_S = 7 * 86400  # a stream whose pid looks alive is kept at most this long idle


def private_dir(path: Path, what: str, tighten: bool = False) -> None:
    """Create `path` 0700, or check that an existing one is ours and not open to others
    (with `tighten`, one of ours that is open to others is made 0700)."""
    st = _own_directory(path, what)
    if st is None or not st.st_mode & 0o077:
        return
    if tighten:
        log.info("%s %s was mode %04o: made private (0700)", what, path,
                 stat.S_IMODE(st.st_mode))
        os.chmod(path, 0o700)
    else:
        raise ServeError(f"{what} {path} is accessible to others (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}); it must be private (0700)")


def check_spool_dir(path: Path) -> None:
    """The spool directory is created 0700; an existing one must be ours and writable by
    nobody else (whoever can write there can plant files that serve would read)."""
    st = _own_directory(path, "spool directory")
    if st is not None and st.st_mode & 0o022:
        raise ServeError(f"spool directory {path} is writable by others (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}): another user could plant files in "
                         f"it; make it private (chmod 700 {path})")


class SpoolDirectory:
    """The spool-directory part of `Server` (serve/daemon.py), whose state these methods use."""

    # ── which files to look at again ─────────────────────────────────────────────────────────

    def _watch_spool(self) -> None:
        """Learn which spool files were written to from inotify. Without it, a poll checks
        every file read to its end: one stat each, 10% of a core for 1,000 idle files."""
        if not self.options.watch_spool:
            return
        try:
            watch = DirectoryWatcher(SPOOL_MASK)
        except OSError as exc:
            log.info("no inotify (%s): every spool file is checked at every poll", exc)
            return
        if not watch.watch(self.spool_dir):
            log.info("cannot watch %s with inotify: every spool file is checked at every poll",
                     self.spool_dir)
            watch.close()
            return
        self.spool_watch = watch

    def _refresh_files(self, now: float) -> None:
        """A poll: the streams whose files may have grown since they were read to their end
        look at them again. With a watch, those are the files inotify named since the last
        poll (and a name not yet followed asks for a scan); every file is still checked every
        `watched_refresh_interval_s`, and after the kernel dropped events or the directory was
        replaced."""
        watch = self.spool_watch
        if watch is not None:
            changed = watch.changed()
            if None not in changed and now < self._next_full_refresh:
                for path in changed:
                    stream = self.file_owner.get(path.name)
                    if stream is not None:
                        stream.refresh()
                    elif is_spool_name(path.name) and path.name not in self._ignored_names:
                        self.scan_soon = True
                return
            if not watch.watching(self.spool_dir):
                watch.watch(self.spool_dir)  # a directory made anew: watch it again
            self._next_full_refresh = now + self.options.watched_refresh_interval_s
            self.scan_soon = True
        for stream in self.streams.values():
            stream.refresh()

    def _stop_watching_spool(self) -> None:
        if self.spool_watch is not None:
            self.spool_watch.close()
            self.spool_watch = None

    def _scan(self) -> None:
        new: list[tuple[str, Item]] = []
        for name in spool_names(str(self.spool_dir)):
            if name in self.file_owner or name in self._ignored_names:
                continue
            if not self._acceptable(name):
                continue
            first = peek_first(str(self.spool_dir / name), self.max_bytes)
            if first is not None:
                new.append((name, first))

        def order(entry: tuple[str, Item]):
            event = entry[1].event
            return (event.pid, event.seq, entry[0]) if event is not None else (-1, 0, entry[0])

        for name, first in sorted(new, key=order):
            self._attach(name, first)

    def _acceptable(self, name: str) -> bool:
        """Only regular files of ours are spool files: a FIFO would block a read, a device never
        end, a link lead anywhere; a file of another user was not written by our bridge."""
        try:
            st = os.lstat(self.spool_dir / name)
        except FileNotFoundError:
            return False
        why = ""
        if not stat.S_ISREG(st.st_mode):
            why = "is a symbolic link" if stat.S_ISLNK(st.st_mode) else "is not a regular file"
        elif st.st_uid != os.getuid():
            why = f"belongs to uid {st.st_uid}"
        if why:
            self._ignored_names.add(name)
            log.warning("spool: ignoring %s: it %s", self.spool_dir / name, why)
            return False
        return True

    def _attach(self, name: str, first: Item) -> None:
        path = str(self.spool_dir / name)
        spool_file = SpoolFile(path, max_bytes=self.max_bytes)
        event = first.event
        if event is None or not event.seq:
            # not a bridge file (no seq, or no readable first line): its lines in file order
            stream = Stream(name[: -len(".ndjson")], event.pid if event else 0, ordered=False)
            log.info("spool: new file %s (no seq: read in file order)", name)
            self._register(stream)
        else:
            stream = self.by_pid.get(event.pid)
            if stream is not None and event.seq == 1 and (
                    (stream.first_file and stream.first_file != name) or
                    (stream.first_started and event.type == "bridge_start"
                     and getattr(event.data, "StartedAt", "") != stream.first_started)):
                self._supersede(stream)
                stream = None
            if stream is None:
                stream = Stream(name[: -len(".ndjson")], event.pid)
                self._register(stream)
                log.info("spool: KIT process %d: new file %s", event.pid, name)
            else:
                log.info("spool: KIT process %d: another file %s", event.pid, name)
            if event.seq == 1:
                stream.first_file = name
        if stream.socket_only and stream.key in self.streams:
            self.socket_streams -= 1  # it has a spool file now: durable, checkpointed
            self._socket_lru.pop(stream.key, None)
        stream.add_file(spool_file)
        self.file_owner[name] = stream

    def _register(self, stream: Stream) -> None:
        self.streams[stream.key] = stream
        if stream.ordered:
            self.by_pid[stream.pid] = stream

    def _supersede(self, old: Stream) -> None:
        """The pid of `old` now belongs to a new KIT process: finish the old one's turns and
        forget its sessions (they stay in its checkpoint)."""
        log.info("KIT process %d started again (a new process with the same pid): closing the "
                 "old one's open turns", old.pid)
        with self.counters.attribute(self._ledger(old)):
            self.processor.collect_into(old.pending_spans)
            try:  # closes turns, forgets sessions
                self.translator.sweep(NEVER_NS, pids=old.pids, keys=old.session_keys)
            finally:
                self.processor.collect_into(None)
        self._forget_sessions(old)
        old.dirty = True
        self._release(old)
        if self.by_pid.get(old.pid) is old:
            del self.by_pid[old.pid]

    def _retention(self) -> None:
        retention = self.settings.spool_retention_s
        now = time.time()
        for stream in list(self.streams.values()):
            if not self._exported(stream):
                stream.ended_since = None
                continue
            if stream.files and all(f.missing and not os.path.lexists(f.path)
                                    for f in stream.files.values()):
                self._remove(stream, "its files were removed")
                continue
            alive = still_running(stream.pid, stream.first_started)
            ended = stream.last_type == "session_shutdown" and not alive
            if not ended:
                stream.ended_since = None
            elif stream.ended_since is None:
                stream.ended_since = now
            idle = now - stream.last_activity()
            if ended and now - stream.ended_since >= retention:
                self._remove(stream, "process ended")
            elif idle >= retention and (not alive or idle >= LIVE_IDLE_LIMIT_S):
                # a crashed process; a live one only went quiet (its user is away) and its
                # bridge still holds the file open: deleting it would lose what it writes
                # next. A week of silence is the limit even so: a pid of another pid namespace
                # (containers sharing the spool directory) can look alive here for good.
                self._remove(stream, f"idle for {idle:.0f}s")

    def _remove(self, stream: Stream, why: str) -> None:
        names = sorted(stream.files)
        if names:
            log.info("spool: removing %s of KIT process %d (%s; everything exported)",
                     ", ".join(names), stream.pid, why)
        else:
            log.info("stream %s of KIT process %d forgotten (%s)", stream.key, stream.pid, why)
        stream.close()
        for name in names:  # files first: a crash before the commit below finds them gone
            try:
                os.unlink(self.spool_dir / name)
            except FileNotFoundError:
                pass
            self.file_owner.pop(name, None)
            self._reject_logs.pop(str(self.spool_dir / name), None)
            self.removed_files.append(name)
        if self.by_pid.get(stream.pid) is stream:
            del self.by_pid[stream.pid]
            self._forget_sessions(stream)
            self.translator.forget_process(stream.pid)
        if self.streams.pop(stream.key, None) is not None and stream.socket_only:
            self.socket_streams -= 1
        self._socket_lru.pop(stream.key, None)
        self.committed_serial.pop(stream.key, None)
        if stream.key in self.store.streams:
            try:
                self.store.retire(stream.key)
            except OSError as exc:  # the state is retired in memory; the next write keeps it
                log.warning("could not save the checkpoint after retiring stream %s: %s",
                            stream.key, exc.strerror or exc)

    def _forget_sessions(self, stream: Stream) -> None:
        self.translator.forget_sessions(stream.session_keys)
