"""The direct OTLP protobuf encoder writes the very bytes of the SDK's own encoding
(`encode_spans(spans).SerializeToString()`): on the demo stream and on edge cases of every
field, the same bytes and, parsed, the same ExportTraceServiceRequest."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanContext

from harness import make_harness
from test_otlp_json import (EVERY_VALUE, beyond_int64_spans, edge_case_spans, grouped_spans,
                            span_provider)
from kit_otel.cli.generator import demo_stream
from kit_otel.export.otlp_proto import OTLPProtoEncoder


def assert_bytes_equal(spans, encoder: OTLPProtoEncoder | None = None) -> ExportTraceServiceRequest:
    ours = (encoder or OTLPProtoEncoder()).spans(spans)
    reference = encode_spans(spans)
    assert ExportTraceServiceRequest.FromString(ours) == reference
    assert ours == reference.SerializeToString()
    return reference


def test_demo_spans_encode_to_the_sdk_bytes():
    harness = make_harness()
    harness.feed(demo_stream(3, sessions=3, turns=8)).close()
    spans = harness.spans
    assert len(spans) > 100
    encoder = OTLPProtoEncoder()  # one encoder for every batch, as an exporter keeps it
    for start in range(0, len(spans), 97):
        assert_bytes_equal(spans[start: start + 97], encoder)
    assert_bytes_equal(spans, encoder)
    assert encoder.spans([]) == encode_spans([]).SerializeToString() == b""


def test_every_attribute_value_type_twice_over_the_cache():
    provider, exporter = span_provider()
    tracer = provider.get_tracer("edge")
    for _ in range(2):  # the second span's pairs come from the cache
        with tracer.start_as_current_span("values", attributes=EVERY_VALUE) as span:
            span.add_event("event", EVERY_VALUE, timestamp=1)
            span.set_attribute("flag", 1)  # an int and a bool of equal value stay apart
            span.set_attribute("flag2", True)
    encoder = OTLPProtoEncoder()
    spans = exporter.get_finished_spans()
    assert_bytes_equal(spans[:1], encoder)
    assert_bytes_equal(spans, encoder)


def test_the_cache_keeps_one_true_and_one_point_zero_apart_under_one_key():
    provider, exporter = span_provider()
    tracer = provider.get_tracer("edge")
    for value in (1, True, 1.0, 1, True, 0, False, 0.0, -0.0):  # equal as dict keys
        with tracer.start_as_current_span("s", attributes={"flag": value}):
            pass
    assert_bytes_equal(exporter.get_finished_spans(), OTLPProtoEncoder())


def test_resources_equal_by_value_but_not_as_dict_keys_stay_apart_like_the_sdk():
    """Resource's == takes {"x": 1} and {"x": True} for one; its hash, which the SDK's
    encoder groups by, does not."""
    providers = [span_provider(Resource({"x": value})) for value in (1, True, 1.0)]
    spans = []
    for provider, exporter in providers:
        with provider.get_tracer("t").start_as_current_span("s"):
            pass
        spans.extend(exporter.get_finished_spans())
    assert len(assert_bytes_equal(spans).resource_spans) == 3


def test_an_attribute_nested_deeper_than_protobuf_parses_is_sent_the_sdk_way():
    """The gRPC hook parses our bytes back; protobuf refuses ~32 levels of nesting that the
    SDK's own message carries, so such a batch is built by the SDK instead (never stuck)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import ReadableSpan

    from kit_otel.export.otlp_proto import with_direct_encoding
    deep = "leaf"
    for _ in range(40):
        deep = {"k": [deep]}
    span = ReadableSpan("deep", SpanContext(1, 2, is_remote=False), attributes={"deep": deep},
                        resource=Resource({}))
    exporter = with_direct_encoding(OTLPSpanExporter)(endpoint="http://127.0.0.1:9",
                                                       insecure=True)
    try:
        assert exporter._translate_data([span]) == encode_spans([span])
    finally:
        exporter.shutdown()


def test_integers_beyond_int64_are_dropped_like_the_sdk_does(caplog):
    spans = beyond_int64_spans()
    with caplog.at_level(logging.CRITICAL):  # the SDK's own encoder logs a traceback each
        request = assert_bytes_equal(spans)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert [a.key for a in span.attributes] == ["ok"]


def test_links_events_status_kinds_trace_state_remote_parent_and_dropped_counts():
    request = assert_bytes_equal(edge_case_spans())
    first = request.resource_spans[0].scope_spans[0].spans[0]
    assert first.flags == 0x300 and first.dropped_events_count == 1
    assert first.trace_state == "vendor=v1,other=o2"


def test_resources_and_scopes_group_like_the_sdk_encoder():
    assert len(assert_bytes_equal(grouped_spans()).resource_spans) == 2


@pytest.mark.parametrize("bad", ["a\ud800b", "\udfff"])
def test_text_that_is_not_unicode_goes_the_sdk_way(bad, caplog):
    provider, exporter = span_provider()
    with provider.get_tracer("edge").start_as_current_span("s", attributes={"bad": bad,
                                                                            "good": "ok"}):
        pass
    spans = exporter.get_finished_spans()
    with caplog.at_level(logging.CRITICAL):
        try:
            reference = encode_spans(spans).SerializeToString()
        except Exception as exc:  # noqa: BLE001 - then ours must fail the same way
            with pytest.raises(type(exc)):
                OTLPProtoEncoder().spans(spans)
            return
        assert OTLPProtoEncoder().spans(spans) == reference


def test_the_grpc_span_exporter_sends_the_sdk_request_built_directly():
    """kit-otel's `otlp` traces exporter over gRPC is the SDK's, with only its request built
    by the direct encoder; a receiver gets the very request the SDK would have sent. If an SDK
    release renamed the hook, this fails instead of the speed quietly going."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    from otlp_receiver import OTLPReceiver
    from kit_otel.config import Settings
    from kit_otel.export import exporters
    from kit_otel.export.otlp_proto import with_direct_encoding
    direct = with_direct_encoding(OTLPSpanExporter)
    assert direct is not OTLPSpanExporter and issubclass(direct, OTLPSpanExporter)
    assert direct.__name__ == "OTLPSpanExporter"
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import \
        OTLPSpanExporter as HTTPSpanExporter
    assert with_direct_encoding(HTTPSpanExporter) is HTTPSpanExporter  # no hook: the SDK's
    harness = make_harness()
    harness.feed(demo_stream(5, sessions=2, turns=4)).close()
    spans = harness.spans
    with OTLPReceiver() as receiver:
        exporter = exporters.otlp_exporter(Settings(otlp_protocol="grpc",
                                                    otlp_endpoint=receiver.grpc_endpoint),
                                           "traces")
        assert type(exporter).__mro__[1] is OTLPSpanExporter
        try:
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert receiver.trace_requests == [encode_spans(spans)]
