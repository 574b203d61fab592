"""Golden tests: each KIT scenario gives exactly this span tree, these attributes, these metrics."""

import scenarios as sc
from harness import make_harness, names_tree

from kit_otel.model import names as n

SONNET = "chat claude-sonnet-4-5-20250929"
TURN_ATTRS = (n.KIT_TURN_STOP_REASON, n.KIT_TURN_TOOL_CALL_COUNT, n.KIT_TURN_LLM_CALL_COUNT,
              n.GEN_AI_USAGE_INPUT_TOKENS, n.GEN_AI_USAGE_OUTPUT_TOKENS)


def run(script_or_events):
    events = getattr(script_or_events, "events", script_or_events)
    return make_harness().feed(events).close()


def only(h, name):
    spans = h.spans_named(name)
    assert len(spans) == 1, [s.name for s in h.spans]
    return spans[0]


def test_simple_turn():
    h = run(sc.simple_turn())
    assert names_tree(h.spans) == [
        "kit.session_start [INTERNAL]",
        "invoke_agent kit [INTERNAL]",
        f"  {SONNET} [CLIENT]",
    ]
    turn, chat = only(h, n.SPAN_TURN), only(h, SONNET)
    session_id = "2026-06-09T13-18-10-000Z_3f9a1c2b7d4e"  # no session file: from the file name
    assert turn.attributes[n.GEN_AI_CONVERSATION_ID] == session_id
    assert turn.attributes[n.SESSION_ID] == session_id
    assert turn.attributes[n.KIT_PROJECT] == "proj"
    assert turn.attributes[n.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert turn.attributes[n.GEN_AI_AGENT_NAME] == "kit"
    assert turn.attributes[n.KIT_TURN_STOP_REASON] == "stop"
    assert turn.attributes[n.GEN_AI_REQUEST_MODEL] == "claude-sonnet-4-5-20250929"
    assert turn.attributes[n.GEN_AI_PROVIDER_NAME] == "anthropic"
    # the conventions' input_tokens include cached ones; KIT's InputTokens (1200) do not
    assert chat.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == 1200 + 900
    assert chat.attributes[n.GEN_AI_USAGE_OUTPUT_TOKENS] == 85
    assert chat.attributes[n.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 900
    assert chat.attributes[n.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert 0 < chat.attributes[n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < 60  # seconds
    assert chat.attributes[n.GEN_AI_CONVERSATION_ID] == session_id
    assert chat.attributes[n.KIT_DELTAS_MESSAGE + ".count"] == 6  # one chunk a word
    # the turn span's time is the events' time, not the wall clock
    events = sc.simple_turn().events
    assert turn.start_time == next(e.ts_ns for e in events if e.type == "input")
    assert turn.end_time == next(e.ts_ns for e in events if e.type == "agent_end")
    # coalesced: one message_update span event, not six
    assert [e.name for e in chat.events].count("kit.message_update") == 1
    assert h.total("kit.tokens", type="input") == 1200
    assert h.total("kit.tokens", type="cache_read") == 900
    assert h.total("kit.turns", stop_reason="stop", project="proj") == 1
    assert h.total("kit.sessions", project="proj") == 1


def test_tools_error_and_blocked():
    h = run(sc.tools_turn())
    assert names_tree(h.spans) == [
        "kit.session_start [INTERNAL]",
        "invoke_agent kit [INTERNAL]",
        f"  {SONNET} [CLIENT]",
        "  execute_tool bash [INTERNAL ERROR]",
        "  execute_tool edit [INTERNAL ERROR]",
        f"  {SONNET} [CLIENT]",
    ]
    bash, edit = only(h, "execute_tool bash"), only(h, "execute_tool edit")
    assert bash.attributes[n.ERROR_TYPE] == "tool_error"
    assert bash.attributes[n.KIT_TOOL_KIND] == "execute"
    assert bash.attributes[n.GEN_AI_TOOL_TYPE] == "function"
    assert bash.attributes[n.KIT_TOOL_OUTPUT_BYTES] == len("FAIL")
    assert bash.attributes[n.KIT_DELTAS_TOOL_OUTPUT + ".count"] == 3
    assert edit.attributes[n.KIT_TOOL_BLOCKED] is True
    assert n.KIT_TOOL_BLOCKED not in bash.attributes
    # the first LLM call ends at the step's first tool call, before tools ran
    chat1 = min(h.spans_named(SONNET), key=lambda s: s.start_time)
    assert chat1.end_time == bash.start_time
    assert h.total("kit.tool.calls", tool="bash", outcome="error") == 1
    assert h.total("kit.tool.calls", tool="edit", outcome="blocked") == 1
    turn = only(h, n.SPAN_TURN)
    assert turn.attributes[n.KIT_TURN_TOOL_NAMES] == ("bash", "edit")
    assert turn.attributes[n.KIT_TURN_TOOL_CALL_COUNT] == 2
    assert turn.attributes[n.KIT_TURN_LLM_CALL_COUNT] == 2
    assert turn.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == \
        h.total("kit.tokens", type="input") + h.total("kit.tokens", type="cache_read") + \
        h.total("kit.tokens", type="cache_write") > h.total("kit.tokens", type="input")


def test_parallel_tools_are_correlated_by_call_id():
    s = sc.parallel_tools_turn()
    h = run(s)
    assert names_tree(h.spans)[2:] == [
        f"  {SONNET} [CLIENT]",
        "  execute_tool read [INTERNAL]",
        "  execute_tool grep [INTERNAL]",
        "  execute_tool ls [INTERNAL]",
        f"  {SONNET} [CLIENT]",
    ]
    results = {e.data.ToolCallID: e.ts_ns for e in s.events if e.type == "tool_result"}
    calls = {e.data.ToolCallID: e.data.ToolName for e in s.events if e.type == "tool_call"}
    for call_id, name in calls.items():
        span = only(h, f"execute_tool {name}")
        assert span.attributes[n.GEN_AI_TOOL_CALL_ID] == call_id
        assert span.end_time == results[call_id]
    # each tool's output chunks counted on its own span, though they interleaved
    assert only(h, "execute_tool read").attributes[n.KIT_DELTAS_TOOL_OUTPUT + ".count"] == 2
    assert only(h, "execute_tool grep").attributes[n.KIT_DELTAS_TOOL_OUTPUT + ".count"] == 2
    assert n.KIT_DELTAS_TOOL_OUTPUT + ".count" not in only(h, "execute_tool ls").attributes
    assert h.count("kit.tool.duration") == 3


def test_subagent_nests_under_its_tool_span_and_counts_as_subagent_spend():
    h = run(sc.subagent_turn())
    haiku = "chat claude-haiku-4-5-20251001"
    assert names_tree(h.spans) == [
        "kit.session_start [INTERNAL]",
        "invoke_agent kit [INTERNAL]",
        f"  {SONNET} [CLIENT]",
        "  execute_tool subagent [INTERNAL]",
        "    invoke_agent subagent [INTERNAL]",
        f"      {haiku} [CLIENT]",
        "      execute_tool grep [INTERNAL]",
        "      execute_tool read [INTERNAL ERROR]",
        f"      {haiku} [CLIENT]",
        f"  {SONNET} [CLIENT]",
    ]
    sub = only(h, n.SPAN_SUBAGENT)
    assert sub.attributes[n.GEN_AI_AGENT_NAME] == "subagent"
    assert sub.attributes[n.KIT_SUBAGENT_TASK_LENGTH] == len("find callers")
    assert n.GEN_AI_INPUT_MESSAGES not in sub.attributes  # content is off by default
    assert sub.attributes[n.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert sub.attributes[n.GEN_AI_REQUEST_MODEL] in {
        sp.attributes.get(n.GEN_AI_REQUEST_MODEL) for sp in h.spans if sp.kind.name == "CLIENT"}
    assert sub.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == \
        sum(h.total("kit.tokens", type=t, agent="subagent")
            for t in ("input", "cache_read", "cache_write"))
    tool = only(h, "execute_tool subagent")
    assert tool.end_time >= sub.end_time  # the tool span waits for its subagent
    # subagent usage is not in the parent's turn (as in KIT), but is counted as subagent spend
    turn = only(h, n.SPAN_TURN)
    assert turn.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == \
        sum(h.total("kit.tokens", type=t, agent="main") for t in ("input", "cache_read", "cache_write"))
    assert h.total("kit.tokens", type="input", agent="subagent") == 4500
    assert h.total("kit.tokens", type="input", agent="main") == 2500
    assert h.total("kit.subagents", outcome="ok") == 1
    assert h.total("kit.tool.calls", kind="subagent", outcome="error") == 1


def test_subagent_without_child_events_still_has_chunk_tool_spans():
    h = run(sc.subagent_turn(child_events=False))
    assert [line.strip() for line in names_tree(h.spans)][4:7] == [
        "invoke_agent subagent [INTERNAL]", "execute_tool grep [INTERNAL]",
        "execute_tool read [INTERNAL ERROR]"]
    assert h.total("kit.tokens", agent="subagent") == 0


def test_error_turn():
    h = run(sc.error_turn())
    assert names_tree(h.spans) == [
        "kit.session_start [INTERNAL]",
        "invoke_agent kit [INTERNAL ERROR]",
        "  chat [CLIENT ERROR]",  # the model was never named before the call failed
    ]
    turn = only(h, n.SPAN_TURN)
    assert turn.status.description == "overloaded"  # error text is content: its kind only
    assert turn.attributes[n.KIT_TURN_STOP_REASON] == "error"
    assert turn.attributes[n.ERROR_TYPE] == "overloaded"
    assert turn.attributes[n.KIT_TURN_LLM_CALL_COUNT] == 0
    assert [e.name for e in only(h, "chat").events] == ["kit.retry", "kit.error"]
    assert h.total("kit.errors", kind="overloaded") == 1
    assert h.total("kit.retries", kind="overloaded") == 1
    assert h.total("kit.turns", stop_reason="error") == 1
    assert h.total("kit.tokens") == 0  # a failed call reported no usage


def test_retry_turn():
    h = run(sc.retry_turn())
    chat = only(h, SONNET)
    assert [e.name for e in chat.events][:1] == ["kit.retry"]
    assert chat.events[0].attributes["kit.attempt"] == 0
    assert chat.events[0].attributes["kit.error_length"] == len("429 Too Many Requests")
    assert chat.events[0].attributes[n.ERROR_TYPE] == "rate_limit"
    assert "kit.error" not in chat.events[0].attributes
    assert h.total("kit.retries", kind="rate_limit") == 1
    assert only(h, n.SPAN_TURN).status.status_code.name == "UNSET"


def test_automatic_compaction():
    h = run(sc.compaction_turn())
    turn = only(h, n.SPAN_TURN)
    compact = [e for e in turn.events if e.name == "kit.before_compact"]
    assert len(compact) == 1
    assert compact[0].attributes["kit.usage_percent"] == 0.92
    assert compact[0].attributes["kit.is_automatic"] is True
    assert h.total("kit.compactions", automatic="true") == 1
    assert h.count("kit.context.usage.ratio") == 1
    assert h.total("kit.context.usage.ratio") == 0.92


def test_model_change_mid_session():
    h = run(sc.model_change_session())
    assert names_tree(h.spans) == [
        "kit.session_start [INTERNAL]",
        "invoke_agent kit [INTERNAL]",
        f"  {SONNET} [CLIENT]",
        "kit.model_change [INTERNAL]",
        "invoke_agent kit [INTERNAL]",
        "  chat gpt-5-mini [CLIENT]",
    ]
    change = only(h, "kit.model_change")
    assert change.attributes["kit.new_model"] == "openai/gpt-5-mini"
    assert change.start_time == change.end_time
    first, second = sorted(h.spans_named(n.SPAN_TURN), key=lambda s: s.start_time)
    assert second.attributes[n.GEN_AI_PROVIDER_NAME] == "openai"
    # turns of one session share the conversation id and link to the previous turn
    assert first.attributes[n.GEN_AI_CONVERSATION_ID] == second.attributes[n.GEN_AI_CONVERSATION_ID]
    assert first.context.trace_id != second.context.trace_id
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    assert h.total("kit.tokens", model="gpt-5-mini", provider="openai", type="input") == 2000
    assert h.total("kit.tokens", model="claude-sonnet-4-5-20250929", type="input") == 1000


def test_usage_before_step_finish():
    h = run(sc.usage_before_finish_turn())
    chats = sorted(h.spans_named(SONNET), key=lambda s: s.start_time)
    assert [c.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] for c in chats] == [1000, 1100]
    assert [c.attributes[n.KIT_LLM_USAGE_SOURCE] for c in chats] == ["llm_usage", "llm_usage"]
    assert h.total("kit.tokens", type="input") == 2100
    assert h.total("kit.llm.calls") == 2


def test_two_sessions_interleaved_are_kept_apart():
    a, b, merged = sc.two_sessions_interleaved()
    pids = [e.pid for e in merged]
    assert sum(1 for x, y in zip(pids, pids[1:]) if x != y) >= 3  # really interleaved
    h = run(merged)
    turns = h.spans_named(n.SPAN_TURN)
    assert len(turns) == 2
    assert max(t.start_time for t in turns) < min(t.end_time for t in turns)  # overlapping
    by_project = {t.attributes[n.KIT_PROJECT]: t for t in turns}
    assert set(by_project) == {"proj", "api"}
    for project, model in (("proj", "claude-sonnet-4-5-20250929"), ("api", "gpt-5-mini")):
        turn = by_project[project]
        tree = names_tree(h.spans, turn.context.trace_id)
        assert tree == ["invoke_agent kit [INTERNAL]", f"  chat {model} [CLIENT]",
                        "  execute_tool read [INTERNAL]", f"  chat {model} [CLIENT]"]
    assert h.total("kit.tokens", project="proj", type="input") == 1100 + 500
    assert h.total("kit.tokens", project="api", type="input") == 1200 + 500


def test_abandoned_turn_is_closed_incomplete_with_children():
    s = sc.abandoned_turn()
    h = make_harness().feed(s.events)
    assert h.spans_named(n.SPAN_TURN) == []  # still open
    h.close()
    turn = only(h, n.SPAN_TURN)
    assert turn.attributes[n.KIT_TURN_INCOMPLETE] is True
    assert turn.attributes[n.KIT_TURN_STOP_REASON] == "incomplete"
    assert turn.status.status_code.name == "ERROR"
    assert turn.end_time == s.events[-1].ts_ns  # closed at its last activity, not "now"
    assert names_tree(h.spans)[1:] == ["invoke_agent kit [INTERNAL ERROR]", "  chat [CLIENT]",
                                       "  execute_tool bash [INTERNAL]"]
    assert h.translator.open_turn_count() == 0
    assert h.total("kit.turns", stop_reason="incomplete") == 1


def test_abandoned_turn_closed_by_idle_timeout_on_the_stream_clock():
    s = sc.abandoned_turn()
    h = make_harness().feed(s.events)
    last = s.events[-1].ts_ns
    assert h.translator.sweep(last + 60 * 10**9) == 0  # not idle long enough yet
    assert h.translator.sweep(last + 901 * 10**9) == 1
    assert only(h, n.SPAN_TURN).attributes[n.KIT_TURN_INCOMPLETE] is True


def test_new_agent_loop_closes_the_abandoned_one():
    s = sc.abandoned_turn()
    s.advance(5000)
    s.turn("again", [sc.Step(text="ok", usage=sc.Usage(10, 1))])
    h = run(s)
    stops = sorted((t.start_time, t.attributes[n.KIT_TURN_STOP_REASON])
                   for t in h.spans_named(n.SPAN_TURN))
    assert [stop for _, stop in stops] == ["incomplete", "stop"]


def test_hot_reload_session_start_is_not_a_new_session():
    s = sc.simple_turn()
    s.hot_reload()
    h = run(s)
    starts = h.spans_named("kit.session_start")
    assert sorted(sp.attributes[n.KIT_SESSION_RELOAD] for sp in starts) == [False, True]
    assert h.total("kit.sessions") == 1


def test_session_id_from_line_one_of_the_session_file(tmp_path):
    from kit_otel.cli.generator import write_session_header
    from kit_otel.translate.translator import TranslatorSettings
    path = tmp_path / "home--alice--proj" / "2026-06-09T13-18-10-000Z_3f9a1c2b7d4e.jsonl"
    write_session_header(path, "/home/alice/proj", "0123456789abcdef0123456789abcdef", sc.T0)
    s = sc.script(str(path))
    s.session_start()
    s.turn("hi", [sc.Step(text="yo", usage=sc.Usage(1, 1))])
    h = make_harness(TranslatorSettings(sessions_root=str(tmp_path))).feed(s.events).close()
    turn = only(h, n.SPAN_TURN)
    assert turn.attributes[n.SESSION_ID] == "0123456789abcdef0123456789abcdef"
    # outside the sessions root the file is never opened
    h2 = make_harness(TranslatorSettings(sessions_root=str(tmp_path / "elsewhere")))
    h2.feed(s.events).close()
    assert only(h2, n.SPAN_TURN).attributes[n.SESSION_ID] == path.stem


def test_unknown_event_type_is_kept_as_a_span_event():
    from kit_otel.model.decoder import decode_line
    s = sc.simple_turn()
    events = list(s.events)
    at = next(i for i, e in enumerate(events) if e.type == "message_start")
    line = ('{"v":1,"seq":999,"ts":"2026-06-09T00:00:00Z","pid":4242,"session_path":"%s",'
            '"type":"plan_update","data":{"Steps":3,"Title":"refactor","Nested":{"x":1}}}'
            % sc.PATH_A)
    unknown = decode_line(line)
    unknown.ts_ns = events[at].ts_ns
    events.insert(at + 1, unknown)
    h = run(events)
    turn = only(h, n.SPAN_TURN)
    ev = [e for e in turn.events if e.name == "kit.plan_update"]
    assert len(ev) == 1
    assert ev[0].attributes["kit.steps"] == 3
    assert ev[0].attributes["kit.title_length"] == len("refactor")  # unknown strings: free text
    assert "kit.title" not in ev[0].attributes
    assert ev[0].attributes["kit.nested_count"] == 1
    assert ev[0].attributes[n.KIT_UNKNOWN_EVENT] is True
    assert h.total("kit_otel.events", type="plan_update") == 1


def test_record_all_deltas_setting():
    from kit_otel.translate.translator import TranslatorSettings
    h = make_harness(TranslatorSettings(sessions_root=None, record_all_deltas=True))
    h.feed(sc.simple_turn().events).close()
    assert [e.name for e in only(h, SONNET).events].count("kit.message_update") == 6


def test_content_capture_is_opt_in_and_redacted():
    from kit_otel.translate.content import ContentPolicy
    from kit_otel.translate.translator import TranslatorSettings
    s = sc.script()
    s.turn("my key is sk-ant-abcdefghijklmnopqrstuvwxyz0123", [sc.Step(text="ok", usage=sc.Usage(1, 1))])
    off = run(s)
    turn = only(off, n.SPAN_TURN)
    assert n.GEN_AI_INPUT_MESSAGES not in turn.attributes
    assert turn.attributes[n.KIT_TURN_PROMPT_LENGTH] == len("my key is sk-ant-abcdefghijklmnopqrstuvwxyz0123")
    assert all("sk-ant" not in str(v) for sp in off.spans for v in sp.attributes.values())
    on = make_harness(TranslatorSettings(sessions_root=None,
                                         content=ContentPolicy(capture=True, max_length=12)))
    on.feed(s.events).close()
    import json
    (message,) = json.loads(only(on, n.SPAN_TURN).attributes[n.GEN_AI_INPUT_MESSAGES])
    assert message["role"] == "user"
    assert message["parts"][0]["content"].startswith("my key is [R")
    assert "more chars" in message["parts"][0]["content"]
    (answer,) = json.loads(only(on, n.SPAN_TURN).attributes[n.GEN_AI_OUTPUT_MESSAGES])
    assert answer["role"] == "assistant" and answer["parts"][0]["content"] == "ok"


def test_a_pause_longer_than_the_idle_timeout_keeps_the_session():
    s = sc.simple_turn()
    h = make_harness().feed(s.events)
    paused = s.events[-1].ts_ns + 20 * 60 * 10**9  # a 20-minute coffee break, then more
    h.translator.sweep(paused)
    s.now = paused
    s.turn("back again", [sc.Step(text="hi", usage=sc.Usage(1, 1))])
    s.hot_reload()
    h.feed([e for e in s.events if e.ts_ns >= paused])
    h.close()
    first, second = sorted(h.spans_named(n.SPAN_TURN), key=lambda sp: sp.start_time)
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    assert h.total("kit.sessions") == 1  # the reload after the pause is still a reload


def test_ended_and_long_quiet_sessions_are_forgotten():
    s = sc.simple_turn()
    h = make_harness().feed(s.events)
    last = s.events[-1].ts_ns
    h.translator.sweep(last + 2 * 3600 * 10**9)
    assert len(h.translator.sessions) == 1  # quiet for two hours: kept
    h.translator.sweep(last + 25 * 3600 * 10**9)
    assert h.translator.sessions == {}  # a day: forgotten
    s2 = sc.simple_turn()
    s2.shutdown()
    h2 = make_harness().feed(s2.events)
    h2.translator.sweep(s2.events[-1].ts_ns + 901 * 10**9)
    assert h2.translator.sessions == {}  # ended: forgotten after the idle timeout


def test_histogram_points_carry_exemplars_of_their_spans():
    h = run(sc.tools_turn())
    collected = {m.name: m.data.data_points  # one collection: it resets exemplar reservoirs
                 for rm in h.reader.get_metrics_data().resource_metrics
                 for sm in rm.scope_metrics for m in sm.metrics}
    turn = only(h, n.SPAN_TURN)
    exemplars = [e for p in collected["kit.turn.duration"] for e in p.exemplars]
    assert [(e.trace_id, e.span_id) for e in exemplars] == [(turn.context.trace_id,
                                                             turn.context.span_id)]
    tool_spans = {e.span_id for p in collected["kit.tool.duration"] for e in p.exemplars}
    assert tool_spans and tool_spans <= {s.context.span_id for s in h.spans
                                         if s.name.startswith("execute_tool")}
    chat_spans = {e.span_id for p in collected["gen_ai.client.operation.duration"]
                  for e in p.exemplars}
    assert chat_spans and chat_spans <= {s.context.span_id for s in h.spans_named(SONNET)}


def test_new_session_without_session_start_is_counted_once():
    """KIT's /new moves to a new session file and fires no session_start."""
    s = sc.simple_turn()
    s.hot_reload()
    first = s.events
    other = sc.script(path=sc.PATH_A.replace("3f9a1c2b7d4e", "0000000000aa"), start=s.now)
    other.turn("after /new", [sc.Step(text="ok", usage=sc.Usage(1, 1))])
    h = run(first + other.events)
    assert h.total("kit.sessions", project="proj") == 2
    ids = {t.attributes[n.SESSION_ID] for t in h.spans_named(n.SPAN_TURN)}
    assert len(ids) == 2
