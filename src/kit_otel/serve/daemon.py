"""`kit-otel serve`: the daemon that turns live KIT processes into telemetry, continuously.

It tails every spool file in the spool directory (new ones are picked up as KIT processes
start), optionally listens on a Unix socket and/or a loopback TCP port for the same lines, feeds
the translator and exports continuously (OTLP, Prometheus /metrics, ... as configured).

No loss, no double counting (docs/serve.md has the full design):
- spool files are the durable buffer: when the export queue is full (collector down), the daemon
  stops reading - it never drops;
- the spans of a KIT process are exported in units that end at quiescent points (no open turn),
  each carrying that process's checkpoint (file offsets, next seq, session-level translator
  state, counter totals); a checkpoint is persisted only after every span before it was exported;
- after a restart, counters get the saved totals back, sessions their state, and every file is
  read again from its checkpointed offset: the same spans (same ids) and the same totals as an
  uninterrupted run.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import os
import selectors
import signal
import socket
import stat
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kit_otel.serve.budget_status import STATUS_FILE, BudgetStatus
from kit_otel.serve.checkpoint import (AttributedCounters, CheckpointError, CheckpointStore,
                                       Totals, bounded_values, copy_totals, decode_sessions,
                                       encode_sessions, restore_bounded_values)
from kit_otel.translate.snapshot import SESSION_SCHEMA
from kit_otel.config import Settings, load_settings
from kit_otel.model.decoder import DecodeError
from kit_otel.export.instance_id import service_instance_id
from kit_otel.export.pipeline import Pipeline
from kit_otel.model import names as n
from kit_otel.state.regular_file import open_regular
from kit_otel.export.reliable_export import (DeadLetterFile, DeterministicIdGenerator, ReliableSpanProcessor,
                              event_seed)
from kit_otel.sources.sidecar_follow import SidecarFollower
from kit_otel.sources.spool import (MAX_SEQ_JUMP, Item, SpoolFile, Stream, decode_item, peek_first, pid_alive,
                    seq_jump_error, spool_names)

log = logging.getLogger("kit_otel.serve")

_NEVER_NS = 1 << 62  # "now" far enough in the future to close every open turn


@dataclass
class ServeOptions:
    poll_interval_s: float = 0.1  # how often files are checked for new lines
    scan_interval_s: float = 1.0  # how often the spool directory is listed for new files
    gap_wait_s: float = 5.0  # how long a missing seq is waited for before it is skipped
    housekeeping_interval_s: float = 1.0  # lag gauge
    sweep_interval_s: float = 10.0  # idle turns closed by wall clock, spool retention
    shutdown_timeout_s: float = 15.0  # SIGTERM: how long queued spans may take to export
    max_queue_spans: int = 16384  # spans waiting for export before input is paused
    max_batch_spans: int = 512  # spans per export request
    lines_per_round: int = 2000  # lines one stream may take before the others get a turn
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_connections: int = 256
    bad_lines_before_disconnect: int = 100
    # one socket client (a bridge instance speaks for 1 process, a Python source for a few)
    max_pids_per_connection: int = 16
    max_sessions_per_connection: int = 1024
    max_lines_per_connection_s: int = 20000  # beyond: not read until the next second
    max_socket_streams: int = 1024  # processes known only from sockets, all clients together


class _Connection:
    __slots__ = ("sock", "peer", "buf", "lines", "bad_in_row", "rejected", "pids", "sessions",
                 "window_start", "window_lines")

    def __init__(self, sock: socket.socket, peer: str):
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.lines = 0
        self.bad_in_row = 0
        self.rejected = 0
        self.pids: set[int] = set()
        self.sessions: set[tuple[int, str]] = set()
        self.window_start = 0.0  # the rate limit's current one-second window
        self.window_lines = 0


class ServeError(RuntimeError):
    """A problem that prevents the daemon from starting (clear message, exit status 2)."""


def resolve_socket_path(settings: Settings) -> str:
    """`socket_path`: "" or "off" → none; "auto" → where the bridge looks by default."""
    value = settings.socket_path.strip()
    if value in ("", "off", "none"):
        return ""
    if value == "auto":
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime:
            return os.path.join(runtime, "kit-otel", "bridge.sock")
        spool = os.path.expanduser(settings.spool_dir)
        return os.path.join(os.path.dirname(spool.rstrip("/")), "bridge.sock")
    return os.path.expanduser(value)


def _private_dir(path: Path, what: str, tighten: bool = False) -> None:
    """Create `path` 0700, or check that an existing one is ours and not open to others
    (with `tighten`, one of ours that is open to others is made 0700)."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)
        return
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ServeError(f"{what} {path} is not a directory")
    if st.st_uid != os.getuid():
        raise ServeError(f"{what} {path} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o077 and tighten:
        log.info("%s %s was mode %04o: made private (0700)", what, path,
                 stat.S_IMODE(st.st_mode))
        os.chmod(path, 0o700)
    elif st.st_mode & 0o077:
        raise ServeError(f"{what} {path} is accessible to others (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}); it must be private (0700)")


def _check_spool_dir(path: Path) -> None:
    """The spool directory is created 0700; an existing one must be ours and writable by
    nobody else (whoever can write there can plant files that serve would read)."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)
        return
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ServeError(f"spool directory {path} is not a directory")
    if st.st_uid != os.getuid():
        raise ServeError(f"spool directory {path} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o022:
        raise ServeError(f"spool directory {path} is writable by others (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}): another user could plant files in "
                         f"it; make it private (chmod 700 {path})")


SPOOL_LOCK = ".kit-otel-serve.lock"  # a dot-file: not a spool file, the bridge never reads it


class Server:
    """The daemon. `run()` blocks until `stop()` (thread- and signal-safe) is called."""

    def __init__(self, settings: Settings, options: ServeOptions | None = None):
        self.settings = settings
        self.options = options or ServeOptions(max_queue_spans=settings.export_queue_spans,
                                               shutdown_timeout_s=settings.shutdown_timeout_s)
        self.spool_dir = Path(settings.spool_dir).expanduser()
        self.state_dir = Path(settings.state_dir).expanduser()
        self.max_bytes = settings.max_line_bytes
        self.streams: dict[str, Stream] = {}
        self.by_pid: dict[int, Stream] = {}  # the current (newest) stream of each pid
        self.file_owner: dict[str, Stream] = {}
        self.committed_serial: dict[str, int] = {}
        self.newest_ts_ns = 0
        self.processed = 0
        self.rejected = 0
        self.removed_files: deque[str] = deque(maxlen=1000)  # the latest, for tests and logs
        self.started = threading.Event()  # set once listening and reading
        self.exit_code = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        self._connections: dict[int, _Connection] = {}
        self._throttled: dict[int, tuple[float, _Connection]] = {}  # fd → (resume at, client)
        self.socket_streams = 0  # streams that exist only on sockets (bounded)
        self._socket_lru: OrderedDict[str, Stream] = OrderedDict()  # of those, by last input
        self.throttles = 0  # times a socket client was paused for its rate
        self.socket_rejected = 0
        self.socket_logged = 0
        self.socket_path = ""
        self.tcp_port = 0
        self._lock_fd: int | None = None
        self._spool_lock_fd: int | None = None
        self._ignored_names: set[str] = set()  # spool entries that are not our regular files
        self._reject_logs: dict[str, int] = {}
        self.pipeline: Pipeline | None = None
        self.processor: ReliableSpanProcessor | None = None

    # ── control ──────────────────────────────────────────────────────────────────────────────

    def stop(self) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def run(self) -> int:
        try:
            self._start()
        except ServeError as exc:
            log.error("%s", exc)
            self._abort_start()
            return 2
        except Exception:  # noqa: BLE001 - e.g. a checkpoint written by an incompatible version
            log.exception("cannot start")
            self._abort_start()
            return 2
        self.started.set()
        try:
            self._loop()
        finally:
            self._shutdown()
        return self.exit_code

    # ── start ────────────────────────────────────────────────────────────────────────────────

    def _start(self) -> None:
        _private_dir(self.state_dir, "state directory", tighten=True)
        _check_spool_dir(self.spool_dir)
        self._lock_fd = self._lock(self.state_dir / "serve.lock", "state directory")
        # two daemons on one spool directory would each delete what the other has not exported
        self._spool_lock_fd = self._lock(self.spool_dir / SPOOL_LOCK, "spool directory")
        daemon_totals: Totals = {}
        self.store = CheckpointStore(self.state_dir, daemon_totals)
        try:
            resumed = self.store.load()
        except CheckpointError as exc:
            raise ServeError(str(exc)) from None
        self._listen()  # configuration errors first, before any exporter starts
        opts = self.options
        self.ids = DeterministicIdGenerator()

        def make_processor(exporters: list) -> ReliableSpanProcessor:
            self.processor = ReliableSpanProcessor(
                exporters, on_commit=self._on_commit, max_queue_spans=opts.max_queue_spans,
                max_batch_spans=opts.max_batch_spans, backoff_initial_s=opts.backoff_initial_s,
                backoff_max_s=opts.backoff_max_s,
                dead_letter=DeadLetterFile(self.state_dir / "dead-letter.jsonl"),
                on_dead_letter=lambda code: self.translator.metrics.dead_lettered.add(
                    1, {n.L_REASON: code}))
            return self.processor

        try:
            self.pipeline = Pipeline(self.settings, span_exporters_processor=make_processor,
                                     id_generator=self.ids,
                                     instance_id=service_instance_id(self.settings.state_dir))
        except OSError as exc:
            raise ServeError(f"cannot start the exporters: {exc}") from None
        except ValueError as exc:
            raise ServeError(str(exc)) from None
        self.translator = self.pipeline.translator
        self.translator.auto_sweep = False
        self.translator.prices.preload()
        self.budget_status = BudgetStatus(self.spool_dir / STATUS_FILE,
                                          self.settings.all_budgets(),
                                          self.settings.budget_cost_sources)
        self.translator.on_llm_call.append(self.budget_status.add_call)
        # sessions whose state changes outside the bridge (another process, a StateStore)
        self.sidecars = SidecarFollower(self.translator, self.settings.sessions_root)
        metrics = self.translator.metrics
        self.counters = AttributedCounters(metrics, daemon_totals)
        restore_bounded_values(metrics, self.store.bounded)
        self.store.bounded_source = lambda: bounded_values(metrics)
        self.counters.restore(self.store.retired)
        self.counters.restore(daemon_totals)
        for key, snap in self.store.streams.items():
            self._restore_stream(key, snap)
        meter = self.pipeline.meter_provider.get_meter("kit_otel.serve")
        meter.create_observable_gauge(
            "kit_otel.export.queue", unit="{span}",
            description="Spans waiting to be exported (input pauses at the configured bound)",
            callbacks=[lambda options: [self._observation(self.processor.queued_spans)]])
        meter.create_observable_gauge(
            "kit_otel.spool.files", unit="{file}", description="Spool files being followed",
            callbacks=[lambda options: [self._observation(len(self.file_owner))]])
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        if self.sidecars.fileno() is not None:
            self._selector.register(self.sidecars.fileno(), selectors.EVENT_READ, "sidecars")
        self._scan()
        inputs = [f"spool {self.spool_dir}"]
        if self.socket_path:
            inputs.append(f"socket {self.socket_path}")
        if self.tcp_port:
            inputs.append(f"tcp 127.0.0.1:{self.tcp_port}")
        log.info("serving %s; traces → %s, metrics → %s; checkpoints in %s%s",
                 ", ".join(inputs), ",".join(self.settings.traces_exporter) or "none",
                 ",".join(self.settings.metrics_exporter) or "none", self.state_dir,
                 f" (resuming {len(self.store.streams)} stream(s))" if resumed else "")
        if self.pipeline.prometheus and self.pipeline.prometheus.url:
            log.info("Prometheus metrics at %s", self.pipeline.prometheus.url)

    def _lock(self, path: Path, what: str) -> int:
        """An exclusive lock on `path` for the daemon's life; it names its holder, so that a
        second daemon can say which one is in the way."""
        try:
            fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o600, follow_symlinks=False)
        except OSError as exc:
            raise ServeError(f"cannot use the lock file {path}: "
                             f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ServeError(f"another kit-otel serve ({holder or 'pid unknown'}) is "
                                 f"running with {what} {path.parent}; only one may") from None
            raise ServeError(f"cannot lock {path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, state directory {self.state_dir}".encode(), 0)
        return fd

    @staticmethod
    def _observation(value: float):
        from opentelemetry.metrics import Observation
        return Observation(value)

    def _restore_stream(self, key: str, snap: dict[str, Any]) -> None:
        stream = Stream(key, snap["pid"], next_seq=snap.get("next_seq"),
                        first_file=snap.get("first_file", ""),
                        ordered=snap.get("ordered", True), created_ns=snap.get("created_ns"))
        stream.pids = set(snap.get("pids", [snap["pid"]]))
        stream.first_started = snap.get("first_started", "")
        stream.last_type = snap.get("last_type", "")
        stream.ledger = copy_totals(snap["ledger"])
        stream.released = snap.get("serial", 0)
        self.committed_serial[key] = stream.released
        self.counters.restore(snap["ledger"])
        # load() checked the records and wrote them in today's schema
        sessions = decode_sessions(snap.get("sessions", []), SESSION_SCHEMA)
        self.translator.restore_sessions(sessions)
        stream.session_keys = {(s.pid, s.path) for s in sessions}
        for name, (offset, lineno) in snap.get("files", {}).items():
            path = self.spool_dir / name
            spool_file = SpoolFile(str(path), offset=offset, lineno=lineno,
                                   max_bytes=self.max_bytes)
            if not path.exists():
                spool_file.missing = True
                spool_file.maybe_more = False
            elif spool_file.size() < offset:
                log.warning("spool file %s is shorter than its checkpoint (%d < %d bytes): "
                            "reading it again from the start (seen lines are skipped by seq)",
                            path, spool_file.size(), offset)
                spool_file.close()
                spool_file = SpoolFile(str(path), max_bytes=self.max_bytes)
            stream.add_file(spool_file)
            self.file_owner[name] = stream
        if not stream.files:
            stream.socket_activity = time.time()
            self.socket_streams += 1
        self.streams[key] = stream
        current = self.by_pid.get(stream.pid)
        if current is None or current.created_ns < stream.created_ns:
            self.by_pid[stream.pid] = stream

    # ── listening ────────────────────────────────────────────────────────────────────────────

    def _listen(self) -> None:
        path = resolve_socket_path(self.settings)
        if path:
            parent = Path(path).parent
            _private_dir(parent, "socket directory")
            if os.path.lexists(path):
                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    raise ServeError(f"socket path {path} exists and is not a socket")
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                    raise ServeError(f"another process is listening on {path}")
                except (ConnectionRefusedError, FileNotFoundError):
                    os.unlink(path)  # stale socket of a daemon that died
                finally:
                    probe.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old_umask = os.umask(0o177)  # the socket is 0600 from the moment it exists
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            sock.listen(64)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, "listener")
            self._listeners.append(sock)
            self.socket_path = path
        if self.settings.tcp_port:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.settings.tcp_port))
            except OSError as exc:
                sock.close()
                raise ServeError(f"cannot listen on 127.0.0.1:{self.settings.tcp_port}: "
                                 f"{exc.strerror}") from None
            sock.listen(64)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, "listener")
            self._listeners.append(sock)
            self.tcp_port = sock.getsockname()[1]

    # ── the loop ─────────────────────────────────────────────────────────────────────────────

    def _loop(self) -> None:
        opts = self.options
        next_scan = time.monotonic() + opts.scan_interval_s
        next_house = next_sweep = next_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                self._scan()
                next_scan = now + opts.scan_interval_s
            if now >= next_refresh:  # files read to their end may have grown
                for stream in self.streams.values():
                    stream.refresh()
                next_refresh = now + opts.poll_interval_s
            busy = False
            if self.processor.full:
                for stream in self.streams.values():
                    stream.gap_since = None  # not reading: a gap cannot be judged now
            else:
                for stream in list(self.streams.values()):
                    if stream.files or stream.socket_items or stream.socket_unordered:
                        busy |= self._advance(stream, now)  # (idle socket streams cost nothing)
            if now >= next_sweep:
                self._sweep()
                self._retention()
                next_sweep = now + opts.sweep_interval_s
            self.budget_status.maybe_write(now)
            if now >= next_house:
                self._set_lag(time.time_ns())
                self.sidecars.poll()
                next_house = now + opts.housekeeping_interval_s
            if self.processor.full:
                self._stop.wait(opts.poll_interval_s)
                continue
            if self._throttled:
                self._resume_throttled(now)
            self._poll_sockets(0 if busy else max(next_refresh - time.monotonic(), 0))

    def _advance(self, stream: Stream, now: float) -> bool:
        """Translate what the stream has, up to a round's worth; True when it may have more."""
        budget = self.options.lines_per_round
        taken = 0
        processor = self.processor
        with self.counters.attribute(self._ledger(stream)):
            processor.collect_into(stream.pending_spans)
            try:
                while taken < budget and not processor.full:
                    missing = stream.missing_seqs
                    item = stream.next_item(now, self.options.gap_wait_s)
                    if stream.missing_seqs != missing:  # lines that never reached the spool
                        self.translator.metrics.dropped.add(stream.missing_seqs - missing,
                                                            {"source": "spool_gap"})
                        stream.dirty = True
                    if item is None:
                        break
                    self._handle(stream, item)
                    taken += 1
                    if stream.pending_spans and self._quiescent(stream):
                        self._release(stream)
                if stream.dirty and self._quiescent(stream):
                    self._release(stream)
            finally:
                processor.collect_into(None)
        return taken >= budget

    def _ledger(self, stream: Stream):
        """Where the stream's counter adds are kept: its own ledger, saved with its checkpoint;
        for a stream that exists only on sockets (nothing to resume from, so no checkpoint) the
        daemon's totals, saved with every commit."""
        return stream.ledger if stream.files else self.counters.fallback

    def _quiescent(self, stream: Stream) -> bool:
        return self.translator.is_quiescent(stream.pids, stream.session_keys)

    def _handle(self, stream: Stream, item: Item) -> None:
        stream.dirty = True
        if item.error is not None:
            self._reject(item.error)
            return
        event = item.event
        stream.pids.add(event.pid)
        stream.session_keys.add((event.pid, event.session_path))
        self.ids.begin(event_seed(event.pid, event.seq, event.ts_ns))
        try:
            self.translator.process(event)
        except Exception:  # noqa: BLE001 - one bad event must not stop the daemon
            log.exception("translator failed on %s event seq %d of pid %d; event skipped",
                          event.type, event.seq, event.pid)
        finally:
            self.ids.begin(None)
        self.processed += 1
        stream.last_type = event.type
        if event.type == "bridge_start" and event.seq == 1:
            stream.first_started = getattr(event.data, "StartedAt", "")
        if event.ts_ns > self.newest_ts_ns:
            self.newest_ts_ns = event.ts_ns

    def _reject(self, error: DecodeError) -> None:
        self.rejected += 1
        self.translator.reject(error)
        source = error.source
        count = self._reject_logs.get(source, 0) + 1
        self._reject_logs[source] = count
        if count <= 5 or count % 1000 == 0:
            log.warning("rejected %s%s", error,
                        f" ({count} rejected from this source so far)" if count > 5 else "")

    def _release(self, stream: Stream) -> None:
        """Hand the stream's ended spans to the exporter together with its checkpoint."""
        stream.released += 1
        if stream.socket_only:  # nothing to resume from: spans only (the state file stays small)
            spans = list(stream.pending_spans)
            stream.pending_spans.clear()
            stream.dirty = False
            self.committed_serial[stream.key] = stream.released
            self.processor.submit(spans, None)
            return
        snap = {
            "key": stream.key, "serial": stream.released, "pid": stream.pid,
            "pids": sorted(stream.pids), "next_seq": stream.next_seq,
            "first_file": stream.first_file, "first_started": stream.first_started,
            "ordered": stream.ordered, "created_ns": stream.created_ns,
            "last_type": stream.last_type,
            "files": dict(stream.positions),  # name → (offset, line number)
            "sessions": encode_sessions(self.translator.snapshot_sessions(stream.session_keys)),
            "ledger": copy_totals(stream.ledger),
        }
        spans = list(stream.pending_spans)
        stream.pending_spans.clear()
        stream.dirty = False
        self.processor.submit(spans, snap)

    def _on_commit(self, snaps: list[dict[str, Any]]) -> None:
        """Export thread: these checkpoints' spans were all exported."""
        self.store.commit(snaps)
        for snap in snaps:
            key = snap["key"]
            if snap["serial"] > self.committed_serial.get(key, 0):
                self.committed_serial[key] = snap["serial"]

    # ── spool directory ──────────────────────────────────────────────────────────────────────

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
                self.translator.sweep(_NEVER_NS, pids=old.pids, keys=old.session_keys)
            finally:
                self.processor.collect_into(None)
        self._forget_sessions(old)
        old.dirty = True
        self._release(old)
        if self.by_pid.get(old.pid) is old:
            del self.by_pid[old.pid]

    # ── sockets ──────────────────────────────────────────────────────────────────────────────

    def _poll_sockets(self, timeout: float) -> None:
        for key, _mask in self._selector.select(timeout):
            if key.data is None:  # the wake-up pipe
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            elif key.data == "listener":
                self._accept(key.fileobj)
            elif key.data == "sidecars":  # a session directory changed: read its sidecar now
                self.sidecars.poll()
            else:
                self._read(key.data)

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        peer = f"unix:{self.socket_path}" if sock.family == socket.AF_UNIX else \
            f"tcp:{address[0]}:{address[1]}"
        if len(self._connections) >= self.options.max_connections:
            log.warning("socket client %s refused: %d connections already open", peer,
                        len(self._connections))
            sock.close()
            return
        sock.setblocking(False)
        conn = _Connection(sock, f"{peer}#{sock.fileno()}")
        self._connections[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        log.debug("socket client %s connected", conn.peer)

    def _disconnect(self, conn: _Connection, reason: str = "") -> None:
        if reason:
            log.warning("socket client %s: %s; disconnected", conn.peer, reason)
        else:
            log.debug("socket client %s disconnected", conn.peer)
        self._connections.pop(conn.sock.fileno(), None)
        self._throttled.pop(conn.sock.fileno(), None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _read(self, conn: _Connection) -> None:
        now = time.monotonic()
        if now - conn.window_start >= 1.0:
            conn.window_start, conn.window_lines = now, conn.lines
        for _ in range(16):  # at most 1 MiB per connection per round: others get their turn
            if conn.lines - conn.window_lines >= self.options.max_lines_per_connection_s:
                self._throttle(conn, conn.window_start + 1.0)
                return
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._disconnect(conn, f"read error: {exc.strerror}")
                return
            if not data:  # a partial last line is dropped: the spool file has it
                self._disconnect(conn)
                return
            conn.buf += data
            start = 0
            while True:
                newline = conn.buf.find(b"\n", start)
                if newline < 0:
                    break
                line = bytes(conn.buf[start: newline + 1])
                start = newline + 1
                if not self._socket_line(conn, line):
                    return
            if start:
                del conn.buf[:start]
            if len(conn.buf) > self.max_bytes:
                error = DecodeError(conn.peer, conn.lines + 1, "", f"line exceeds the limit of "
                                    f"{self.max_bytes} bytes", "oversize")
                self.rejected += 1
                self.translator.reject(error)
                self._disconnect(conn, f"line {conn.lines + 1} is longer than "
                                 f"{self.max_bytes} bytes")
                return

    def _socket_line(self, conn: _Connection, line: bytes) -> bool:
        """One line from a socket client; False when the client was disconnected."""
        conn.lines += 1
        item = decode_item(line, conn.peer, conn.lines, self.max_bytes, from_socket=True)
        if item is None:
            return True
        if item.error is not None:
            return self._socket_reject(conn, item.error)
        event = item.event
        over = self._over_peer_limits(conn, event)
        stream = None if over else self._route(event)
        if stream is None:
            return self._socket_reject(conn, DecodeError(
                conn.peer, conn.lines, "pid", over or "too many KIT processes are followed over "
                f"sockets (limit {self.options.max_socket_streams}, none idle)", "peer_limit"))
        conn.pids.add(event.pid)
        conn.sessions.add((event.pid, event.session_path))
        if not stream.offer(event):
            return self._socket_reject(conn, seq_jump_error(
                conn.peer, conn.lines, event.seq, stream.next_seq,
                f"more than {MAX_SEQ_JUMP} ahead"))
        conn.bad_in_row = 0
        return True

    def _socket_reject(self, conn: _Connection, error: DecodeError) -> bool:
        """Count and log (the first five per client) one refused socket line; False when the
        client was disconnected for sending nothing but bad lines."""
        conn.rejected += 1
        conn.bad_in_row += 1
        self.rejected += 1
        self.socket_rejected += 1
        self.translator.reject(error)
        # five per client, fifty in all, then every 1000th (many clients must not flood)
        if conn.rejected <= 5 and self.socket_logged < 50 or self.socket_rejected % 1000 == 0:
            self.socket_logged += 1
            log.warning("socket client rejected line: %s%s", error,
                        f" ({self.socket_rejected} socket lines rejected so far)"
                        if self.socket_logged > 50 else "")
        if conn.bad_in_row >= self.options.bad_lines_before_disconnect:
            self._disconnect(conn, f"{conn.bad_in_row} bad lines in a row")
            return False
        return True

    def _over_peer_limits(self, conn: _Connection, event) -> str:
        """Why this client may not speak for this event's process or session ("" if it may):
        one client must not make the daemon hold state for thousands of processes."""
        opts = self.options
        if event.pid not in conn.pids and len(conn.pids) >= opts.max_pids_per_connection:
            return (f"pid {event.pid} would be KIT process number "
                    f"{opts.max_pids_per_connection + 1} on this connection (limit "
                    f"{opts.max_pids_per_connection})")
        if (len(conn.sessions) >= opts.max_sessions_per_connection
                and (event.pid, event.session_path) not in conn.sessions):
            return (f"more than {opts.max_sessions_per_connection} sessions on this connection")
        return ""

    def _route(self, event) -> Stream | None:
        """The stream a socket event belongs to (made for it if its pid has none; None when
        no more socket-only streams may be made)."""
        stream = self.by_pid.get(event.pid)
        if stream is None:
            self._scan()  # the bridge creates its spool file before it connects
            stream = self.by_pid.get(event.pid)
        elif (event.type == "bridge_start" and event.seq == 1 and stream.first_started
              and getattr(event.data, "StartedAt", "") != stream.first_started):
            self._scan()  # a new process with a known pid
            if self.by_pid.get(event.pid) is stream:
                self._supersede(stream)
            stream = self.by_pid.get(event.pid)
        if stream is None:
            if self.socket_streams >= self.options.max_socket_streams \
                    and not self._evict_socket_stream():
                return None
            stream = Stream(f"socket-{event.pid}-{time.time_ns()}", event.pid)
            self._register(stream)
            self.socket_streams += 1
        if stream.socket_only:  # the least recently heard first, for _evict_socket_stream
            self._socket_lru[stream.key] = stream
            self._socket_lru.move_to_end(stream.key)
            log.info("socket: KIT process %d has no spool file: following it over the socket "
                     "only (not durable across restarts)", event.pid)
        return stream

    def _evict_socket_stream(self) -> bool:
        """Make room for a new socket-only stream: forget the one quiet the longest (no open
        turn, nothing waiting). Its spans were handed to the exporter already and its counts
        are in the daemon's totals; only its session state (turn links) goes."""
        oldest = next((s for s in self._socket_lru.values()
                       if s.socket_only and not s.pending_spans and not s.socket_items
                       and not s.socket_unordered and self._quiescent(s)), None)
        if oldest is None:
            return False
        log.debug("socket: forgetting quiet KIT process %d to follow another", oldest.pid)
        self._remove(oldest, "socket-only stream limit reached; it was the quietest")
        return True

    def _throttle(self, conn: _Connection, until: float) -> None:
        """Stop reading a client over its rate until `until` (the kernel's buffers, then the
        client's own writes, hold what it sends meanwhile: nothing is dropped here)."""
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            return
        self._throttled[conn.sock.fileno()] = (until, conn)
        self.throttles += 1

    def _resume_throttled(self, now: float) -> None:
        for fd, (until, conn) in list(self._throttled.items()):
            if now >= until:
                del self._throttled[fd]
                if fd in self._connections:
                    self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    # ── housekeeping ─────────────────────────────────────────────────────────────────────────

    def _sweep(self) -> None:
        """Close turns idle past the idle timeout (wall clock), one KIT process at a time so
        that what it ends is attributed to that process. Only processes whose input was read to
        its end: while input is paused (a full export queue) or a backlog is being caught up
        on, the events that continue a turn are waiting in the spool, not missing."""
        if self.processor.full:
            return
        now_ns = time.time_ns()
        for stream in list(self.streams.values()):
            if not stream.fully_consumed():
                continue
            with self.counters.attribute(self._ledger(stream)):
                self.processor.collect_into(stream.pending_spans)
                try:
                    sessions = len(self.translator.session_keys())
                    if (self.translator.sweep(now_ns, pids=stream.pids, keys=stream.session_keys)
                            or len(self.translator.session_keys()) != sessions):
                        stream.dirty = True  # turns closed or quiet sessions forgotten
                        stream.session_keys &= self.translator.session_keys()
                    if (stream.dirty or stream.pending_spans) and self._quiescent(stream):
                        self._release(stream)
                finally:
                    self.processor.collect_into(None)

    def _set_lag(self, now_ns: int) -> None:
        if self.newest_ts_ns:
            self.translator.metrics.lag.set(max(now_ns - self.newest_ts_ns, 0) / 1e9)

    def _exported(self, stream: Stream) -> bool:
        return (not stream.dirty and not stream.pending_spans
                and self.committed_serial.get(stream.key, 0) >= stream.released
                and stream.fully_consumed())

    def _retention(self) -> None:
        retention = self.settings.spool_retention_s
        now = time.time()
        for stream in list(self.streams.values()):
            if not self._exported(stream):
                stream.ended_since = None
                continue
            if all(f.missing for f in stream.files.values()) and stream.files:
                self._remove(stream, "its files were removed")
                continue
            ended = stream.last_type == "session_shutdown" and not pid_alive(stream.pid)
            if not ended:
                stream.ended_since = None
            elif stream.ended_since is None:
                stream.ended_since = now
            idle = now - stream.last_activity()
            if ended and now - stream.ended_since >= retention:
                self._remove(stream, "process ended")
            elif idle >= retention:
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
        if self.streams.pop(stream.key, None) is not None and stream.socket_only:
            self.socket_streams -= 1
        self._socket_lru.pop(stream.key, None)
        self.committed_serial.pop(stream.key, None)
        if stream.key in self.store.streams:
            self.store.retire(stream.key)

    def _forget_sessions(self, stream: Stream) -> None:
        self.translator.forget_sessions(stream.session_keys)

    # ── stop ─────────────────────────────────────────────────────────────────────────────────

    def _shutdown(self) -> None:
        log.info("stopping: %d events translated, %d lines rejected", self.processed,
                 self.rejected)
        for conn in list(self._connections.values()):
            self._disconnect(conn)
        self._close_listeners()
        for stream in list(self.streams.values()):
            with self.counters.attribute(self._ledger(stream)):
                self.processor.collect_into(stream.pending_spans)
                try:
                    if stream.socket_only and self.translator.sweep(
                            _NEVER_NS, pids=stream.pids, keys=stream.session_keys):
                        stream.dirty = True  # no spool file to resume from: end its turns now
                    if (stream.dirty or stream.pending_spans) and self._quiescent(stream):
                        self._release(stream)
                finally:
                    self.processor.collect_into(None)
        queued = self.processor.queued_spans
        if queued:
            log.info("exporting %d queued spans (up to %.0fs)", queued,
                     self.options.shutdown_timeout_s)
        if not self.processor.close(self.options.shutdown_timeout_s):
            log.warning("stopped with %d spans not exported: they are exported from the spool "
                        "after the next start", self.processor.queued_spans)
        self._set_lag(time.time_ns())
        self.pipeline.shutdown(close_turns=False)  # final metric export
        self.budget_status.maybe_write(force=True)
        try:
            self.store.save()
        except OSError as exc:
            log.error("could not save the checkpoint: %s", exc)
        for stream in self.streams.values():
            stream.close()
        self._close_quietly()
        self.sidecars.close()
        log.info("stopped")

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._listeners.clear()
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            self.socket_path = ""

    def _abort_start(self) -> None:
        self._close_listeners()
        if self.processor is not None:
            self.processor.close(0)
        if self.pipeline is not None:
            self.pipeline.shutdown(close_turns=False)
        self._close_quietly()

    def _close_quietly(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        for fd in (self._spool_lock_fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._spool_lock_fd = None


# ── command line ────────────────────────────────────────────────────────────────────────────

def cmd_serve(args) -> int:
    overrides = {"spool_dir": args.spool_dir, "state_dir": args.state_dir,
                 "socket_path": args.socket, "tcp_port": args.tcp_port,
                 "spool_retention_s": args.retention}
    try:
        settings = load_settings(config_file=getattr(args, "config", None),
                                 overrides={k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        print(f"kit-otel: {exc}", file=sys.stderr)
        return 2
    if settings.sources.get("output_dir", "default") == "default":
        # a daemon has no meaningful working directory: OTLP-JSON files go with its state
        settings.output_dir = str(Path(settings.state_dir).expanduser() / "otlp-json")
    logger = logging.getLogger("kit_otel")
    if not getattr(args, "verbose", False):
        logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="kit-otel: %(levelname)s: %(message)s")
    server = Server(settings)
    stops = []

    def on_signal(signum, frame):
        stops.append(signum)
        if len(stops) > 1:  # a second signal: stop waiting for the exporter
            log.warning("second signal: exiting without waiting for the export")
            server.options = replace(server.options, shutdown_timeout_s=0)
            if server.processor is not None:
                server.processor.abort()
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return server.run()


def add_parser(subparsers) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the daemon: follow spool files (and sockets), export continuously",
        description="Follow every KIT spool file in the spool directory (and, if configured, a "
        "Unix socket and a loopback TCP port), translate the events and export them "
        "continuously with the configured exporters (OTEL_* variables). Nothing is lost or "
        "counted twice across restarts and collector outages: see docs/serve.md.\n\n"
        "example: OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp,prometheus kit-otel serve",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--spool-dir", help="spool directory (setting spool_dir)")
    serve.add_argument("--state-dir", help="checkpoint directory (setting state_dir)")
    serve.add_argument("--socket", help="Unix socket path, 'auto' or 'off' (setting socket_path)")
    serve.add_argument("--tcp-port", type=int, help="also listen on 127.0.0.1:PORT (tcp_port)")
    serve.add_argument("--retention", type=float, metavar="SECONDS",
                       help="keep exported spool files of ended processes this long "
                       "(spool_retention_s)")
    serve.set_defaults(func=cmd_serve)
