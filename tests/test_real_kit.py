"""The bridge and the translator inside KIT's own extension runtime (the judge of the stand-in).

tests/kithost_real is a host built around KIT's verbatim internal/extensions and pkg/kit bus
bridge at KIT HEAD and at the seed commit: it loads the shipped bridge with
extensions.LoadExtensions, runs the main agent with the CLI's Context and every subagent as a
child Kit (NewMini) with the extensions loaded again, and drives KIT's bus in the order KIT's
agent loop does. Its spool files are then replayed (in replay's own order) into an in-memory
translator, and the numbers are checked against what the host's provider reported and against
KIT's own AgentEnd.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from harness import make_harness
from kithost_real.runtime import ARGS_EDITOR, BLOCKER, BRIDGE, VARIANTS, build, run_host
from kit_otel.model import names as n
from kit_otel.cli.bridge_install import spool_dir as bridge_default_spool
from kit_otel.cli.main import replay_items
from kit_otel.config import load_settings
from kit_otel.model.decoder import DEFAULT_MAX_LINE_BYTES, DecodeError
from kit_otel.serve.socket_input import resolve_socket_path
from kit_otel.sources.tail import FileTailer
from kit_otel.translate.translator import TranslatorSettings

PRICE = {"input": 3.0, "output": 15.0, "cache_read": 0.30, "cache_write": 3.75}  # $/Mtok


@pytest.fixture(scope="module", params=VARIANTS)
def host(request):
    return request.param, build(request.param)


def spool_lines(spool: Path) -> list[dict]:
    lines = []
    for path in sorted(spool.glob("kit-*.ndjson")):
        for raw in path.read_bytes().splitlines():
            assert len(raw) < DEFAULT_MAX_LINE_BYTES, f"{path.name}: a line of {len(raw)} bytes"
            lines.append(json.loads(raw))
    return lines


def translate(spool: Path):
    """Replay the spool folder (replay's file order) into an in-memory translator."""
    files = sorted(str(p) for p in spool.glob("kit-*.ndjson"))
    assert files, f"no spool files in {spool}"
    harness = make_harness(TranslatorSettings(sessions_root=None))
    rejected = []
    for item in replay_items([FileTailer(f, max_bytes=DEFAULT_MAX_LINE_BYTES) for f in files],
                             DEFAULT_MAX_LINE_BYTES):
        if isinstance(item, DecodeError):
            rejected.append(item)
            harness.translator.reject(item)
        else:
            harness.translator.process(item)
    harness.close()
    assert not rejected, rejected
    return harness


def priced(agent: dict) -> float:
    return (agent["input_tokens"] * PRICE["input"] + agent["output_tokens"] * PRICE["output"]
            + agent["cache_read_tokens"] * PRICE["cache_read"]
            + agent["cache_write_tokens"] * PRICE["cache_write"]) / 1e6


def assert_one_session(harness, lines, project_known=True):
    sessions = {s.attributes.get(n.SESSION_ID) for s in harness.spans} - {None}
    assert len(sessions) == 1, f"phantom sessions: {sessions}"
    projects = {dict(p.attributes)[n.L_PROJECT] for p in harness.points(n.TOKENS.otel_name)}
    assert len(projects) == 1, projects
    if project_known:  # a session without a file (--no-session) has no project to name
        assert "unknown" not in projects, projects


def assert_turns_complete(harness, expected: list[str]):
    turns = sorted(harness.spans_named(n.SPAN_TURN), key=lambda s: s.start_time)
    assert [t.attributes[n.KIT_TURN_STOP_REASON] for t in turns] == expected
    for turn in turns:
        assert not turn.attributes.get(n.KIT_TURN_INCOMPLETE)
        if turn.attributes.get(n.KIT_TURN_AGGREGATE_SOURCE) == "agent_end":
            assert not turn.attributes.get(n.KIT_TURN_AGGREGATE_MISMATCH), turn.attributes


def test_parallel_tools(host, tmp_path):
    _, binary = host
    run = run_host(binary, "parallel-tools", tmp_path)
    h = translate(run.spool)
    assert_turns_complete(h, ["stop"])
    tools = {s.attributes[n.GEN_AI_TOOL_CALL_ID]: s for s in h.spans
             if s.name.startswith(n.SPAN_TOOL_PREFIX)}
    assert set(tools) == {"toolu_read_1", "toolu_grep_1", "toolu_bash_1"}
    turn = h.spans_named(n.SPAN_TURN)[0]
    assert all(t.parent.span_id == turn.context.span_id for t in tools.values())
    assert h.total(n.TOOL_CALLS.otel_name, outcome="ok") == 3
    main = run.truth["agents"][0]
    assert h.total(n.TOKENS.otel_name, agent="main", type="input") == main["input_tokens"]


def test_parallel_subagents_keep_their_own_usage(host, tmp_path):
    variant, binary = host
    run = run_host(binary, "subagents", tmp_path)
    lines = spool_lines(run.spool)
    h = translate(run.spool)
    assert_one_session(h, lines)
    assert_turns_complete(h, ["stop"])
    children = {a["tool_call_id"]: a for a in run.truth["agents"] if a["agent"] == "subagent"}
    assert set(children) == {"toolu_sub_A", "toolu_sub_B"}
    subagents = {s.attributes[n.GEN_AI_TOOL_CALL_ID]: s for s in h.spans_named(n.SPAN_SUBAGENT)}
    tool_spans = {s.attributes[n.GEN_AI_TOOL_CALL_ID]: s for s in h.spans
                  if s.name == f"{n.SPAN_TOOL_PREFIX} subagent"}
    for call_id, truth in children.items():
        span = subagents[call_id]
        # gen_ai.usage.input_tokens counts cached input too (KIT's InputTokens is uncached)
        assert span.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == truth["input_tokens"] + \
            truth["cache_read_tokens"] + truth["cache_write_tokens"]
        assert span.attributes[n.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == \
            truth["cache_read_tokens"]
        assert span.attributes[n.GEN_AI_USAGE_OUTPUT_TOKENS] == truth["output_tokens"]
        assert span.attributes[n.KIT_TURN_LLM_CALL_COUNT] == truth["llm_calls"]
        # the subagent's parent is its own execute_tool subagent span, not the turn
        assert span.parent.span_id == tool_spans[call_id].context.span_id
        assert span.status.status_code.name == "UNSET"
    # metrics: the children's spend is agent=subagent, the main agent's agrees with AgentEnd
    assert h.total(n.TOKENS.otel_name, agent="subagent", type="input") == \
        sum(c["input_tokens"] for c in children.values())
    ends = {(l["agent"], l.get("parent_tool_call_id", "")): l["data"] for l in lines
            if l["type"] == "agent_end"}
    main_end = ends[("main", "")]
    assert h.total(n.TOKENS.otel_name, agent="main", type="input") == main_end["InputTokensDelta"]
    kit_total = main_end["CostDelta"] + sum(ends[("subagent", c)]["CostDelta"] for c in children)
    assert round(h.total(n.COST.otel_name), 2) == round(kit_total, 2)
    assert h.total(n.COST.otel_name) == pytest.approx(sum(priced(a) for a in run.truth["agents"]))
    assert h.total(n.SUBAGENTS.otel_name, outcome="ok") == 2
    # the children wrote the parent's session path and named their call
    child_lines = [l for l in lines if l["agent"] == "subagent"]
    assert child_lines and {l["session_path"] for l in child_lines} == {run.truth["session_path"]}
    assert {l["parent_tool_call_id"] for l in child_lines} == set(children)


def test_subagents_without_a_session(host, tmp_path):
    _, binary = host
    run = run_host(binary, "subagents", tmp_path, session="")
    lines = spool_lines(run.spool)
    h = translate(run.spool)
    assert_one_session(h, lines, project_known=False)
    assert_turns_complete(h, ["stop"])
    assert h.total(n.SUBAGENTS.otel_name, outcome="ok") == 2
    assert h.total(n.SUBAGENTS.otel_name, outcome="error") == 0
    assert h.total(n.TOKENS.otel_name, agent="subagent", type="output") == 1900


@pytest.mark.parametrize("order", ["blocker-first", "bridge-first"])
def test_blocked_tool(host, tmp_path, order):
    _, binary = host
    extensions = (BLOCKER, BRIDGE) if order == "blocker-first" else (BRIDGE, BLOCKER)
    run = run_host(binary, "blocked", tmp_path, extensions=extensions)
    assert run.truth["blocked"] == ["toolu_rm"]
    h = translate(run.spool)
    assert_turns_complete(h, ["stop"])
    assert h.total(n.TOOL_CALLS.otel_name, outcome="blocked") == 1
    assert h.total(n.TOOL_CALLS.otel_name, outcome="ok") == 1
    blocked = [s for s in h.spans if s.attributes.get(n.KIT_TOOL_BLOCKED)]
    assert [s.attributes[n.GEN_AI_TOOL_CALL_ID] for s in blocked] == ["toolu_rm"]


def test_a_650_kb_write_is_not_rejected(host, tmp_path):
    _, binary = host
    run = run_host(binary, "big-write", tmp_path)
    lines = spool_lines(run.spool)  # asserts every line is under the decoder's limit
    call = next(l for l in lines if l["type"] == "tool_call")
    assert call["data"]["InputBytes"] > 650 * 1024 and call["data"]["ParsedArgs"] is None
    h = translate(run.spool)
    assert_turns_complete(h, ["stop"])
    write = next(s for s in h.spans if s.name == f"{n.SPAN_TOOL_PREFIX} write")
    assert write.attributes[n.KIT_TOOL_INPUT_BYTES] == call["data"]["InputBytes"]
    assert write.status.status_code.name == "UNSET"


def test_an_extension_editing_parsed_args_after_the_bridge_never_crashes_kit(host, tmp_path):
    """KIT hands every extension the same ParsedArgs map; one loaded after the bridge writes to
    it. With content capture on, the bridge's writer used to encode that map while it was being
    written: Go's fatal "concurrent map iteration and map write", which takes KIT down."""
    _, binary = host
    run = run_host(binary, "shared-args", tmp_path, extensions=(BRIDGE, ARGS_EDITOR),
                   options={"kit-otel-capture-content": "true", "kit-otel-flush-ms": "1"})
    calls = [l for l in spool_lines(run.spool) if l["type"] == "tool_call"]
    assert len(calls) == run.truth["turns"] == 2000
    # the arguments as the model sent them (parsed again from Input), not the editor's keys
    assert all(len(c["data"]["ParsedArgs"]) == 300 for c in calls)


def test_events_lost_while_the_spool_cannot_be_opened_are_all_counted(host, tmp_path):
    """Lines that could not be written carried the count of earlier losses: a failed write
    must count those too, so written + dropped is every event fired."""
    _, binary = host
    spool = tmp_path / "spool"
    spool.write_text("not a directory yet")  # the host removes it after 2.5 s
    run = run_host(binary, "spool-comes-late", tmp_path, spool=spool,
                   env={"KITHOST_BLOCK": str(spool)},
                   options={"kit-otel-spool-dir": str(spool), "kit-otel-queue-size": "16",
                            "kit-otel-flush-ms": "1500"})
    lines = [l for l in spool_lines(run.spool) if l["type"] != "bridge_start"]
    dropped = sum(l.get("dropped", 0) for l in lines)
    assert dropped > 0 and lines[-1]["type"] == "session_shutdown"
    assert len(lines) + dropped == run.truth["turns"]


def test_events_of_over_a_megabyte_arrive_cut_not_rejected(host, tmp_path):
    """A pasted 1.2 MB prompt, 1.1 MB of another extension's state, a subagent's 1.1 MB write:
    every line stays under kit-otel's limit, each event arrives with its long strings cut and
    their full sizes beside them, and the turn is whole."""
    _, binary = host
    run = run_host(binary, "big-lines", tmp_path)
    lines = spool_lines(run.spool)  # asserts every line is under the decoder's limit
    assert max(len(json.dumps(l)) for l in lines) < 600 * 1024
    by_type = {}
    for line in lines:
        by_type.setdefault(line["type"], []).append(line)
    prompt = by_type["agent_start"][0]["data"]
    assert prompt["PromptBytes"] > 1100 * 1024 and len(prompt["Prompt"]) <= 64 * 1024
    assert len(by_type["agent_start"][0]["state"]["notes"]) <= 64 * 1024
    chunks = [c["data"] for c in by_type["subagent_chunk"] if c["data"]["ChunkType"] == "tool_call"]
    assert chunks and chunks[0]["ToolArgsBytes"] > 1100 * 1024
    h = translate(run.spool)
    assert_turns_complete(h, ["stop"])
    turn, = h.spans_named(n.SPAN_TURN)
    assert turn.attributes[n.KIT_TURN_PROMPT_LENGTH] == prompt["PromptBytes"]  # not the cut's
    write = next(s for s in h.spans if s.name == f"{n.SPAN_TOOL_PREFIX} write")
    assert write.attributes[n.KIT_TOOL_INPUT_BYTES] == chunks[0]["ToolArgsBytes"]
    assert write.attributes[n.KIT_TOOL_OUTPUT_BYTES] == 1100 * 1024  # the file it wrote


def test_error_and_cancel(host, tmp_path):
    _, binary = host
    run = run_host(binary, "error-and-cancel", tmp_path)
    h = translate(run.spool)
    assert_turns_complete(h, ["error", "cancelled", "stop"])
    cancelled = [t for t in h.spans_named(n.SPAN_TURN)
                 if t.attributes[n.KIT_TURN_STOP_REASON] == "cancelled"]
    assert cancelled[0].status.status_code.name == "UNSET"
    errors = {dict(p.attributes)[n.L_KIND]: p.value for p in h.points(n.ERRORS.otel_name)}
    assert errors == {"overloaded": 1}  # the ESC is no error
    assert h.total(n.TURNS.otel_name, stop_reason="cancelled") == 1


def test_hot_reload_twenty_times(host, tmp_path):
    _, binary = host
    run = run_host(binary, "hot-reload", tmp_path)
    files = sorted(run.spool.glob("kit-*.ndjson"))
    assert len(files) == 21
    lines = spool_lines(run.spool)
    seqs = [l["seq"] for l in lines]
    assert len(seqs) == len(set(seqs))
    h = translate(run.spool)
    assert_turns_complete(h, ["stop"] * 21)
    assert h.total(n.SESSIONS.otel_name) == 1


def test_hot_install_into_a_running_kit_needs_a_restart(host, tmp_path):
    """What `kit-otel bridge install` tells the user rests on this: KIT's Runner, built for one
    extension, panics on the first Emit after a reload that brought a second one."""
    _, binary = host
    run = run_host(binary, "hot-install", tmp_path, install=(BLOCKER,))
    assert run.truth["panicked"] is True
    h = translate(run.spool)
    assert_turns_complete(h, ["stop"])


def test_kit_yml_options_reach_subagents(host, tmp_path):
    _, binary = host
    custom = tmp_path / "custom-spool"
    run = run_host(binary, "subagents", tmp_path / "home",
                   options={"kit-otel-spool-dir": str(custom)}, spool=custom)
    files = list(custom.glob("kit-*.ndjson"))
    assert len(files) == 3  # main + both children, none elsewhere
    assert not (tmp_path / "home" / ".local" / "state" / "kit-otel" / "spool").exists()
    assert_one_session(translate(custom), spool_lines(custom))


def test_kit_opt_environment_reaches_subagents(host, tmp_path):
    _, binary = host
    custom = tmp_path / "env-spool"
    run_host(binary, "subagents", tmp_path / "home", spool=custom,
             env={"KIT_OPT_KIT_OTEL_SPOOL_DIR": str(custom)})
    headers = [l for l in spool_lines(custom) if l["type"] == "bridge_start"]
    assert Counter(h["agent"] for h in headers) == {"main": 1, "subagent": 2}


@pytest.mark.parametrize("xdg", [True, False])
def test_bridge_and_serve_agree_on_the_default_folder(host, tmp_path, xdg, monkeypatch):
    _, binary = host
    home = tmp_path / "home"
    env = {"XDG_STATE_HOME": str(tmp_path / "state")} if xdg else {}
    run = run_host(binary, "parallel-tools", home, env={**env, "KIT_OPT_KIT_OTEL_SOCKET": "auto"})
    files = list(run.spool.glob("kit-*.ndjson"))
    assert len(files) == 1
    full_env = {"HOME": str(home), **env}
    serve_default = Path(load_settings(full_env).spool_dir.replace("~", str(home), 1))
    assert serve_default == run.spool == bridge_default_spool(full_env)
    header = json.loads(files[0].read_text().splitlines()[0])
    assert header["data"]["Options"]["kit-otel-spool-dir"] == str(run.spool)
    assert header["data"]["Options"]["environment"] in ("process", "/proc/self/environ")
    # the socket too: serve's "auto" is where the bridge's "auto" connects
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(home))
    serve_socket = resolve_socket_path(load_settings({**full_env, "KIT_OTEL_SOCKET_PATH": "auto"}))
    assert header["data"]["Options"]["kit-otel-socket"] == serve_socket


def test_state_change_lands_on_the_tool_that_made_it(host, tmp_path):
    _, binary = host
    run = run_host(binary, "state", tmp_path)
    lines = spool_lines(run.spool)
    states = [(l["type"], l["data"].get("ToolCallID"), l["state"]) for l in lines
              if l.get("state") and l["type"] not in ("session_start", "agent_start", "agent_end")]
    assert states[0] == ("tool_execution_end", "toolu_state_1", {"counter": "toolu_state_1"})
    assert states[1] == ("tool_execution_end", "toolu_state_2", {"counter": "toolu_state_2"})


CI_TRACE, CI_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_a_ci_jobs_traceparent_parents_every_turn_at_both_commits(host, tmp_path):
    """KIT HEAD gives the interpreter os.Environ(); at the seed commit os.Getenv sees nothing and
    the bridge reads /proc/self/environ instead (the header says which). Either way the job's
    TRACEPARENT/TRACESTATE reach the header, and the turns — of the main agent and of every
    subagent's child Kit — are exported as children of the job's span, in its trace."""
    variant, binary = host
    run = run_host(binary, "subagents", tmp_path / "home",
                   env={"TRACEPARENT": f"00-{CI_TRACE}-{CI_SPAN}-01", "TRACESTATE": "ci=run-7"})
    headers = [l for l in spool_lines(run.spool) if l["type"] == "bridge_start"]
    assert len(headers) == 3  # main + two subagents
    for h in headers:
        assert h["data"]["Traceparent"] == f"00-{CI_TRACE}-{CI_SPAN}-01"
        assert h["data"]["Tracestate"] == "ci=run-7"
        assert h["data"]["Options"]["environment"] == \
            {"head": "process", "seed": "/proc/self/environ"}[variant]
    harness = translate(run.spool)
    turns = harness.spans_named(n.SPAN_TURN)
    assert turns
    for turn in turns:
        assert f"{turn.context.trace_id:032x}" == CI_TRACE
        assert turn.parent is not None and turn.parent.is_remote
        assert f"{turn.parent.span_id:016x}" == CI_SPAN
        assert turn.context.trace_state.get("ci") == "run-7"
    in_turns = [s for s in harness.spans if not s.name.startswith("kit.")]
    assert len(in_turns) > len(turns)  # chats, tools and the subagents' spans came along
    assert {s.context.trace_id for s in in_turns} == {int(CI_TRACE, 16)}


def test_a_malformed_traceparent_leaves_the_turns_roots(host, tmp_path):
    _, binary = host
    run = run_host(binary, "parallel-tools", tmp_path / "home", env={"TRACEPARENT": "00-zz-01"})
    (header,) = [l for l in spool_lines(run.spool) if l["type"] == "bridge_start"]
    assert header["data"]["Traceparent"] == "00-zz-01"  # passed on as it came; judged by serve
    harness = translate(run.spool)
    assert_turns_complete(harness, ["stop"])
    assert all(t.parent is None for t in harness.spans_named(n.SPAN_TURN))
