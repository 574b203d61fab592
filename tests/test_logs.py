"""The logs signal: one record per lifecycle moment, trace-correlated, content only when captured;
delivered to a real OTLP receiver and through a real Collector's logs pipeline."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes import error_attributes, exception_attributes
from ops._common import require_otelcol
from otlp_receiver import OTLPReceiver

import scenarios as sc
from ports import free_port

from kit_otel.translate import logs
from kit_otel.config import load_settings
from kit_otel.translate.content import ContentPolicy
from kit_otel.cli.generator import Step, Subagent, Tool, Usage, demo_stream
from kit_otel.translate.logs import EventLog
from kit_otel.export.pipeline import Pipeline
from kit_otel.translate.translator import Translator, TranslatorSettings

REPO = Path(__file__).resolve().parents[1]


def translate(events, **settings):
    spans, records = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(records))
    translator = Translator(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]),
                            TranslatorSettings(sessions_root=None, **settings),
                            EventLog(logger_provider.get_logger("test")))
    for event in events:
        translator.process(event)
    translator.close()
    return spans.get_finished_spans(), [r.log_record for r in records.get_finished_logs()]


def lifecycle():
    s = sc.script()
    s.session_start()
    sub = Subagent(task="look", tools=[Tool("grep", "search")], child_usage=[Usage(10, 2)])
    s.turn("first", [Step(retries=["429 Too Many Requests"], text="a", usage=Usage(100, 10, 50, 5),
                          tools=[Tool("bash", "execute", {"command": "ls"}, output="files"),
                                 Tool("subagent", "agent", subagent=sub)]),
                     Step(text="done", usage=Usage(200, 20))],
           compaction=(0.9, 200000))
    s.model_change("openai", "gpt-5-mini")
    s.turn("second", [Step(error="provider error: 529 overloaded")])
    return s.events


def test_one_record_per_lifecycle_moment_in_its_spans_context():
    spans, records = translate(lifecycle())
    names = [r.event_name for r in records]
    for name in logs.ALL_EVENTS:
        assert name in names, name
    assert names.count(logs.EVENT_TURN_END) == 2
    assert names.count(logs.EVENT_INFERENCE_DETAILS) == 4  # 2 + the subagent's + the failed one
    assert names.count(logs.EVENT_TOOL_RESULT) == 3  # bash, subagent, the subagent's grep
    by_id = {(s.context.trace_id, s.context.span_id): s for s in spans}
    for record in records:
        if record.event_name == logs.EVENT_MODEL_CHANGE:
            continue  # between turns: no span to belong to
        span = by_id[(record.trace_id, record.span_id)]  # every record names a real span
        assert record.timestamp >= span.start_time
    turn_end = next(r for r in records if r.event_name == logs.EVENT_TURN_END)
    turn = by_id[(turn_end.trace_id, turn_end.span_id)]
    assert turn.name == "invoke_agent kit" and turn_end.timestamp == turn.end_time
    assert turn_end.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == \
        turn.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS]
    call = next(r for r in records if r.event_name == logs.EVENT_INFERENCE_DETAILS)
    assert call.attributes[ga.GEN_AI_OPERATION_NAME] == "chat"
    assert call.attributes[ga.GEN_AI_RESPONSE_MODEL]
    failed = [r for r in records if r.event_name == logs.EVENT_INFERENCE_DETAILS and
              error_attributes.ERROR_TYPE in r.attributes]
    assert len(failed) == 1 and failed[0].severity_number == logs.WARN
    exception = next(r for r in records if r.event_name == logs.EVENT_OPERATION_EXCEPTION)
    assert exception.severity_number == logs.WARN
    assert exception.attributes[error_attributes.ERROR_TYPE] == "overloaded"
    # the exception event requires exception.type where exception.message is left out
    # (content off): semantic-conventions-genai, gen-ai-exceptions.md
    assert exception_attributes.EXCEPTION_MESSAGE not in exception.attributes
    assert exception.attributes[exception_attributes.EXCEPTION_TYPE] == "overloaded"
    _, captured = translate(lifecycle(), content=ContentPolicy(capture=True))
    exception = next(r for r in captured if r.event_name == logs.EVENT_OPERATION_EXCEPTION)
    assert "529 overloaded" in exception.attributes[exception_attributes.EXCEPTION_MESSAGE]


def test_content_only_when_captured():
    _, off = translate(lifecycle())
    assert not any(key in r.attributes for r in off for key in (
        ga.GEN_AI_INPUT_MESSAGES, ga.GEN_AI_OUTPUT_MESSAGES, ga.GEN_AI_TOOL_CALL_ARGUMENTS,
        ga.GEN_AI_TOOL_CALL_RESULT))
    assert all(r.body is None for r in off)
    _, on = translate(lifecycle(), content=ContentPolicy(capture=True))
    turn_end = next(r for r in on if r.event_name == logs.EVENT_TURN_END)
    assert json.loads(turn_end.attributes[ga.GEN_AI_INPUT_MESSAGES])[0]["parts"][0]["content"] \
        == "first"
    bash = next(r for r in on if r.event_name == logs.EVENT_TOOL_RESULT and
                r.attributes[ga.GEN_AI_TOOL_NAME] == "bash")
    assert json.loads(bash.attributes[ga.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"command": "ls"}
    assert bash.attributes[ga.GEN_AI_TOOL_CALL_RESULT] == "files"


def test_logs_are_off_by_default():
    settings = load_settings(env={}, config_file=os.devnull)
    assert settings.logs_exporter == ("none",)


def _pipeline_to(rx: OTLPReceiver, tmp_path, protocol: str) -> Pipeline:
    settings = load_settings(env=rx.env(protocol), config_file=os.devnull, overrides={
        "traces_exporter": ("otlp",), "metrics_exporter": ("none",), "logs_exporter": ("otlp",),
        "output_dir": str(tmp_path)})
    return Pipeline(settings)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_logs_reach_a_real_otlp_receiver(tmp_path, monkeypatch, protocol):
    with OTLPReceiver(http=True) as rx:
        for key, value in rx.env(protocol).items():
            monkeypatch.setenv(key, value)
        pipe = _pipeline_to(rx, tmp_path, protocol)
        events = demo_stream(3, sessions=1, turns=3)
        for event in events:
            pipe.feed(event)
        pipe.shutdown()
        records = rx.log_records()
        turn_ends = [r for r in records if r.event_name == logs.EVENT_TURN_END]
        # a subagent's own agent_end (agent "subagent", routed by parent_tool_call_id) ends no turn
        assert len(turn_ends) == sum(1 for e in events if e.type == "agent_end" and
                                     e.session_path and not e.parent_tool_call_id)
        turn_spans = {s.span_id: s for s in rx.spans() if s.name == "invoke_agent kit"}
        for record in turn_ends:
            assert record.span_id in turn_spans  # correlated with the exported span
            assert record.trace_id == turn_spans[record.span_id].trace_id
            assert record.time_ns == turn_spans[record.span_id].end_ns
        assert records[0].resource["service.name"] == "kit-otel"


def test_logs_to_otlp_json_file(tmp_path):
    settings = load_settings(env={}, config_file=os.devnull, overrides={
        "traces_exporter": ("none",), "metrics_exporter": ("none",),
        "logs_exporter": ("otlp_json_file",), "output_dir": str(tmp_path)})
    pipe = Pipeline(settings)
    for event in demo_stream(3, sessions=1, turns=2):
        pipe.feed(event)
    pipe.shutdown()
    lines = (tmp_path / "logs.jsonl").read_text().splitlines()
    names = {r["eventName"] for line in lines for rl in json.loads(line)["resourceLogs"]
             for sl in rl["scopeLogs"] for r in sl["logRecords"]}
    assert logs.EVENT_TURN_END in names and logs.EVENT_INFERENCE_DETAILS in names


# ── a real Collector ────────────────────────────────────────────────────────────────────────

def test_logs_pass_a_real_collectors_logs_pipeline(tmp_path):
    otelcol = require_otelcol()
    with OTLPReceiver() as backend:
        port = free_port()
        config = tmp_path / "collector.yaml"
        config.write_text(f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    timeout: 200ms
exporters:
  otlp:
    endpoint: 127.0.0.1:{backend.grpc_port}
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
""")
        proc = subprocess.Popen([otelcol, "--config", str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            settings = load_settings(env={}, config_file=os.devnull, overrides={
                "traces_exporter": ("none",), "metrics_exporter": ("none",),
                "logs_exporter": ("otlp",), "otlp_endpoint": f"http://127.0.0.1:{port}",
                "otlp_protocol": "http/protobuf", "output_dir": str(tmp_path)})
            _wait_for_port(port, proc)
            pipe = Pipeline(settings)
            for event in demo_stream(5, sessions=1, turns=2):
                pipe.feed(event)
            pipe.shutdown()
            backend.wait_for(lambda: any(r.event_name == logs.EVENT_TURN_END
                                         for r in backend.log_records()), timeout=60,
                             message="no kit.turn.end record came out of the Collector")
            record = next(r for r in backend.log_records() if r.event_name == logs.EVENT_TURN_END)
            assert record.trace_id and record.span_id
            assert record.resource["service.name"] == "kit-otel"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_logs_pass_the_shipped_single_node_collectors_logs_pipeline(tmp_path):
    """collector-config/single-node.yaml as shipped (only its ports overlaid): every record goes
    through its logs pipeline (memory_limiter, batch, …) to KIT_LOGS_OTLP_ENDPOINT — Loki's OTLP
    endpoint in production, a real OTLP/HTTP receiver here — still trace-correlated."""
    from ops._common import free_port
    from ops.collector_stack import (Collector, merge, otlp_receiver_overlay, shipped,
                                     telemetry_overlay)
    with OTLPReceiver(http=True) as loki:
        grpc, http = free_port(), free_port()
        collector = Collector(
            "single-node", tmp_path, [shipped("single-node.yaml")],
            merge(otlp_receiver_overlay(grpc, http), telemetry_overlay(free_port()),
                  {"exporters": {"prometheus": {"endpoint": f"127.0.0.1:{free_port()}"}}}),
            env={"KIT_LOGS_OTLP_ENDPOINT": loki.http_endpoint,
                 "KIT_TRACES_OTLP_ENDPOINT": f"127.0.0.1:{loki.grpc_port}"}).start()
        try:
            settings = load_settings(env={}, config_file=os.devnull, overrides={
                "traces_exporter": ("otlp",), "metrics_exporter": ("none",),
                "logs_exporter": ("otlp",), "otlp_endpoint": f"http://127.0.0.1:{http}",
                "otlp_protocol": "http/protobuf", "output_dir": str(tmp_path)})
            events = demo_stream(5, sessions=1, turns=3)
            turns = sum(1 for e in events if e.type == "agent_end" and e.session_path
                        and not e.parent_tool_call_id)
            pipe = Pipeline(settings)
            for event in events:
                pipe.feed(event)
            pipe.shutdown()
            loki.wait_for(lambda: sum(r.event_name == logs.EVENT_TURN_END
                                      for r in loki.log_records()) == turns, timeout=60,
                          message="the single-node Collector did not deliver every turn's record")
            records = loki.log_records()
            assert {logs.EVENT_INFERENCE_DETAILS, logs.EVENT_TOOL_RESULT} <= \
                {r.event_name for r in records}
            # the turn spans came through the traces pipeline to the same backend
            loki.wait_for(lambda: all(r.span_id in {s.span_id for s in loki.spans()}
                                      for r in records if r.event_name == logs.EVENT_TURN_END),
                          timeout=60, message="the turn spans did not arrive")
            spans = {s.span_id: s for s in loki.spans()}
            for record in records:
                if record.event_name == logs.EVENT_TURN_END:
                    assert record.trace_id == spans[record.span_id].trace_id
            assert records[0].resource["service.name"] == "kit-otel"
        finally:
            collector.stop()


def _wait_for_port(port: int, proc: subprocess.Popen) -> None:
    import socket
    deadline = time.monotonic() + 120  # the first run unpacks the binary
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the Collector exited: {proc.stderr.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the Collector did not open its port")


@pytest.mark.parametrize("name", ["single-node.yaml", "agent.yaml", "gateway.yaml"])
def test_repo_collector_configs_have_a_logs_pipeline_from_the_otlp_receiver(name):
    import yaml
    config = yaml.safe_load((REPO / "collector-config" / name).read_text())
    logs_pipeline = config["service"]["pipelines"]["logs"]
    assert logs_pipeline["receivers"] == ["otlp"]
    assert logs_pipeline["processors"][0] == "memory_limiter"
    # the same processors as the metrics pipeline, less the metrics-only one
    metrics = [p for p in config["service"]["pipelines"]["metrics"]["processors"]
               if p != "deltatocumulative"]
    assert logs_pipeline["processors"] == metrics


@pytest.mark.parametrize("name", ["single-node.yaml", "agent.yaml", "gateway.yaml"])
def test_repo_collector_configs_validate_with_their_logs_pipeline(name):
    otelcol = require_otelcol()
    result = subprocess.run([otelcol, "validate", "--config",
                             str(REPO / "collector-config" / name)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
