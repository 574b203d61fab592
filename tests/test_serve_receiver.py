"""The test OTLP receiver itself: real OTel SDK exporters over gRPC and HTTP, failures, outages."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from otlp_receiver import OTLPReceiver


@pytest.fixture
def receiver():
    with OTLPReceiver(http=True) as rx:
        yield rx


def test_grpc_and_http_spans(receiver):
    for exporter in (GrpcSpans(endpoint=receiver.grpc_endpoint, insecure=True),
                     HttpSpans(endpoint=receiver.http_endpoint + "/v1/traces")):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("outer", attributes={"i": 1, "tags": ["a", "b"]}):
            with tracer.start_as_current_span("inner") as inner:
                inner.add_event("e", {"k": "v"})
        provider.shutdown()
    spans = receiver.spans()
    assert [s.name for s in spans] == ["inner", "outer", "inner", "outer"]
    outer, inner = spans[1], spans[0]
    assert outer.parent_span_id == "" and inner.parent_span_id == outer.span_id
    assert inner.trace_id == outer.trace_id and len(outer.trace_id) == 32
    assert outer.attributes == {"i": 1, "tags": ["a", "b"]}
    assert inner.events[0][0] == "e" and inner.events[0][2] == {"k": "v"}


def test_metric_latest_value(receiver):
    reader = PeriodicExportingMetricReader(GrpcMetrics(endpoint=receiver.grpc_endpoint,
                                                       insecure=True),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("m").create_counter("kit.tokens")
    counter.add(5, {"type": "input"})
    counter.add(2, {"type": "output"})
    provider.force_flush()
    counter.add(10, {"type": "input"})
    provider.force_flush()
    provider.shutdown()
    assert receiver.metric_value("kit.tokens", {"type": "input"}) == 15
    assert receiver.metric_value("kit.tokens", {"type": "output"}) == 2
    assert receiver.metric_value("kit.tokens", {"type": "nope"}) is None
    assert receiver.metric_sum("kit.tokens") == 17
    assert receiver.metric_sum("kit.tokens", type="output") == 2


def test_fail_with_and_outage(receiver):
    exporter = GrpcSpans(endpoint=receiver.grpc_endpoint, insecure=True, timeout=1)
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    tracer.start_span("x").end()

    receiver.fail_with("INVALID_ARGUMENT")  # not retryable: fails at once
    span = tracer.start_span("refused")
    span.end()
    assert exporter.export([span]) == SpanExportResult.FAILURE
    assert receiver.refused >= 1 and receiver.spans() == []

    receiver.fail_with(None)
    receiver.stop()
    assert exporter.export([span]) == SpanExportResult.FAILURE
    receiver.start()
    assert receiver.wait_for(lambda: exporter.export([span]) == SpanExportResult.SUCCESS,
                             timeout=20, interval=0.2)
    assert [s.name for s in receiver.spans()] == ["refused"]
    exporter.shutdown()
