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

Longer than most modules on purpose: what is left here is one thread's loop and the state it
keeps per stream (start, reading, quiescent points and checkpoints, sweeping, shutdown); the
spool directory and the sockets, which only feed it, are in spool_directory.py and
socket_input.py.
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
import sys
import threading
import time
from collections import deque, OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

from kit_otel.config import load_settings, Settings
from kit_otel.export.instance_id import service_instance_id
from kit_otel.export.pipeline import Pipeline, start_failure
from kit_otel.export.reliable_export import (
    DeadLetterFile, DeterministicIdGenerator, event_seed, ReliableSpanProcessor,
)
from kit_otel.model import names as n
from kit_otel.model.decoder import DecodeError
from kit_otel.serve.budget_status import BudgetStatus, STATUS_FILE
from kit_otel.serve.checkpoint import (
    AttributedCounters, bounded_values, CheckpointError, CheckpointStore, copy_totals,
    decode_sessions, encode_sessions, restore_bounded_values, Totals,
)
from kit_otel.serve.options import NEVER_NS, ServeError, ServeOptions, use_daemon_output_dir
from kit_otel.sources.sidecar_follow import SidecarFollower
from kit_otel.sources.spool import Item, SpoolFile, Stream
from kit_otel.state.regular_file import open_regular
from kit_otel.translate.snapshot import SESSION_SCHEMA
from kit_otel.serve.socket_input import Connection, SocketInput
from kit_otel.sources.dir_watch import DirectoryWatcher
from kit_otel.serve.spool_directory import SpoolDirectory, check_spool_dir, private_dir

log = logging.getLogger("kit_otel.serve")

SPOOL_LOCK = ".kit-otel-serve.lock"  # a dot-file: not a spool file, the bridge never reads it


class Server(SocketInput, SpoolDirectory):
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
        self.spool_watch: DirectoryWatcher | None = None  # which spool files were written to
        self.scan_soon = False  # a file not followed yet was named: list the directory now
        self._housekeeping_failures: dict[str, tuple[str, float]] = {}  # task -> (error, when)
        self._next_full_refresh = 0.0  # monotonic: when every spool file is checked again
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
        self._connections: dict[int, Connection] = {}
        self._throttled: dict[int, tuple[float, Connection]] = {}  # fd → (resume at, client)
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
        except Exception as exc:  # noqa: BLE001 - e.g. a checkpoint of an incompatible version
            log.debug("cannot start", exc_info=True)
            log.error("cannot start: %s: %s (run with -v for details, and please report it)",
                      type(exc).__name__, exc)
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
        private_dir(self.state_dir, "state directory", tighten=True)
        check_spool_dir(self.spool_dir)
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
                max_batch_spans=opts.max_batch_spans, linger_s=opts.export_linger_s,
                backoff_initial_s=opts.backoff_initial_s,
                backoff_max_s=opts.backoff_max_s,
                dead_letter=DeadLetterFile(self.state_dir / "dead-letter.jsonl"),
                on_dead_letter=lambda code: self.translator.metrics.dead_lettered.add(
                    1, {n.L_REASON: code}))
            return self.processor

        try:
            self.pipeline = Pipeline(self.settings, span_exporters_processor=make_processor,
                                     id_generator=self.ids,
                                     instance_id=service_instance_id(self.settings.state_dir))
        except (OSError, OverflowError) as exc:
            raise ServeError(start_failure(self.settings, exc)) from None
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
        # the budget file's spend, from what the checkpoints restored: the calls after them
        # are read again and added once
        self.budget_status.start_from(metrics.spend_to_date.inner)  # (past the attribution)
        meter = self.pipeline.meter_provider.get_meter("kit_otel.serve")
        for spec, value in ((n.SERVE_EXPORT_QUEUE, lambda: self.processor.queued_spans),
                            (n.SERVE_SPOOL_FILES, lambda: len(self.file_owner))):
            meter.create_observable_gauge(
                spec.otel_name, unit=spec.unit, description=spec.description,
                callbacks=[lambda options, value=value: [self._observation(value())]])
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        if self.sidecars.fileno() is not None:
            self._selector.register(self.sidecars.fileno(), selectors.EVENT_READ, "sidecars")
        self._watch_spool()
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
            self.translator.restore_process(stream.pid, snap.get("process", {}))


    # ── the loop ─────────────────────────────────────────────────────────────────────────────

    def _loop(self) -> None:
        opts = self.options
        next_scan = time.monotonic() + opts.scan_interval_s
        next_house = next_sweep = next_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan or self.scan_soon:
                self.scan_soon = False
                self._scan()
                next_scan = now + opts.scan_interval_s
            if now >= next_refresh:  # files read to their end may have grown
                self._refresh_files(now)
                next_refresh = now + opts.poll_interval_s
            busy = False
            if self.processor.full:
                for stream in self.streams.values():
                    stream.gap_since = None  # not reading: a gap cannot be judged now
            else:
                for stream in list(self.streams.values()):
                    if stream.has_input() or stream.dirty:  # (idle streams cost nothing)
                        busy |= self._advance(stream, now)
            if now >= next_sweep:
                self._housekeeping("the sweep", self._sweep)
                self._housekeeping("spool retention", self._retention)
                next_sweep = now + opts.sweep_interval_s
            self._housekeeping("the budget status file", self.budget_status.maybe_write, now)
            if now >= next_house:
                self._set_lag(time.time_ns())
                self._housekeeping("the sidecars", self.sidecars.poll)
                next_house = now + opts.housekeeping_interval_s
            if self.processor.full:
                self._stop.wait(opts.poll_interval_s)
                continue
            if self._throttled:
                self._resume_throttled(now)
            self._poll_sockets(0 if busy else max(next_refresh - time.monotonic(), 0))

    def _housekeeping(self, what: str, task, *args) -> None:
        """Run one of the loop's periodic tasks; a failure (a full disk, a file that vanished
        under it) is logged and the task runs again next time: it never ends the daemon, whose
        reading and exporting do not depend on it. The same failure is logged once a minute."""
        try:
            task(*args)
        except Exception as exc:  # noqa: BLE001 - whatever it is, serve goes on
            message = f"{type(exc).__name__}: {exc}"
            last = self._housekeeping_failures.get(what)
            now = time.monotonic()
            if last is None or last[0] != message or now - last[1] >= 60:
                self._housekeeping_failures[what] = (message, now)
                log.error("serve: %s failed (%s); it is tried again, reading and exporting go on",
                          what, message)

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
            "process": self.translator.process_snapshot(stream.pid),
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

    # ── stop ─────────────────────────────────────────────────────────────────────────────────

    def _shutdown(self) -> None:
        log.info("stopping: %d events translated, %d lines rejected", self.processed,
                 self.rejected)
        deadline = time.monotonic() + self.options.shutdown_timeout_s
        for conn in list(self._connections.values()):
            self._disconnect(conn)
        self._close_listeners()
        for stream in list(self.streams.values()):
            with self.counters.attribute(self._ledger(stream)):
                self.processor.collect_into(stream.pending_spans)
                try:
                    if stream.socket_only and self.translator.sweep(
                            NEVER_NS, pids=stream.pids, keys=stream.session_keys):
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
        # the final metric export, within what is left of the shutdown timeout (a second at
        # least): the counters are in the checkpoint, so a stop never waits on a collector
        self.pipeline.shutdown(close_turns=False,
                               metrics_timeout_s=max(deadline - time.monotonic(), 1.0))
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

    def _abort_start(self) -> None:
        self._close_listeners()
        if self.processor is not None:
            self.processor.close(0)
        if self.pipeline is not None:
            self.pipeline.shutdown(close_turns=False)
        self._close_quietly()

    def _close_quietly(self) -> None:
        self._stop_watching_spool()
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
    use_daemon_output_dir(settings)
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
