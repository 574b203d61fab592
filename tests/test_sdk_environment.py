"""The OTel SDK configuration spec, tried as an operator would: OTEL_* variables mean what the
spec says, because the SDK's own exporters read them; the config file fills in the rest."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import make_harness
from otlp_receiver import OTLPReceiver

from kit_otel.export import exporters
from kit_otel.config import Settings, load_settings
from kit_otel.cli.generator import demo_stream
from kit_otel.export.pipeline import Pipeline, resource_for

_OTEL_VARS = [v for v in os.environ if v.startswith("OTEL_")]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in _OTEL_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def replay(settings: Settings, turns: int = 1) -> int:
    """Feed a small stream through a real pipeline; returns the spans it made."""
    events = demo_stream(2, sessions=1, turns=turns)
    pipe = Pipeline(settings)
    for event in events:
        pipe.feed(event)
    pipe.shutdown()
    return len(make_harness().feed(events).close().spans)


def settings_from_env(tmp_path, **overrides):
    return load_settings(env=os.environ, config_file=str(_empty_config(tmp_path)),
                         overrides={"metrics_exporter": ("none",), "output_dir": str(tmp_path),
                                    **overrides})


def _empty_config(tmp_path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


def test_default_protocol_is_http_protobuf_and_grpc_is_an_extra():
    assert Settings().otlp_protocol == "http/protobuf"
    exporter = exporters.otlp_exporter(Settings(), "traces")
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    import tomllib
    project = tomllib.loads(text)["project"]
    assert not any("grpc" in dep for dep in project["dependencies"])
    assert any("otlp-proto-grpc" in dep for dep in project["optional-dependencies"]["grpc"])


def test_grpc_without_the_extra_is_one_clear_line(monkeypatch):
    real = exporters._entry_point
    monkeypatch.setattr(exporters, "_entry_point", lambda signal, name: None
                        if name == "otlp_proto_grpc" else real(signal, name))
    with pytest.raises(ValueError, match=r"OTEL_TRACES_EXPORTER: .*kit-otel\[grpc\]"):
        load_settings(env={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "otlp"},
                      config_file=os.devnull)
    # http/protobuf, the default, needs nothing more
    assert load_settings(env={"OTEL_TRACES_EXPORTER": "otlp"}, config_file=os.devnull)


def test_signal_specific_endpoint_takes_precedence(clean_env, tmp_path):
    with OTLPReceiver(http=True) as rx:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing there
        clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rx.http_endpoint + "/v1/traces")
        expected = replay(settings_from_env(tmp_path, traces_exporter=("otlp",)))
        assert len(rx.spans()) == expected > 0


def test_signal_specific_protocol_takes_precedence(clean_env, tmp_path):
    with OTLPReceiver(http=True) as rx:
        clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.http_endpoint)
        clean_env.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc")
        clean_env.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", rx.grpc_endpoint)
        settings = settings_from_env(tmp_path, traces_exporter=("otlp",),
                                     metrics_exporter=("otlp",))
        expected = replay(settings)
        assert len(rx.spans()) == expected > 0
        assert rx.metric_sum("kit.llm.calls") > 0  # over gRPC, to the other port
        assert "grpc" in " ".join(h.get("user-agent", "") for h in rx.headers)


def test_headers_are_percent_decoded_and_signal_headers_win(clean_env, tmp_path):
    with OTLPReceiver(http=True) as rx:
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.http_endpoint)
        clean_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-team=ops")
        clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20traces")
        replay(settings_from_env(tmp_path, traces_exporter=("otlp",)))
        assert rx.spans()
        assert {h.get("authorization") for h in rx.headers} == {"Bearer traces"}


def test_config_file_endpoint_and_headers_are_used_and_decoded(tmp_path):
    with OTLPReceiver(http=True) as rx:
        config = tmp_path / "kit-otel.toml"
        config.write_text(f'otlp_endpoint = "{rx.http_endpoint}"\n'
                          'otlp_headers = "authorization=Bearer%20file"\n'
                          'traces_exporter = ["otlp"]\nmetrics_exporter = ["none"]\n'
                          f'output_dir = "{tmp_path}"\n')
        expected = replay(load_settings(env=os.environ, config_file=str(config)))
        assert len(rx.spans()) == expected > 0  # the file's base URL got its /v1/traces
        assert {h.get("authorization") for h in rx.headers} == {"Bearer file"}


def test_insecure_makes_a_scheme_less_grpc_endpoint_plaintext(clean_env, tmp_path):
    with OTLPReceiver() as rx:
        clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"127.0.0.1:{rx.grpc_port}")
        clean_env.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        expected = replay(settings_from_env(tmp_path, traces_exporter=("otlp",)))
        assert len(rx.spans()) == expected > 0


def test_resource_attributes_name_the_service(clean_env):
    assert resource_for(load_settings(env=os.environ, config_file=os.devnull)) \
        .attributes["service.name"] == "kit-otel"
    clean_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=ci-agent,deployment.environment=ci")
    resource = resource_for(load_settings(env=os.environ, config_file=os.devnull))
    assert resource.attributes["service.name"] == "ci-agent"
    assert resource.attributes["deployment.environment"] == "ci"
    assert resource.attributes["service.version"]
    clean_env.setenv("OTEL_SERVICE_NAME", "named")  # the spec: OTEL_SERVICE_NAME wins
    assert resource_for(load_settings(env=os.environ, config_file=os.devnull)) \
        .attributes["service.name"] == "named"


def test_sdk_disabled_exports_nothing_writes_nothing_opens_nothing(tmp_path):
    settings = load_settings(env={"OTEL_SDK_DISABLED": "true"}, config_file=os.devnull,
                             overrides={"output_dir": str(tmp_path / "out"),
                                        "prometheus_port": 0})
    pipe = Pipeline(settings)
    for event in demo_stream(1, sessions=1, turns=1):
        pipe.feed(event)
    pipe.shutdown()
    assert pipe.prometheus is None
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("variable, value, says", [
    ("OTEL_TRACES_EXPORTER", "zipkin", "unknown exporter 'zipkin'"),
    ("OTEL_METRICS_EXPORTER", "logging", "retired name for 'console'"),
    ("OTEL_LOGS_EXPORTER", "jaeger", "unknown exporter 'jaeger'"),
    ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "detla", "not cumulative, delta or"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "no OTLP/HTTP JSON exporter"),
])
def test_bad_settings_are_one_line_and_an_exit_code(tmp_path, variable, value, says):
    events = tmp_path / "events.ndjson"
    events.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env[variable] = value
    result = subprocess.run([sys.executable, "-m", "kit_otel.cli.main", "replay", "-q", str(events)],
                            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and variable in lines[0], result.stderr


@pytest.mark.parametrize("opt_in", ["", "http/dup,gen_ai_latest_experimental"])
def test_semconv_stability_opt_in_switches_the_exported_names(tmp_path, opt_in):
    """OTEL_SEMCONV_STABILITY_OPT_IN as an operator sets it, through `kit-otel replay` into the
    OTLP-JSON files: the newest GenAI names instead of today's, never both."""
    from kit_otel.model.decoder import encode_event
    events = tmp_path / "events.ndjson"
    events.write_bytes(b"".join(encode_event(e) for e in demo_stream(3, sessions=1, turns=6)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_TRACES_EXPORTER="otlp_json_file", OTEL_METRICS_EXPORTER="otlp_json_file",
               OTEL_SEMCONV_STABILITY_OPT_IN=opt_in)
    result = subprocess.run([sys.executable, "-m", "kit_otel.cli.main", "replay", "-q",
                             str(events)], env=env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    traces = (tmp_path / "kit-otel-out" / "traces.jsonl").read_text()
    metrics = (tmp_path / "kit-otel-out" / "metrics.jsonl").read_text()
    latest = bool(opt_in)
    assert ('"gen_ai.usage.cache_write.input_tokens"' in traces) is latest
    assert ('"gen_ai.usage.cache_creation.input_tokens"' in traces) is not latest
    assert ('"gen_ai.client.inference.usage.input_tokens"' in metrics) is latest
    assert ('"gen_ai.client.inference.usage.output_tokens"' in metrics) is latest
    assert ('"gen_ai.client.token.usage"' in metrics) is not latest
    assert '"gen_ai.client.operation.duration"' in metrics  # the same in both
