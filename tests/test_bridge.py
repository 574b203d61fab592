"""The bridge (src/kit_otel/bridge/kit_otel_bridge.go) loaded the way KIT loads it, fed every KIT
event, and its NDJSON read back with kit-otel's own decoder.

The KIT side is tests/bridge/gopath: a stand-in for KIT's `kit/ext` package (both API variants:
the seed commit and HEAD) and `kithost`, a driver that fires events through it. See
tests/bridge/kithost.py for the three ways it runs (yaegi CLI, compiled host embedding the yaegi
library, plain go build).
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from kit_otel.bridge import BRIDGE_PATH, OPTIONS, option_env_name
from kit_otel.model.decoder import decode_line
from kit_otel.model.events import DATA_TYPES, KIT_EVENT_TYPES, Event

sys.path.insert(0, str(Path(__file__).parent / "bridge"))
from kithost import GOPATH_SRC, MODES, VARIANTS, KitHost, unavailable  # noqa: E402

NEWER = {"thinking_level_change", "terminal_resize", "turn_state_change"}
RUN_MODES = ("cli", "host")  # the two that interpret the bridge with yaegi


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def hosts(tmp_path_factory):
    built: dict[tuple[str, str], KitHost] = {}

    def get(mode: str, variant: str) -> KitHost:
        reason = unavailable(mode)
        if reason:
            pytest.skip(f"{mode} harness unavailable: {reason}")
        key = (mode, variant)
        if key not in built:
            host = KitHost(mode, variant, tmp_path_factory.mktemp(f"kithost-{mode}-{variant}"))
            host.prepare()
            built[key] = host
        return built[key]

    return get


def params(modes=RUN_MODES, variants=VARIANTS):
    return [pytest.param(m, v, id=f"{m}-{v}") for m in modes for v in variants]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def decode_all(lines: list[bytes], source: str = "spool") -> list[Event]:
    return [decode_line(line, source=source, lineno=i + 1) for i, line in enumerate(lines)]


def expected_data(fired: dict, capture: bool = False) -> dict:
    """The data the bridge should send for a fired event, as a dict of the decoded struct."""
    data = dict(fired["data"])
    if fired["type"] == "tool_call" and not capture:
        data["ParsedArgs"] = None  # the duplicate of Input travels only with content capture
    if fired["type"] in ("context_prepare", "prepare_step"):
        messages = data.pop("Messages", None) or []
        data["MessageCount"] = len(messages)
        data["MessageBytes"] = sum(len(m["Content"].encode()) for m in messages)
        data["Messages"] = messages if capture and messages else None
    return msgspec.structs.asdict(msgspec.convert(data, DATA_TYPES[fired["type"]]))


def check_header(event: Event, pid: int):
    assert event.type == "bridge_start"
    assert event.pid == pid
    assert event.source == "bridge"
    assert event.data.BridgeVersion
    assert event.data.StartedAt
    # StartedAt and ts are the same instant.
    assert event.ts_ns == decode_line(
        json.dumps({"v": 1, "ts": event.data.StartedAt, "type": "x"})).ts_ns
    assert set(OPTIONS) <= set(event.data.Options)


def content_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type != "bridge_start"]


# ---------------------------------------------------------------------------
# static checks
# ---------------------------------------------------------------------------

def test_gofmt_clean():
    if not _which("gofmt"):
        pytest.skip("gofmt is not installed")
    paths = [str(BRIDGE_PATH), str(GOPATH_SRC), str(Path(__file__).parent / "bridge" / "extensions")]
    proc = subprocess.run(["gofmt", "-l", *paths], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("variant", VARIANTS)
def test_go_vet(hosts, variant):
    host = hosts("native", variant)
    proc = host.vet()
    assert proc.returncode == 0, proc.stderr


def test_bridge_file_is_a_kit_extension():
    src = BRIDGE_PATH.read_text()
    first = src.splitlines()[0]
    assert first == "//go:build ignore"
    # A `// +build` line would make older Yaegi skip the file when KIT evaluates it.
    assert "// +build" not in src
    assert "\npackage main\n" in src
    assert '"kit/ext"' in src
    assert "\nfunc Init(api ext.API) {" in src
    # The newer KIT methods are never named in code (only looked up by name).
    for method in ("OnThinkingLevelChange", "OnTerminalResize", "OnTurnStateChange"):
        assert f"api.{method}(" not in src
    for name in ("ThinkingLevelChangeEvent", "TerminalResizeEvent", "TurnStateChangeEvent"):
        assert f"ext.{name}" not in src


def test_yaegi_cli_can_build_handlers_by_reflection(tmp_path):
    """The mechanism the bridge uses for On* methods an older KIT lacks - MethodByName on a
    compiled value, reflect.MakeFunc around an interpreted closure, Call - works in the yaegi
    interpreter. (The host mode tests run the bridge itself this way against a compiled API.)"""
    reason = unavailable("cli")
    if reason:
        pytest.skip(reason)
    prog = tmp_path / "main.go"
    prog.write_text('''package main

import (
	"fmt"
	"reflect"
	"sync"
)

func main() {
	var m sync.Map
	m.Store("k", 42)
	method := reflect.ValueOf(&m).MethodByName("Range")
	if !method.IsValid() {
		fmt.Println("no method")
		return
	}
	ht := method.Type().In(0)
	seen := []string{}
	fn := reflect.MakeFunc(ht, func(args []reflect.Value) []reflect.Value {
		seen = append(seen, fmt.Sprint(args[0].Interface(), "=", args[1].Interface()))
		return []reflect.Value{reflect.ValueOf(true)}
	})
	method.Call([]reflect.Value{fn})
	fmt.Println(seen)
}
''')
    proc = subprocess.run(["yaegi", "run", str(prog)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[k=42]"


# ---------------------------------------------------------------------------
# round trip: every event type
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,variant", params(MODES))
def test_every_event_round_trips(hosts, tmp_path, mode, variant):
    host = hosts(mode, variant)
    t0 = time.time_ns()
    run = host.run("roundtrip", tmp_path)
    t1 = time.time_ns()
    files = run.spool_files()
    assert len(files) == 1, files
    pid = run.result["pid"]
    assert files[0].name.startswith(f"kit-{pid}-")
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(run.spool.stat().st_mode) == 0o700

    events = decode_all(run.lines())
    check_header(events[0], pid)
    body = content_events(events)
    fired = run.handled_fired
    assert [e.type for e in body] == [f["type"] for f in fired]
    for event, f in zip(body, fired):
        assert msgspec.structs.asdict(event.data) == expected_data(f), f["type"]
        assert event.session_path == f["session_path"], f["type"]
        assert event.pid == pid
        assert event.source == "bridge"
        assert event.agent == "main"
        assert event.dropped == 0
        assert t0 <= event.ts_ns <= t1
    # seq: strictly increasing from the header on; ts never goes back.
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1
    assert all(a.ts_ns <= b.ts_ns for a, b in zip(body, body[1:]))
    assert body[-1].type == "session_shutdown"

    captured = {e.type for e in body}
    seen_types = {f["type"] for f in run.fired}
    if variant == "seed":
        assert captured == KIT_EVENT_TYPES - NEWER
        assert not (seen_types & NEWER)  # the seed API cannot even express them
    elif mode == "cli":
        # Interpreted stand-in: its API has no reflect-visible methods, so the reflection
        # path finds nothing (the host mode runs it against a compiled API, as in KIT).
        assert captured == KIT_EVENT_TYPES - NEWER
        assert NEWER <= seen_types
    else:
        assert captured == KIT_EVENT_TYPES
        assert set(events[0].data.Options["reflected"].split(",")) == NEWER
    assert set(run.result["handled"]) == captured
    # The writer goroutine is gone after session_shutdown.
    assert run.result["goroutines_after"] <= run.result["goroutines_before"]
    # Options registered with KIT, with the documented defaults.
    registered = {o["Name"]: o["Default"] for o in run.result["options"]}
    assert registered == OPTIONS


@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_context_sizes_and_content_capture(hosts, tmp_path, mode, variant):
    host = hosts(mode, variant)
    plain = host.run("roundtrip", tmp_path / "plain")
    captured = host.run("roundtrip", tmp_path / "capture",
                        env={option_env_name("kit-otel-capture-content"): "true"})
    for run, capture in ((plain, False), (captured, True)):
        body = content_events(decode_all(run.lines()))
        fired = {f["type"]: f for f in run.handled_fired}
        for typ in ("context_prepare", "prepare_step"):
            event = next(e for e in body if e.type == typ)
            assert msgspec.structs.asdict(event.data) == expected_data(fired[typ], capture)
            assert event.data.MessageCount == len(fired[typ]["data"]["Messages"])
            assert (event.data.Messages is not None) == capture
        raw = b"".join(run.lines())
        assert (b"You are KIT." in raw) == capture


# ---------------------------------------------------------------------------
# never block, count what is dropped
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_full_queue_drops_are_counted_and_never_block(hosts, tmp_path, mode, variant):
    """The writer is held back (a 10 s flush interval); 500 events meet a queue of 16."""
    host = hosts(mode, variant)
    run = host.run("drops", tmp_path, env={option_env_name("kit-otel-queue-size"): "16",
                                          option_env_name("kit-otel-flush-ms"): "10000",
                                          "KITHOST_EVENTS": "500"}, timeout=60)
    # The driver fired all 500 while the writer was still stalled: no handler waited for it.
    assert run.result["worst_handler_us"] < 200_000
    body = content_events(decode_all(run.lines()))
    updates = [e for e in body if e.type == "message_update"]
    dropped = sum(e.dropped for e in body)
    ended = [e for e in body if e.type == "agent_end"]
    assert 0 < len(updates) <= 17
    assert dropped > 0
    # Every event fired after session_start is either in the file or counted.
    assert len(updates) + len(ended) + dropped == run.result["fired_updates"] + 1
    # The survivors are the first ones, in order; the count shows on a later line.
    assert [e.data.Chunk for e in updates] == [f"chunk {i}" for i in range(len(updates))]
    first_with_count = next(i for i, e in enumerate(body) if e.dropped)
    assert body[first_with_count - 1].type in ("message_update", "message_start", "session_start")
    assert body[-1].type == "session_shutdown"


@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_a_huge_queue_size_is_bounded_not_fatal(hosts, tmp_path, mode, variant):
    """The queue is allocated when the bridge starts, in KIT's own memory: a typo of a size
    (a trillion) is held to the bound instead of failing the allocation."""
    host = hosts(mode, variant)
    run = host.run("roundtrip", tmp_path, env={
        option_env_name("kit-otel-queue-size"): "1000000000000",
        option_env_name("kit-otel-flush-ms"): "99999999"})
    body = decode_all(run.lines())
    assert body[0].type == "bridge_start" and body[-1].type == "session_shutdown"
    assert body[0].data.Options["kit-otel-queue-size"] == str(1 << 20)


class SocketServer:
    """A Unix socket listener that either reads everything or never reads."""

    def __init__(self, path: Path, read: bool, private: bool = True):
        self.path = path
        self.read = read
        self.received = bytearray()
        self.connections = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700 if private else 0o755)  # serve makes its socket's folder 0700
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self.conns.append(conn)
            if self.read:
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()
            else:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def _read(self, conn):
        while True:
            data = conn.recv(65536)
            if not data:
                return
            self.received.extend(data)

    def close(self):
        self.stop.set()
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_socket_stream_carries_the_same_lines(hosts, tmp_path, mode, variant):
    host = hosts(mode, variant)
    sock_path = tmp_path / "run" / "kit-otel" / "bridge.sock"
    server = SocketServer(sock_path, read=True)
    try:
        # "auto": $XDG_RUNTIME_DIR/kit-otel/bridge.sock
        run = host.run("roundtrip", tmp_path, env={option_env_name("kit-otel-socket"): "auto"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and bytes(server.received) != b"".join(run.lines()):
            time.sleep(0.05)
    finally:
        server.close()
    assert server.connections == 1
    assert bytes(server.received) == b"".join(run.lines())
    assert decode_line(bytes(server.received).split(b"\n", 1)[0]).type == "bridge_start"


@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_no_events_go_to_a_socket_others_can_reach(hosts, tmp_path, mode, variant):
    """A listener in a folder that is not private (another user's, next to a spool directory
    in a shared place) gets nothing; the spool file still gets every event."""
    host = hosts(mode, variant)
    sock_path = tmp_path / "open-to-all" / "bridge.sock"
    server = SocketServer(sock_path, read=True, private=False)
    try:
        run = host.run("roundtrip", tmp_path, env={option_env_name("kit-otel-socket"):
                                                   str(sock_path)})
        time.sleep(0.3)
    finally:
        server.close()
    assert server.connections == 0 and not server.received
    assert decode_all(run.lines())[-1].type == "session_shutdown"


@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_stalled_socket_reader_costs_no_events(hosts, tmp_path, mode, variant):
    """A socket reader that never reads: the writer gives up on it after a short wait, the
    handlers never notice, and the spool file still gets every event."""
    host = hosts(mode, variant)
    sock_path = tmp_path / "sock" / "stalled.sock"
    server = SocketServer(sock_path, read=False)
    try:
        run = host.run("drops", tmp_path, env={
            option_env_name("kit-otel-socket"): str(sock_path),
            option_env_name("kit-otel-queue-size"): "100000",
            "KITHOST_EVENTS": "3000", "KITHOST_CHUNK": "4096"}, timeout=90)
    finally:
        server.close()
    assert server.connections >= 1
    body = content_events(decode_all(run.lines()))
    assert sum(e.dropped for e in body) == 0
    assert len([e for e in body if e.type == "message_update"]) == 3000
    # a bound against waiting on the writer (the stalled socket), not a performance figure:
    # the queue never fills, so a handler that waited would be the bridge's fault
    assert run.result["worst_handler_us"] < 1_000_000


# ---------------------------------------------------------------------------
# shutdown, reload, subagents
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_shutdown_flushes_everything_queued(hosts, tmp_path, mode, variant):
    """The writer only collects every 10 s here, so at session_shutdown all 2000 events are
    still queued: the shutdown handler must get them to disk before it returns."""
    host = hosts(mode, variant)
    run = host.run("drops", tmp_path, env={
        option_env_name("kit-otel-flush-ms"): "10000",
        option_env_name("kit-otel-queue-size"): "100000",
        option_env_name("kit-otel-shutdown-timeout-ms"): "20000",
        "KITHOST_EVENTS": "2000", "KITHOST_NO_STALL": "1"}, timeout=60)
    body = content_events(decode_all(run.lines()))
    assert len([e for e in body if e.type == "message_update"]) == 2000
    assert body[-1].type == "session_shutdown"
    assert run.result["shutdown_ms"] < 10_000


@pytest.mark.parametrize("mode,variant", params())
def test_hot_reload_neither_duplicates_nor_leaks(hosts, tmp_path, mode, variant):
    host = hosts(mode, variant)
    run = host.run("reload", tmp_path, env={"KITHOST_ROUNDS": "3"})
    files = run.spool_files()
    assert len(files) == 3
    all_seqs = []
    for round_no, f in enumerate(files):
        events = decode_all(run.lines(f))
        check_header(events[0], run.result["pid"])
        body = content_events(events)
        assert [e.type for e in body] == ["session_start", "input", "agent_start", "agent_end",
                                          "session_shutdown"]
        assert body[1].data.Text == f"round {round_no}"
        assert all(e.agent == "main" for e in events)
        all_seqs.extend(e.seq for e in events)
    # One process-wide sequence across reloads: no repeats, always increasing.
    assert all_seqs == sorted(set(all_seqs))
    before = run.result["goroutines_before"]
    assert all(after <= before for after in run.result["goroutines_after"])


@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_child_agent_instances_are_marked_subagent(hosts, tmp_path, mode, variant):
    """KIT runs subagents as in-process child Kits that load the global extensions, inside the
    subagent tool's Run, on the goroutine of that call's tool_execution_start: that instance is
    `subagent`, names the call, and writes the parent's session. A second session with a Context
    of its own (ACP) is `main`, and so is a lone Kit without a Context."""
    host = hosts(mode, variant)
    run = host.run("subagent", tmp_path)
    files = run.spool_files()
    assert len(files) == 5  # parent, child, sibling, a fresh one after all, a lone SDK one
    parent, child, sibling, again, lone = (decode_all(run.lines(f)) for f in files)
    assert {e.agent for e in parent} == {"main"}
    assert {e.agent for e in child} == {"subagent"}
    assert {e.agent for e in sibling} == {"main"}
    assert {e.agent for e in again} == {"main"}
    assert {e.agent for e in lone} == {"main"}
    assert [e.type for e in content_events(child)] == ["input", "agent_start", "agent_end",
                                                       "session_shutdown"]
    assert {e.session_path for e in child} == {run.result["main_path"]}
    assert {e.parent_tool_call_id for e in child} == {"toolu_S"}
    assert {e.session_path for e in parent} == {run.result["main_path"]}
    # The child's GetOption knows nothing: it takes the options its parent resolved.
    assert parent[0].data.Options["kit-otel-queue-size"] == "777"
    assert child[0].data.Options["kit-otel-queue-size"] == "777"
    # No state API in a Context KIT never set: no state on the child's boundaries either.
    assert all(e.state is None for e in child)
    seqs = [e.seq for events in (parent, child, sibling, again, lone) for e in events]
    assert len(seqs) == len(set(seqs))


# ---------------------------------------------------------------------------
# extension state
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,variant", params(RUN_MODES, ("head",)))
def test_state_travels_on_boundaries_and_changes(hosts, tmp_path, mode, variant):
    host = hosts(mode, variant)
    run = host.run("state", tmp_path, env={option_env_name("kit-otel-flush-ms"): "5"})
    body = content_events(decode_all(run.lines()))
    notes = [f["note"] for f in run.handled_fired if f["type"] != "session_shutdown"]
    assert [e.type for e in body[:-1]] == [f["type"] for f in run.handled_fired[:-1]]
    for event, note in zip(body, notes):
        if note == "unchanged":
            assert event.state is None, event.type
        else:
            assert event.state is not None, (event.type, note)
    by_type = {e.type: e.state for e in body}
    assert by_type["session_start"] == {"usage-budget:warn-at-usd": "5.00"}
    assert by_type["tool_result"] == {"usage-budget:warn-at-usd": "5.00",
                                      "plan-mode:active": "true"}
    assert by_type["step_finish"] == {"usage-budget:warn-at-usd": "7.50"}
    assert by_type["agent_end"] == {"usage-budget:warn-at-usd": "7.50",
                                    'weird "key"\n': "välue ✓ <&>"}


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,variant", params(("cli",), ("head",)))
def test_loading_without_events_creates_nothing(hosts, tmp_path, mode, variant):
    run = hosts(mode, variant).run("idle", tmp_path)
    assert run.result["handled"]
    assert not run.spool.exists()


@pytest.mark.parametrize("mode,variant", params(("cli",), ("head",)))
def test_disabled_bridge_writes_nothing(hosts, tmp_path, mode, variant):
    run = hosts(mode, variant).run("roundtrip", tmp_path,
                                   env={option_env_name("kit-otel-enabled"): "false"})
    assert not run.spool.exists()


@pytest.mark.parametrize("mode,variant", params(("cli",), ("head",)))
def test_default_spool_dir_follows_xdg_state_home(hosts, tmp_path, mode, variant):
    hosts(mode, variant).run("roundtrip", tmp_path,
                             env={option_env_name("kit-otel-spool-dir"): "",
                                  option_env_name("kit-otel-socket"): ""})
    spool = tmp_path / "state" / "kit-otel" / "spool"
    files = list(spool.glob("kit-*.ndjson"))
    assert len(files) == 1
    header = decode_line(files[0].read_bytes().split(b"\n", 1)[0])
    assert header.data.Options["kit-otel-spool-dir"] == str(spool)
    assert header.data.Options["kit-otel-socket"] == str(tmp_path / "run" / "kit-otel" / "bridge.sock")


@pytest.mark.parametrize("mode,variant", params(("cli",), ("head",)))
def test_unwritable_spool_never_blocks(hosts, tmp_path, mode, variant):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    run = hosts(mode, variant).run("roundtrip", tmp_path,
                                   env={option_env_name("kit-otel-spool-dir"): str(blocker / "spool")})
    assert blocker.read_text() == ""
    assert run.result["shutdown_ms"] < 2000


def _which(cmd: str) -> bool:
    from shutil import which

    return which(cmd) is not None


@pytest.mark.parametrize("mode", ("cli", "native"))
def test_names_derived_for_unknown_event_methods(hosts, tmp_path, mode):
    """A KIT newer than this bridge: On<Name>(func(<Name>Event, Context)) is captured as the
    snake_case of <Name>, KIT's own spelling of its event types."""
    run = hosts(mode, "head").run("names", tmp_path)
    assert run.result["names"] == {
        "TurnStateChange": "turn_state_change", "LLMUsage": "llm_usage",
        "ToolCallInputStart": "tool_call_input_start", "MCPServerReady": "mcp_server_ready",
        "SubagentChunk": "subagent_chunk", "Step2Finish": "step2_finish", "A": "a",
        "HTTPRequest": "http_request", "OAuthRefresh": "o_auth_refresh"}


@pytest.mark.parametrize("mode,variant", params())
def test_traceparent_reaches_the_header(hosts, tmp_path, mode, variant):
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    run = hosts(mode, variant).run("roundtrip", tmp_path,
                                   env={"TRACEPARENT": traceparent, "TRACESTATE": "ci=1"})
    header = decode_all(run.lines())[0]
    check_header(header, run.result["pid"])
    # these harnesses give yaegi the process environment; KIT's own loader at the seed commit
    # does not, and the bridge reads /proc/self/environ there (test_real_kit.py proves it)
    assert (header.data.Traceparent, header.data.Tracestate) == (traceparent, "ci=1")
    assert header.data.Model == "anthropic/claude-sonnet-4-5-20250929"  # the Context's model
    assert decode_all(run.lines())[1:] and all(
        e.type != "bridge_start" for e in decode_all(run.lines())[1:])
