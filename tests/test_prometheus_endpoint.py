"""/metrics over HTTP shows docs/design.md#metrics's exposition names with the stream's values."""

import shutil
import subprocess
import urllib.request
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_token_truth import usage_sums

from kit_otel.model import names as n
from kit_otel.config import Budget, load_settings
from kit_otel.model.decoder import DecodeError
from kit_otel.cli.generator import demo_stream
from kit_otel.export.pipeline import Pipeline

DESIGN_NAMES = {  # exposition name → type, from docs/design.md#metrics
    "kit_tokens_total": "counter", "kit_cost_usd_total": "counter",
    "kit_llm_calls_total": "counter", "gen_ai_client_token_usage": "histogram",
    "gen_ai_client_operation_duration_seconds": "histogram",
    "gen_ai_client_operation_time_to_first_chunk_seconds": "histogram",
    "kit_turns_total": "counter",
    "kit_turn_duration_seconds": "histogram", "kit_turn_cost_usd": "histogram",
    "kit_tool_calls_total": "counter", "kit_tool_duration_seconds": "histogram",
    "kit_errors_total": "counter", "kit_retries_total": "counter",
    "kit_compactions_total": "counter", "kit_context_usage_ratio": "histogram",
    "kit_subagents_total": "counter", "kit_sessions_total": "counter", "kit_budget_usd": "gauge",
    "kit_otel_events_total": "counter", "kit_otel_events_rejected_total": "counter",
    "kit_otel_dropped_total": "counter",
}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    out = tmp_path_factory.mktemp("prom")
    settings = load_settings(env={}, overrides={
        "traces_exporter": ("none",), "metrics_exporter": ("prometheus",),
        "prometheus_port": 0, "output_dir": str(out)})
    settings.budgets = (Budget("day", "global", 25.0), Budget("month", "project", 300.0,
                                                             project="payments"))
    pipeline = Pipeline(settings)
    events = demo_stream(5, sessions=3, turns=6)
    events[10].dropped = 4
    for event in events:
        pipeline.feed(event)
    pipeline.feed(DecodeError("f", 1, "", "malformed JSON: x", "malformed_json"))
    pipeline.translator.close()
    pipeline.flush()  # as the demo does before it serves
    with urllib.request.urlopen(pipeline.prometheus.url, timeout=10) as response:
        text = response.read().decode()
    pipeline.shutdown()
    return text, events


def samples(text):
    found = defaultdict(list)
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            found[sample.name].append(sample)
    return found, types


def test_every_design_name_is_exposed_with_its_type(scraped):
    text, _ = scraped
    found, types = samples(text)
    for name, kind in DESIGN_NAMES.items():
        family = name[: -len("_total")] if kind == "counter" else name
        assert types.get(family) == kind, (name, types.get(family))
        probe = name if kind != "histogram" else name + "_count"
        assert found[probe], f"{probe} has no samples"
    assert not any("_USD" in name for name in found), "unit suffix leaked into a name"
    for name in DESIGN_NAMES:  # one family each: a flush must not make a scrape show it twice
        assert text.count(f"# HELP {name} ") == 1, name


def test_scraped_values_equal_the_stream(scraped):
    text, events = scraped
    found, _ = samples(text)
    sums = usage_sums(events)

    def total(name, **labels):
        return sum(s.value for s in found[name]
                   if all(s.labels.get(k) == v for k, v in labels.items()))

    for kind in ("input", "output", "cache_read", "cache_write"):
        assert total("kit_tokens_total", type=kind) == sums[(kind, "main")] + sums[(kind, "subagent")]
    assert total("kit_cost_usd_total", agent="main") == pytest.approx(sums[("cost", "main")], abs=1e-9)
    assert total("kit_turns_total") == sum(1 for e in events if e.type == "agent_end" and e.agent != "subagent")
    assert total("kit_budget_usd", window="day", scope="global") == 25.0
    assert total("kit_budget_usd", window="month", scope="project", project="payments") == 300.0
    assert total("kit_otel_dropped_total") == 4
    assert total("kit_otel_events_rejected_total", reason="malformed_json") == 1
    assert total("kit_otel_events_total") == len(events)
    labels = {s.labels.get("project") for s in found["kit_tokens_total"]}
    assert labels == {"payments", "kit-otel", "webapp"}
    assert all("session_id" not in s.labels for s in found["kit_tokens_total"])  # opt-in only


def test_promtool_accepts_the_exposition(scraped):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; CI installs it)")
    text, _ = scraped
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_names_match_the_semantic_conventions():
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
    from opentelemetry.semconv._incubating.attributes import session_attributes
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
    from opentelemetry.semconv.attributes import error_attributes
    pairs = [
        (n.GEN_AI_OPERATION_NAME, ga.GEN_AI_OPERATION_NAME),
        (n.GEN_AI_PROVIDER_NAME, ga.GEN_AI_PROVIDER_NAME),
        (n.GEN_AI_REQUEST_MODEL, ga.GEN_AI_REQUEST_MODEL),
        (n.GEN_AI_RESPONSE_FINISH_REASONS, ga.GEN_AI_RESPONSE_FINISH_REASONS),
        (n.GEN_AI_AGENT_NAME, ga.GEN_AI_AGENT_NAME),
        (n.GEN_AI_CONVERSATION_ID, ga.GEN_AI_CONVERSATION_ID),
        (n.GEN_AI_USAGE_INPUT_TOKENS, ga.GEN_AI_USAGE_INPUT_TOKENS),
        (n.GEN_AI_USAGE_OUTPUT_TOKENS, ga.GEN_AI_USAGE_OUTPUT_TOKENS),
        (n.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
        (n.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
        (n.GEN_AI_TOOL_NAME, ga.GEN_AI_TOOL_NAME), (n.GEN_AI_TOOL_CALL_ID, ga.GEN_AI_TOOL_CALL_ID),
        (n.GEN_AI_TOOL_TYPE, ga.GEN_AI_TOOL_TYPE),
        (n.GEN_AI_TOOL_CALL_ARGUMENTS, ga.GEN_AI_TOOL_CALL_ARGUMENTS),
        (n.GEN_AI_TOOL_CALL_RESULT, ga.GEN_AI_TOOL_CALL_RESULT),
        (n.GEN_AI_TOKEN_TYPE, ga.GEN_AI_TOKEN_TYPE),
        (n.SESSION_ID, session_attributes.SESSION_ID), (n.ERROR_TYPE, error_attributes.ERROR_TYPE),
        (n.TOKEN_USAGE.otel_name, gm.GEN_AI_CLIENT_TOKEN_USAGE),
        (n.OPERATION_DURATION.otel_name, gm.GEN_AI_CLIENT_OPERATION_DURATION),
    ]
    for ours, theirs in pairs:
        assert ours == theirs
    assert ga.GenAiOperationNameValues.CHAT.value == n.OP_CHAT
    assert ga.GenAiOperationNameValues.EXECUTE_TOOL.value == n.OP_EXECUTE_TOOL
    assert ga.GenAiOperationNameValues.INVOKE_AGENT.value == n.OP_INVOKE_AGENT



@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_closing_wakes_the_serving_loop_instead_of_waiting_for_its_poll(host, monkeypatch):
    """prometheus_client's loop reads shutdown() between polls (0.5 s apart); close() wakes it
    with a connection, so a replay does not end with half a second of nothing. Here the poll is
    an hour: only the wake-up can end the loop."""
    import socketserver
    import threading
    serve_forever = socketserver.BaseServer.serve_forever
    monkeypatch.setattr(socketserver.BaseServer, "serve_forever",
                        lambda self, poll_interval=0.5: serve_forever(self, 3600))
    from kit_otel.export.pipeline import PrometheusEndpoint
    endpoint = PrometheusEndpoint(host, 0)
    port = endpoint.server.server_port
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).status == 200
    closing = threading.Thread(target=endpoint.close, daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive(), "close() waited for the serving loop's poll"
    assert not endpoint.thread.is_alive()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    endpoint.close()  # twice is harmless
