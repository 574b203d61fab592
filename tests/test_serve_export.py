"""ReliableSpanProcessor and DeterministicIdGenerator on their own (no daemon)."""

from __future__ import annotations

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
