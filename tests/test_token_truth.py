"""Token and cost truth: metrics equal the stream's llm_usage sums whatever the arrival order;
turn attributes equal agent_end's, and the computed aggregate equals the reported one."""

import random
from collections import defaultdict

import pytest
from harness import make_harness

from kit_otel.model import events as ev
from kit_otel.model import names as n
from kit_otel.cli.generator import demo_stream

TURN_KEYS = (n.KIT_TURN_TOOL_CALL_COUNT, n.KIT_TURN_TOOL_NAMES, n.KIT_TURN_LLM_CALL_COUNT,
             n.GEN_AI_USAGE_INPUT_TOKENS, n.GEN_AI_USAGE_OUTPUT_TOKENS,
             n.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, n.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
             n.KIT_TURN_COST_USD, n.KIT_TURN_DURATION_MS, n.KIT_TURN_STOP_REASON)


def swap_usage_order(events, rng):
    """Within each step, put llm_usage before or after step_finish at random (both happen)."""
    out = list(events)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        if {a.type, b.type} == {"step_finish", "llm_usage"} and a.pid == b.pid and \
                a.session_path == b.session_path and rng.random() < 0.5:
            out[i], out[i + 1] = b, a
    return out


def usage_sums(events):
    sums = defaultdict(float)
    for e in events:
        if e.type == "llm_usage":
            agent = e.agent or "main"
            sums[("input", agent)] += e.data.InputTokens
            sums[("output", agent)] += e.data.OutputTokens
            sums[("cache_read", agent)] += e.data.CacheReadTokens
            sums[("cache_write", agent)] += e.data.CacheWriteTokens
            sums[("cost", agent)] += e.data.Cost
            sums[("calls", e.data.Model)] += 1
    return sums


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_metric_totals_equal_the_llm_usage_in_the_stream(seed):
    rng = random.Random(seed)
    events = swap_usage_order(demo_stream(seed, sessions=4, turns=7), rng)
    h = make_harness().feed(events).close()
    sums = usage_sums(events)
    for agent in ("main", "subagent"):
        for kind in ("input", "output", "cache_read", "cache_write"):
            assert h.total("kit.tokens", type=kind, agent=agent) == sums[(kind, agent)]
        assert round(h.total("kit.cost.usd", agent=agent), 2) == round(sums[("cost", agent)], 2)
        assert abs(h.total("kit.cost.usd", agent=agent) - sums[("cost", agent)]) < 1e-9
    for (what, model), count in sums.items():
        if what == "calls":
            assert h.total("kit.llm.calls", model=model) == count
    # the semconv histogram carries the same totals, its input cached tokens included
    assert h.total("gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) == sum(
        sums[(kind, agent)] for kind in ("input", "cache_read", "cache_write")
        for agent in ("main", "subagent"))


@pytest.mark.parametrize("seed", [11, 12])
def test_turn_attributes_equal_agent_end(seed):
    events = demo_stream(seed, sessions=3, turns=6)
    h = make_harness().feed(events).close()
    ends = sorted((e for e in events if e.type == "agent_end" and e.agent != "subagent"),
                  key=lambda e: e.ts_ns)
    turns = sorted(h.spans_named(n.SPAN_TURN), key=lambda s: s.end_time)
    assert len(turns) == len(ends)
    for span, end in zip(turns, ends):
        d = end.data
        assert span.end_time == end.ts_ns
        assert span.attributes[n.KIT_TURN_AGGREGATE_SOURCE] == "agent_end"
        assert n.KIT_TURN_AGGREGATE_MISMATCH not in span.attributes
        assert span.attributes[n.KIT_TURN_TOOL_CALL_COUNT] == d.ToolCallCount
        assert list(span.attributes[n.KIT_TURN_TOOL_NAMES]) == list(d.ToolNames or [])
        assert span.attributes[n.KIT_TURN_LLM_CALL_COUNT] == d.LLMCallCount
        assert span.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == \
            d.InputTokensDelta + d.CacheReadTokensDelta + d.CacheWriteTokensDelta
        assert span.attributes[n.GEN_AI_USAGE_OUTPUT_TOKENS] == d.OutputTokensDelta
        assert span.attributes[n.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == d.CacheReadTokensDelta
        assert span.attributes[n.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == \
            d.CacheWriteTokensDelta
        assert span.attributes[n.KIT_TURN_COST_USD] == d.CostDelta
        assert span.attributes[n.KIT_TURN_DURATION_MS] == d.DurationMs
    assert h.total("kit.turn.cost.usd") == pytest.approx(sum(e.data.CostDelta for e in ends))


def strip_enrichment(events):
    """What an older KIT, ACP or Python source sends: agent_end with Response and StopReason."""
    out = []
    for e in events:
        if e.type == "agent_end":
            e = ev.Event(**{f: getattr(e, f) for f in e.__struct_fields__ if f != "data"},
                         data=ev.AgentEnd(Response=e.data.Response, StopReason=e.data.StopReason))
        out.append(e)
    return out


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_computed_aggregate_equals_agent_end(seed):
    events = demo_stream(seed, sessions=3, turns=6)
    reported = make_harness().feed(events).close()
    computed = make_harness().feed(strip_enrichment(events)).close()

    def table(h):
        return sorted((s.end_time, tuple(s.attributes[k] for k in TURN_KEYS))
                      for s in h.spans_named(n.SPAN_TURN))

    assert table(reported) == table(computed)
    assert {s.attributes[n.KIT_TURN_AGGREGATE_SOURCE]
            for s in computed.spans_named(n.SPAN_TURN)} == {"computed"}


def test_a_disagreeing_agent_end_is_flagged_and_wins():
    events = demo_stream(3, sessions=1, turns=1)
    end = next(e for e in events if e.type == "agent_end")
    end.data.InputTokensDelta += 1
    h = make_harness().feed(events).close()
    turn = h.spans_named(n.SPAN_TURN)[0]
    assert turn.attributes[n.KIT_TURN_AGGREGATE_MISMATCH] is True
    assert turn.attributes[n.GEN_AI_USAGE_INPUT_TOKENS] == end.data.InputTokensDelta + \
        end.data.CacheReadTokensDelta + end.data.CacheWriteTokensDelta
