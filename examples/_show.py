"""Shared by the examples: in-memory OTel providers and a compact print of what they got."""

from __future__ import annotations

from collections import defaultdict

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SHOWN = ("kit.turn.stop_reason", "kit.turn.tool_names", "kit.turn.llm_call_count",
         "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "kit.turn.cost_usd",
         "kit.cost.usd", "gen_ai.response.finish_reasons", "kit.tool.kind", "kit.tool.blocked",
         "error.type", "session.id", "kit.project")


def providers():
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, MeterProvider(metric_readers=[reader]), exporter, reader


def print_spans(exporter) -> None:
    spans = exporter.get_finished_spans()
    ids = {s.context.span_id for s in spans}
    children = defaultdict(list)
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children[parent].append(s)

    def walk(span, depth):
        attrs = {k: v for k, v in span.attributes.items() if k in SHOWN}
        status = "" if span.status.status_code.name == "UNSET" else f" [{span.status.status_code.name}]"
        ms = (span.end_time - span.start_time) / 1e6
        print(f"{'  ' * depth}{span.name}{status}  {ms:.1f} ms  {attrs if attrs else ''}")
        for child in sorted(children[span.context.span_id], key=lambda s: s.start_time):
            walk(child, depth + 1)

    for root in sorted(children[None], key=lambda s: s.start_time):
        walk(root, 0)


def print_metrics(reader, names=("kit.tokens", "kit.cost.usd", "kit.turns", "kit.tool.calls",
                                 "kit.llm.calls")) -> None:
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name in names:
                    for point in metric.data.data_points:
                        print(f"{metric.name} {dict(point.attributes)} = {point.value}")
