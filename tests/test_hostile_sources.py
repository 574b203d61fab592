"""Streams robust to hostile neighbours (issue 9, "what to build" 2): one test per row of the
poison-input table that concerns `serve`, its sources and StateStore. Each plants the hostile
thing next to a well-behaved KIT process and checks that the daemon neither crashes, stalls nor
goes blind, and that the good process's telemetry arrives whole."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from otlp_receiver import OTLPReceiver
from ports import free_port
from test_serve import InProcess, assert_exact_usage, settings_for
from test_serve_helpers import (ServeProcess, assert_each_span_once, kit_process,
                                received_spans, reference_spans, serve_env, write_all)

from kit_otel.model import events as ev
from kit_otel.model import names as n
from kit_otel.model.decoder import decode_line, encode_event
from kit_otel.cli.generator import KitScript, Step, Usage, write_session_header
from kit_otel.serve.daemon import Server
from kit_otel.sources.spool import pid_alive
from kit_otel.state.state_store import StateFileError, StateStore, sidecar_path


@pytest.fixture
def dirs(tmp_path):
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"
    spool.mkdir(mode=0o700)
    return spool, state, root


@pytest.fixture
def receiver():
    with OTLPReceiver() as rx:
        yield rx


def finishes(call, timeout: float = 5.0):
    """Run `call` in a thread: (finished in time, its result or exception)."""
    box: list = []

    def run():
        try:
            box.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive()), (box[0] if box else None)


# ── FIFO as a spool file, a session file and a sidecar ─────────────────────────────────────

def test_fifos_never_block_serve_and_sigterm_still_stops_it(dirs, receiver):
    spool, state, root = dirs
    proc = kit_process(901, 41001, root, turns=2)
    session_file = Path(proc.events[0].session_path)
    session_file.unlink()
    os.mkfifo(session_file)  # the session file (read for the session id) is a FIFO
    os.mkfifo(sidecar_path(session_file))  # and so is its ext-state sidecar
    os.mkfifo(spool / "kit-41002-20260101T000000.000000000Z-1.ndjson")  # and a spool file
    expected = reference_spans([proc], root)
    serve = ServeProcess(serve_env(receiver, spool, state, root))
    try:
        serve.wait_ready()
        write_all(spool, proc)
        receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30,
                          message="the good process's spans did not arrive")
        time.sleep(1.5)  # the sidecar follower has polled the FIFO sidecar by now
    finally:
        code = serve.terminate(timeout=30)  # would hang (and fail) if an open() blocked
    assert code == 0, serve.text()
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert "kit-41002-20260101T000000.000000000Z-1.ndjson: it is not a regular file" in serve.text()
    assert "is a FIFO" in serve.text()  # the sidecar's one line


# ── the spool directory: mode, ownership, one daemon ───────────────────────────────────────

def test_spool_dir_writable_by_others_is_refused(dirs, receiver, caplog):
    spool, state, root = dirs
    os.chmod(spool, 0o777)
    assert Server(settings_for(receiver, spool, state, root)).run() == 2
    refusal = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(refusal) == 1 and "writable by others (mode 0777)" in refusal[0]
    assert f"chmod 700 {spool}" in refusal[0]


@pytest.mark.skipif(os.getuid() != 0, reason="planting a file of another uid needs root")
def test_spool_file_of_another_user_is_ignored(dirs, receiver, caplog):
    spool, state, root = dirs
    proc = kit_process(902, 41003, root, turns=1)
    expected = reference_spans([proc], root)
    planted = kit_process(903, 41004, root, turns=1)
    write_all(spool, planted)
    for name in planted.files:
        os.chown(spool / name, 4242, 4242)
    write_all(spool, proc)
    run = InProcess(settings_for(receiver, spool, state, root))
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    time.sleep(0.5)
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)  # nothing of the planted one
    assert f"{planted.files[0]}: it belongs to uid 4242" in caplog.text


def test_one_serve_per_spool_dir(dirs, receiver, tmp_path):
    spool, state, root = dirs
    proc = kit_process(904, 41005, root, turns=3)
    expected = reference_spans([proc], root)
    first = ServeProcess(serve_env(receiver, spool, state, root,
                                   KIT_OTEL_SPOOL_RETENTION_S="0.5"))
    try:
        first.wait_ready()
        second = ServeProcess(serve_env(receiver, spool, tmp_path / "other-state", root,
                                        KIT_OTEL_SPOOL_RETENTION_S="0.5"))
        assert second.proc.wait(30) == 2
        second._reader.join(5)
        errors = [line for line in second.log if "ERROR" in line]
        assert len(errors) == 1, second.text()
        assert f"another kit-otel serve (pid {first.proc.pid}, state directory {state})" \
            in errors[0] and f"spool directory {spool}" in errors[0]
        write_all(spool, proc)
        receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    finally:
        assert first.terminate() == 0, first.text()
    assert Counter(received_spans(receiver)) == Counter(expected)


# ── a pid that does not fit pid_t ──────────────────────────────────────────────────────────

def test_pid_beyond_pid_t_does_not_kill_retention(dirs, receiver):
    spool, state, root = dirs
    assert pid_alive(2**63) is False and pid_alive(2**31) is False  # no OverflowError
    huge = 2**40
    name = f"kit-{huge}-20260101T000000.000000000Z-1.ndjson"
    with open(spool / name, "wb") as fh:
        now = time.time_ns()
        fh.write(encode_event(ev.make_event("bridge_start", now, seq=1, pid=huge,
                                            source="bridge",
                                            data=ev.BridgeStart(BridgeVersion="t"))))
        fh.write(encode_event(ev.make_event("session_shutdown", now, seq=2, pid=huge,
                                            source="bridge", data=ev.SessionShutdown())))
    good = kit_process(905, 41006, root, turns=1)
    expected = reference_spans([good], root)
    write_all(spool, good)
    run = InProcess(settings_for(receiver, spool, state, root, spool_retention_s=0.2),
                    sweep_interval_s=0.1)
    receiver.wait_for(lambda: name in run.server.removed_files, timeout=30,
                      message="retention did not get past the huge pid")
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    assert run.thread.is_alive() and run.code is None
    assert run.stop() == 0


# ── an ext-state sidecar linked outside the sessions root ──────────────────────────────────

def test_sidecar_linked_outside_the_sessions_root_is_not_read(dirs, receiver, tmp_path, caplog):
    spool, state, root = dirs
    session = root / "home--bob--api" / "2026-11-25T10-00-00-000Z_abcdefabcdef.jsonl"
    write_session_header(session, "/home/bob/api", "e" * 32, time.time_ns())
    outside = tmp_path / "elsewhere.json"
    outside.write_text('{"secret": "CANARY-OUTSIDE"}')
    sidecar_path(session).symlink_to(outside)
    script = KitScript(pid=41007, session_path=str(session), start_ns=time.time_ns(),
                       provider="openai", model="gpt-5-mini", budget_extension=False)
    script.turn("hello", [Step(text="ok", usage=Usage(10, 1))])
    spool_file = spool / "kit-41007-20261125T100000Z-1.ndjson"
    events = [ev.make_event("bridge_start", time.time_ns(), pid=41007, session_path=str(session),
                            source="bridge", data=ev.BridgeStart(BridgeVersion="test"))]
    events += script.events
    with open(spool_file, "wb") as fh:
        for seq, event in enumerate(events, 1):
            event.seq, event.state = seq, None  # no state from the bridge: the sidecar counts
            fh.write(encode_event(event))
    run = InProcess(settings_for(receiver, spool, state, root))
    receiver.wait_for(lambda: [s for s in receiver.spans() if s.name == n.SPAN_TURN], 30)
    time.sleep(1.5)  # the follower polls the sidecar once a second
    assert run.stop() == 0
    assert all("CANARY-OUTSIDE" not in repr(s.attributes) for s in receiver.spans())
    assert "outside the sessions root" in caplog.text


# ── spool file truncated or rotated under serve ────────────────────────────────────────────

@pytest.mark.parametrize("how", ["truncate", "rotate"])
def test_spool_file_truncated_or_rotated_while_serving(dirs, receiver, how, caplog):
    spool, state, root = dirs
    proc = kit_process(906, 41008, root, turns=4)
    expected = reference_spans([proc], root)
    main = proc.files[0]
    half = len(proc.lines) // 2
    run = InProcess(settings_for(receiver, spool, state, root))
    for name, line in proc.lines[:half]:
        with open(spool / name, "ab") as fh:
            fh.write(line)
    receiver.wait_for(lambda: run.server.processed >= half, timeout=30)
    if how == "truncate":  # logrotate's copytruncate: same inode, back to 0 bytes
        os.truncate(spool / main, 0)
    else:  # moved away (not a spool name any more), a new file at the old name
        os.rename(spool / main, spool / (main + ".1"))
    for name, line in proc.lines[half:]:
        with open(spool / name, "ab") as fh:
            fh.write(line)
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30,
                      message="lines written after the truncation/rotation were not read")
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert_each_span_once(receiver)
    assert_exact_usage(receiver, [proc])
    word = "truncated" if how == "truncate" else "replaced by another file"
    assert f"spool file {spool / main} was {word}" in caplog.text


@pytest.mark.parametrize("how", ["truncate", "rotate"])
def test_spool_file_truncated_or_rotated_while_serve_was_stopped(dirs, receiver, how, caplog):
    """The checkpoint's offset points into content that is not there any more, and the new
    content is longer than the offset: serve reads it from the start (seen lines skipped by seq)
    instead of from the middle of a line, and nothing is rejected or lost."""
    spool, state, root = dirs
    proc = kit_process(906, 41011, root, turns=4)
    expected = reference_spans([proc], root)
    main = proc.files[0]
    # up to the end of the first turn: a quiescent point, so the checkpoint covers it all (what
    # a rotation takes away after an uncommitted read is lost to any reader of the name)
    cut = next(i for i, (_, line) in enumerate(proc.lines) if b'"type":"agent_end"' in line) + 1
    first = proc.lines[:cut]
    assert all(name == main for name, _ in first)
    settings = settings_for(receiver, spool, state, root)
    write_all(spool, type(proc)(proc.pid, first, proc.events))
    run = InProcess(settings)
    receiver.wait_for(lambda: run.server.processed >= len(first), timeout=30)
    assert run.stop() == 0
    if how == "truncate":
        os.truncate(spool / main, 0)
    else:
        os.rename(spool / main, spool / (main + ".1"))
    write_all(spool, type(proc)(proc.pid, proc.lines[cut:], proc.events))
    assert (spool / main).stat().st_size > sum(len(line) for _, line in first)
    run = InProcess(settings)
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert run.server.rejected == 0
    assert not receiver.metric_sum("kit_otel.dropped", source="spool_gap")
    assert f"spool file {spool / main} was rewritten" in caplog.text


# ── StateStore on hostile files ────────────────────────────────────────────────────────────

def test_state_store_on_a_fifo_a_directory_and_a_huge_file(tmp_path):
    session = tmp_path / "s.jsonl"
    sidecar = sidecar_path(session)
    store = StateStore(session)
    for make, reason in ((os.mkfifo, "is a FIFO"), (os.mkdir, "is a directory")):
        make(sidecar)
        for call in (store.snapshot, lambda: store.get("k"), lambda: store.set("k", "v")):
            done, result = finishes(call)
            assert done, f"StateStore hung on a sidecar that {reason}"
            assert isinstance(result, StateFileError) and reason in str(result), result
        os.rmdir(sidecar) if sidecar.is_dir() else os.unlink(sidecar)
    with open(sidecar, "wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB (sparse): refused before anything is read
    import tracemalloc
    tracemalloc.start()
    with pytest.raises(StateFileError, match="over the limit"):
        store.snapshot()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20


def test_state_store_never_creates_a_lock_through_a_link(tmp_path):
    session = tmp_path / "s.jsonl"
    store = StateStore(session)
    target = tmp_path / "victim"
    store.lock_path.symlink_to(target)
    with pytest.raises(StateFileError, match="cannot use as lock file"):
        store.set("k", "v")
    assert not target.exists() and not store.path.exists()
    store.lock_path.unlink()
    os.mkfifo(store.lock_path)
    done, result = finishes(lambda: store.set("k", "v"))
    assert done and isinstance(result, StateFileError) and "is a FIFO" in str(result)


# ── a line with a too-large seq ────────────────────────────────────────────────────────────

def _with_seq(line: bytes, seq: int) -> bytes:
    import json
    data = json.loads(line)
    data["seq"] = seq
    return json.dumps(data).encode() + b"\n"


@pytest.mark.parametrize("corruption", ["far", "near"])
def test_too_large_seq_in_a_spool_file_never_blinds_the_process(dirs, receiver, corruption):
    """A corrupted digit makes one line's seq too large: that line is rejected (and counted),
    every real line after it is still translated."""
    spool, state, root = dirs
    proc = kit_process(907, 41009, root, turns=4)
    bad = next(i for i, (_, line) in enumerate(proc.lines)
               if i > 10 and b'"message_update"' in line)
    name, line = proc.lines[bad]
    seq = bad + 1
    proc.lines[bad] = (name, _with_seq(line, 10**9 if corruption == "far" else seq + 40))
    good = proc.lines[:bad] + proc.lines[bad + 1:]
    expected = reference_spans([type(proc)(proc.pid, good, proc.events)], root)
    write_all(spool, proc)
    run = InProcess(settings_for(receiver, spool, state, root), gap_wait_s=0.3)
    receiver.wait_for(lambda: run.server.processed >= len(good), timeout=30,
                      message="lines after the bad seq were not translated")
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert receiver.metric_sum("kit_otel.events.rejected", reason="seq_jump") == 1
    # the real line it replaced is a hole: waited for, skipped and counted like any other
    assert receiver.metric_sum("kit_otel.dropped", source="spool_gap") == 1


def test_a_line_rejected_for_one_field_keeps_its_seq_and_stalls_nothing(dirs, receiver):
    """A line whose envelope still says pid and seq, refused for one bad field (here `ts`), is
    rejected in its turn: the lines after it do not wait out the gap time for its seq, and it is
    counted as rejected, not also as lost before kit-otel (spool_gap)."""
    import json
    spool, state, root = dirs
    proc = kit_process(906, 41010, root, turns=3)
    bad = [i for i, (_, line) in enumerate(proc.lines) if i > 5 and b'"message_update"' in line][:3]
    for i in bad:
        name, line = proc.lines[i]
        data = json.loads(line)
        data["ts"] = "not a timestamp"
        proc.lines[i] = (name, json.dumps(data).encode() + b"\n")
    write_all(spool, proc)
    run = InProcess(settings_for(receiver, spool, state, root), gap_wait_s=30)
    receiver.wait_for(lambda: run.server.processed + run.server.rejected >= len(proc.lines),
                      timeout=20, message="the lines after a rejected one waited for its seq")
    assert run.server.rejected == len(bad)
    assert sum(s.missing_seqs for s in run.server.streams.values()) == 0
    assert run.stop() == 0
    assert receiver.metric_sum("kit_otel.events.rejected", reason="invalid_field") == len(bad)
    assert not receiver.metric_sum("kit_otel.dropped", source="spool_gap")


def test_a_rejected_line_never_decides_where_a_stream_starts(tmp_path):
    """A stream's first line, rejected, with a seq far ahead (or one refused as out of range):
    taken in file order, so the real lines from seq 1 are all translated, and nothing crashes
    when the gap wait later looks at it."""
    import json
    from kit_otel.sources.spool import SpoolFile, Stream

    def line(seq, ts="2025-01-01T00:00:00.000000001Z"):
        return json.dumps({"v": 1, "ts": ts, "type": "error", "seq": seq, "pid": 42,
                           "data": {"Error": "x"}}) + "\n"
    for bad in (line(1000, ts="garbage"), line(2 << 41)):
        folder = tmp_path / str(len(bad))
        folder.mkdir()
        (folder / "kit-42-b.ndjson").write_text(line(1))
        (folder / "kit-42-a.ndjson").write_text(bad + line(2) + line(3))
        stream = Stream("k", 42)
        for name in ("kit-42-a.ndjson", "kit-42-b.ndjson"):
            stream.add_file(SpoolFile(str(folder / name)))
        now, taken = time.time(), []
        for at in (now, now, now, now, now + 6, now + 6):
            item = stream.next_item(at, 5.0)
            if item is not None:
                taken.append(item.event.seq if item.event else "rejected")
        assert taken == ["rejected", 1, 2, 3] and stream.duplicates == 0, taken


def test_tcp_peer_with_a_huge_seq_cannot_blind_a_spool_stream(dirs, receiver, caplog):
    import socket as socketlib
    spool, state, root = dirs
    proc = kit_process(908, 41010, root, turns=3)
    expected = reference_spans([proc], root)
    half = len(proc.lines) // 2
    for name, line in proc.lines[:half]:
        with open(spool / name, "ab") as fh:
            fh.write(line)
    run = InProcess(settings_for(receiver, spool, state, root, tcp_port=free_port()), gap_wait_s=0.3)
    receiver.wait_for(lambda: run.server.processed >= half, timeout=30)
    with socketlib.create_connection(("127.0.0.1", run.server.tcp_port)) as peer:
        peer.sendall(_with_seq(proc.lines[half][1], 10**9))
        time.sleep(0.5)
    for name, line in proc.lines[half:]:
        with open(spool / name, "ab") as fh:
            fh.write(line)
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=30)
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert receiver.metric_sum("kit_otel.events.rejected", reason="seq_jump") == 1
    assert "seq: seq 1000000000 is" in caplog.text


# ── long outage with a full queue: the idle sweep waits with the input ─────────────────────

def test_idle_sweep_pauses_while_input_is_paused(dirs, monkeypatch):
    """KIT process A is mid-turn when a collector outage fills the queue (with process B's
    turns) and input pauses; A writes the rest of its turn meanwhile. The pause outlasts the
    idle timeout, but A's turn is not closed as incomplete: its events were waiting."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    spool, state, root = dirs
    probe = kit_process(909, 41011, root, turns=3, start_ns=0)
    split = next(i for i, (_, line) in enumerate(probe.lines)
                 if i > len(probe.lines) // 3 and b'"tool_execution_start"' in line)
    offset = decode_line(probe.lines[split - 1][1]).ts_ns  # A's last event before the pause
    b = kit_process(910, 41012, root, turns=5, start_ns=time.time_ns() - 3600 * 10**9, index=1)
    with OTLPReceiver() as rx:
        rx.fail_with("UNAVAILABLE")
        run = InProcess(settings_for(rx, spool, state, root, idle_timeout_s=2),
                        max_queue_spans=10, sweep_interval_s=0.1, backoff_initial_s=0.1,
                        backoff_max_s=0.3)
        # A's last event before the pause happens one second from now: A is not idle yet
        a = kit_process(909, 41011, root, turns=3, start_ns=time.time_ns() + 10**9 - offset)
        for name, line in a.lines[:split]:
            with open(spool / name, "ab") as fh:
                fh.write(line)
        rx.wait_for(lambda: run.server.processed >= split, timeout=30)
        assert run.server.translator.open_turn_count() == 1  # A is mid-turn, caught up
        write_all(spool, b)  # B's turns fill the export queue: input pauses
        processor = run.server.processor
        rx.wait_for(lambda: processor.full, timeout=30)
        for name, line in a.lines[split:]:  # A goes on writing while serve does not read
            with open(spool / name, "ab") as fh:
                fh.write(line)
        time.sleep(5)  # the idle timeout passes, with nothing read
        assert processor.full
        expected = reference_spans([a, b], root)
        turns = sum(1 for key, _ in expected if key[0] == n.SPAN_TURN)
        rx.fail_with(None)
        rx.wait_for(lambda: len(received_spans(rx)) >= len(expected), timeout=60)
        time.sleep(0.5)
        assert run.stop() == 0
        got = received_spans(rx)
    assert not [s for s in rx.spans() if s.attributes.get("kit.turn.incomplete")]
    assert sum(1 for key, _ in got if key[0] == n.SPAN_TURN) == turns
    assert Counter(got) == Counter(expected)


# ── far-future timestamp in replay ─────────────────────────────────────────────────────────

def test_far_future_timestamp_in_replay_leaves_other_sessions_turns_alone(tmp_path):
    from harness import make_harness
    from kit_otel.translate.translator import TranslatorSettings
    from kit_otel.translate.translator import _SWEEP_EVERY

    h = make_harness(TranslatorSettings(sessions_root=str(tmp_path)))
    now = time.time_ns()
    slow = KitScript(pid=41013, session_path=str(tmp_path / "a.jsonl"), start_ns=now,
                     provider="openai", model="gpt-5-mini", budget_extension=False)
    slow.turn("long one", [Step(text="thinking", usage=Usage(10, 1))])
    opening = [e for e in slow.events if e.type != "agent_end"]
    ending = [e for e in slow.events if e.type == "agent_end"]
    h.feed(opening)  # session A: a turn open, waiting for its agent_end
    far = KitScript(pid=41014, session_path=str(tmp_path / "b.jsonl"),
                    start_ns=now + 200 * 365 * 86400 * 10**9,  # ~2226: encodable, absurd
                    provider="openai", model="gpt-5-mini", budget_extension=False)
    while len(far.events) < 2 * _SWEEP_EVERY:  # enough events for the replay sweeps to run
        far.turn("ok", [Step(text="ok", usage=Usage(1, 1))])
    h.feed(far.events)
    assert h.translator.open_turn_count() == 1  # A's turn is still open
    h.feed(ending)
    turns = [s for s in h.spans if s.name == n.SPAN_TURN]
    a_turn = next(s for s in turns if s.attributes.get("kit.pid") == 41013)
    assert not a_turn.attributes.get("kit.turn.incomplete")


# ── 10k distinct pids over TCP ─────────────────────────────────────────────────────────────

def test_ten_thousand_pids_over_tcp_are_bounded_and_delay_nobody(dirs, receiver):
    import json
    import socket as socketlib
    spool, state, root = dirs
    run = InProcess(settings_for(receiver, spool, state, root, tcp_port=free_port()))
    server = run.server
    opts = server.options
    now = time.time_ns()
    pids = list(range(100_000, 110_000))
    per_connection = opts.max_pids_per_connection + 1  # one more than a client may speak for
    refused = 0
    for start in range(0, len(pids), per_connection):
        batch = pids[start: start + per_connection]
        refused += len(batch) == per_connection
        with socketlib.create_connection(("127.0.0.1", server.tcp_port)) as peer:
            peer.sendall(b"".join(encode_event(ev.make_event(
                "session_start", now, seq=1, pid=pid, session_path=f"/x/{pid}.jsonl",
                source="python", data=ev.SessionStart())) for pid in batch))
    receiver.wait_for(lambda: server.processed + server.rejected >= len(pids), timeout=60)
    assert server.rejected == refused  # the line over the per-connection pid limit
    # an unrelated KIT process's spool file is not held up behind them
    proc = kit_process(911, 41015, root, turns=2)
    expected = reference_spans([proc], root)
    write_all(spool, proc)
    mine = {key for key, _ in expected}
    receiver.wait_for(lambda: len([k for k, _ in received_spans(receiver) if k in mine])
                      >= len(expected), timeout=30,
                      message="the spool file's spans waited behind the socket peers")
    assert server.socket_streams <= opts.max_socket_streams
    assert len(server.translator.sessions) <= opts.max_socket_streams + 2
    assert run.stop() == 0
    assert Counter(r for r in received_spans(receiver) if r[0] in mine) == Counter(expected)
    saved = json.loads((state / "serve-checkpoint.json").read_text())
    assert [s["pid"] for s in saved["streams"].values()] == [41015]  # no socket-only stream
    assert receiver.metric_sum("kit_otel.events.rejected", reason="peer_limit") == refused
    # every accepted session still counted (in the daemon's totals, which survive restarts)
    assert receiver.metric_sum("kit.sessions") == len(pids) - refused + 1


def test_a_fast_socket_client_is_throttled_not_dropped(dirs, receiver):
    import socket as socketlib
    spool, state, root = dirs
    run = InProcess(settings_for(receiver, spool, state, root, tcp_port=free_port()),
                    max_lines_per_connection_s=500)
    server = run.server
    now = time.time_ns()
    lines = [encode_event(ev.make_event("terminal_resize", now + i, seq=i + 1, pid=41016,
                                        source="python", data={}))
             for i in range(1500)]
    with socketlib.create_connection(("127.0.0.1", server.tcp_port)) as peer:
        peer.sendall(b"".join(lines))
        receiver.wait_for(lambda: server.throttles >= 2, timeout=30)
        receiver.wait_for(lambda: server.processed >= 1500, timeout=30,
                          message="throttled lines were lost")
    assert server.rejected == 0
    assert run.stop() == 0
