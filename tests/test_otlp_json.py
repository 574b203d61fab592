"""The direct OTLP/JSON encoder equals protobuf's json_format of the SDK's own protobuf
encoding: its output, read back as the Collector reads OTLP/JSON (hex ids) into
ExportTraceServiceRequest / ExportMetricsServiceRequest, is the very message the SDK's encoder
builds — on the demo stream and on edge cases of every field."""

from __future__ import annotations

import base64
import json
import logging
import math

import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import \
    ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import \
    ExportTraceServiceRequest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (AggregationTemporality, InMemoryMetricReader,
                                              MetricsData)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (Link, NonRecordingSpan, SpanContext, SpanKind, Status,
                                 StatusCode, TraceFlags, TraceState)

from harness import make_harness
from kit_otel.cli.generator import demo_stream
from kit_otel.export.otlp_json import OTLPJsonEncoder, reference_json
from kit_otel.export.otlp_json_file import OTLPJsonFileMetricExporter, OTLPJsonFileSpanExporter

_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def _base64_ids(node):
    """OTLP/JSON's hex ids back to the protobuf JSON mapping's base64, as a receiver does."""
    if isinstance(node, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in _ID_KEYS
                else _base64_ids(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_base64_ids(v) for v in node]
    return node


def assert_traces_equal(spans):
    line = OTLPJsonEncoder().spans(spans)
    parsed = ParseDict(_base64_ids(json.loads(line)), ExportTraceServiceRequest())
    assert parsed == encode_spans(spans)
    # and the very same JSON document json_format writes (same numbers, same strings)
    assert json.loads(line) == json.loads(reference_json(encode_spans(spans)))
    return json.loads(line)


def assert_metrics_equal(data: MetricsData):
    line = OTLPJsonEncoder().metrics(data)
    parsed = ParseDict(_base64_ids(json.loads(line)), ExportMetricsServiceRequest())
    assert parsed == encode_metrics(data)
    assert json.loads(line) == json.loads(reference_json(encode_metrics(data)))
    return json.loads(line)


# ── the demo stream ──────────────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def demo_telemetry():
    harness = make_harness()
    harness.feed(demo_stream(3, sessions=3, turns=8)).close()
    return harness.spans, harness.reader.get_metrics_data()


def test_demo_spans_encode_to_the_sdk_request(demo_telemetry):
    spans, _ = demo_telemetry
    assert len(spans) > 100
    for start in range(0, len(spans), 97):  # batches of every size the processor may send
        assert_traces_equal(spans[start:start + 97])
    doc = assert_traces_equal(spans)
    encoded = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(encoded) == len(spans)
    assert {len(s["traceId"]) for s in encoded} == {32}
    assert any("links" in s for s in encoded) and any("events" in s for s in encoded)


def test_demo_metrics_with_exemplars_encode_to_the_sdk_request(demo_telemetry):
    _, data = demo_telemetry
    doc = assert_metrics_equal(data)
    metrics = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    assert any("histogram" in m for m in metrics) and any("sum" in m for m in metrics)
    exemplars = [e for m in metrics if "histogram" in m for p in m["histogram"]["dataPoints"]
                 for e in p.get("exemplars", ())]
    assert exemplars and all(len(e["spanId"]) == 16 for e in exemplars)


# ── edge cases ───────────────────────────────────────────────────────────────────────────────

EVERY_VALUE = {
    "str": "plain", "empty": "", "unicode": "naïve ☃ 𝄞 \u0000 \"quoted\"\n",
    "true": True, "false": False, "zero": 0, "negative": -7,
    "int64_max": 2**63 - 1, "int64_min": -2**63, "near_max": 2**63 - 2,
    "double": 0.1, "double_zero": 0.0, "negative_zero": -0.0, "big_double": 1e300,
    "tiny_double": 5e-324, "integral_double": 3.0, "nan": math.nan, "inf": math.inf,
    "minus_inf": -math.inf,
    "bytes": b"\x00\xffbin", "empty_bytes": b"",
    "strings": ("a", "", "ü"), "ints": (1, -2, 2**63 - 1), "doubles": (1.5, math.nan),
    "bools": (True, False), "empty_array": (), "mixed": ("a", 1, 2.5, True, None),
    "nested": {"inner": {"x": 1}, "list": [1, "two"]}, "empty_map": {}, "none": None,
}


def span_provider(resource=None, **limits):
    """A tracer provider (with span limits) and the in-memory exporter its spans end in."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource.create({"service.name": "edge"}),
                              span_limits=SpanLimits(**limits) if limits else None)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_every_attribute_value_type():
    provider, exporter = span_provider()
    tracer = provider.get_tracer("edge")
    with tracer.start_as_current_span("values", attributes=EVERY_VALUE) as span:
        span.add_event("event", EVERY_VALUE, timestamp=1)
    doc = assert_traces_equal(exporter.get_finished_spans())
    values = {a["key"]: a["value"] for a in
              doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]}
    assert values["int64_min"] == {"intValue": str(-2**63)}
    assert values["nan"] == {"doubleValue": "NaN"}
    assert values["empty"] == {"stringValue": ""}
    assert values["bytes"] == {"bytesValue": base64.b64encode(b"\x00\xffbin").decode()}
    assert values["empty_array"] == {"arrayValue": {}}
    assert values["none"] == {}


def beyond_int64_spans():
    """One span with an int, two integers outside int64 and an array holding one."""
    provider, exporter = span_provider()
    with provider.get_tracer("edge").start_as_current_span(
            "big", attributes={"ok": 1, "too_big": 2**63, "too_small": -2**63 - 1,
                               "array": (1, 2**64)}):
        pass
    return exporter.get_finished_spans()


def test_integers_beyond_int64_are_dropped_like_the_sdk_does(caplog):
    spans = beyond_int64_spans()
    with caplog.at_level(logging.CRITICAL):  # the SDK's own encoder logs a traceback each
        doc = assert_traces_equal(spans)
    keys = [a["key"] for a in doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]]
    assert keys == ["ok"]


def edge_case_spans():
    """A span of every kind with a remote parent, trace state, links, events, every status and
    every limit exceeded; then a root span without name, parent or attributes."""
    provider, exporter = span_provider(max_attributes=3, max_events=2, max_links=2,
                                       max_event_attributes=1, max_link_attributes=1)
    tracer = provider.get_tracer("edge", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.28.0",
                                 attributes={"scope.attr": "x"})
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "v1"), ("other", "o2")]))
    parent_context = trace.set_span_in_context(NonRecordingSpan(remote))
    links = [Link(SpanContext(5, 6, is_remote=False)),  # the oldest: dropped by the limit
             Link(SpanContext(7, 8, is_remote=False)),
             Link(SpanContext(2**128 - 1, 2**64 - 1, is_remote=True), {"a": 1, "b": 2})]
    for kind in SpanKind:
        span = tracer.start_span(f"k{kind.value}", context=parent_context, kind=kind,
                                 links=links, attributes={"a": 1, "b": 2, "c": 3, "d": 4},
                                 start_time=1_700_000_000_000_000_001)
        for i in range(3):
            span.add_event(f"e{i}", {"x": i, "y": i}, timestamp=1_700_000_000_000_000_002 + i)
        span.set_status(Status(StatusCode.ERROR, "boom ☃") if kind is SpanKind.CLIENT
                        else Status(StatusCode.OK) if kind is SpanKind.SERVER
                        else Status(StatusCode.UNSET))
        span.end(end_time=1_700_000_000_000_000_009)
    root = tracer.start_span("")  # a root span without a name, parent or attributes
    root.end()
    return exporter.get_finished_spans()


def test_links_events_status_kinds_trace_state_remote_parent_and_dropped_counts():
    doc = assert_traces_equal(edge_case_spans())
    scope_spans = doc["resourceSpans"][0]["scopeSpans"][0]
    assert scope_spans["schemaUrl"].endswith("1.28.0")
    assert scope_spans["scope"]["version"] == "1.2.3"
    first = scope_spans["spans"][0]
    assert first["traceState"] == "vendor=v1,other=o2"
    assert first["flags"] == 0x300 and first["links"][0]["flags"] == 0x100
    assert first["droppedAttributesCount"] == 1
    assert first["droppedEventsCount"] == 1 and first["droppedLinksCount"] == 1
    assert first["links"][1]["traceId"] == "f" * 32 and first["links"][1]["flags"] == 0x300


GROUPED_SCHEMA = "https://opentelemetry.io/schemas/1.27.0"


def grouped_spans():
    """Spans of two equal resources (different objects), another resource and two scopes,
    interleaved."""
    schema = GROUPED_SCHEMA
    # equal resources that are different objects group together; another stays apart
    providers = [span_provider(Resource({"service.name": "a"}, schema)),
                 span_provider(Resource({"service.name": "a"}, schema)),
                 span_provider(Resource({"service.name": "b"}))]
    spans = []
    for round_ in range(2):
        for i, (provider, exporter) in enumerate(providers):
            for scope in ("one", "two"):
                with provider.get_tracer(scope).start_as_current_span(f"{round_}-{i}-{scope}"):
                    pass
    for _, exporter in providers:
        spans.extend(exporter.get_finished_spans())
    spans.sort(key=lambda s: s.name)  # interleaved resources and scopes
    return spans


def test_resources_and_scopes_group_like_the_sdk_encoder():
    doc = assert_traces_equal(grouped_spans())
    assert len(doc["resourceSpans"]) == 2
    assert doc["resourceSpans"][0]["schemaUrl"] == GROUPED_SCHEMA


def test_text_that_is_not_unicode_goes_the_reference_way():
    provider, exporter = span_provider()
    with provider.get_tracer("edge").start_as_current_span("s", attributes={"bad": "a\ud800b",
                                                                            "good": "ok"}):
        pass
    spans = exporter.get_finished_spans()
    line = OTLPJsonEncoder().spans(spans)
    assert line == reference_json(encode_spans(spans))


def _metrics(temporality=None, exponential=False):
    reader = InMemoryMetricReader(preferred_temporality=temporality or {})
    views = [View(instrument_type=Histogram, instrument_name="exp*",
                  aggregation=ExponentialBucketHistogramAggregation())] if exponential else []
    resource = Resource({"service.name": "m", "k": ("a", "b")},
                        "https://opentelemetry.io/schemas/1.26.0")
    provider = MeterProvider(metric_readers=[reader], resource=resource, views=views)
    meter = provider.get_meter("edge", "9", schema_url="https://example.com/s",
                               attributes={"m": 1})
    tracer_provider, _ = span_provider()
    counter = meter.create_counter("c", unit="1", description="a counter ☃")
    updown = meter.create_up_down_counter("u")
    hist = meter.create_histogram("h", unit="s", explicit_bucket_boundaries_advisory=[0, 1.5, 10])
    exp = meter.create_histogram("exp_h")
    gauge = meter.create_gauge("g")
    meter.create_observable_gauge("og", [lambda options: [
        __import__("opentelemetry.metrics", fromlist=["Observation"]).Observation(2.5, {"o": "x"})]])
    counter.add(0, {"zero": True})
    counter.add(2**62, {"big": "yes"})
    updown.add(-3, {"s": "x"})
    updown.add(1.5, {"s": "y"})
    with tracer_provider.get_tracer("t").start_as_current_span("exemplar"):
        hist.record(0.0, {"k": "zero"})
        hist.record(12.0, {"k": "v"})
        hist.record(1.0, {"k": "v"})
        exp.record(3.0)
        exp.record(-2.0)
        exp.record(0)
    gauge.set(-1, {"g": 1})
    gauge.set(math.inf, {"g": 2})
    return reader.get_metrics_data()


@pytest.mark.parametrize("variant", ["cumulative", "delta", "exponential"])
def test_metric_points_of_every_kind(variant):
    temporality = {k: AggregationTemporality.DELTA for k in
                   (__import__("opentelemetry.sdk.metrics", fromlist=["Counter"]).Counter,
                    Histogram)} if variant == "delta" else None
    data = _metrics(temporality, exponential=variant == "exponential")
    doc = assert_metrics_equal(data)
    scope = doc["resourceMetrics"][0]["scopeMetrics"][0]
    assert scope["schemaUrl"] == "https://example.com/s"
    by_name = {m["name"]: m for m in scope["metrics"]}
    zero_point = [p for p in by_name["h"]["histogram"]["dataPoints"]
                  if p["attributes"][0]["value"] == {"stringValue": "zero"}][0]
    assert zero_point["sum"] == 0.0 and zero_point["min"] == 0.0  # optional fields stay
    assert by_name["c"]["sum"]["isMonotonic"] is True
    if variant == "exponential":
        assert "exponentialHistogram" in by_name["exp_h"]


def test_empty_inputs():
    assert json.loads(OTLPJsonEncoder().spans([])) == {}
    assert assert_metrics_equal(MetricsData(resource_metrics=[])) == {}


# ── the file exporters ───────────────────────────────────────────────────────────────────────

def test_file_exporters_write_one_request_per_line(tmp_path, demo_telemetry):
    spans, data = demo_telemetry
    span_exporter = OTLPJsonFileSpanExporter(tmp_path / "traces.jsonl")
    metric_exporter = OTLPJsonFileMetricExporter(tmp_path / "metrics.jsonl")
    assert span_exporter.export(spans[:10]).name == "SUCCESS"
    assert span_exporter.export(spans[10:]).name == "SUCCESS"
    assert metric_exporter.export(data).name == "SUCCESS"
    span_exporter.shutdown()
    metric_exporter.shutdown()
    lines = (tmp_path / "traces.jsonl").read_bytes().splitlines()
    assert [ParseDict(_base64_ids(json.loads(x)), ExportTraceServiceRequest()) for x in lines] \
        == [encode_spans(spans[:10]), encode_spans(spans[10:])]
    (line,) = (tmp_path / "metrics.jsonl").read_bytes().splitlines()
    assert ParseDict(_base64_ids(json.loads(line)), ExportMetricsServiceRequest()) \
        == encode_metrics(data)
    # after shutdown an export fails instead of raising
    assert span_exporter.export(spans[:1]).name == "FAILURE"
