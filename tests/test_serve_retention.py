"""Spool retention in `kit-otel serve` against what really happens to spool files: a KIT session
left open for hours, a file name given to a new file, a disk that is full for a moment. None of
them may lose a line a KIT process writes, or end the daemon."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import Counter

import pytest

from otlp_receiver import OTLPReceiver
from test_serve import InProcess, settings_for
from test_serve_helpers import kit_process, received_spans, reference_spans, write_all


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "spool").mkdir()
    return tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"


@pytest.fixture
def receiver():
    with OTLPReceiver() as rx:
        yield rx


def _append(spool, lines) -> None:
    """Append (file name, line) pairs to their spool files, in order."""
    handles = {}
    try:
        for name, line in lines:
            fh = handles.get(name) or handles.setdefault(name, open(spool / name, "ab"))
            fh.write(line)
    finally:
        for fh in handles.values():
            fh.close()


def _settled(server) -> bool:
    return (server.processor.queued_spans == 0
            and not any(s.dirty for s in server.streams.values())
            and all(server._exported(s) for s in server.streams.values()))


def test_a_live_process_that_went_quiet_keeps_its_files(dirs, receiver):
    """The idle rule is for crashed processes: a live KIT whose user is away still holds its
    spool file open, and what it writes after the retention must be read."""
    spool, state, root = dirs
    proc = kit_process(906, os.getpid(), root, turns=3)  # our own pid: alive
    main = proc.files[0]
    first, rest = proc.lines[:19], proc.lines[19:]
    assert all(name == main for name, _ in first)
    run = InProcess(settings_for(receiver, spool, state, root, spool_retention_s=0.5),
                    sweep_interval_s=0.1)
    _append(spool, first)
    receiver.wait_for(lambda: run.server.processed >= len(first) and _settled(run.server),
                      timeout=30)
    time.sleep(1.5)  # three retention periods of silence
    assert (spool / main).exists()
    assert not run.server.removed_files
    _append(spool, rest)  # the user is back
    receiver.wait_for(lambda: run.server.processed >= len(proc.lines), timeout=30,
                      message="lines written after the quiet hour were not read")
    assert run.stop() == 0


def test_a_spool_name_given_to_a_new_file_is_followed_not_removed(dirs, receiver):
    """A file moved away and another created at its name (a writer that reopens): the name is
    not "removed" once it exists again, so retention neither deletes the new file nor retires
    the stream, and every span arrives once."""
    spool, state, root = dirs
    proc = kit_process(906, 4_100_008, root, turns=3)  # a pid that is never alive
    main = proc.files[0]
    first, second, rest = proc.lines[:19], proc.lines[19:103], proc.lines[103:]
    assert all(name == main for name, _ in first + second)
    run = InProcess(settings_for(receiver, spool, state, root), sweep_interval_s=0.2)
    _append(spool, first)
    receiver.wait_for(lambda: run.server.processed >= len(first) and _settled(run.server),
                      timeout=30)
    os.rename(spool / main, spool / (main + ".1"))
    receiver.wait_for(lambda: run.server.streams and all(
        f.missing for s in run.server.streams.values() for f in s.files.values()), timeout=30)
    _append(spool, second)
    receiver.wait_for(lambda: run.server.processed >= len(first) + len(second), timeout=30)
    time.sleep(1.0)  # several retention sweeps
    assert (spool / main).exists() and not run.server.removed_files
    _append(spool, rest)
    receiver.wait_for(lambda: run.server.processed >= len(proc.lines), timeout=30)
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(reference_spans([proc], root))


def test_a_failed_checkpoint_write_at_retirement_does_not_end_serve(dirs, receiver, monkeypatch,
                                                                    caplog):
    spool, state, root = dirs
    ended = kit_process(41, 4_000_000, root, turns=1)  # never alive: retired once exported
    write_all(spool, ended)
    run = InProcess(settings_for(receiver, spool, state, root, spool_retention_s=0.3),
                    sweep_interval_s=0.1)
    receiver.wait_for(lambda: run.server.processed >= len(ended.lines) and _settled(run.server),
                      timeout=30)

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    with caplog.at_level(logging.WARNING, logger="kit_otel"):
        monkeypatch.setattr("kit_otel.serve.checkpoint.write_atomically", disk_full)
        receiver.wait_for(lambda: not list(spool.glob("*.ndjson")), timeout=30)
        time.sleep(0.5)
        assert run.thread.is_alive(), "serve ended on a failed write"
        monkeypatch.undo()
    assert any("No space left on device" in r.getMessage() for r in caplog.records)
    later = kit_process(42, 4_000_001, root, turns=1)  # serve still reads new processes
    write_all(spool, later)
    receiver.wait_for(lambda: run.server.processed >= len(ended.lines) + len(later.lines),
                      timeout=30)
    assert run.stop() == 0


def test_a_ci_process_keeps_its_trace_parent_across_a_serve_restart(dirs, receiver):
    """The bridge header (TRACEPARENT, model) is read once; the checkpoint keeps what it said,
    so turns a CI job's KIT runs after serve restarted still join the CI trace."""
    import json
    spool, state, root = dirs
    ci_trace, ci_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    proc = kit_process(21, 40021, root, turns=6)
    name, header = proc.lines[0]
    data = json.loads(header)
    assert data["type"] == "bridge_start"
    data["data"]["Traceparent"] = f"00-{ci_trace}-{ci_span}-01"
    proc.lines[0] = (name, json.dumps(data).encode() + b"\n")
    half = len(proc.lines) // 2
    settings = settings_for(receiver, spool, state, root)
    _append(spool, proc.lines[:half])
    run = InProcess(settings)
    receiver.wait_for(lambda: run.server.processed >= half, timeout=30)
    assert run.stop() == 0
    _append(spool, proc.lines[half:])
    run = InProcess(settings)

    def turn_spans():
        return [s for s in receiver.spans() if s.name == "invoke_agent kit"]
    receiver.wait_for(lambda: len(turn_spans()) >= 6, timeout=30)
    assert run.stop() == 0
    turns = turn_spans()
    assert len(turns) == 6
    assert {(t.trace_id, t.parent_span_id) for t in turns} == {(ci_trace, ci_span)}


def test_a_pid_taken_over_by_a_newer_process_does_not_keep_the_old_files(dirs, receiver):
    """The stream's KIT started its bridge an hour before the process now holding its pid
    (ours) started: pid reuse, so the idle rule removes the files as for a crashed process."""
    spool, state, root = dirs
    old = kit_process(43, os.getpid(), root, turns=1, start_ns=time.time_ns() - 3600 * 10**9)
    write_all(spool, old)
    run = InProcess(settings_for(receiver, spool, state, root, spool_retention_s=0.5),
                    sweep_interval_s=0.1)
    receiver.wait_for(lambda: not list(spool.glob("*.ndjson")), timeout=30,
                      message="the files of a reused pid's old process were kept")
    assert run.stop() == 0
