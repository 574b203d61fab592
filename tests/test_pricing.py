"""Notional cost where KIT said 0: provenance on chat spans, turn spans and the cost metric, and
prices equal to the providers' published per-token prices — cache reads and writes included."""

from importlib import metadata

import pytest
from harness import make_harness
from scenarios import script

from kit_otel.model import names as n
from kit_otel.config import load_settings
from kit_otel.cli.generator import Step, Subagent, Tool, Usage
from kit_otel.export.pipeline import translator_settings
from kit_otel.translate.pricing import CostSource, PriceTable
from kit_otel.translate.translator import TranslatorSettings

PRICE_DATA = f"genai-prices {metadata.version('genai-prices')}"
SONNET = "claude-sonnet-4-5-20250929"


def published(per_mtok: tuple[float, float, float, float], usage: Usage) -> float:
    """Cost at a provider's published $/Mtok for (input, output, cache read, cache write)."""
    p_in, p_out, p_read, p_write = per_mtok
    return (usage.input * p_in + usage.output * p_out + usage.cache_read * p_read
            + usage.cache_write * p_write) / 1e6


# anthropic.com/pricing, Claude Sonnet 4.5: base input, output, cache hit, 5-minute cache write;
# prompts over 200k input tokens (cache included) are charged the long-context rates throughout
SONNET_45 = (3.00, 15.00, 0.30, 3.75)
SONNET_45_LONG = (6.00, 22.50, 0.60, 7.50)
# openai.com/api/pricing, gpt-4o: input, output, cached input (no cache-write charge)
GPT_4O = (2.50, 10.00, 1.25, 0.0)


def one_call(usage: Usage, *, provider="anthropic", model=SONNET, oauth=True,
             settings: TranslatorSettings | None = None):
    s = script(provider=provider, model=model)
    s.oauth = oauth
    s.session_start()
    s.turn("hi", [Step(text="ok", usage=usage)])
    h = make_harness(settings).feed(s.events).close()
    chat, = [sp for sp in h.spans if sp.name.startswith("chat")]
    turn, = h.spans_named(n.SPAN_TURN)
    return h, chat, turn


CACHE_HEAVY = [Usage(1200, 400, 150_000, 0), Usage(300, 900, 0, 40_000),
               Usage(50, 2_000, 120_000, 30_000), Usage(10, 10, 1_000_000 // 8, 0)]


@pytest.mark.parametrize("usage", CACHE_HEAVY, ids=lambda u: f"{u.cache_read}r{u.cache_write}w")
def test_oauth_call_gets_the_published_price_with_cache_read_and_write_priced_separately(usage):
    h, chat, turn = one_call(usage)
    expected = published(SONNET_45, usage)
    a = chat.attributes
    assert a[n.KIT_COST_USD] == 0.0  # KIT's number, untouched
    assert a[n.KIT_COST_SOURCE] == CostSource.PRICE_TABLE
    assert a[n.KIT_COST_NOTIONAL_USD] == pytest.approx(expected, rel=1e-12)
    assert a[n.KIT_COST_PRICE_DATA] == PRICE_DATA
    assert a[n.KIT_COST_PRICED_AS] == "anthropic/claude-sonnet-4-5"
    assert a[n.KIT_COST_SUBSCRIPTION] is True
    # pricing every cache token as input (the 2.5–3× bug) would give a number far from this
    naive = published((3.00, 15.00, 3.00, 3.00), usage)
    assert abs(naive - expected) > 0.1 * expected
    t = turn.attributes
    assert t[n.KIT_TURN_COST_USD] == 0.0
    assert t[n.KIT_TURN_COST_SOURCE] == CostSource.PRICE_TABLE
    assert t[n.KIT_TURN_COST_NOTIONAL_USD] == pytest.approx(expected, rel=1e-12)
    assert t[n.KIT_COST_PRICE_DATA] == PRICE_DATA
    assert h.total("kit.cost.usd", cost_source="price_table", price_data=PRICE_DATA) == \
        pytest.approx(expected, rel=1e-12)
    assert h.total("kit.cost.usd", cost_source="kit") == 0.0
    assert h.total("kit.turn.cost.usd", cost_source="price_table") == \
        pytest.approx(expected, rel=1e-12)


def test_long_context_rates_apply_when_input_with_cache_passes_200k():
    usage = Usage(20_000, 1_000, 170_000, 30_000)  # 220k input tokens, most of them cached
    _, chat, _ = one_call(usage)
    assert chat.attributes[n.KIT_COST_NOTIONAL_USD] == \
        pytest.approx(published(SONNET_45_LONG, usage), rel=1e-12)


def test_openai_cached_input_at_its_published_price():
    usage = Usage(2_000, 500, 48_000, 0)
    # KIT prices OpenAI itself; pretend its registry lacked the model (Cost 0), as for new models
    s = script(provider="openai", model="gpt-4o")
    s.session_start()
    s.turn("hi", [Step(text="ok", usage=usage)])
    h = make_harness().feed(s.events).close()
    chat, = [sp for sp in h.spans if sp.name.startswith("chat")]
    assert chat.attributes[n.KIT_COST_USD] == 0.0
    assert chat.attributes[n.KIT_COST_NOTIONAL_USD] == \
        pytest.approx(published(GPT_4O, usage), rel=1e-12)
    assert n.KIT_COST_SUBSCRIPTION not in chat.attributes  # not a subscription provider


def test_a_number_kit_reported_is_never_changed_nor_repriced():
    usage = Usage(1200, 85, 900, 0)
    h, chat, turn = one_call(usage, oauth=False)  # KIT priced it
    kit_cost = chat.attributes[n.KIT_COST_USD]
    assert kit_cost == pytest.approx(published(SONNET_45, usage))
    assert chat.attributes[n.KIT_COST_SOURCE] == CostSource.KIT
    for key in (n.KIT_COST_NOTIONAL_USD, n.KIT_COST_PRICE_DATA, n.KIT_COST_SUBSCRIPTION):
        assert key not in chat.attributes
    assert turn.attributes[n.KIT_TURN_COST_SOURCE] == CostSource.KIT
    assert n.KIT_TURN_COST_NOTIONAL_USD not in turn.attributes
    assert h.total("kit.cost.usd", cost_source="kit") == kit_cost
    assert h.total("kit.cost.usd", cost_source="price_table") == 0.0
    # whatever KIT says stands, even where the price table disagrees
    table = PriceTable()
    odd = table.cost_of(0.5, "anthropic", SONNET, (1200, 85, 900, 0), 0)
    assert odd.source == CostSource.KIT and odd.notional_usd == 0.0


def test_unknown_model_is_labelled_unknown_and_not_priced():
    h, chat, turn = one_call(Usage(1000, 100), provider="ollama", model="qwen3-coder:30b")
    assert chat.attributes[n.KIT_COST_SOURCE] == CostSource.UNKNOWN
    assert n.KIT_COST_NOTIONAL_USD not in chat.attributes
    assert turn.attributes[n.KIT_TURN_COST_SOURCE] == CostSource.UNKNOWN
    points = [p for p in h.points("kit.cost.usd") if p.attributes.get("cost_source") == "unknown"]
    assert [p.value for p in points] == [0.0]
    assert "price_data" not in points[0].attributes


@pytest.mark.parametrize("provider,model", [
    ("openai", f"anthropic/{SONNET}"),  # an OpenAI-compatible proxy (LiteLLM style)
    ("openrouter", "anthropic/claude-sonnet-4.5"),  # a router's own name for it
    ("custom", f"gateway/anthropic/{SONNET}"),  # nested prefixes
])
def test_a_model_renamed_by_a_provider_prefix_is_still_priced(provider, model):
    usage = Usage(1_000, 200, 10_000, 2_000)
    _, chat, _ = one_call(usage, provider=provider, model=model, oauth=False)
    assert chat.attributes[n.KIT_COST_USD] == 0.0  # KIT's generator has no price for that name
    assert chat.attributes[n.KIT_COST_SOURCE] == CostSource.PRICE_TABLE
    assert chat.attributes[n.KIT_COST_NOTIONAL_USD] == \
        pytest.approx(published(SONNET_45, usage), rel=1e-12)


def test_mixed_turn_reports_unknown_and_sums_what_it_could_price():
    s = script()
    s.oauth = True
    s.session_start()
    s.turn("go", [Step(text="a", usage=Usage(1000, 100, 5000, 0),
                       tools=[Tool("subagent", "agent", {"task": "t"}, subagent=Subagent(
                           task="t", child_usage=[Usage(2000, 50)],
                           child_model=("ollama", "qwen3-coder:30b")))]),
                  Step(text="b", usage=Usage(500, 60, 6000, 0))])
    h = make_harness().feed(s.events).close()
    turn, = h.spans_named(n.SPAN_TURN)
    expected = published(SONNET_45, Usage(1500, 160, 11000, 0))
    # the turn's own calls (KIT's AgentEnd excludes the subagent's): both priced from the table
    assert turn.attributes[n.KIT_TURN_COST_SOURCE] == CostSource.PRICE_TABLE
    assert turn.attributes[n.KIT_TURN_COST_NOTIONAL_USD] == pytest.approx(expected, rel=1e-12)
    assert h.total("kit.cost.usd", agent="main", cost_source="price_table") == \
        pytest.approx(expected, rel=1e-12)


def test_price_table_off_leaves_kits_zero_unknown():
    settings = translator_settings(load_settings(env={"KIT_OTEL_PRICE_TABLE": "false"}))
    settings.sessions_root = None
    _, chat, turn = one_call(Usage(1000, 100, 5000, 0), settings=settings)
    assert chat.attributes[n.KIT_COST_SOURCE] == CostSource.UNKNOWN
    assert n.KIT_COST_NOTIONAL_USD not in chat.attributes
    assert chat.attributes[n.KIT_COST_SUBSCRIPTION] is True  # still visibly subscription traffic


def test_model_resolution_is_cached_for_hits_and_misses():
    table = PriceTable()
    assert table.notional_usd("ollama", "qwen3-coder:30b", (1, 1, 0, 0), 0) is None
    assert table.notional_usd("anthropic", SONNET, (1, 1, 0, 0), 0) is not None
    lookups = []
    real = table._snapshot.find_provider_model

    def counting(*args):
        lookups.append(args)
        return real(*args)

    table._snapshot.find_provider_model = counting
    try:
        for _ in range(3):
            assert table.notional_usd("ollama", "qwen3-coder:30b", (1, 1, 0, 0), 0) is None
            assert table.notional_usd("Anthropic", SONNET, (1, 1, 0, 0), 0) is not None
    finally:
        del table._snapshot.find_provider_model
    assert lookups == []


def test_turn_carries_its_own_usage_and_the_total_with_its_subagents():
    s = script()
    s.session_start()
    child = [Usage(2000, 100), Usage(2500, 200, 1000, 0)]
    s.turn("go", [Step(text="a", usage=Usage(1000, 40),
                       tools=[Tool("subagent", "agent", {"task": "t"}, subagent=Subagent(
                           task="t", child_usage=child))]),
                  Step(text="b", usage=Usage(800, 30, 500, 0))])
    h = make_harness().feed(s.events).close()
    turn, = h.spans_named(n.SPAN_TURN)
    a = turn.attributes
    own_cost = sum(e.data.Cost for e in s.events
                   if e.type == "llm_usage" and not e.parent_tool_call_id)
    child_cost = sum(e.data.Cost for e in s.events
                     if e.type == "llm_usage" and e.parent_tool_call_id)
    assert child_cost > 0 and own_cost > 0
    # the turn's own numbers are KIT's AgentEnd (children excluded) ...
    agent_end, = [e.data for e in s.events
                  if e.type == "agent_end" and not e.parent_tool_call_id]
    # (the conventions' input_tokens include the cached ones, KIT's InputTokens do not)
    assert a[n.GEN_AI_USAGE_INPUT_TOKENS] == agent_end.InputTokensDelta + \
        agent_end.CacheReadTokensDelta + agent_end.CacheWriteTokensDelta == 1800 + 500
    assert a[n.KIT_TURN_COST_USD] == pytest.approx(agent_end.CostDelta)
    # ... the inclusive ones add every child agent's call
    assert a[n.KIT_TURN_SUBAGENT_COUNT] == 1
    assert a[n.KIT_TURN_INCLUSIVE_LLM_CALL_COUNT] == 4
    assert a[n.KIT_TURN_INCLUSIVE_INPUT_TOKENS] == (1800 + 500) + (4500 + 1000)
    assert a[n.KIT_TURN_INCLUSIVE_OUTPUT_TOKENS] == 70 + 300
    assert a[n.KIT_TURN_INCLUSIVE_CACHE_READ_TOKENS] == 500 + 1000
    assert a[n.KIT_TURN_INCLUSIVE_COST_USD] == pytest.approx(own_cost + child_cost, rel=1e-12)
    assert h.total("kit.cost.usd", agent="subagent") == pytest.approx(child_cost, rel=1e-12)


def subscription_turn_with_subagent():
    """A Claude subscription turn (KIT prices every call at 0) that runs one subagent."""
    s = script()
    s.oauth = True
    s.session_start()
    sub = Subagent(task="t", child_usage=[Usage(3000, 100, 20000, 0)],
                   child_model=("anthropic", SONNET))
    s.turn("go", [Step(text="a", usage=Usage(1000, 40, 8000, 0),
                       tools=[Tool("subagent", "agent", {"task": "t"}, subagent=sub)])])
    return s


def test_inclusive_notional_cost_of_a_subscription_turn_with_a_subagent():
    s = subscription_turn_with_subagent()
    h = make_harness().feed(s.events).close()
    turn, = h.spans_named(n.SPAN_TURN)
    own = published(SONNET_45, Usage(1000, 40, 8000, 0))
    child = published(SONNET_45, Usage(3000, 100, 20000, 0))
    assert turn.attributes[n.KIT_TURN_COST_NOTIONAL_USD] == pytest.approx(own, rel=1e-12)
    assert turn.attributes[n.KIT_TURN_INCLUSIVE_NOTIONAL_USD] == \
        pytest.approx(own + child, rel=1e-12)
    assert turn.attributes[n.KIT_TURN_INCLUSIVE_COST_USD] == 0.0
    subagent, = h.spans_named(n.SPAN_SUBAGENT)
    assert subagent.attributes[n.KIT_COST_NOTIONAL_USD] == pytest.approx(child, rel=1e-12)
    assert subagent.attributes[n.KIT_COST_SOURCE] == CostSource.PRICE_TABLE


def test_summary_shows_kit_notional_and_with_subagents_per_turn_project_and_model():
    from kit_otel.cli.summary import RichestTurnKeeper, Summary
    s = subscription_turn_with_subagent()
    h = make_harness()
    summary = Summary(h.translator, RichestTurnKeeper())
    h.feed(s.events).close()
    text = summary.render()
    own = published(SONNET_45, Usage(1000, 40, 8000, 0))
    child = published(SONNET_45, Usage(3000, 100, 20000, 0))
    turn_row = text.split("Per turn")[1].splitlines()[2].split()
    assert turn_row[-3:] == ["0.0000", f"{own:.4f}", f"{own + child:.4f}"]
    project_row = text.split("Per project")[1].splitlines()[2].split()
    assert project_row == ["proj", "1", "0.0000", f"{own:.4f}", f"{own + child:.4f}"]
    model_rows = {tuple(line.split()[:2]): line.split()
                  for line in text.split("Per model")[1].splitlines() if "/" in line}
    assert model_rows[(f"anthropic/{SONNET}", "subagent")][-2] == f"{child:.4f}"


def test_demo_has_a_subscription_session_whose_cost_is_notional_and_labelled():
    from kit_otel.cli.generator import demo_stream
    events = demo_stream(7, subscription=(1,))
    h = make_harness().feed(events).close()
    pid_of_trace = {sp.context.trace_id: sp.attributes[n.KIT_PID]
                    for sp in h.spans_named(n.SPAN_TURN)}
    by_pid: dict[int, set] = {}
    for sp in h.spans:
        if sp.name.startswith("chat") and n.KIT_COST_SOURCE in sp.attributes:
            by_pid.setdefault(pid_of_trace[sp.context.trace_id], set()).add(
                sp.attributes[n.KIT_COST_SOURCE])
    assert CostSource.PRICE_TABLE in by_pid[4001]  # the subscription session
    assert CostSource.PRICE_TABLE not in by_pid[4000] | by_pid[4002]
    assert h.total("kit.cost.usd", cost_source="price_table") > 0
