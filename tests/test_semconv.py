"""Spans and metrics against the GenAI semantic conventions, names imported from the installed
semantic-conventions package (never retyped here), issue 14's S1–S12 and M1–M3."""

import json

import pytest
from harness import make_harness
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.attributes import session_attributes
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
from opentelemetry.semconv.attributes import error_attributes

import scenarios as sc
from kit_otel.translate import logs
from kit_otel.model import names as n
from kit_otel.translate.content import ContentPolicy
from kit_otel.cli.generator import Step, Tool, Usage
from kit_otel.translate.translator import TranslatorSettings

SONNET = "claude-sonnet-4-5-20250929"


def run(script, **settings):
    h = make_harness(TranslatorSettings(sessions_root=None, **settings))
    return h.feed(script.events if hasattr(script, "events") else script).close()


def only(h, name):
    (span,) = h.spans_named(name)
    return span


def test_names_come_from_the_package():
    # every name the package has is the package's own object, not a retyped string
    for ours, theirs in [
            (n.GEN_AI_OPERATION_NAME, ga.GEN_AI_OPERATION_NAME),
            (n.GEN_AI_PROVIDER_NAME, ga.GEN_AI_PROVIDER_NAME),
            (n.GEN_AI_REQUEST_STREAM, ga.GEN_AI_REQUEST_STREAM),
            (n.GEN_AI_RESPONSE_MODEL, ga.GEN_AI_RESPONSE_MODEL),
            (n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
            (n.GEN_AI_INPUT_MESSAGES, ga.GEN_AI_INPUT_MESSAGES),
            (n.GEN_AI_OUTPUT_MESSAGES, ga.GEN_AI_OUTPUT_MESSAGES),
            (n.SESSION_ID, session_attributes.SESSION_ID),
            (n.ERROR_TYPE_OTHER, error_attributes.ErrorTypeValues.OTHER.value),
            (n.TIME_TO_FIRST_CHUNK.otel_name, gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK),
            (n.TOKEN_USAGE.otel_name, gm.GEN_AI_CLIENT_TOKEN_USAGE)]:
        assert ours is theirs


# the newer conventions' names that no semantic-conventions release has yet, with the constant
# the package would give each (its generator names constants after the name, upper-cased)
NOT_IN_THE_PACKAGE = {
    n.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: (ga, "GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS"),
    n.INFERENCE_INPUT_TOKENS.otel_name: (gm, "GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS"),
    n.INFERENCE_OUTPUT_TOKENS.otel_name: (gm, "GEN_AI_CLIENT_INFERENCE_USAGE_OUTPUT_TOKENS"),
    logs.EVENT_INFERENCE_DETAILS: (None, "GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS"),
    logs.EVENT_OPERATION_EXCEPTION: (None, "GEN_AI_CLIENT_OPERATION_EXCEPTION"),
}


def _every_semconv_constant():
    """{constant name: value} of every module of the installed semantic-conventions package."""
    import importlib
    from pathlib import Path

    import opentelemetry.semconv as semconv
    root = Path(semconv.__file__).parent
    found = {}
    # by file, not pkgutil: _incubating/ is a namespace package, which pkgutil does not walk
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = importlib.import_module(".".join((semconv.__name__, *parts)).removesuffix(".__init__"))
        found.update({f"{module.__name__}.{k}": v for k, v in vars(module).items()
                      if isinstance(v, str) and k.isupper()})
    return found


def test_names_missing_from_the_package_are_missing_under_any_constant():
    # once a release has one of them (under its constant or any other), this fails: then it must
    # be imported from there, and a different spelling there is the one to follow
    constants = _every_semconv_constant()
    assert constants[f"{ga.__name__}.GEN_AI_PROVIDER_NAME"] == ga.GEN_AI_PROVIDER_NAME  # it read
    assert len(constants) > 1000  # the incubating modules too
    values = set(constants.values())
    for ours, (module, constant) in NOT_IN_THE_PACKAGE.items():
        same_constant = {k: v for k, v in constants.items() if k.rsplit(".", 1)[1] == constant}
        assert not same_constant, f"{same_constant} is in the package now (ours: {ours!r}): import it"
        assert ours not in values, f"{ours!r} is in the package now: import it"
        if module is not None:
            assert not hasattr(module, constant)


def test_opt_in_value_is_the_instrumentation_packages():
    from opentelemetry.instrumentation._semconv import _StabilityMode
    value = _StabilityMode.GEN_AI_LATEST_EXPERIMENTAL.value
    assert n.gen_ai_latest(value) and n.gen_ai_latest(f"http/dup, {value} ")
    assert not n.gen_ai_latest(value.upper()) and not n.gen_ai_latest("gen_ai")


def test_util_genai_emits_the_newer_names_as_we_spell_them(monkeypatch):
    """opentelemetry-util-genai (the bench extra, installed by scripts/test.sh) is the one package
    that emits two of the newer names: its inference span and its details event must use our
    spelling, else one of us follows another version of the conventions."""
    handler_module = pytest.importorskip("opentelemetry.util.genai.handler",
                                         reason="the bench extra is not installed")
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT", "true")
    spans, records = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tracer_provider, logger_provider = TracerProvider(), LoggerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(records))
    handler = handler_module.TelemetryHandler(tracer_provider=tracer_provider,
                                              meter_provider=MeterProvider(),
                                              logger_provider=logger_provider)
    invocation = handler.inference("anthropic", request_model=SONNET)
    invocation.input_tokens, invocation.output_tokens = 40, 2
    invocation.cache_write_input_tokens = 7
    invocation.stop()
    (span,) = spans.get_finished_spans()
    assert span.attributes[n.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] == 7
    assert {r.log_record.event_name for r in records.get_finished_logs()} == \
        {logs.EVENT_INFERENCE_DETAILS}
    # and in the latest mode our chat span carries the very key util-genai wrote
    h = run(sc.tools_turn(), gen_ai_latest=True)
    chat = next(sp for sp in h.spans if sp.name.startswith("chat"))
    assert set(span.attributes) & set(chat.attributes) >= {n.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS}


def test_s1_subagent_span_has_provider_and_model():
    h = run(sc.subagent_turn())
    sub = only(h, n.SPAN_SUBAGENT)
    assert sub.attributes[ga.GEN_AI_PROVIDER_NAME] == ga.GenAiProviderNameValues.ANTHROPIC.value
    assert sub.attributes[ga.GEN_AI_REQUEST_MODEL]
    assert sub.attributes[ga.GEN_AI_OPERATION_NAME] == \
        ga.GenAiOperationNameValues.INVOKE_AGENT.value


def test_s2_chat_and_tool_spans_have_the_conversation_id():
    h = run(sc.tools_turn())
    turn = only(h, n.SPAN_TURN)
    conversation = turn.attributes[ga.GEN_AI_CONVERSATION_ID]
    assert conversation
    others = [s for s in h.spans if s.name.startswith(("chat", "execute_tool"))]
    assert len(others) == 4
    assert {s.attributes[ga.GEN_AI_CONVERSATION_ID] for s in others} == {conversation}


def test_s3_input_tokens_include_cached_tokens_and_the_histogram_agrees():
    s = sc.script()
    s.turn("q", [Step(text="a", usage=Usage(100, 10, 2000, 300))])
    h = run(s)
    chat = only(h, f"chat {SONNET}")
    assert chat.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 2400
    assert chat.attributes[ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 2000
    assert chat.attributes[ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 300
    assert only(h, n.SPAN_TURN).attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] == 2400
    assert h.total(gm.GEN_AI_CLIENT_TOKEN_USAGE,
                   **{ga.GEN_AI_TOKEN_TYPE: ga.GenAiTokenTypeValues.INPUT.value}) == 2400
    assert h.total("kit.tokens", type="input") == 100  # KIT's own meaning stays in kit.*


def test_s4_provider_names_are_the_well_known_values():
    v = ga.GenAiProviderNameValues
    expected = {"google": v.GCP_GEMINI, "gemini": v.GCP_GEMINI, "google-vertex": v.GCP_VERTEX_AI,
                "bedrock": v.AWS_BEDROCK, "azure": v.AZURE_AI_OPENAI, "openai": v.OPENAI,
                "anthropic": v.ANTHROPIC, "xai": v.X_AI, "mistral": v.MISTRAL_AI}
    for kit, value in expected.items():
        assert n.provider_name(kit) == value.value
    assert n.provider_name("ollama") == "ollama"  # no well-known value: passed through
    s = sc.script(provider="google", model="gemini-2.5-pro")
    s.turn("q", [Step(text="a", usage=Usage(10, 1))])
    h = run(s)
    chat = only(h, "chat gemini-2.5-pro")
    assert chat.attributes[ga.GEN_AI_PROVIDER_NAME] == v.GCP_GEMINI.value
    assert h.total(gm.GEN_AI_CLIENT_OPERATION_DURATION) > 0
    assert {p.attributes[ga.GEN_AI_PROVIDER_NAME]
            for p in h.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)} == {v.GCP_GEMINI.value}
    # one vocabulary: the kit.* metrics' provider label is the conventions' name too
    assert h.total("kit.tokens", provider=v.GCP_GEMINI.value) == 11
    assert h.total("kit.tokens", provider="google") == 0


def test_s5_response_model_and_stream():
    h = run(sc.model_change_session())
    first, second = sorted((s for s in h.spans if s.name.startswith("chat")),
                           key=lambda s: s.start_time)
    assert first.attributes[ga.GEN_AI_RESPONSE_MODEL] == SONNET
    assert second.attributes[ga.GEN_AI_REQUEST_MODEL] == "gpt-5-mini"
    assert second.attributes[ga.GEN_AI_RESPONSE_MODEL] == "gpt-5-mini"
    assert first.attributes[ga.GEN_AI_REQUEST_STREAM] is True  # chunks streamed in


def test_s6_time_to_first_chunk_in_seconds_and_the_conventions_metric():
    h = run(sc.simple_turn())
    chat = only(h, f"chat {SONNET}")
    ttfc = chat.attributes[ga.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    first_chunk = next(e.timestamp for e in chat.events if e.name == "kit.message_update")
    assert ttfc == (first_chunk - chat.start_time) / 1e9
    assert h.count(gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK) == 1
    (point,) = h.points(gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK)
    assert point.sum == ttfc
    assert point.attributes[ga.GEN_AI_OPERATION_NAME] == ga.GenAiOperationNameValues.CHAT.value
    assert not any(k.startswith("kit.llm.time_to_first") for k in chat.attributes)


def test_s7_unclassified_errors_are_OTHER():
    s = sc.script()
    s.session_start()
    s.turn("do it", [Step(error="something odd happened")])
    h = run(s)
    assert only(h, n.SPAN_TURN).attributes[error_attributes.ERROR_TYPE] == \
        error_attributes.ErrorTypeValues.OTHER.value
    assert only(h, "chat").attributes[error_attributes.ERROR_TYPE] == \
        error_attributes.ErrorTypeValues.OTHER.value
    assert h.total("kit.errors", kind="other") == 1  # the kit.* label keeps its fixed set


def test_s8_tool_type_by_what_the_tool_is():
    s = sc.script()
    sub = sc.Subagent(task="look", tools=[])
    s.turn("q", [Step(text="a", usage=Usage(1, 1), tools=[
        Tool("bash", "execute"), Tool("github__create_issue", "execute"),
        Tool("todo_write", "execute"), Tool("subagent", "agent", subagent=sub)])])
    h = run(s)
    types = {sp.attributes[ga.GEN_AI_TOOL_NAME]: sp.attributes[ga.GEN_AI_TOOL_TYPE]
             for sp in h.spans if sp.name.startswith("execute_tool")}
    assert types == {"bash": "function", "github__create_issue": "extension",
                     "todo_write": "extension", "subagent": "agent"}


def test_s9_captured_content_uses_the_conventions_attributes_and_stays_json():
    s = sc.script()
    long_path = "x" * 200
    s.turn("read it", [Step(text="done", usage=Usage(1, 1), tools=[
        Tool("read", "read", {"path": long_path}), Tool("ls", "read", {"path": "."})])])
    h = run(s, content=ContentPolicy(capture=True, max_length=50))
    turn = only(h, n.SPAN_TURN)
    (message,) = json.loads(turn.attributes[ga.GEN_AI_INPUT_MESSAGES])
    assert message == {"role": "user", "parts": [{"type": "text", "content": "read it"}]}
    (answer,) = json.loads(turn.attributes[ga.GEN_AI_OUTPUT_MESSAGES])
    assert answer["role"] == "assistant" and answer["finish_reason"]
    cut = only(h, "execute_tool read").attributes[ga.GEN_AI_TOOL_CALL_ARGUMENTS]
    assert json.loads(cut).startswith('{"path": "xxx')  # cut, and still valid JSON
    whole = only(h, "execute_tool ls").attributes[ga.GEN_AI_TOOL_CALL_ARGUMENTS]
    assert json.loads(whole) == {"path": "."}
    assert not any(k.startswith(("kit.turn.prompt", "kit.turn.response")) and
                   not k.endswith("_length") for k in turn.attributes)
    off = run(s)
    assert all(ga.GEN_AI_INPUT_MESSAGES not in sp.attributes and
               ga.GEN_AI_TOOL_CALL_ARGUMENTS not in sp.attributes for sp in off.spans)


def test_s10_span_events_are_namespaced():
    h = run(sc.tools_turn())
    names = {e.name for sp in h.spans for e in sp.events}
    assert names and all(name.startswith("kit.") for name in names), names


def test_s12_no_empty_string_attributes():
    s = sc.script(path="")  # --no-session: no session path
    s.session_start()
    s.turn("q", [Step(text="a", usage=Usage(1, 1), tools=[Tool("read", "read")])])
    h = run(s)
    for sp in h.spans:
        assert "" not in sp.attributes.values(), (sp.name, dict(sp.attributes))
        for e in sp.events:
            assert "" not in e.attributes.values(), (sp.name, e.name, dict(e.attributes))


def test_m1_failed_calls_count_in_the_duration_with_their_error_type():
    h = run(sc.error_turn())
    points = h.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    assert len(points) == 1 and points[0].count == 1
    assert points[0].attributes[error_attributes.ERROR_TYPE] == "overloaded"
    ok = run(sc.simple_turn()).points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    assert [error_attributes.ERROR_TYPE in p.attributes for p in ok] == [False]


def test_m2_m3_bucket_boundaries_follow_the_conventions_advice():
    h = run(sc.simple_turn())
    (usage,) = h.points(gm.GEN_AI_CLIENT_TOKEN_USAGE)[:1]
    assert tuple(usage.explicit_bounds) == tuple(4 ** i for i in range(14))  # 1, 4, … 67108864
    (duration,) = h.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    assert tuple(duration.explicit_bounds) == tuple(round(0.01 * 2 ** i, 2) for i in range(14))
    # time to first chunk: the duration's advice; the newer token histograms: the token advice
    (first_chunk,) = h.points(gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK)
    assert tuple(first_chunk.explicit_bounds) == tuple(duration.explicit_bounds)
    latest = run(sc.simple_turn(), gen_ai_latest=True)
    for spec in n.LATEST_TOKEN_METRICS:
        (point,) = latest.points(spec.otel_name)
        assert tuple(point.explicit_bounds) == tuple(usage.explicit_bounds), spec.otel_name


def test_stability_opt_in_switches_to_the_newest_names():
    default = run(sc.tools_turn())
    latest = run(sc.tools_turn(), gen_ai_latest=True)
    chat = next(s for s in latest.spans if s.name.startswith("chat"))
    assert n.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS in chat.attributes
    assert ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS not in chat.attributes
    assert latest.points(gm.GEN_AI_CLIENT_TOKEN_USAGE) == []
    assert latest.total(n.INFERENCE_INPUT_TOKENS.otel_name) == \
        default.total(gm.GEN_AI_CLIENT_TOKEN_USAGE, **{ga.GEN_AI_TOKEN_TYPE: "input"}) > 0
    assert latest.total(n.INFERENCE_OUTPUT_TOKENS.otel_name) == \
        default.total(gm.GEN_AI_CLIENT_TOKEN_USAGE, **{ga.GEN_AI_TOKEN_TYPE: "output"}) > 0
    assert n.gen_ai_latest("http, gen_ai_latest_experimental")
    assert not n.gen_ai_latest("") and not n.gen_ai_latest("gen_ai")


def test_s11_the_first_turn_names_provider_and_model_at_its_start():
    from kit_otel.model import events as ev
    s = sc.simple_turn()
    header = ev.Event(type="bridge_start", ts_ns=sc.T0 - 1, pid=s.pid, source="bridge",
                      data=ev.BridgeStart(Model=f"anthropic/{SONNET}"))
    h = make_harness(TranslatorSettings(sessions_root=None))
    started = []
    h.translator.tracer = _StartRecorder(h.translator.tracer, started)
    h.feed([header] + s.events).close()
    turn_start = next(attrs for name, attrs in started if name == n.SPAN_TURN)
    assert turn_start[ga.GEN_AI_PROVIDER_NAME] == "anthropic"  # known when sampling decides
    assert turn_start[ga.GEN_AI_REQUEST_MODEL] == SONNET
    chat_start = next(attrs for name, attrs in started if name.startswith("chat"))
    assert chat_start[ga.GEN_AI_REQUEST_MODEL] == SONNET
    without = make_harness(TranslatorSettings(sessions_root=None))
    started_without = []
    without.translator.tracer = _StartRecorder(without.translator.tracer, started_without)
    without.feed(s.events).close()
    assert ga.GEN_AI_REQUEST_MODEL not in next(a for name, a in started_without
                                               if name == n.SPAN_TURN)


class _StartRecorder:
    """The attributes each span had when it started (what a sampler sees)."""

    def __init__(self, tracer, started):
        self._tracer, self._started = tracer, started

    def start_span(self, name, *args, attributes=None, **kwargs):
        self._started.append((name, dict(attributes or {})))
        return self._tracer.start_span(name, *args, attributes=attributes, **kwargs)


def test_telemetry_md_names_every_name():
    from pathlib import Path

    from kit_otel.translate import logs
    doc = (Path(__file__).parents[1] / "docs" / "telemetry.md").read_text()
    names = [v for k, v in vars(n).items() if not k.startswith("_") and isinstance(v, str)
             and v.startswith(("gen_ai.", "kit.", "session.", "error.", "exception."))
             and not v.endswith(".")]
    names += [x for spec in vars(n).values() if isinstance(spec, n.MetricSpec)
              for x in (spec.otel_name, spec.prometheus_name)]
    names += list(logs.ALL_EVENTS)
    assert [name for name in names if f"`{name}" not in doc] == []
    # and every name that is not ours is listed with its convention status
    conventions = [name for name in names if not name.startswith(("kit.", "kit_"))]
    conventions += [v for k, v in vars(n).items() if k.startswith("VCS_")]
    assert len(conventions) > 30
    lines = doc.splitlines()
    assert [name for name in conventions
            if not any(f"`{name}`" in line and "semconv" in line for line in lines)] == []


def test_design_md_metrics_table_names_only_metrics_that_exist():
    import re
    from pathlib import Path
    doc = (Path(__file__).parents[1] / "docs" / "design.md").read_text()
    table = doc[doc.index("## Metrics"):]
    table = table[:table.index("\n\n", table.index("| Prometheus name"))]
    cited = set(re.findall(r"`((?:kit|gen_ai)_[a-z_]+)`", table))
    known = {spec.prometheus_name for spec in vars(n).values() if isinstance(spec, n.MetricSpec)}
    assert len(cited) > 15
    assert cited - known == set()
