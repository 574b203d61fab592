"""`kit-otel serve` end to end: simulated KIT processes append to spool files while the daemon
(a real subprocess, or in-process where internals are checked) exports to a real OTLP receiver."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from otlp_receiver import OTLPReceiver
from test_serve_helpers import (ServeProcess, SpoolWriter, assert_each_span_once, kit_process,
                                received_spans, reference_spans, serve_env, write_all)

from kit_otel.config import Settings
from kit_otel.serve.daemon import Server
from kit_otel.serve.options import ServeOptions

COUNTERS = ("kit.tokens", "kit.cost.usd", "kit.llm.calls", "kit.turns", "kit.tool.calls",
            "kit.errors", "kit.retries", "kit.compactions", "kit.subagents", "kit.sessions",
            "kit_otel.events")


@pytest.fixture
def dirs(tmp_path):
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"
    spool.mkdir()
    return spool, state, root


@pytest.fixture
def receiver():
    with OTLPReceiver() as rx:
        yield rx


def settings_for(receiver, spool: Path, state: Path, root: Path, **kw) -> Settings:
    values = dict(traces_exporter=("otlp",), metrics_exporter=("otlp",),
                  otlp_endpoint=receiver.grpc_endpoint, otlp_protocol="grpc",
                  metric_export_interval_ms=200,
                  spool_dir=str(spool), state_dir=str(state), sessions_root=str(root),
                  idle_timeout_s=86400, socket_path="")
    values.update(kw)
    return Settings(**values)


class InProcess:
    """A Server running in a thread (for tests that look at its internals)."""

    def __init__(self, settings: Settings, **options):
        self.server = Server(settings, ServeOptions(**{"poll_interval_s": 0.05,
                                                       "scan_interval_s": 0.2, **options}))
        self.code = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.server.started.wait(20) or self.code is not None

    def _run(self):
        self.code = self.server.run()

    def stop(self) -> int:
        self.server.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.code


def expected_totals(processes) -> Counter:
    total = Counter()
    for p in processes:
        total.update(p.usage_totals())
    return total


def assert_exact_usage(receiver, processes) -> None:
    want = expected_totals(processes)
    for token_type in ("input", "output", "cache_read", "cache_write"):
        assert receiver.metric_sum("kit.tokens", type=token_type) == want[token_type], token_type
    assert receiver.metric_sum("kit.cost.usd") == pytest.approx(want["cost"], rel=1e-9)
    llm_calls = sum(1 for p in processes for e in p.events if e.type == "llm_usage")
    assert receiver.metric_sum("kit.llm.calls") == llm_calls
    lines = sum(len(p.lines) for p in processes)
    assert receiver.metric_sum("kit_otel.events") == lines


def test_serve_end_to_end_grpc(dirs, receiver):
    """Two KIT processes write concurrently (several files each: main agent, subagent child
    agent, hot reload); every span and the exact token/cost totals reach the receiver."""
    spool, state, root = dirs
    procs = [kit_process(11, 40001, root, turns=8, index=0),
             kit_process(12, 40002, root, turns=8, index=1)]
    expected = reference_spans(procs, root)
    serve = ServeProcess(serve_env(receiver, spool, state, root))
    try:
        serve.wait_ready()
        writers = [SpoolWriter(spool, p, every=5, sleep_s=0.01, seed=i)
                   for i, p in enumerate(procs)]
        for w in writers:
            w.start()
        for w in writers:
            w.join(60)
        receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=60,
                          message="not every span arrived")
    finally:
        code = serve.terminate()
    assert code == 0, serve.text()
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert_each_span_once(receiver)
    assert_exact_usage(receiver, procs)
    log = serve.text()
    assert "serving spool" in log and "KIT process 40001: new file" in log
    assert "stopped" in log
    # the structure holds: every parent is in the same trace, turns link to the previous turn
    spans = receiver.spans()
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        if s.parent_span_id:
            assert by_id[s.parent_span_id].trace_id == s.trace_id
    turns = [s for s in spans if s.name == "invoke_agent kit"]
    linked = [s for s in turns if s.links]
    assert linked and all(link[1] in by_id for s in linked for link in s.links)


def test_restart_resumes_exactly(dirs, receiver):
    """Stopping mid-stream (open turns included) and starting again gives the same spans,
    ids included, and the same counter totals as one uninterrupted run."""
    spool, state, root = dirs
    procs = [kit_process(21, 40011, root, turns=6, index=0),
             kit_process(22, 40012, root, turns=6, index=2)]
    expected = reference_spans(procs, root)
    settings = settings_for(receiver, spool, state, root)
    halves = [(p.lines[: len(p.lines) // 2], p.lines[len(p.lines) // 2:]) for p in procs]
    for first, _ in halves:
        for name, line in first:
            with open(spool / name, "ab") as fh:
                fh.write(line)
    run = InProcess(settings)
    total_first = sum(len(first) for first, _ in halves)
    receiver.wait_for(lambda: run.server.processed >= total_first, timeout=30)
    assert run.server.translator.open_turn_count() > 0  # stopped in the middle of turns
    assert run.stop() == 0
    first_spans = len(receiver.spans())
    for _, second in halves:
        for name, line in second:
            with open(spool / name, "ab") as fh:
                fh.write(line)
    run = InProcess(settings)
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    assert run.stop() == 0
    assert first_spans < len(expected)
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert_each_span_once(receiver)
    assert_exact_usage(receiver, procs)

    # the same events in one uninterrupted run, in a fresh place: identical spans, ids too
    with OTLPReceiver() as other:
        spool2, state2 = spool.parent / "spool2", spool.parent / "state2"
        spool2.mkdir()
        for p in procs:
            write_all(spool2, p)
        run = InProcess(settings_for(other, spool2, state2, root))
        other.wait_for(lambda: len(other.spans()) >= len(expected), timeout=30)
        assert run.stop() == 0
        assert {s.id for s in other.spans()} == {s.id for s in receiver.spans()}


def test_checkpoint_file_and_health_metrics(dirs, receiver):
    spool, state, root = dirs
    proc = kit_process(31, 40021, root, turns=3)
    write_all(spool, proc)
    (spool / "notes.txt").write_text("not a spool file\n")
    with open(spool / "garbage.ndjson", "wb") as fh:
        fh.write(b"{not json\n" + b"\x00\xff" * 10 + b"\n")
    run = InProcess(settings_for(receiver, spool, state, root))
    receiver.wait_for(lambda: run.server.processed >= len(proc.lines), timeout=30)
    receiver.wait_for(lambda: run.server.processor.queued_spans == 0
                      and not any(s.dirty for s in run.server.streams.values()), timeout=30)
    assert run.stop() == 0
    assert oct((state).stat().st_mode & 0o777) == "0o700"
    checkpoint = state / "serve-checkpoint.json"
    assert oct(checkpoint.stat().st_mode & 0o777) == "0o600"
    data = json.loads(checkpoint.read_text())
    stream = next(s for s in data["streams"].values() if s["pid"] == 40021)
    assert stream["next_seq"] == len(proc.lines) + 1
    for name, (offset, lineno) in stream["files"].items():
        assert offset == os.path.getsize(spool / name)
    assert stream["sessions"] and stream["sessions"][0]["started"] is True
    assert stream["ledger"]["kit.tokens"]
    assert not list(state.glob("*.tmp"))
    assert receiver.metric_sum("kit_otel.events.rejected", reason="malformed_json") == 2
    assert receiver.metric_sum("kit_otel.events") == len(proc.lines)
    lag = receiver.metric_points("kit_otel.lag")
    assert lag and lag[-1].value >= 0
    assert receiver.metric_points("kit_otel.export.queue")


def test_retention_removes_exported_files_and_keeps_totals(dirs, receiver):
    """Files of a process that ended (session_shutdown, pid gone) are removed once exported and
    the retention passed; their counter totals survive in the checkpoint."""
    spool, state, root = dirs
    ended = kit_process(41, 40031, root, turns=2)  # pid above pid_max: never alive
    write_all(spool, ended)
    settings = settings_for(receiver, spool, state, root, spool_retention_s=0.5)
    run = InProcess(settings, sweep_interval_s=0.1)
    receiver.wait_for(lambda: not list(spool.glob("*.ndjson")), timeout=30,
                      message="spool files were not removed")
    assert sorted(run.server.removed_files) == sorted(ended.files)
    assert run.stop() == 0
    data = json.loads((state / "serve-checkpoint.json").read_text())
    assert data["streams"] == {} and data["retired"]["kit.tokens"]
    tokens = receiver.metric_sum("kit.tokens")
    assert tokens == sum(v for k, v in ended.usage_totals().items() if k != "cost")

    receiver.clear()
    live = kit_process(42, os.getpid(), root, turns=1)  # our own pid: alive, so kept
    write_all(spool, live)
    settings.spool_retention_s = 60  # (an idle file would go after the retention too)
    run = InProcess(settings, sweep_interval_s=0.1)
    receiver.wait_for(lambda: run.server.processed >= len(live.lines), timeout=30)
    stream = run.server.by_pid[os.getpid()]
    receiver.wait_for(lambda: run.server._exported(stream), timeout=30)
    time.sleep(0.3)  # a few housekeeping rounds
    assert run.stop() == 0
    assert sorted(p.name for p in spool.glob("*.ndjson")) == sorted(live.files)
    # totals continue from the retired process's
    want = sum(v for k, v in ended.usage_totals().items() if k != "cost") + \
        sum(v for k, v in live.usage_totals().items() if k != "cost")
    assert receiver.metric_sum("kit.tokens") == want


def test_second_daemon_on_same_state_refused(dirs, receiver):
    spool, state, root = dirs
    run = InProcess(settings_for(receiver, spool, state, root))
    other = Server(settings_for(receiver, spool, state, root))
    assert other.run() == 2
    assert run.stop() == 0


def test_unusable_checkpoint_is_reported(dirs, receiver, caplog):
    spool, state, root = dirs
    state.mkdir(mode=0o700)
    (state / "serve-checkpoint.json").write_text("{torn")
    assert Server(settings_for(receiver, spool, state, root)).run() == 2
    assert "unusable" in caplog.text


def test_missing_seq_is_waited_for_then_skipped(dirs, receiver, caplog):
    """A line the bridge could not write leaves a hole in the seq: the stream waits for it,
    then continues, logs it and counts it in kit_otel_dropped_total{source="spool_gap"}."""
    spool, state, root = dirs
    proc = kit_process(131, 40901, root, turns=2)
    hole = next(i for i, (_, line) in enumerate(proc.lines) if b'"message_update"' in line)
    proc.lines.pop(hole)
    expected = reference_spans([proc], root)
    write_all(spool, proc)
    run = InProcess(settings_for(receiver, spool, state, root), gap_wait_s=0.3)
    receiver.wait_for(lambda: run.server.processed >= len(proc.lines), timeout=30)
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert receiver.metric_sum("kit_otel.dropped", source="spool_gap") == 1
    assert f"seq {hole + 1}..{hole + 1} never arrived" in caplog.text


def test_pid_reused_by_a_new_process(dirs, receiver, caplog):
    """A new KIT process that gets the pid of an old one (new spool file starting again at
    seq 1) is a new stream, not duplicates of the old one."""
    caplog.set_level("INFO", logger="kit_otel")
    spool, state, root = dirs
    old = kit_process(141, 40911, root, turns=2, start_ns=time.time_ns() - 3_600_000_000_000)
    new = kit_process(142, 40911, root, turns=2, index=1)
    expected = reference_spans([old, new], root)
    write_all(spool, old)
    run = InProcess(settings_for(receiver, spool, state, root))
    receiver.wait_for(lambda: run.server.processed >= len(old.lines), timeout=30)
    write_all(spool, new)
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert_exact_usage(receiver, [old, new])
    assert "KIT process 40911 started again" in caplog.text


def test_otlp_http(dirs):
    spool, state, root = dirs
    proc = kit_process(151, 40921, root, turns=3)
    expected = reference_spans([proc], root)
    write_all(spool, proc)
    with OTLPReceiver(grpc_enabled=False, http=True) as rx:
        run = InProcess(settings_for(rx, spool, state, root, otlp_protocol="http/protobuf",
                                     otlp_endpoint=rx.http_endpoint))
        rx.wait_for(lambda: len(received_spans(rx)) >= len(expected), timeout=30)
        assert run.stop() == 0
        assert Counter(received_spans(rx)) == Counter(expected)
        assert_exact_usage(rx, [proc])


@pytest.mark.parametrize("watch", [True, False])
def test_idle_spool_files_cost_no_stat_at_a_watched_poll_and_appends_are_still_read(
        dirs, receiver, monkeypatch, watch):
    """With inotify, a poll looks only at the files written to since the last one: 1,000 idle
    files of ended processes cost a stat each per poll without it (10% of a core). Appends, a
    new file and a file replaced under its name are still seen, watched or not."""
    import kit_otel.sources.spool as spool_module
    spool, state, root = dirs
    processes = [kit_process(70 + i, 47000 + i, root, turns=1, index=i) for i in range(12)]
    for process in processes:
        write_all(spool, process)
    stats = []
    stat_key = spool_module._stat_key
    monkeypatch.setattr(spool_module, "_stat_key", lambda path: stats.append(path) or
                        stat_key(path))
    lines = sum(len(p.lines) for p in processes)
    serve = InProcess(settings_for(receiver, spool, state, root), watch_spool=watch,
                      watched_refresh_interval_s=3600)
    try:
        receiver.wait_for(lambda: serve.server.processed >= lines, timeout=60,
                          message="the spool files were not read")
        assert (serve.server.spool_watch is not None) == watch
        time.sleep(0.3)  # every file read to its end
        stats.clear()
        time.sleep(0.5)  # ~10 polls of idle files
        if watch:
            assert stats == []
        else:
            assert len(stats) >= 2 * len(processes)  # every file, at every poll
        more = kit_process(90, processes[0].pid, root, turns=1, index=0)
        name = processes[0].files[0]
        late = [line for _, line in more.lines if b'"bridge_start"' not in line][:1]
        # appended to a file read to its end (its seq continues the file's)
        seq = max(json.loads(line)["seq"] for n_, line in processes[0].lines if n_ == name)
        record = json.loads(late[0])
        record["seq"] = seq + 1
        with open(spool / name, "ab") as fh:
            fh.write(json.dumps(record).encode() + b"\n")
        receiver.wait_for(lambda: serve.server.processed >= lines + 1, timeout=30,
                          message="an append to an idle spool file was not read")
        newcomer = kit_process(91, 48000, root, turns=1, index=3)
        write_all(spool, newcomer)
        receiver.wait_for(lambda: serve.server.processed >= lines + 1 + len(newcomer.lines),
                          timeout=30, message="a new spool file was not read")
        if watch:  # only the files written to were looked at again
            assert set(map(os.path.basename, stats)) <= {name, *newcomer.files}
    finally:
        assert serve.stop() == 0
