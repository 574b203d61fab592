"""In-memory OTel providers around a Translator, and readers for what it produced."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kit_otel.translate.translator import Translator, TranslatorSettings


@dataclass
class Harness:
    translator: Translator
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def feed(self, events) -> "Harness":
        for event in events:
            self.translator.process(event)
        return self

    def close(self) -> "Harness":
        self.translator.close()
        return self

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def spans_named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def points(self, otel_name: str) -> list:
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == otel_name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, otel_name: str, **labels) -> float:
        """Sum of counter points (or histogram sums) whose attributes include `labels`."""
        total = 0.0
        for point in self.points(otel_name):
            attrs = dict(point.attributes)
            if all(attrs.get(k) == v for k, v in labels.items()):
                total += point.value if hasattr(point, "value") else point.sum
        return total

    def count(self, otel_name: str, **labels) -> int:
        """Histogram observation count over points whose attributes include `labels`."""
        return sum(p.count for p in self.points(otel_name)
                   if all(dict(p.attributes).get(k) == v for k, v in labels.items()))


def make_harness(settings: TranslatorSettings | None = None) -> Harness:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    settings = settings or TranslatorSettings(sessions_root=None)
    return Harness(Translator(tracer_provider, meter_provider, settings), exporter, reader)


def span_tree(spans: list[ReadableSpan], trace_id: int | None = None,
              attrs: tuple[str, ...] = ()) -> list[tuple]:
    """(depth, name, kind, status, {attr: value}) rows in start-time order, depth-first."""
    if trace_id is not None:
        spans = [s for s in spans if s.context.trace_id == trace_id]
    ids = {s.context.span_id for s in spans}
    children = defaultdict(list)
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children[parent].append(s)
    for group in children.values():
        group.sort(key=lambda s: (s.start_time, s.name))
    rows: list[tuple] = []

    def walk(span, depth):
        picked = {k: span.attributes[k] for k in attrs if k in span.attributes}
        rows.append((depth, span.name, span.kind.name, span.status.status_code.name, picked))
        for child in children.get(span.context.span_id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return rows


def names_tree(spans, trace_id=None) -> list[str]:
    return ["  " * d + f"{name} [{kind}{'' if status == 'UNSET' else ' ' + status}]"
            for d, name, kind, status, _ in span_tree(spans, trace_id)]
