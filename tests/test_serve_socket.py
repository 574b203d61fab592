"""Socket and TCP input of `kit-otel serve`: owner-only permissions, dedupe with the spool,
and untrusted clients (garbage, a 100 MiB line, malformed lines) that never disturb the others."""

from __future__ import annotations

import os
import random
import socket
import stat
from collections import Counter

import pytest

from otlp_receiver import OTLPReceiver
from test_serve import InProcess, assert_exact_usage, settings_for
from test_serve_helpers import (assert_each_span_once, kit_process, received_spans,
                                reference_spans)

from ports import free_port

from kit_otel.serve.daemon import Server


@pytest.fixture
def dirs(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    return spool, tmp_path / "state", tmp_path / "sessions", tmp_path / "run" / "kit-otel"


@pytest.fixture
def receiver():
    with OTLPReceiver() as rx:
        yield rx




def unix_client(path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    return client


def send_process(process, connect, spool=None) -> None:
    """Send a process's lines the way the bridge does: one connection per bridge instance
    (spool file), and, with `spool`, each line appended to its file first."""
    conns = {}
    try:
        for name, line in process.lines:
            if spool is not None:
                with open(spool / name, "ab") as fh:
                    fh.write(line)
            conn = conns.get(name)
            if conn is None:
                conn = conns[name] = connect()
            conn.sendall(line)
    finally:
        for conn in conns.values():
            conn.close()


def test_socket_is_owner_only_and_tcp_is_loopback(dirs, receiver):
    spool, state, root, rundir = dirs
    sock_path = rundir / "bridge.sock"
    port = free_port()
    run = InProcess(settings_for(receiver, spool, state, root, socket_path=str(sock_path),
                                 tcp_port=port))
    try:
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(rundir).st_mode) == 0o700
        listeners = [s.getsockname() for s in run.server._listeners]
        assert ("127.0.0.1", port) in listeners
    finally:
        assert run.stop() == 0
    assert not sock_path.exists()  # removed on exit


def test_socket_in_a_shared_directory_is_refused(dirs, receiver, caplog):
    spool, state, root, rundir = dirs
    rundir.mkdir(parents=True)
    os.chmod(rundir, 0o755)
    server = Server(settings_for(receiver, spool, state, root,
                                 socket_path=str(rundir / "bridge.sock")))
    assert server.run() == 2
    assert "accessible to others (mode 0755)" in caplog.text


def test_stale_socket_is_replaced_but_a_live_one_is_not(dirs, receiver, caplog):
    spool, state, root, rundir = dirs
    rundir.mkdir(parents=True, mode=0o700)
    path = rundir / "bridge.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves
    run = InProcess(settings_for(receiver, spool, state, root, socket_path=str(path)))
    other = Server(settings_for(receiver, spool.parent / "spool2", state.parent / "state2",
                                root, socket_path=str(path)))  # (one spool dir per daemon)
    assert other.run() == 2
    assert "another process is listening" in caplog.text
    assert run.stop() == 0


def test_socket_and_spool_are_deduplicated(dirs, receiver):
    """The bridge writes every line to its spool file and streams it to the socket: each event
    is translated once, whichever copy comes first."""
    spool, state, root, rundir = dirs
    path = rundir / "bridge.sock"
    procs = [kit_process(81, 40501, root, turns=4, index=0),
             kit_process(82, 40502, root, turns=4, index=1)]
    expected = reference_spans(procs, root)
    run = InProcess(settings_for(receiver, spool, state, root, socket_path=str(path)))
    for p in procs:
        send_process(p, lambda: unix_client(path), spool=spool)
    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=60)
    # every line came twice: exactly one copy of each is dropped, whichever came second
    lines = sum(len(p.lines) for p in procs)
    receiver.wait_for(lambda: sum(s.duplicates for s in run.server.streams.values()) >= lines,
                      timeout=30)
    streams = list(run.server.streams.values())
    assert run.stop() == 0
    assert sum(s.duplicates for s in streams) == lines
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert_each_span_once(receiver)
    assert_exact_usage(receiver, procs)


def test_untrusted_clients(dirs, receiver, caplog):
    """A 100 MiB line, binary garbage and malformed lines are rejected with a clear log line
    and their clients disconnected (or the line skipped); a well-behaved client streaming a
    whole KIT process over TCP at the same time is served completely."""
    caplog.set_level("INFO", logger="kit_otel")
    spool, state, root, rundir = dirs
    path = rundir / "bridge.sock"
    port = free_port()
    good = kit_process(91, 40601, root, turns=4, index=0)
    later = kit_process(92, 40602, root, turns=2, index=1)
    expected = reference_spans([good, later], root)
    run = InProcess(settings_for(receiver, spool, state, root, socket_path=str(path),
                                 tcp_port=port))
    max_bytes = run.server.max_bytes

    # a 100 MiB line: the daemon never holds more than the limit, and hangs up
    huge = unix_client(path)
    sent = 0
    chunk = b"x" * (1 << 20)
    try:
        while sent < 100 << 20:
            huge.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    huge.close()
    assert sent < 100 << 20  # cut off long before the end

    # binary garbage, with newlines: 100 bad lines in a row and it is disconnected
    rng = random.Random(3)
    garbage = unix_client(path)
    try:
        for _ in range(150):
            garbage.sendall(bytes(rng.getrandbits(8) for _ in range(200)).replace(b"\n", b"")
                            + b"\n")
    except OSError:
        pass

    # a client with a few bad lines among good ones stays connected
    mixed = socket.create_connection(("127.0.0.1", port))
    mixed.sendall(b"{\"v\":1,\n" + b"[1,2,3]\n" + b"{\"v\":2,\"ts\":\"x\",\"type\":\"input\"}\n")
    send_process(good, lambda: mixed)  # one connection for all its lines: still in seq order
    send_process(later, lambda: socket.create_connection(("127.0.0.1", port)))

    receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected), timeout=60,
                      message="the good clients were not served")
    receiver.wait_for(lambda: run.server.rejected >= 1 + 100 + 3, timeout=30)
    garbage.close()
    assert run.stop() == 0
    assert Counter(received_spans(receiver)) == Counter(expected)
    assert_each_span_once(receiver)
    assert_exact_usage(receiver, [good, later])
    log = caplog.text
    assert f"line 1 is longer than {max_bytes} bytes; disconnected" in log
    assert "100 bad lines in a row; disconnected" in log
    assert "unsupported format version 2" in log
    assert "has no spool file" in log
    assert receiver.metric_sum("kit_otel.events.rejected", reason="oversize") == 1
    assert receiver.metric_sum("kit_otel.events.rejected") >= 103
