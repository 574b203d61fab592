"""The command line as a user runs it: demo, replay, summary, config."""

import json
import os
import subprocess
import sys

import pytest

from kit_otel.config import load_settings

KIT_OTEL = [sys.executable, "-m", "kit_otel.cli.main"]


def run(args, cwd, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    full_env.update(env or {})
    return subprocess.run(KIT_OTEL + args, cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo")
    result = run(["demo", "--port", "0", "--save-events", "events.ndjson"], cwd)
    assert result.returncode == 0, result.stderr
    return cwd, result


def test_demo_prints_a_useful_summary(demo):
    _, result = demo
    out = result.stdout
    for needle in ("Per turn", "Per model", "Span tree of the richest turn", "invoke_agent kit",
                   "execute_tool", "anthropic/claude-sonnet-4-5-20250929", "subagent", "error",
                   "OTLP-JSON written", "Prometheus metrics were served at http://127.0.0.1:",
                   "└─ invoke_agent subagent", "│     ├─ chat"):  # the tree shows the nesting
        assert needle in out, needle
    assert "3 session(s), 18 turn(s)" in out


def test_demo_writes_otlp_json_files_the_collector_can_read(demo):
    cwd, _ = demo
    traces = (cwd / "kit-otel-demo" / "traces.jsonl").read_text().splitlines()
    metrics = (cwd / "kit-otel-demo" / "metrics.jsonl").read_text().splitlines()
    assert traces and metrics
    names = set()
    for line in traces:
        request = json.loads(line)
        for rs in request["resourceSpans"]:
            attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
            assert attrs["service.name"] == {"stringValue": "kit-otel"}
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    assert len(span["traceId"]) == 32 and int(span["traceId"], 16)
                    assert len(span["spanId"]) == 16
                    assert isinstance(span["kind"], int)  # enums as integers
                    names.add(span["name"])
    assert {"invoke_agent kit", "invoke_agent subagent", "execute_tool subagent",
            "kit.session_start", "kit.model_change"} <= names
    metric_names = {m["name"] for line in metrics for rm in json.loads(line)["resourceMetrics"]
                    for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    assert {"kit.tokens", "kit.cost.usd", "gen_ai.client.operation.duration"} <= metric_names


def test_saved_events_summarise_to_the_same_numbers(demo):
    cwd, result = demo
    again = run(["summary", "events.ndjson"], cwd)
    assert again.returncode == 0, again.stderr

    def per_model(text):
        block = text.split("Per model")[1].split("Span tree")[0]
        return [line for line in block.splitlines() if "/" in line or "total" in line]

    assert per_model(again.stdout) == per_model(result.stdout)


def _spans_of(traces_jsonl):
    spans = set()
    for line in traces_jsonl.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: a["value"] for a in span.get("attributes", [])}
                    spans.add((span["name"], span["startTimeUnixNano"], span["endTimeUnixNano"],
                               json.dumps(attrs.get("gen_ai.conversation.id")),
                               json.dumps(attrs.get("gen_ai.usage.input_tokens"))))
    return spans


def test_replay_of_the_saved_demo_events_gives_the_demo_spans(demo, tmp_path):
    cwd, result = demo
    sessions = cwd / "kit-otel-demo" / "sessions"
    assert f"KIT_OTEL_SESSIONS_ROOT={sessions.resolve()}" in result.stdout
    again = run(["replay", "-q", str(cwd / "events.ndjson")], tmp_path,
                env={"OTEL_TRACES_EXPORTER": "otlp_json_file", "OTEL_METRICS_EXPORTER": "none",
                     "KIT_OTEL_OUTPUT_DIR": str(tmp_path / "out"),
                     "KIT_OTEL_SESSIONS_ROOT": str(sessions)})
    assert again.returncode == 0, again.stderr
    demo_spans = _spans_of(cwd / "kit-otel-demo" / "traces.jsonl")
    assert len(demo_spans) > 80
    assert _spans_of(tmp_path / "out" / "traces.jsonl") == demo_spans


def test_replay_reports_bad_lines_and_keeps_going(tmp_path, demo):
    cwd, _ = demo
    good = (cwd / "events.ndjson").read_bytes().splitlines(keepends=True)
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(b"".join(good[:50]) + b"{oops\n" + b"".join(good[50:]))
    result = run(["replay", str(mixed)], tmp_path,
                 env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    assert result.returncode == 0, result.stderr
    assert f"{mixed}:51: malformed JSON" in result.stderr
    assert "1 rejected line(s)" in result.stdout
    missing = run(["replay", str(tmp_path / "nope.ndjson")], tmp_path,
                  env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    assert missing.returncode == 3 and "no such file" in missing.stderr


def test_replay_and_summary_read_a_pipe(tmp_path, demo):
    cwd, _ = demo
    data = (cwd / "events.ndjson").read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    for command in ("replay", "summary"):
        result = subprocess.run(KIT_OTEL + [command, "-"], input=data + b"{broken\n", cwd=tmp_path,
                                env=env, capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode()
        assert b"3 session(s), 18 turn(s)" in result.stdout
        assert b"1 rejected line(s)" in result.stdout


def test_help_explains_each_command_with_an_example(tmp_path):
    for command in ("demo", "replay", "summary", "config"):
        result = run([command, "--help"], tmp_path)
        assert result.returncode == 0
        assert "example" in result.stdout


def test_config_shows_values_and_their_sources(tmp_path):
    config = tmp_path / "kit-otel.toml"
    config.write_text('otlp_protocol = "http/protobuf"\nidle_timeout_s = 60\n'
                      'capture_content = true\n[[budgets]]\nwindow = "day"\nscope = "global"\n'
                      'usd = 12.5\n')
    result = run(["--config", str(config), "config"], tmp_path,
                 env={"OTEL_SERVICE_NAME": "agents-ci", "KIT_OTEL_IDLE_TIMEOUT_S": "30"})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "agents-ci" in rows["service_name"] and "env:OTEL_SERVICE_NAME" in rows["service_name"]
    assert "30.0" in rows["idle_timeout_s"] and "env:KIT_OTEL_IDLE_TIMEOUT_S" in rows["idle_timeout_s"]
    assert "http/protobuf" in rows["otlp_protocol"] and f"file:{config}" in rows["otlp_protocol"]
    assert "http://localhost:4318" in rows["otlp_endpoint"]
    assert "True" in rows["capture_content"] and "file:" in rows["capture_content"]
    assert "default" in rows["prometheus_host"]


def test_settings_precedence_and_errors(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("max_tools = 5\nprometheus_port = 1\n")
    settings = load_settings(env={"KIT_OTEL_PROMETHEUS_PORT": "2",
                                  "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
                             config_file=str(config), overrides={"prometheus_port": 3})
    assert (settings.max_tools, settings.prometheus_port, settings.capture_content) == (5, 3, True)
    assert settings.sources["prometheus_port"] == "command line"
    for value, captured in (("NO_CONTENT", False), ("SPAN_ONLY", True), ("span_and_event", True)):
        env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}
        assert load_settings(env=env).capture_content is captured
    with pytest.raises(ValueError, match="setting max_tools from env:KIT_OTEL_MAX_TOOLS"):
        load_settings(env={"KIT_OTEL_MAX_TOOLS": "many"})
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings(env={}, config_file=str(config))
