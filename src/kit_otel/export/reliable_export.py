"""Span export that loses nothing: spans are kept until every exporter accepted them.

`ReliableSpanProcessor` replaces the SDK's BatchSpanProcessor in `kit-otel serve`:
- it never drops a span: a failed export is retried with exponential backoff, forever, while the
  collector is down;
- spans travel in *units* (the spans of one KIT process between two checkpoints, plus the
  checkpoint itself as the unit's payload); a unit's payload is handed to `on_commit` only when
  every span of that unit, and of every unit before it, was accepted by every exporter;
- when an export fails, the batch is checked: a span that cannot be encoded, or alone exceeds
  what one request may carry, is found by halving, logged, counted (`on_dead_letter`), written
  to the dead-letter file and treated as delivered, so the stream behind it goes on; a batch
  that is merely too big is sent in parts; a batch that encodes fine was refused by the
  collector (an outage) and is retried;
- memory is bounded by the caller: `full` says the queue reached its bound, and the daemon then
  stops reading input (the spool files are the buffer) instead of dropping anything.

Ended spans are not queued one by one: `collect_into(list)` makes `on_end` append to the list of
the process whose event is being translated, and the daemon `submit`s that list as one unit at a
quiescent point (no open turn), so a turn is exported together with the checkpoint that covers it.

`DeterministicIdGenerator` derives trace and span ids from the identity of the event being
translated (pid, seq, timestamp), so translating the same events again after a restart gives
the same ids: a re-delivery is an exact copy that backends recognise, never a second span.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator

log = logging.getLogger("kit_otel.serve")


class DeterministicIdGenerator(IdGenerator):
    """Ids from a seed set per event: the n-th id made while translating an event is a hash of
    (seed, n). Without a seed (nothing being translated) ids are random."""

    def __init__(self):
        self._seed: bytes | None = None
        self._n = 0

    def begin(self, seed: bytes | None) -> None:
        self._seed = seed
        self._n = 0

    def _next(self, size: int) -> int:
        if self._seed is None:
            return random.getrandbits(size * 8) or 1
        self._n += 1
        digest = hashlib.blake2b(self._seed + self._n.to_bytes(4, "big"),
                                 digest_size=size).digest()
        return int.from_bytes(digest, "big") or 1

    def generate_span_id(self) -> int:
        return self._next(8)

    def generate_trace_id(self) -> int:
        return self._next(16)


def event_seed(pid: int, seq: int, ts_ns: int) -> bytes | None:
    """The id seed of one event, or None when the event has no stable identity (no seq)."""
    if not seq:
        return None
    return b"kit-otel/1:%d:%d:%d" % (pid, seq, ts_ns)


@dataclass(eq=False)
class _Unit:
    spans: list[ReadableSpan]
    payload: Any
    queued_at: float = 0.0  # monotonic


class ReliableSpanProcessor(SpanProcessor):
    """See the module docstring. Thread model: `on_end`, `collect_into`, `submit` are called by
    the one thread that translates events; a worker thread exports and calls `on_commit`."""

    def __init__(self, exporters: Sequence[SpanExporter], *,
                 on_commit: Callable[[list[Any]], None] | None = None,
                 max_queue_spans: int = 16384, max_batch_spans: int = 2048,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 dead_letter: "DeadLetterFile | None" = None,
                 on_dead_letter: Callable[[str], None] | None = None,
                 max_request_bytes: int = 4 << 20, commit_interval_s: float = 1.0,
                 linger_s: float = 0.0):
        self.exporters = list(exporters)
        # A batch smaller than max_batch_spans waits up to `linger_s` after its oldest unit was
        # queued for more units to fill it: each unit is one KIT process's turn (a few spans),
        # and a catch-up on 1,000 spool files sent 948 requests of ~4 spans, each a round trip
        # costing the daemon more than its spans' encoding.
        self.linger_s = linger_s
        # Payloads are committed at most once per interval (the first after a quiet spell at
        # once): each commit rewrites the whole state file, so one per batch made catching up
        # on many streams quadratic. A commit is never early (only exported units' payloads),
        # only later; a crash meanwhile re-exports those spans from the spool, same ids.
        self.commit_interval_s = commit_interval_s
        self._uncommitted: list[Any] = []
        self._last_commit = -float("inf")
        self.dead_letter = dead_letter
        self.on_dead_letter = on_dead_letter  # called with the reason: unencodable | too_large
        # gRPC's default limit on a received message, which the Collector keeps
        self.max_request_bytes = max_request_bytes
        self.dead_lettered = 0
        self.on_commit = on_commit
        self.max_queue_spans = max_queue_spans
        self.max_batch_spans = max_batch_spans
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._units: deque[_Unit] = deque()
        self._cond = threading.Condition()
        self._queued = 0  # spans in queued and in-flight units
        self.peak_queued = 0  # the most spans ever held (memory bound check)
        self.largest_unit = 0
        self.exported_spans = 0
        self.failed_attempts = 0
        self.outage_since: float | None = None  # monotonic time of the first failed attempt
        self._target: list[ReadableSpan] | None = None
        self._stopping = False  # no more units will come; drain what is queued
        self._flushing = False  # force_flush: send what is queued without lingering
        self._abort = threading.Event()  # stop now, committing nothing more
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="kit-otel-span-export",
                                        daemon=True)
        self._thread.start()

    # ── producer side (the translating thread) ───────────────────────────────────────────────

    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        target = self._target
        if target is not None:
            target.append(span)
        else:  # a span made outside any process's events: exported on its own
            self.submit([span], None)

    def collect_into(self, target: list[ReadableSpan] | None) -> None:
        """Where ended spans go until the next call (None: each span is its own unit)."""
        self._target = target

    def submit(self, spans: list[ReadableSpan], payload: Any) -> None:
        """Queue a unit; `payload` goes to `on_commit` once its spans (and all before) are in."""
        with self._cond:
            self._units.append(_Unit(spans, payload, time.monotonic()))
            self._queued += len(spans)
            if len(spans) > self.largest_unit:
                self.largest_unit = len(spans)
            if self._queued > self.peak_queued:
                self.peak_queued = self._queued
            self._idle.clear()
            self._cond.notify()

    @property
    def queued_spans(self) -> int:
        return self._queued

    @property
    def full(self) -> bool:
        """The queue reached its bound: stop reading input until it drains."""
        return self._queued >= self.max_queue_spans

    # ── worker ───────────────────────────────────────────────────────────────────────────────

    def _take_batch(self) -> list[_Unit] | None:
        with self._cond:
            while not self._units:
                if self._abort.is_set():
                    return None
                if self._uncommitted:  # exported, waiting for the next commit: not idle yet
                    due = self._commit_due()
                    if due <= 0 or self._stopping:
                        return []
                    self._cond.wait(due)
                    continue
                self._idle.set()
                self._flushing = False
                if self._stopping:
                    return None
                self._cond.wait(0.5)
            if self.linger_s > 0:
                self._linger()
                if self._abort.is_set():  # woken by abort: nothing more is sent
                    return None
            batch, count = [], 0
            for unit in self._units:
                if batch and count + len(unit.spans) > self.max_batch_spans:
                    break
                batch.append(unit)
                count += len(unit.spans)
            return batch

    def _linger(self) -> None:
        """(Holding the lock) wait, up to `linger_s` after the oldest unit was queued, until a
        full batch is queued; never while stopping."""
        deadline = self._units[0].queued_at + self.linger_s
        while self._queued < self.max_batch_spans and not self._stopping \
                and not self._flushing and not self._abort.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _run(self) -> None:
        while not self._abort.is_set():
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                self._commit()
                continue
            spans = [s for unit in batch for s in unit.spans]
            step = self.max_batch_spans
            for start in range(0, len(spans), step):  # a big unit goes in several requests
                if not self._deliver(spans[start: start + step]):
                    return  # aborted while retrying: nothing of this batch is committed
            self._uncommitted.extend(u.payload for u in batch if u.payload is not None)
            if self._uncommitted and self._commit_due() <= 0:
                self._commit()
            with self._cond:
                for _ in batch:
                    self._units.popleft()
                self._queued -= len(spans)
                self.exported_spans += len(spans)
                self._cond.notify_all()

    def _commit_due(self) -> float:
        """Seconds until the next commit may be written (<= 0: now)."""
        return self._last_commit + self.commit_interval_s - time.monotonic()

    def _commit(self) -> None:
        payloads, self._uncommitted = self._uncommitted, []
        self._last_commit = time.monotonic()
        if self.on_commit is not None:
            try:
                self.on_commit(payloads)
            except Exception:  # noqa: BLE001 - a failed commit is retried by the next one
                log.exception("checkpoint commit failed")

    def _deliver(self, spans: list[ReadableSpan], pending: list[int] | None = None) -> bool:
        """Export to every exporter that has not accepted this batch yet, retrying with
        backoff; False only when aborted."""
        if pending is None:
            pending = list(range(len(self.exporters)))
        delay = self.backoff_initial_s
        last_report = 0.0
        while pending:
            failed = []
            for index in pending:
                exporter = self.exporters[index]
                try:
                    ok = exporter.export(spans) == SpanExportResult.SUCCESS
                except Exception as exc:  # noqa: BLE001 - an exporter bug must not lose spans
                    log.warning("span exporter %s raised %r", type(exporter).__name__, exc)
                    ok = False
                if not ok:
                    failed.append(index)
                if self._abort.is_set():
                    return False
            pending = failed
            if not pending:
                break
            parts = self._sort_out(spans)
            if parts is not None:  # the batch itself was the problem, not the collector
                return all(self._deliver(part, list(pending)) for part in parts)
            self.failed_attempts += 1
            now = time.monotonic()
            if self.outage_since is None:
                self.outage_since = now
                last_report = now
                log.warning("span export to %s failed; keeping %d spans and retrying with "
                            "backoff (input is paused while %d or more spans wait)",
                            ", ".join(type(self.exporters[i]).__name__ for i in pending),
                            self._queued, self.max_queue_spans)
            elif now - last_report >= 30:
                last_report = now
                log.warning("span export still failing after %.0fs; %d spans kept",
                            now - self.outage_since, self._queued)
            if self._abort.wait(delay * random.uniform(0.8, 1.2)):
                return False
            delay = min(delay * 2, self.backoff_max_s)
        if self.outage_since is not None:
            log.info("span export recovered after %.1fs", time.monotonic() - self.outage_since)
            self.outage_since = None
        return True

    def _sort_out(self, spans: list[ReadableSpan]) -> list[list[ReadableSpan]] | None:
        """After a failed export: None if the batch encodes and fits in one request (then the
        failure was the collector's, and is retried). Otherwise the batch in parts that do,
        having set aside each span that cannot be encoded or alone exceeds a request."""
        try:
            size = encode_spans(spans).ByteSize()
        except Exception as exc:  # noqa: BLE001 - what the OTLP encoders cannot carry
            if len(spans) == 1:
                self._set_aside(spans[0], "unencodable",
                                f"cannot be encoded: {type(exc).__name__}: {exc}")
                return []
            size = -1
        if 0 <= size <= self.max_request_bytes:
            return None
        if len(spans) == 1:
            self._set_aside(spans[0], "too_large",
                            f"{size} bytes encoded, more than one request may carry "
                            f"({self.max_request_bytes})")
            return []
        middle = len(spans) // 2
        parts = []
        for half in (spans[:middle], spans[middle:]):
            sorted_half = self._sort_out(half)
            parts.extend([half] if sorted_half is None else sorted_half)
        return parts

    def _set_aside(self, span: ReadableSpan, code: str, reason: str) -> None:
        self.dead_lettered += 1
        where = self.dead_letter.write(span, reason) if self.dead_letter else ""
        log.error("span %r (trace %032x) %s; set aside%s", span.name[:80],
                  span.context.trace_id, reason[:200], f" in {where}" if where else "")
        if self.on_dead_letter is not None:
            self.on_dead_letter(code)

    # ── stopping ─────────────────────────────────────────────────────────────────────────────

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted unit was exported and committed (False on timeout or
        abort)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._idle.is_set():
            if self._abort.is_set():
                return False
            remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if remaining <= 0:
                return False
            self._idle.wait(remaining)
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._cond:
            self._flushing = True  # no lingering until the queue is empty
            self._cond.notify_all()
        return self.wait_idle(timeout_millis / 1000)

    def close(self, timeout: float) -> bool:
        """Export what is queued (up to `timeout` seconds), then stop. Returns True when
        everything was exported; what was not stays uncommitted (re-read after a restart)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        drained = self.wait_idle(timeout)
        self.abort()
        self._thread.join(timeout=10)
        return drained

    def abort(self) -> None:
        """Stop exporting now (also interrupts an export blocked in its own retries); what is
        not exported yet is not committed."""
        if self._abort.is_set():
            return
        self._abort.set()
        with self._cond:
            self._cond.notify_all()  # a lingering worker stops at once
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception:  # noqa: BLE001
                log.debug("exporter shutdown failed", exc_info=True)

    def shutdown(self) -> None:
        if not self._abort.is_set():
            self.close(timeout=0)
        self._thread.join(timeout=10)


class DeadLetterFile:
    """Spans no exporter could take, one JSON line each (the SDK's span JSON, the exporter and
    the reason), so they can be looked at and replayed by hand. Created 0600: spans may carry
    content. Bounded: past `max_bytes` spans are still counted and logged, no longer written."""

    def __init__(self, path: str | os.PathLike, max_bytes: int = 64 << 20):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def write(self, span: ReadableSpan, reason: str) -> str:
        """The file's path if the span was written, "" if not (full, or unwritable)."""
        try:
            body = json.loads(span.to_json(indent=None))
        except Exception:  # noqa: BLE001 - a span too odd for JSON is described, not dropped
            body = {"name": str(span.name), "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}"}
        line = json.dumps({"reason": reason[:2000], "span": body},
                          default=repr, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                             0o600)
            except OSError as exc:
                log.warning("cannot write the dead-letter file %s: %s", self.path, exc.strerror)
                return ""
            try:
                if os.fstat(fd).st_size + len(line) > self.max_bytes:
                    return ""
                os.write(fd, line.encode())
            except OSError as exc:
                log.warning("cannot write the dead-letter file %s: %s", self.path, exc.strerror)
                return ""
            finally:
                os.close(fd)
        return str(self.path)
