"""The benchmarks' entry points still run (tiny sizes): benchmarks are not tests, but they must
not rot. Nothing here is timed; it checks that each measurement produces its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


@pytest.fixture(scope="module")
def bench_e2e():
    import bench_e2e
    return bench_e2e


@pytest.fixture(scope="module")
def receiver():
    from otlp_receiver import OTLPReceiver
    with OTLPReceiver(http=True) as rx:
        yield rx


def test_floor_and_default_path_measure_the_same_stream(bench_e2e):
    from bench_pipeline import record_sdk_calls

    from kit_otel.cli.generator import demo_stream
    lines = bench_e2e._lines(demo_stream(1, sessions=1, turns=2))
    calls = record_sdk_calls(lines)
    assert sum(map(len, calls)) > len(lines)  # spans, events and metric updates were recorded
    assert bench_e2e.floor_cpu(lines, calls) > 0
    assert bench_e2e.default_path_cpu(lines) > 0
    # and each in a fresh interpreter, as the benchmark takes them
    assert bench_e2e.in_fresh_process("floor", lines) > 0
    assert bench_e2e.in_fresh_process("default_path", lines) > 0
    cpu, in_gc, by_generation = bench_e2e.in_fresh_process("gc_share", lines)
    assert cpu > 0 and 0 <= in_gc <= cpu and len(by_generation) == 3


def test_replay_and_serve_runs_report_cpu_and_rss(bench_e2e, receiver, tmp_path):
    from kit_otel.cli.generator import demo_stream
    lines = bench_e2e._lines(demo_stream(1, sessions=1, turns=2))
    path = tmp_path / "demo.ndjson"
    path.write_bytes(b"".join(lines))
    measured = bench_e2e.run_replay(path, bench_e2e.clean_env(tmp_path), tmp_path)
    assert measured.code == 0, measured.stderr
    assert measured.cpu > 0 and 10 < measured.rss_mib < 1000
    assert (tmp_path / "out" / "traces.jsonl").stat().st_size > 0  # the default exporters ran

    processes = bench_e2e.spool_processes(2, 1, tmp_path / "sessions")
    measured, caught_up = bench_e2e.run_serve(processes, receiver, tmp_path, timeout_s=120)
    assert caught_up == caught_up, measured.stderr  # not NaN: every span arrived
    assert measured.code == 0, measured.stderr


def test_idle_serve_is_measured_watched_and_with_inotify_off(bench_e2e, receiver, tmp_path,
                                                           capsys):
    bench_e2e.bench_idle_serve([2], receiver, tmp_path, window_s=0.3, settle_s=0.3)
    out = capsys.readouterr().out
    assert "2 spool files, watched (inotify)" in out
    assert "2 spool files, inotify off" in out
    assert "inotify switched off by the benchmark" in (tmp_path / "idle.stderr").read_text() \
        or "no inotify" in (tmp_path / "idle.stderr").read_text()


def test_distinct_names_rename_models_and_tools(bench_e2e):
    from kit_otel.model.decoder import decode_line
    from kit_otel.cli.generator import demo_stream
    lines = bench_e2e._lines(demo_stream(1, sessions=4, turns=2))
    renamed = bench_e2e._with_distinct_names(lines, 3)
    models = {e.data.Model for e in map(decode_line, renamed) if e.type == "llm_usage"}
    assert len(models) > len({e.data.Model for e in map(decode_line, lines)
                              if e.type == "llm_usage"})


@pytest.mark.parametrize("bench,args", [
    ("bench_pipeline.py", ["--sessions", "1", "--turns", "2", "--runs", "1",
                           "--memory-events", "0"]),
    ("bench_instrumentation.py", ["--calls", "20", "--runs", "1"]),
])
def test_other_benchmarks_run(bench, args):
    result = subprocess.run([sys.executable, str(BENCHMARKS / bench), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio" in result.stdout or "overhead" in result.stdout, result.stdout
    if bench == "bench_instrumentation.py":
        # the `bench` extra (scripts/test.sh installs it, pinned): the comparison is measured,
        # not left out with a note
        pytest.importorskip("opentelemetry.util.genai.handler",
                            reason="the bench extra (opentelemetry-util-genai) is not installed")
        assert "opentelemetry-util-genai TelemetryHandler" in result.stdout, result.stdout
        assert "is not installed" not in result.stdout
