"""Collector outages: nothing is lost, memory stays bounded (input pauses at the queue bound,
the spool files are the buffer), and everything arrives once the collector is back."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from otlp_receiver import OTLPReceiver
from test_serve import InProcess, assert_exact_usage, settings_for
from test_serve_helpers import (assert_each_span_once, kit_process, received_spans,
                                reference_spans, write_all)

BOUND = 20


@pytest.fixture
def dirs(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    return spool, tmp_path / "state", tmp_path / "sessions"


def test_unavailable_then_recovered(dirs, monkeypatch, caplog):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    caplog.set_level("INFO", logger="kit_otel")
    spool, state, root = dirs
    procs = [kit_process(51, 40201, root, turns=6, index=0),
             kit_process(52, 40202, root, turns=6, index=1)]
    expected = reference_spans(procs, root)
    lines = sum(len(p.lines) for p in procs)
    with OTLPReceiver() as rx:
        rx.fail_with("UNAVAILABLE")
        run = InProcess(settings_for(rx, spool, state, root), max_queue_spans=BOUND,
                        backoff_initial_s=0.1, backoff_max_s=0.5)
        for p in procs:
            write_all(spool, p)
        processor = run.server.processor
        rx.wait_for(lambda: processor.full and processor.failed_attempts >= 2, timeout=30)
        paused_at = run.server.processed
        time.sleep(0.5)  # the queue cannot drain while the receiver refuses: input stays paused
        assert run.server.processed == paused_at < lines
        assert rx.spans() == [] and rx.refused > 0
        assert processor.peak_queued <= BOUND - 1 + processor.largest_unit

        rx.fail_with(None)
        rx.wait_for(lambda: len(received_spans(rx)) >= len(expected), timeout=60)
        assert run.server.processed == lines
        assert run.stop() == 0
        assert Counter(received_spans(rx)) == Counter(expected)
        assert_each_span_once(rx)
        assert_exact_usage(rx, procs)
        assert processor.peak_queued <= BOUND - 1 + processor.largest_unit
    assert "span export to OTLPSpanExporter failed; keeping" in caplog.text
    assert "span export recovered" in caplog.text


def test_receiver_down_then_up(dirs, monkeypatch):
    """A real outage (the port is closed) in the middle of a stream, then the same port again."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    spool, state, root = dirs
    first = kit_process(61, 40301, root, turns=3, index=0)
    later = kit_process(62, 40302, root, turns=3, index=2)
    expected = reference_spans([first, later], root)
    with OTLPReceiver() as rx:
        run = InProcess(settings_for(rx, spool, state, root), max_queue_spans=10,
                        backoff_initial_s=0.1, backoff_max_s=0.5)
        write_all(spool, first)
        rx.wait_for(lambda: len(rx.spans()) >= len(reference_spans([first], root)), timeout=30)
        rx.stop()
        write_all(spool, later)
        processor = run.server.processor
        rx.wait_for(lambda: processor.full and processor.outage_since is not None, timeout=30)
        assert run.server.processed < len(first.lines) + len(later.lines)
        rx.start()
        rx.wait_for(lambda: len(received_spans(rx)) >= len(expected), timeout=60)
        assert run.stop() == 0
        assert Counter(received_spans(rx)) == Counter(expected)
        assert_each_span_once(rx)
        assert_exact_usage(rx, [first, later])
        assert processor.peak_queued <= 10 - 1 + processor.largest_unit


def test_sigterm_during_outage_exports_later(dirs, monkeypatch):
    """Stopping while the collector is down loses nothing: what was not exported is read from
    the spool again by the next run."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    spool, state, root = dirs
    proc = kit_process(71, 40401, root, turns=4)
    expected = reference_spans([proc], root)
    with OTLPReceiver() as rx:
        rx.fail_with("UNAVAILABLE")
        run = InProcess(settings_for(rx, spool, state, root), shutdown_timeout_s=0.5,
                        backoff_initial_s=0.1, backoff_max_s=0.5)
        write_all(spool, proc)
        rx.wait_for(lambda: run.server.processed >= len(proc.lines)
                    and run.server.processor.failed_attempts >= 1, timeout=30)
        assert run.stop() == 0
        assert rx.spans() == []
        rx.fail_with(None)
        run = InProcess(settings_for(rx, spool, state, root))
        rx.wait_for(lambda: len(received_spans(rx)) >= len(expected), timeout=60)
        assert run.stop() == 0
        assert Counter(received_spans(rx)) == Counter(expected)
        assert_each_span_once(rx)
        assert_exact_usage(rx, [proc])


def test_a_stop_during_an_outage_takes_about_the_shutdown_timeout(tmp_path):
    """The final metric export is bounded by what is left of shutdown_timeout_s: an
    unreachable collector's retries held a stopping serve more than twice as long."""
    import os
    import signal
    import subprocess
    import sys
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"
    spool.mkdir(mode=0o700)
    write_all(spool, kit_process(5, 4_000_123, root, turns=3))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_METRIC_EXPORT_INTERVAL": "1000", "KIT_OTEL_SPOOL_DIR": str(spool),
                "KIT_OTEL_STATE_DIR": str(state), "KIT_OTEL_SESSIONS_ROOT": str(root),
                "KIT_OTEL_SOCKET_PATH": "off", "KIT_OTEL_SHUTDOWN_TIMEOUT_S": "2"})
    proc = subprocess.Popen([sys.executable, "-m", "kit_otel.cli.entry", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    # a bound, not a performance figure: 2 s of span export, what is left (a second at least)
    # for the metrics, and the interpreter's exit (about 4 s); without the bound it took 12 s
    assert time.monotonic() - started < 9
