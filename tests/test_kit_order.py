"""The translator on KIT's real event order and values (issue 10), without a Go toolchain:
subagent_start before its tool_call, parallel children told apart by their parent's call,
blocked calls without tool_result, a user's cancel, KIT's aggregate a few ms off."""

from __future__ import annotations

from harness import make_harness

from kit_otel.model import events as ev
from kit_otel.model import names as n

T0 = 1_781_000_000_000_000_000
MS = 1_000_000
PATH = "/home/alice/.kit/sessions/home--alice--proj/2026-06-09T13-18-10-000Z_3f9a1c2b7d4e.jsonl"


class Stream:
    def __init__(self):
        self.events: list[ev.Event] = []
        self.now = T0

    def add(self, type: str, agent: str = "main", parent: str = "", **data) -> None:
        self.now += MS
        self.events.append(ev.make_event(type, self.now, data=data, seq=len(self.events) + 1,
                                         pid=7, session_path=PATH, source="bridge", agent=agent,
                                         parent_tool_call_id=parent))

    def usage(self, step: int, tokens: int, agent: str = "main", parent: str = "",
              finish: str = "stop") -> None:
        self.add("step_finish", agent, parent, StepNumber=step, FinishReason=finish,
                 HasToolCalls=finish != "stop", InputTokens=tokens)
        self.add("llm_usage", agent, parent, StepNumber=step, InputTokens=tokens,
                 Cost=tokens * 3e-6, Model="claude-sonnet-4-5-20250929", Provider="anthropic",
                 FinishReason=finish)


def child_run(s: Stream, call: str, tokens: int) -> None:
    s.add("input", "subagent", call, Text="same task")
    s.add("agent_start", "subagent", call, Prompt="same task")
    s.add("step_start", "subagent", call, StepNumber=0)
    s.usage(0, tokens, "subagent", call)
    s.add("agent_end", "subagent", call, StopReason="stop", LLMCallCount=1,
          InputTokensDelta=tokens)


def test_parallel_subagents_by_their_parent_call():
    s = Stream()
    s.add("agent_start", Prompt="go")
    s.add("step_start", StepNumber=0)
    for call in ("call_A", "call_B"):  # KIT: in the stream, before the tool_call
        s.add("tool_call_input_start", ToolCallID=call, ToolName="subagent", ToolKind="agent")
        s.add("subagent_start", ToolCallID=call, Task="same task")
    for call in ("call_A", "call_B"):
        s.add("tool_call", ToolCallID=call, ToolName="subagent", ToolKind="agent", Input="{}")
        s.add("tool_execution_start", ToolCallID=call, ToolName="subagent", ToolKind="agent")
    child_run(s, "call_B", 7000)  # interleaved with A, as parallel children are
    child_run(s, "call_A", 1000)
    for call in ("call_A", "call_B"):
        s.add("tool_execution_end", ToolCallID=call, ToolName="subagent", ToolKind="agent")
        s.add("tool_result", ToolCallID=call, ToolName="subagent", ToolKind="agent")
        s.add("subagent_end", ToolCallID=call, Task="same task", Response="ok")
    s.usage(0, 500, finish="tool-calls")
    s.add("agent_end", StopReason="stop", ToolCallCount=2, ToolNames=["subagent", "subagent"],
          LLMCallCount=1, InputTokensDelta=500, CostDelta=500 * 3e-6, DurationMs=20)
    h = make_harness().feed(s.events).close()
    subs = {sp.attributes[n.GEN_AI_TOOL_CALL_ID]: sp for sp in h.spans_named(n.SPAN_SUBAGENT)}
    tools = {sp.attributes[n.GEN_AI_TOOL_CALL_ID]: sp for sp in h.spans
             if sp.name == "execute_tool subagent"}
    assert {c: sp.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] for c, sp in subs.items()} == \
        {"call_A": 1000, "call_B": 7000}
    assert all(subs[c].parent.span_id == tools[c].context.span_id for c in subs)
    assert h.total("kit.tokens", agent="subagent", type="input") == 8000
    assert h.total("kit.tokens", agent="main", type="input") == 500
    assert len({sp.attributes.get(n.SESSION_ID) for sp in h.spans} - {None}) == 1
    turn = h.spans_named(n.SPAN_TURN)[0]
    assert turn.attributes[n.KIT_TURN_STOP_REASON] == "stop"
    assert not turn.attributes.get(n.KIT_TURN_AGGREGATE_MISMATCH)  # 20 ms vs ~40 ms: agrees


def blocked_turn(bridge_saw_call: bool, streamed: bool) -> Stream:
    s = Stream()
    s.add("agent_start", Prompt="clean")
    s.add("step_start", StepNumber=0)
    if streamed:
        s.add("tool_call_input_start", ToolCallID="call_rm", ToolName="bash", ToolKind="execute")
    if bridge_saw_call:
        s.add("tool_call", ToolCallID="call_rm", ToolName="bash", ToolKind="execute", Input="{}")
    # KIT: no tool_execution_start and no tool_result for a blocked call
    s.usage(0, 100, finish="tool-calls")
    s.add("agent_end", StopReason="stop", ToolCallCount=1, ToolNames=["bash"], LLMCallCount=1,
          InputTokensDelta=100, CostDelta=100 * 3e-6, DurationMs=4)
    return s


def test_blocked_calls_are_blocked_wherever_the_blocker_loads():
    for saw, streamed in ((True, True), (False, True), (False, False)):
        h = make_harness().feed(blocked_turn(saw, streamed).events).close()
        assert h.total("kit.tool.calls", outcome="blocked") == 1, (saw, streamed)
        turn = h.spans_named(n.SPAN_TURN)[0]
        assert turn.attributes[n.KIT_TURN_STOP_REASON] == "stop"
        assert not turn.attributes.get(n.KIT_TURN_INCOMPLETE)
        spans = [sp for sp in h.spans if sp.name == "execute_tool bash"]
        assert len(spans) == (1 if saw or streamed else 0)
        for sp in spans:
            assert sp.attributes[n.KIT_TOOL_BLOCKED] is True
            assert sp.status.description == "blocked by an extension"


def test_a_users_cancel_is_not_an_error():
    s = Stream()
    s.add("agent_start", Prompt="run")
    s.add("step_start", StepNumber=0)
    s.add("error", Error="context canceled")
    s.add("agent_end", StopReason="error", DurationMs=3)
    h = make_harness().feed(s.events).close()
    turn = h.spans_named(n.SPAN_TURN)[0]
    assert turn.attributes[n.KIT_TURN_STOP_REASON] == "cancelled"
    assert turn.status.status_code.name == "UNSET"
    assert h.total("kit.errors") == 0
    assert h.total("kit.turns", stop_reason="cancelled") == 1


def test_cut_arguments_keep_their_size():
    s = Stream()
    s.add("agent_start", Prompt="write")
    s.add("tool_call", ToolCallID="w", ToolName="write", ToolKind="edit", Input="{\"path\"",
          InputBytes=665_611)
    s.add("tool_execution_start", ToolCallID="w", ToolName="write", ToolKind="edit")
    s.add("tool_result", ToolCallID="w", ToolName="write", ToolKind="edit", Content="x" * 10,
          ContentBytes=70_000)
    s.add("agent_end", StopReason="stop")
    h = make_harness().feed(s.events).close()
    write = next(sp for sp in h.spans if sp.name == "execute_tool write")
    assert write.attributes[n.KIT_TOOL_INPUT_BYTES] == 665_611
    assert write.attributes[n.KIT_TOOL_OUTPUT_BYTES] == 70_000


# ── a subagent's refused calls: the child's own stream against the parent's chunks ──────────

CHILD = "call_sub"


def chunks_of_a_call(s: Stream, name: str, failed: bool) -> None:
    """What the parent's bridge writes for one of the child's calls: the SDK's events, which
    show a call KIT's wrapper refused as started, ended and failed all the same."""
    for kind, extra in (("tool_call", {"ToolArgs": "{}"}), ("tool_execution_start", {}),
                        ("tool_execution_end", {}),
                        ("tool_result", {"ToolResult": "Error: refused" if failed else "done",
                                         "IsError": failed})):
        s.add("subagent_chunk", ToolCallID=CHILD, ChunkType=kind, ToolName=name, **extra)


def child_calls(s: Stream, calls: list[tuple[str, str, str]]) -> None:
    """The child's own bridge: one step with these calls (id, name, how KIT treated it: "ran",
    "refused" after the bridge saw the tool_call, or "refused_unseen" before it)."""
    for call, name, fate in calls:
        s.add("tool_call_input_start", "subagent", CHILD, ToolCallID=call, ToolName=name)
        if fate != "refused_unseen":
            s.add("tool_call", "subagent", CHILD, ToolCallID=call, ToolName=name, Input="{}")
        if fate == "ran":
            s.add("tool_execution_start", "subagent", CHILD, ToolCallID=call, ToolName=name)
            s.add("tool_execution_end", "subagent", CHILD, ToolCallID=call, ToolName=name)
            s.add("tool_result", "subagent", CHILD, ToolCallID=call, ToolName=name)
    s.usage(0, 300, "subagent", CHILD, finish="tool-calls")


def subagent_turn(order: str, calls: list[tuple[str, str, str]], chunk_errors: list[bool]):
    """A turn running one subagent, the child's calls and the chunks in `order`: "child_first"
    (the child's bridge flushed first), "chunks_first", or "no_child" (no bridge in the child).
    The child's stream begins (its step_start) before either: an LLM call comes first."""
    s = Stream()
    s.add("agent_start", Prompt="look")
    s.add("step_start", StepNumber=0)
    s.add("subagent_start", ToolCallID=CHILD, Task="look")
    s.add("tool_call", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent", Input="{}")
    s.add("tool_execution_start", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent")
    if order != "no_child":
        s.add("agent_start", "subagent", CHILD, Prompt="look")
        s.add("step_start", "subagent", CHILD, StepNumber=0)
    if order == "child_first":
        child_calls(s, calls)
    for (_, name, _), failed in zip(calls, chunk_errors):
        chunks_of_a_call(s, name, failed)
    if order == "chunks_first":
        child_calls(s, calls)
    s.add("tool_result", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent", Content="ok")
    s.add("subagent_end", ToolCallID=CHILD, Task="look", Response="ok")
    s.usage(0, 500, finish="tool-calls")
    s.add("agent_end", StopReason="stop", ToolCallCount=1, ToolNames=["subagent"])
    h = make_harness().feed(s.events).close()
    outcomes = {}
    for sp in h.spans:
        if sp.name.startswith("execute_tool ") and sp.name != "execute_tool subagent":
            blocked = sp.attributes.get(n.KIT_TOOL_BLOCKED, False)
            outcomes.setdefault(sp.name.split()[1], []).append(
                "blocked" if blocked else ("error" if sp.status.status_code.name == "ERROR"
                                           else "ok"))
    return h, outcomes


def test_a_call_refused_inside_a_subagent_is_blocked_in_either_order():
    calls = [("c1", "read", "refused"), ("c2", "bash", "ran"), ("c3", "read", "ran")]
    errors = [True, True, False]  # the refusal's error result; bash really failed
    for order in ("child_first", "chunks_first"):
        h, outcomes = subagent_turn(order, calls, errors)
        assert outcomes == {"read": ["blocked", "ok"], "bash": ["error"]}, order
        assert h.total("kit.tool.calls", outcome="blocked", tool="read") == 1, order
        assert h.total("kit.tool.calls", outcome="error", tool="bash") == 1, order
        assert h.total("kit.tool.calls", outcome="ok", tool="read") == 1, order
        refused = next(sp for sp in h.spans if sp.name == "execute_tool read")
        assert refused.status.description == "blocked by an extension", order


def test_a_call_refused_before_the_childs_bridge_saw_it_is_blocked():
    """The refusing extension loads before the bridge: the child's stream knows the call only
    from the LLM stream (tool_call_input_start)."""
    for order in ("child_first", "chunks_first"):
        h, outcomes = subagent_turn(order, [("c1", "edit", "refused_unseen")], [True])
        assert outcomes == {"edit": ["blocked"]}, order
        assert h.total("kit.tool.calls", outcome="blocked") == 1, order
        # ... and it keeps its place among the calls of its name the bridge did see
        h, outcomes = subagent_turn(order, [("c1", "read", "refused_unseen"),
                                            ("c2", "read", "ran")], [True, False])
        assert outcomes == {"read": ["blocked", "ok"]}, order


def test_without_a_child_stream_the_chunks_tell_the_outcome():
    h, outcomes = subagent_turn("no_child", [("c1", "read", "refused"), ("c2", "read", "ran")],
                                [True, False])
    assert outcomes == {"read": ["error", "ok"]}
    assert h.total("kit.tool.calls", outcome="blocked") == 0


def test_a_chunk_result_waits_only_until_the_childs_verdict():
    """The span of a call the child's bridge saw running ends at its tool_execution_start, not at
    the subagent's end: the metric is there while the subagent still works."""
    s = Stream()
    s.add("agent_start", Prompt="look")
    s.add("step_start", StepNumber=0)
    s.add("subagent_start", ToolCallID=CHILD, Task="look")
    s.add("step_start", "subagent", CHILD, StepNumber=0)  # the child's stream has begun
    chunks_of_a_call(s, "read", False)
    h = make_harness().feed(s.events)
    assert h.total("kit.tool.calls") == 0  # held: the child has not said whether it ran
    s.events.clear()
    s.add("tool_call", "subagent", CHILD, ToolCallID="c1", ToolName="read", Input="{}")
    s.add("tool_execution_start", "subagent", CHILD, ToolCallID="c1", ToolName="read")
    h.feed(s.events)
    assert h.total("kit.tool.calls", outcome="ok", tool="read") == 1
    h.close()


def test_a_child_read_before_its_subagent_start_leaves_one_subagent():
    """Each bridge instance flushes on its own timer and numbers lines as it writes them, so a
    new child's first lines can be numbered before its parent's subagent_start: one subagent,
    which learns its task late, and the process is quiescent after the turn (serve releases)."""
    s = Stream()
    s.add("agent_start", Prompt="look")
    s.add("step_start", StepNumber=0)
    s.add("input", "subagent", CHILD, Text="find it")
    s.add("agent_start", "subagent", CHILD, Prompt="find it")
    s.add("step_start", "subagent", CHILD, StepNumber=0)
    s.add("subagent_start", ToolCallID=CHILD, Task="find it")
    s.add("tool_call", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent", Input="{}")
    s.add("tool_execution_start", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent")
    s.usage(0, 300, "subagent", CHILD)
    s.add("agent_end", "subagent", CHILD, StopReason="stop", LLMCallCount=1)
    s.add("tool_result", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent", Content="ok")
    s.add("subagent_end", ToolCallID=CHILD, Task="find it", Response="ok")
    s.usage(0, 500, finish="tool-calls")
    s.add("agent_end", StopReason="stop", ToolCallCount=1, ToolNames=["subagent"])
    h = make_harness().feed(s.events)
    assert h.translator.is_quiescent({7})
    assert not h.translator.open_subagents.get(7)
    h.close()
    sub, = h.spans_named(n.SPAN_SUBAGENT)
    assert sub.attributes[n.KIT_SUBAGENT_TASK_LENGTH] == len("find it")
    assert sub.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == 300
    assert h.total("kit.subagents") == 1
    assert all(sp.end_time for sp in h.spans)


def child_error_turn(message: str) -> Stream:
    s = Stream()
    s.add("agent_start", Prompt="look")
    s.add("step_start", StepNumber=0)
    s.add("subagent_start", ToolCallID=CHILD, Task="t")
    s.add("tool_execution_start", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent")
    s.add("agent_start", "subagent", CHILD, Prompt="t")
    s.add("step_start", "subagent", CHILD, StepNumber=0)
    s.add("error", "subagent", CHILD, Error=message)  # while the child's LLM call streams
    s.add("agent_end", "subagent", CHILD, StopReason="error")
    s.add("tool_result", ToolCallID=CHILD, ToolName="subagent", ToolKind="agent", IsError=True,
          Content="Subagent failed after 0s.\n\nError: " + message)
    s.add("subagent_end", ToolCallID=CHILD, Task="t", ErrorMsg="Error: " + message)
    s.usage(0, 500)
    s.add("agent_end", StopReason="stop")
    return s


def test_a_childs_errors_count_as_the_main_agents_do():
    h = make_harness().feed(child_error_turn("context canceled").events).close()
    assert h.total("kit.errors") == 0  # the user's ESC inside a subagent pages nobody
    h = make_harness().feed(child_error_turn("429 Too Many Requests: rate limit").events).close()
    assert h.total("kit.errors", kind="rate_limit") == 1
    chat, = [sp for sp in h.spans if sp.name.startswith("chat")
             and sp.attributes.get(n.GEN_AI_AGENT_NAME) == n.AGENT_SUBAGENT]
    assert chat.status.status_code.name == "ERROR"  # the child's failed LLM call, as the main's
    assert chat.attributes[n.ERROR_TYPE] == "rate_limit"
