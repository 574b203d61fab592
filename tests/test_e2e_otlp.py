"""`kit-otel replay` over the wire to real OTLP receivers (gRPC and HTTP/protobuf): what arrives
equals the in-memory result of the same stream, span for span and total for total."""

import os
import subprocess
import sys
from collections import Counter

import pytest
from harness import make_harness
from otlp_receiver import OTLPReceiver

from kit_otel.model.decoder import decode_line, encode_event
from kit_otel.cli.generator import demo_stream

KEY_ATTRS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "kit.cost.usd",
             "kit.turn.cost_usd", "kit.turn.stop_reason", "gen_ai.tool.call.id",
             "gen_ai.conversation.id", "kit.turn.tool_call_count", "kit.tool.blocked")
COUNTERS = ("kit.tokens", "kit.cost.usd", "kit.turns", "kit.tool.calls", "kit.llm.calls",
            "kit.errors", "kit.retries", "kit.subagents", "kit.sessions", "kit_otel.events")


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("e2e") / "events.ndjson"
    events = demo_stream(9, sessions=3, turns=6)
    path.write_bytes(b"".join(encode_event(e) for e in events))
    expected = make_harness().feed(decode_line(line) for line in path.read_bytes().splitlines())
    expected.close()
    return path, expected


def span_key_memory(span, names_by_id):
    parent = names_by_id.get(span.parent.span_id) if span.parent else ""
    attrs = tuple((k, span.attributes.get(k)) for k in KEY_ATTRS)
    return (span.name, span.kind.value, span.start_time, span.end_time, parent,
            span.status.status_code.value, len(span.events), attrs)


def span_key_wire(span, names_by_id):
    parent = names_by_id.get(span.parent_span_id, "") if span.parent_span_id else ""
    attrs = tuple((k, span.attributes.get(k)) for k in KEY_ATTRS)
    # OTLP numbers span kinds from 1 (INTERNAL) where the Python API numbers them from 0
    return (span.name, span.kind - 1, span.start_ns, span.end_ns, parent, span.status_code,
            len(span.events), attrs)


def replay(path, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update(env_extra)
    env.update({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                "KIT_OTEL_SESSIONS_ROOT": str(path.parent / "no-sessions")})
    return subprocess.run([sys.executable, "-m", "kit_otel.cli.main", "replay", "-q", str(path)],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_replay_to_a_real_receiver_matches_the_in_memory_run(stream, protocol):
    path, expected = stream
    with OTLPReceiver(http=protocol != "grpc") as rx:
        result = replay(path, rx.env(protocol))
        assert result.returncode == 0, result.stderr
        received = rx.spans()
        mem_names = {s.context.span_id: s.name for s in expected.spans}
        wire_names = {s.span_id: s.name for s in received}
        want = Counter(span_key_memory(s, mem_names) for s in expected.spans)
        got = Counter(span_key_wire(s, wire_names) for s in received)
        assert len(received) == len(expected.spans)
        assert got == want
        assert all(s.resource.get("service.name") == "kit-otel" for s in received)
        for name in COUNTERS:
            assert rx.metric_sum(name) == pytest.approx(expected.total(name), abs=1e-9), name
        assert rx.metric_sum("kit.tokens", type="cache_read", agent="main") == \
            expected.total("kit.tokens", type="cache_read", agent="main")
        # histograms arrive too, with the same observation counts
        series = rx.metric_series("gen_ai.client.operation.duration")  # latest point per series
        wire_counts = sum(p.count for p in series.values())
        assert wire_counts == expected.count("gen_ai.client.operation.duration") > 0


def test_a_replay_larger_than_the_span_queue_loses_no_span(monkeypatch, tmp_path):
    """The SDK's batch processor drops spans beyond its queue: a fast replay drains it first."""
    import kit_otel.export.pipeline as pipeline_module
    from kit_otel.config import load_settings
    monkeypatch.setattr(pipeline_module, "_SPAN_QUEUE", 64)
    monkeypatch.setattr(pipeline_module, "_FLUSH_EVERY_SPANS", 32)
    monkeypatch.setattr(pipeline_module, "_FLUSH_CHECK_EVERY", 16)
    events = demo_stream(4, sessions=6, turns=12)
    expected = make_harness().feed(events).close()
    assert len(expected.spans) > 4 * 64
    with OTLPReceiver() as rx:
        settings = load_settings(env={}, overrides={
            "traces_exporter": ("otlp",), "metrics_exporter": ("none",),
            "otlp_endpoint": rx.grpc_endpoint, "otlp_protocol": "grpc",
            "output_dir": str(tmp_path)})
        pipe = pipeline_module.Pipeline(settings)
        for event in events:
            pipe.feed(event)
        pipe.shutdown()
        assert len(rx.spans()) == len(expected.spans)
