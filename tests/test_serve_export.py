"""ReliableSpanProcessor and DeterministicIdGenerator on their own (no daemon)."""

from __future__ import annotations

import json
import threading

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from kit_otel.serve.checkpoint import CheckpointStore, write_atomically
from kit_otel.export.reliable_export import DeterministicIdGenerator, ReliableSpanProcessor, event_seed


class FlakyExporter(SpanExporter):
    """Fails the first `failures` calls, then accepts; records every batch it accepted."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.calls = 0
        self.accepted: list[list[str]] = []
        self.lock = threading.Lock()

    def export(self, spans):
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                return SpanExportResult.FAILURE
            self.accepted.append([s.name for s in spans])
            return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def make_spans(tracer_provider, names):
    tracer = tracer_provider.get_tracer("t")
    spans = []
    for name in names:
        span = tracer.start_span(name)
        span.end()
        spans.append(span)
    return spans


def test_units_commit_in_order_after_retries():
    a, b = FlakyExporter(failures=3), FlakyExporter(failures=1)
    commits = []
    processor = ReliableSpanProcessor([a, b], on_commit=commits.extend, max_batch_spans=2,
                                      backoff_initial_s=0.01, backoff_max_s=0.02)
    provider = TracerProvider()
    for i in range(4):
        processor.submit(make_spans(provider, [f"u{i}.{j}" for j in range(3)]), f"cp{i}")
    processor.submit([], "empty")
    assert processor.close(timeout=30)
    assert commits == ["cp0", "cp1", "cp2", "cp3", "empty"]
    names = [n for batch in a.accepted for n in batch]
    assert names == [f"u{i}.{j}" for i in range(4) for j in range(3)]  # once each, in order
    assert [n for batch in b.accepted for n in batch] == names
    assert max(len(batch) for batch in a.accepted) <= 2  # big units go in several requests
    assert processor.failed_attempts >= 3 and processor.queued_spans == 0


def test_collect_into_and_bound():
    exporter = FlakyExporter(failures=10**9)  # a collector that is down
    processor = ReliableSpanProcessor([exporter], max_queue_spans=5, backoff_initial_s=0.01,
                                      backoff_max_s=0.01)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    held: list = []
    processor.collect_into(held)
    make_spans(provider, ["a", "b", "c"])
    processor.collect_into(None)
    assert [s.name for s in held] == ["a", "b", "c"] and processor.queued_spans == 0
    processor.submit(held, "cp")
    assert not processor.full
    processor.submit(make_spans(TracerProvider(), ["d", "e"]), "cp2")
    assert processor.full and processor.peak_queued == 5
    assert not processor.close(timeout=0.2)  # cannot drain: nothing is committed, nothing lost
    assert exporter.accepted == []


def test_deterministic_ids_repeat_per_event():
    def ids(seed_events):
        gen = DeterministicIdGenerator()
        provider = TracerProvider(id_generator=gen)
        tracer = provider.get_tracer("t")
        out = []
        for pid, seq, ts in seed_events:
            gen.begin(event_seed(pid, seq, ts))
            root = tracer.start_span("root")
            out.append((root.context.trace_id, root.context.span_id))
            gen.begin(None)
        return out

    events = [(4242, 1, 10), (4242, 2, 11), (99, 1, 10)]
    first, again = ids(events), ids(events)
    assert first == again
    assert len({i for pair in first for i in pair}) == 6  # all distinct
    assert event_seed(1, 0, 5) is None  # no seq, no stable identity: random ids


def test_atomic_write_and_stale_temp_files(tmp_path):
    target = tmp_path / "serve-checkpoint.json"
    write_atomically(target, b'{"version":1,"streams":{}}')
    assert target.read_bytes() == b'{"version":1,"streams":{}}'
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    (tmp_path / ".serve-checkpoint.json.12345.tmp").write_text("{torn")  # a killed writer's
    store = CheckpointStore(tmp_path)
    assert store.load() is True
    assert not list(tmp_path.glob("*.tmp"))


def _reference_state_file(store: CheckpointStore) -> bytes:
    """The state file as one `json.dumps` of the whole state (what each stream's cached entry
    must add up to)."""
    import json

    from kit_otel.serve.checkpoint import STATE_VERSION, copy_totals, totals_to_json
    streams = {key: {**snap, "ledger": totals_to_json(snap["ledger"])}
               for key, snap in store.streams.items()}
    return json.dumps({"version": STATE_VERSION, "streams": streams,
                       "retired": totals_to_json(store.retired),
                       "daemon": totals_to_json(copy_totals(store.daemon_totals)),
                       "bounded": store.bounded}, separators=(",", ":")).encode()


def test_state_file_is_the_whole_state_as_json_across_commits_retires_and_reloads(tmp_path):
    ledger = {"kit.events": {frozenset({("event.type", "tool_call")}): 3.0},
              "kit.tokens": {frozenset({("model", "é-ünïcode"), ("type", "input")}): 12.0}}
    store = CheckpointStore(tmp_path, {"kit.rejected": {frozenset(): 2.0}})
    store.bounded = {"tool_value": ["read", "write"]}
    path = tmp_path / "serve-checkpoint.json"
    for serial in (1, 2):
        store.commit([{"key": f"kit-{i}", "serial": serial, "pid": i, "files": {"a": [serial, 1]},
                       "ledger": {name: {k: v * serial for k, v in sums.items()}
                                  for name, sums in ledger.items()}} for i in range(3)])
        assert path.read_bytes() == _reference_state_file(store)
    store.commit([{"key": "kit-1", "serial": 3, "pid": 1, "files": {}, "ledger": {}}])
    assert path.read_bytes() == _reference_state_file(store)
    assert json.loads(path.read_bytes())["streams"]["kit-1"]["serial"] == 3  # the new entry
    store.retire("kit-0")
    assert path.read_bytes() == _reference_state_file(store)
    assert "kit-0" not in json.loads(path.read_bytes())["streams"]
    reloaded = CheckpointStore(tmp_path)
    assert reloaded.load() is True
    reloaded.bounded = store.bounded
    reloaded.save()
    assert path.read_bytes() == _reference_state_file(reloaded)
    assert list(json.loads(path.read_bytes())["streams"]) == ["kit-1", "kit-2"]
    reloaded.retire("kit-2")
    reloaded.commit([])
    assert list(json.loads(path.read_bytes())["streams"]) == ["kit-1"]


class _GatedExporter(FlakyExporter):
    """Holds its first export until `gate` is set, so that units pile up behind it."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def export(self, spans):
        self.gate.wait(10)
        return super().export(spans)


def test_commits_are_written_at_most_once_per_interval_and_never_before_their_spans():
    exporter = _GatedExporter()
    commits: list[list[str]] = []

    def on_commit(payloads):  # every payload's spans were accepted already
        accepted = {n for batch in exporter.accepted for n in batch}
        assert all(f"{p}.0" in accepted and f"{p}.1" in accepted for p in payloads)
        commits.append(list(payloads))

    processor = ReliableSpanProcessor([exporter], on_commit=on_commit, max_batch_spans=4,
                                      commit_interval_s=60)
    provider = TracerProvider()
    units = [f"cp{i}" for i in range(40)]
    for unit in units:  # 40 units of 2 spans: 20 requests behind the held one
        processor.submit(make_spans(provider, [f"{unit}.0", f"{unit}.1"]), unit)
    exporter.gate.set()
    assert not processor.wait_idle(1.0)  # exported, but the rest waits for its commit
    assert commits == [["cp0", "cp1"]]  # the first batch after a quiet spell: at once
    assert processor.queued_spans == 0 and len(exporter.accepted) == 20
    assert processor.close(timeout=10)  # stopping commits what waits
    assert [p for c in commits for p in c] == units and len(commits) == 2  # in order, once


def test_small_units_linger_into_one_request_and_a_flush_or_stop_sends_at_once():
    """A turn is a unit of a few spans; while more come, a batch waits (up to `linger_s`) to
    fill a request instead of sending one request per turn. Here the linger is an hour: only
    a full batch, force_flush and close may send."""
    exporter = FlakyExporter()
    processor = ReliableSpanProcessor([exporter], max_batch_spans=10, linger_s=3600)
    provider = TracerProvider()
    for i in range(3):  # 9 spans: not a full batch, so nothing is sent yet
        processor.submit(make_spans(provider, [f"u{i}.{j}" for j in range(3)]), f"u{i}")
    assert not processor.wait_idle(0.3) and exporter.accepted == []
    processor.submit(make_spans(provider, ["u3.0", "u3.1", "u3.2"]), "u3")  # 12: full
    assert wait_until(lambda: len(exporter.accepted) == 1)
    assert len(exporter.accepted[0]) == 9  # whole units, up to the batch size
    assert processor.force_flush(10_000)  # the rest goes now, not in an hour
    assert [len(batch) for batch in exporter.accepted] == [9, 3]
    processor.submit(make_spans(provider, ["late"]), "late")
    assert not processor.wait_idle(0.3)  # after the flush, a small batch lingers again
    assert processor.close(timeout=10)  # stopping sends what lingers
    assert exporter.accepted[-1] == ["late"]


def test_an_abort_while_a_batch_lingers_sends_nothing():
    exporter = FlakyExporter()
    processor = ReliableSpanProcessor([exporter], max_batch_spans=10, linger_s=3600)
    processor.submit(make_spans(TracerProvider(), ["a"]), "a")
    assert not processor.wait_idle(0.3)  # lingering
    processor.abort()
    processor._thread.join(10)
    assert not processor._thread.is_alive()
    assert exporter.calls == 0 and exporter.accepted == []


def wait_until(predicate, timeout: float = 10.0) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_commit_waits_for_the_interval_then_is_written_without_more_input():
    exporter = FlakyExporter()
    commits: list[list[str]] = []
    processor = ReliableSpanProcessor([exporter], on_commit=commits.append,
                                      commit_interval_s=1.5)
    provider = TracerProvider()
    processor.submit(make_spans(provider, ["a"]), "a")
    assert processor.wait_idle(10) and commits == [["a"]]
    processor.submit(make_spans(provider, ["b"]), "b")
    processor.submit(make_spans(provider, ["c"]), "c")
    assert not processor.wait_idle(0.2) and commits == [["a"]]  # exported, not yet committed
    assert processor.wait_idle(10)  # the timer commits them, no more input needed
    assert commits == [["a"], ["b", "c"]]
    processor.close(timeout=10)


def test_an_idle_spool_file_is_polled_with_one_stat_and_still_sees_every_change(tmp_path,
                                                                               monkeypatch):
    from kit_otel.sources.spool import SpoolFile
    from kit_otel.model.decoder import encode_event
    from kit_otel.model.events import make_event

    def line(seq: int) -> bytes:
        return encode_event(make_event("agent_start", 1_781_000_000 * 10**9 + seq, seq=seq,
                                       pid=7, session_path="/s.jsonl"))

    path = tmp_path / "kit-7-x.ndjson"
    path.write_bytes(line(1))
    spool_file = SpoolFile(str(path))
    reads = []
    real_read = spool_file.tailer.read_available
    monkeypatch.setattr(spool_file.tailer, "read_available",
                        lambda **kw: reads.append(1) or real_read(**kw))

    def poll() -> list[int]:
        spool_file.maybe_more = True
        spool_file.fill()
        seqs = [item.event.seq for item in spool_file.buffer]
        spool_file.buffer.clear()
        return seqs

    assert poll() == [1] and poll() == []  # read to its end: the next read finds nothing
    reads.clear()
    assert poll() == [] and poll() == [] and reads == []  # unchanged: not read again
    with open(path, "ab") as out:
        out.write(line(2)[:20])  # half a line: it changed, read, nothing whole yet
    assert poll() == [] and len(reads) == 1
    assert poll() == [] and len(reads) == 1
    with open(path, "ab") as out:
        out.write(line(2)[20:])
    assert poll() == [2]
    assert poll() == []
    path.write_bytes(line(3))  # truncated and rewritten: read again from the start
    assert poll() == [3] and spool_file.tailer.resets == 1
    assert poll() == []
    replaced = tmp_path / "new"
    replaced.write_bytes(line(1) + line(4))
    replaced.rename(path)  # another file at the path (rotated)
    assert poll() == [1, 4] and spool_file.tailer.resets == 2
    assert poll() == [] and not spool_file.missing
    path.unlink()
    assert poll() == [] and spool_file.missing


def test_a_line_written_between_a_read_and_its_stat_is_not_taken_for_idle(tmp_path,
                                                                          monkeypatch):
    """A read finds nothing, a line lands, then the stat that marks the file idle: the size it
    sees is past what was read, so the file is looked at again instead of waiting for the next
    write (which, after a process's last line, never comes)."""
    import kit_otel.sources.spool as spool_module
    from kit_otel.model.decoder import encode_event
    from kit_otel.model.events import make_event

    def line(seq: int) -> bytes:
        return encode_event(make_event("agent_start", 1_781_000_000 * 10**9 + seq, seq=seq,
                                       pid=7, session_path="/s.jsonl"))

    path = tmp_path / "kit-7-x.ndjson"
    path.write_bytes(line(1))
    spool_file = spool_module.SpoolFile(str(path))
    stat_key = spool_module._stat_key
    landing = [line(2)]

    def stat_after_a_write(p):
        if landing:
            with open(p, "ab") as out:
                out.write(landing.pop())
        return stat_key(p)

    def poll() -> list[int]:
        if not spool_file.may_have_changed():
            return []
        spool_file.maybe_more = True
        spool_file.fill()
        seqs = [item.event.seq for item in spool_file.buffer]
        spool_file.buffer.clear()
        return seqs

    assert poll() == [1]
    monkeypatch.setattr(spool_module, "_stat_key", stat_after_a_write)
    assert poll() == []  # nothing when read; line 2 lands before the stat
    monkeypatch.setattr(spool_module, "_stat_key", stat_key)
    assert poll() == [2]
    assert poll() == [] and not spool_file.may_have_changed()  # now idle for real
    # truncated and rewritten shorter (logrotate's copytruncate, then the next line), between
    # a read and its stat: the size is below what was read
    landing.append(None)

    def stat_after_a_rewrite(p):
        if landing:
            landing.pop()
            with open(p, "r+b") as out:
                out.truncate(0)
                out.write(line(3))
        return stat_key(p)

    monkeypatch.setattr(spool_module, "_stat_key", stat_after_a_rewrite)
    spool_file.maybe_more = True
    spool_file._idle_stat = None
    assert poll() == []
    monkeypatch.setattr(spool_module, "_stat_key", stat_key)
    assert poll() == [3]  # seen: not taken for idle
