"""User mistakes at the command line: one line naming what to change, a distinct exit code, never
a traceback; `replay`'s exit code says whether the telemetry arrived."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from otlp_receiver import OTLPReceiver

from kit_otel.cli import main as cli
from kit_otel.config import load_settings
from kit_otel.model.decoder import encode_event
from kit_otel.cli.generator import demo_stream
from kit_otel.export.pipeline import Pipeline
from kit_otel.cli.summary import RichestTurnKeeper, Summary

KIT_OTEL = [sys.executable, "-m", "kit_otel.cli.main"]
NO_EXPORT = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}


def _env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update(extra or {})
    return env


def run(args, cwd, env=None, timeout=120, **kw):
    return subprocess.run(KIT_OTEL + args, cwd=cwd, env=_env(env), capture_output=True,
                          text=True, timeout=timeout, **kw)


def _one_clean_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("kit-otel: ")]
    assert lines, result.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "events.ndjson"
    path.write_bytes(b"".join(encode_event(e) for e in demo_stream(5, sessions=2, turns=3)))
    return path


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# ── mistakes, each one line and its exit code ────────────────────────────────────────────────

@pytest.mark.parametrize("env,code,words", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, cli.EXIT_USAGE, "zipkin"),
    ({"OTEL_METRICS_EXPORTER": "statsd"}, cli.EXIT_USAGE, "statsd"),
    ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "none",
      "OTEL_METRIC_EXPORT_INTERVAL": "-5"}, cli.EXIT_USAGE, "OTEL_METRIC_EXPORT_INTERVAL: -5 is"),
    ({"KIT_OTEL_IDLE_TIMEOUT_S": "inf"}, cli.EXIT_USAGE, "KIT_OTEL_IDLE_TIMEOUT_S: inf is"),
    ({"KIT_OTEL_MAX_LINE_BYTES": "10"}, cli.EXIT_USAGE, "KIT_OTEL_MAX_LINE_BYTES: 10 is"),
    ({"KIT_OTEL_PROMETHEUS_PORT": "99999", "OTEL_TRACES_EXPORTER": "none"}, cli.EXIT_UNUSABLE,
     "KIT_OTEL_PROMETHEUS_PORT"),
    ({"KIT_OTEL_PROMETHEUS_PORT": "nine", "OTEL_TRACES_EXPORTER": "none"}, cli.EXIT_USAGE,
     "prometheus_port"),
    ({"KIT_OTEL_PROMETHEUS_HOST": "no-such-host.invalid", "KIT_OTEL_PROMETHEUS_PORT": "0",
      "OTEL_TRACES_EXPORTER": "none"}, cli.EXIT_UNUSABLE, "KIT_OTEL_PROMETHEUS_HOST"),
])
def test_bad_settings_are_one_line_and_an_exit_code(tmp_path, events_file, env, code, words):
    result = run(["replay", str(events_file)], tmp_path, env=env)
    assert result.returncode == code, result.stderr
    assert words in _one_clean_line(result)


def test_a_port_the_user_chose_and_cannot_have_is_an_error(tmp_path, events_file, taken_port):
    result = run(["replay", str(events_file)], tmp_path,
                 env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "prometheus",
                      "KIT_OTEL_PROMETHEUS_PORT": str(taken_port)})
    assert result.returncode == cli.EXIT_UNUSABLE
    assert f"127.0.0.1:{taken_port}" in _one_clean_line(result)


def test_replay_next_to_a_running_kit_otel_goes_without_its_metrics_port(taken_port):
    # the default port (9464) held by `kit-otel serve`, as in the README's own setup
    settings = load_settings(env={"OTEL_TRACES_EXPORTER": "none",
                                  "OTEL_METRICS_EXPORTER": "prometheus"})
    assert settings.sources["prometheus_port"] == "default"
    settings.prometheus_port = taken_port
    pipeline = cli._pipeline(settings, "replay")
    try:
        assert pipeline.prometheus is not None and pipeline.prometheus.server is None
    finally:
        pipeline.shutdown()
    with pytest.raises(cli.UserError) as info:  # serve and summary do not get to do that
        cli._pipeline(settings, "demo")
    assert info.value.code == cli.EXIT_UNUSABLE


def test_unwritable_output_is_one_line(tmp_path, events_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run(["replay", str(events_file)], tmp_path,
                 env={"OTEL_TRACES_EXPORTER": "otlp_json_file", "OTEL_METRICS_EXPORTER": "none",
                      "KIT_OTEL_OUTPUT_DIR": str(blocker / "out")})
    assert result.returncode == cli.EXIT_UNUSABLE
    assert "KIT_OTEL_OUTPUT_DIR" in _one_clean_line(result)
    demo = run(["demo", "--port", "0", "--out", str(blocker / "demo")], tmp_path)
    assert demo.returncode == cli.EXIT_UNUSABLE
    assert "--out" in _one_clean_line(demo)


def test_unreadable_inputs_say_what_they_are(tmp_path, events_file):
    fifo = tmp_path / "a-fifo"
    os.mkfifo(fifo)
    for target, words in ((tmp_path, "is a directory"), (fifo, "not a regular file"),
                          (tmp_path / "nope.ndjson", "no such file")):
        for command in ("replay", "summary"):
            result = run([command, str(target), str(events_file)], tmp_path, env=NO_EXPORT,
                         timeout=60)  # a FIFO opened for reading would block forever
            assert result.returncode == cli.EXIT_INPUT, result.stderr
            assert f"{target}: {words}" in result.stderr
            assert "Traceback" not in result.stderr
            assert "2 session(s)" in result.stdout  # the readable file was still read


# ── exit codes of a replay ───────────────────────────────────────────────────────────────────

def test_replay_exits_non_zero_when_the_collector_refused_everything(tmp_path, events_file):
    with OTLPReceiver() as receiver:
        receiver.fail_with("INVALID_ARGUMENT")
        endpoint = f"http://127.0.0.1:{receiver.grpc_port}"
        result = run(["replay", "-q", str(events_file)], tmp_path,
                     env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                          "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                          "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
        assert receiver.refused >= 1
    assert result.returncode == cli.EXIT_NOT_DELIVERED, result.stderr
    line = [x for x in result.stderr.splitlines() if x.startswith("kit-otel: exported 0/")]
    assert line and f"spans to {endpoint}" in line[0] and "INVALID_ARGUMENT" in line[0]
    assert "is a Collector running? (OTEL_EXPORTER_OTLP_ENDPOINT)" in line[0]
    assert "Traceback" not in result.stderr


def test_replay_exits_non_zero_when_no_collector_listens(tmp_path, events_file):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(["replay", "-q", str(events_file)], tmp_path,
                 env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
                      "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                      "OTEL_EXPORTER_OTLP_TIMEOUT": "2"})
    assert result.returncode == cli.EXIT_NOT_DELIVERED
    line = _one_clean_line(result)
    assert "exported 0/" in line and f"spans to http://127.0.0.1:{port}: UNAVAILABLE (" in line


def test_replay_exits_zero_when_everything_arrived(tmp_path, events_file):
    with OTLPReceiver() as receiver:
        result = run(["replay", "-q", str(events_file)], tmp_path,
                     env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                          "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.grpc_port}",
                          "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
        assert receiver.trace_requests and receiver.metric_requests
    assert result.returncode == cli.EXIT_OK, result.stderr


def test_ctrl_c_during_replay_ends_cleanly_with_130(tmp_path):
    proc = subprocess.Popen(KIT_OTEL + ["-v", "replay", "-"], cwd=tmp_path,
                            env=_env(NO_EXPORT), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(encode_event(demo_stream(1, sessions=1, turns=1)[0]).decode())
        proc.stdin.flush()
        seen = []
        for line in proc.stderr:  # wait until it reads stdin, which stays open
            seen.append(line)
            if "reading <stdin>" in line:
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = "".join(seen) + err
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "kit-otel: interrupted" in err


def test_summary_into_a_closed_pipe_is_quiet(tmp_path, events_file):
    proc = subprocess.Popen(KIT_OTEL + ["summary", str(events_file)], cwd=tmp_path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head` that has already quit
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode == cli.EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "Exception ignored" not in err


# ── what is read ─────────────────────────────────────────────────────────────────────────────

def test_a_final_line_without_newline_is_decoded(tmp_path, events_file):
    data = events_file.read_bytes()
    assert data.endswith(b"\n")
    last = data[:-1].rsplit(b"\n", 1)[1]
    cut = tmp_path / "cut.ndjson"
    cut.write_bytes(data[:-1])
    whole = run(["summary", str(events_file)], tmp_path)
    for command in ("summary", "replay"):
        result = run([command, str(cut)], tmp_path, env=NO_EXPORT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == whole.stdout.splitlines()[0]
    # and a torn final line is one rejection, located, not silence
    torn = tmp_path / "torn.ndjson"
    torn.write_bytes(data + last[: len(last) // 2])
    result = run(["summary", str(torn)], tmp_path)
    lines = data.count(b"\n")
    assert f"{torn}:{lines + 1}: malformed JSON" in result.stderr
    assert "1 rejected line(s)" in result.stdout


def test_summary_memory_is_bounded_by_what_it_prints():
    settings = load_settings(env=NO_EXPORT)
    keeper = RichestTurnKeeper(max_tree_spans=50)
    pipeline = Pipeline(settings, span_processors=[keeper], serve_prometheus=False)
    summary = Summary(pipeline.translator, keeper, max_turns=10)
    events = demo_stream(11, sessions=4, turns=30)
    for event in events:
        pipeline.feed(event)
    pipeline.shutdown()
    assert summary.turn_count == 120 and len(summary.turns) == 10
    assert len(keeper.best) <= 50 and not keeper._open
    text = summary.render(max_turns=10)
    assert "4 session(s), 120 turn(s)" in text and "… 110 more turn(s)" in text


# ── what a user meets beyond the commands' own checks ────────────────────────────────────────

def test_an_otel_variable_the_sdk_refuses_on_import_is_one_line_even_for_help(tmp_path):
    """The SDK reads OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT when it is imported: before any command."""
    for args in (["--help"], ["config"]):
        result = subprocess.run([sys.executable, "-m", "kit_otel.cli.entry", *args], cwd=tmp_path,
                                env=_env({"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "-1"}),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == cli.EXIT_USAGE, result.stderr
        assert "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" in _one_clean_line(result)


def test_replay_exits_non_zero_when_its_log_records_did_not_arrive(tmp_path, events_file):
    result = run(["replay", "-q", str(events_file)], tmp_path, env={
        **NO_EXPORT, "OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BLRP_EXPORT_TIMEOUT": "1000"})
    assert result.returncode == cli.EXIT_NOT_DELIVERED, result.stderr
    assert "log records to http://127.0.0.1:9" in result.stderr


def test_summary_exports_nothing_not_even_logs(tmp_path, events_file):
    result = run(["summary", str(events_file)], tmp_path,
                 env={"OTEL_LOGS_EXPORTER": "otlp_json_file"})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "kit-otel-out").exists()


def test_a_signal_endpoint_is_the_one_named_when_it_fails(tmp_path, events_file):
    result = run(["replay", "-q", str(events_file)], tmp_path, env={
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:7/v1/traces"})
    assert result.returncode == cli.EXIT_NOT_DELIVERED
    line = _one_clean_line(result)
    assert "to http://127.0.0.1:7/v1/traces" in line and "(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)" in line


def test_follow_with_nothing_to_follow_ends_at_once(tmp_path):
    result = run(["replay", "-f", str(tmp_path / "later.ndjson")], tmp_path, env=NO_EXPORT,
                 timeout=30)
    assert result.returncode == cli.EXIT_INPUT
    assert "no file to follow" in result.stderr


def test_a_full_disk_behind_stdout_is_one_line_not_an_internal_error(tmp_path, events_file):
    with open("/dev/full", "w") as full:
        result = subprocess.run(KIT_OTEL + ["summary", str(events_file)], cwd=tmp_path,
                                env=_env(), stdout=full, stderr=subprocess.PIPE, text=True,
                                timeout=60)
    assert result.returncode == cli.EXIT_UNUSABLE, result.stderr
    assert "No space left on device" in _one_clean_line(result)


def test_one_file_named_twice_is_read_once(tmp_path, events_file):
    once = run(["summary", str(events_file)], tmp_path, env=NO_EXPORT)
    twice = run(["summary", str(events_file), str(events_file.parent / "." / events_file.name)],
                tmp_path, env=NO_EXPORT)
    assert once.returncode == twice.returncode == 0
    assert once.stdout.splitlines()[0] == twice.stdout.splitlines()[0]
    assert "named twice" in twice.stderr


def test_serve_names_the_metrics_port_it_cannot_have(tmp_path, taken_port):
    state = tmp_path / "state"
    result = subprocess.run(KIT_OTEL + ["serve"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env=_env({
                                "KIT_OTEL_STATE_DIR": str(state),
                                "KIT_OTEL_SPOOL_DIR": str(tmp_path / "spool"),
                                "KIT_OTEL_SOCKET_PATH": "off", "OTEL_TRACES_EXPORTER": "none",
                                "OTEL_METRICS_EXPORTER": "prometheus",
                                "KIT_OTEL_PROMETHEUS_PORT": str(taken_port)}))
    assert result.returncode == 2
    assert f"127.0.0.1:{taken_port}" in result.stderr and "KIT_OTEL_PROMETHEUS_PORT" in result.stderr
    assert "Traceback" not in result.stderr
