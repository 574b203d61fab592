"""A real ACP round trip: tests/acp_agent_fixture.py runs as a subprocess over stdio (the acp
package's agent side); a client instrumented by KitInstrumentor drives it; the exported span tree
and metrics are asserted exactly. No timing assumptions: the agent waits for the client's
cancel, the client waits for the agent's updates (timeouts are only a safety net)."""

from __future__ import annotations

import asyncio
import json
import warnings
import sys
from pathlib import Path

import pytest

pytest.importorskip("acp")

import acp  # noqa: E402
from acp import PROTOCOL_VERSION, spawn_agent_process, text_block  # noqa: E402
from acp.client.connection import ClientSideConnection  # noqa: E402
from acp.schema import AllowedOutcome, RequestPermissionResponse  # noqa: E402
from opentelemetry.instrumentation.utils import suppress_instrumentation  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from harness import Harness, span_tree  # noqa: E402
from kit_otel.instrumentation import KitInstrumentor  # noqa: E402
from kit_otel.instrumentation.acp import WRAPPED_METHODS  # noqa: E402
from kit_otel.translate.translator import TranslatorSettings  # noqa: E402

FIXTURE = str(Path(__file__).with_name("acp_agent_fixture.py"))
SAFETY = 60  # seconds; never reached when things work


class Client:
    """The user's ACP client: knows nothing about telemetry."""

    def __init__(self, tracer=None):
        self.tracer = tracer
        self.edit_failed = asyncio.Event()
        self.updates = 0
        self.rendered = False

    async def session_update(self, session_id, update, **kwargs):
        self.updates += 1
        if self.tracer is not None and not self.rendered and \
                update.session_update == "agent_message_chunk":
            self.rendered = True  # another instrumentation's span, made in the user's callback
            with self.tracer.start_as_current_span("client.render"):
                pass
        if getattr(update, "tool_call_id", None) == "edit-1" and update.status == "failed":
            self.edit_failed_seen = True
        elif update.session_update == "usage_update" and getattr(self, "edit_failed_seen", False):
            # the agent's last update before it waits for the cancel: cancelling earlier would
            # race the usage_update on the wire
            self.edit_failed.set()

    async def request_permission(self, session_id, tool_call, options, **kwargs):
        return RequestPermissionResponse(outcome=AllowedOutcome(outcome="selected",
                                                                option_id="reject"))


def providers():
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, MeterProvider(metric_readers=[reader]), exporter, reader


@pytest.fixture
def instrumentor():
    inst = KitInstrumentor()
    yield inst
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()


async def drive(client: Client, cwd: str) -> tuple:
    async with spawn_agent_process(client, sys.executable, FIXTURE,
                                   use_unstable_protocol=True) as (conn, _process):
        await asyncio.wait_for(conn.initialize(protocol_version=PROTOCOL_VERSION), SAFETY)
        session = await asyncio.wait_for(conn.new_session(cwd=cwd), SAFETY)
        first = await asyncio.wait_for(conn.prompt(
            session_id=session.session_id, prompt=[text_block("fix the failing test")]), SAFETY)
        second = asyncio.create_task(conn.prompt(session_id=session.session_id,
                                                 prompt=[text_block("edit the config")]))
        await asyncio.wait_for(client.edit_failed.wait(), SAFETY)
        await conn.cancel(session_id=session.session_id)
        second = await asyncio.wait_for(second, SAFETY)
        fork = await asyncio.wait_for(conn.fork_session(session_id=session.session_id, cwd=cwd),
                                      SAFETY)
        await asyncio.wait_for(conn.close_session(session_id=session.session_id), SAFETY)
    return first, second, fork  # leaving the block closed the connection (sess-2 shuts down)


TURN_ATTRS = ("kit.turn.stop_reason", "kit.turn.tool_call_count", "kit.turn.tool_names",
              "kit.turn.llm_call_count", "gen_ai.usage.input_tokens",
              "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
              "gen_ai.usage.cache_creation.input_tokens", "kit.turn.cost_usd", "kit.source",
              "session.id", "kit.project", "kit.turn.prompt_length", "kit.turn.response_length",
              "kit.ext_state.budget:limit-usd", "kit.ext_state.api_token",
              "kit.step.number", "kit.llm.usage_source", "gen_ai.response.finish_reasons",
              "kit.cost.usd", "kit.message.chunks.count", "gen_ai.tool.name",
              "gen_ai.tool.call.id", "kit.tool.kind", "kit.tool.blocked", "error.type",
              "kit.tool.output.bytes", "kit.new_model", "kit.target_id")


def test_acp_round_trip_spans_and_metrics(instrumentor, tmp_path):
    tracer_provider, meter_provider, exporter, reader = providers()
    sessions = tmp_path / "home--alice--proj"
    sessions.mkdir()
    (sessions / "sess-1.ext-state.json").write_text(json.dumps(
        {"api_token": "sk-ant-abcdefghijklmnopqrstuvwxyz", "budget:limit-usd": "5"}, indent=2))
    instrumentor.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider,
        translator_settings=TranslatorSettings(sessions_root=None),
        acp_session_path=lambda sid, cwd: str(sessions / f"{sid}.jsonl"))
    client = Client(tracer_provider.get_tracer("user-code"))

    first, second, fork = asyncio.run(drive(client, "/home/alice/proj"))

    assert (first.stop_reason, second.stop_reason, fork.session_id) == ("end_turn", "cancelled",
                                                                         "sess-2")
    assert client.updates == 18  # the user's callback saw every update, unchanged
    assert instrumentor.failures == 0
    spans = exporter.get_finished_spans()
    # content capture is off: a value leaves only for keys declared to hold identifiers
    state = {"kit.ext_state.api_token": "[REDACTED]",
             "kit.ext_state.budget:limit-usd": "[not captured]"}
    rows = span_tree(spans, attrs=TURN_ATTRS)
    # the out-of-turn spans share a timestamp with their neighbours: compare them as a set
    alone = [r for r in rows if r[0] == 0 and r[1].startswith("kit.")]
    assert sorted((r[1], tuple(sorted(r[4].items()))) for r in alone) == sorted([
        ("kit.session_start", (("kit.project", "proj"), ("session.id", "sess-1"))),
        ("kit.model_change", (("kit.new_model", "anthropic/claude-sonnet-4-5"),
                              ("kit.project", "proj"), ("kit.source", "acp"),
                              ("session.id", "sess-1"))),
        ("kit.before_fork", (("kit.project", "proj"), ("kit.target_id", "sess-2"),
                             ("session.id", "sess-1"))),
        ("kit.session_start", (("kit.project", "proj"), ("session.id", "sess-2"))),
        ("kit.model_change", (("kit.new_model", "anthropic/claude-opus-4-1"),
                              ("kit.project", "proj"), ("kit.source", "acp"),
                              ("session.id", "sess-2"))),
        ("kit.session_shutdown", (("kit.project", "proj"), ("session.id", "sess-1"))),
        ("kit.session_shutdown", (("kit.project", "proj"), ("session.id", "sess-2"))),
    ])
    # the user's callback runs concurrently with the stream: its span is checked on its own
    turns = [r for r in rows if not (r[0] == 0 and r[1].startswith("kit."))
             and r[1] != "client.render"]
    assert [r[:4] + (r[4],) for r in rows if r[1] == "client.render"] == [
        (1, "client.render", "INTERNAL", "UNSET", state)]
    assert turns == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "end_turn", "kit.turn.tool_call_count": 2,
            "kit.turn.tool_names": ("read", "Bash"), "kit.turn.llm_call_count": 1,
            "gen_ai.usage.input_tokens": 2100, "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 800,
            "gen_ai.usage.cache_creation.input_tokens": 100, "kit.turn.cost_usd": 0.0123,
            "kit.source": "acp", "session.id": "sess-1", "kit.project": "proj",
            "kit.turn.prompt_length": 20, "kit.turn.response_length": 62, **state}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {
            "kit.step.number": 0, "kit.message.chunks.count": 1}),
        (1, "execute_tool read", "INTERNAL", "UNSET", {
            "gen_ai.tool.name": "read", "gen_ai.tool.call.id": "read-1", "kit.tool.kind": "read",
            "kit.tool.output.bytes": 17}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {"kit.step.number": 1}),
        (1, "execute_tool Bash", "INTERNAL", "ERROR", {
            "gen_ai.tool.name": "Bash", "gen_ai.tool.call.id": "bash-1",
            "kit.tool.kind": "execute", "error.type": "tool_error", "kit.tool.output.bytes": 8}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {
            "kit.step.number": 2, "kit.message.chunks.count": 2,
            "gen_ai.usage.input_tokens": 2100, "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 800,
            "gen_ai.usage.cache_creation.input_tokens": 100, "kit.cost.usd": 0.0123,
            "kit.llm.usage_source": "llm_usage", "gen_ai.response.finish_reasons": ("stop",)}),
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "cancelled", "kit.turn.tool_call_count": 1,
            "kit.turn.tool_names": ("edit",), "kit.turn.llm_call_count": 1,
            "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0,
            "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.usage.cache_creation.input_tokens": 0, "kit.turn.cost_usd": 0.0027,
            "kit.source": "acp", "session.id": "sess-1", "kit.project": "proj",
            "kit.turn.prompt_length": 15, "kit.turn.response_length": 8, **state}),
        (1, "chat claude-opus-4-1", "CLIENT", "UNSET", {
            "kit.step.number": 0, "kit.message.chunks.count": 1}),
        (1, "execute_tool edit", "INTERNAL", "UNSET", {
            "gen_ai.tool.name": "edit", "gen_ai.tool.call.id": "edit-1", "kit.tool.kind": "edit",
            "kit.tool.blocked": True, "kit.tool.output.bytes": 0}),
        (1, "chat claude-opus-4-1", "CLIENT", "UNSET", {
            "kit.step.number": 1, "gen_ai.usage.input_tokens": 0,
            "gen_ai.usage.output_tokens": 0, "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.usage.cache_creation.input_tokens": 0, "kit.cost.usd": 0.0027,
            "kit.llm.usage_source": "llm_usage", "gen_ai.response.finish_reasons": ("other",)}),
    ]

    # span events: where the stream's markers landed
    by_name = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    first_turn, second_turn = sorted(by_name["invoke_agent kit"], key=lambda s: s.start_time)
    assert [e.name for e in first_turn.events] == [
        "kit.input", "kit.agent_start", "kit.message_start", "kit.message_end", "kit.agent_end"]
    assert [e.name for e in second_turn.events] == [
        "kit.input", "kit.agent_start", "kit.message_start", "kit.model_change",
        "kit.acp_usage_update", "kit.acp_cancel", "kit.agent_end"]
    assert [e.name for e in by_name["chat claude-opus-4-1"][0].events] == [
        "kit.acp_mode_change", "kit.message_update"]
    chats = sorted(by_name["chat claude-sonnet-4-5"], key=lambda s: s.start_time)
    assert [e.name for e in chats[0].events] == ["kit.reasoning_start", "kit.message_update"]
    assert [e.name for e in chats[2].events] == ["kit.message_update", "kit.acp_usage_update"]
    assert dict(chats[2].events[1].attributes) == {
        "kit.used": 5200, "kit.size": 200000, "kit.cost_amount": 0.0123,
        # the strings of a type the translator does not know are free text: lengths only
        "kit.cost_currency_length": 3, "kit.event.unknown": True}
    # LLM calls are inferred: the second starts when the first tool finished
    read = by_name["execute_tool read"][0]
    assert chats[1].start_time == read.end_time and chats[1].end_time == \
        by_name["execute_tool Bash"][0].start_time
    assert all(s.end_time >= s.start_time for s in spans)
    # the user's span is a child of the turn, in the turn's trace
    render = by_name["client.render"][0]
    assert render.parent.span_id == first_turn.context.span_id
    assert render.context.trace_id == first_turn.context.trace_id

    h = Harness(instrumentor.translator, exporter, reader)
    llm = {"provider": "anthropic", "agent": "main", "project": "proj"}
    sonnet, opus = {**llm, "model": "claude-sonnet-4-5"}, {**llm, "model": "claude-opus-4-1"}
    assert [h.total("kit.tokens", **sonnet, type=t) for t in
            ("input", "output", "cache_read", "cache_write")] == [1200, 300, 800, 100]
    assert h.total("kit.tokens", **opus) == 0
    assert h.total("kit.cost.usd", **sonnet) == pytest.approx(0.0123)
    assert h.total("kit.cost.usd", **opus) == pytest.approx(0.0027)
    assert h.total("kit.cost.usd") == pytest.approx(0.015)  # = the agent's cumulative cost
    assert h.total("kit.llm.calls", model="claude-sonnet-4-5", finish_reason="stop") == 1
    assert h.total("kit.llm.calls", model="claude-opus-4-1", finish_reason="other") == 1
    assert h.total("kit.llm.calls") == 2
    assert h.total("kit.turns", stop_reason="end_turn", project="proj") == 1
    assert h.total("kit.turns", stop_reason="cancelled", project="proj") == 1
    assert h.count("kit.turn.cost.usd") == 2
    assert h.total("kit.turn.cost.usd") == pytest.approx(0.015)
    assert h.total("kit.tool.calls", tool="read", kind="read", outcome="ok") == 1
    assert h.total("kit.tool.calls", tool="Bash", kind="execute", outcome="error") == 1
    assert h.total("kit.tool.calls", tool="edit", kind="edit", outcome="blocked") == 1
    assert h.total("kit.tool.calls") == 3
    assert h.count("kit.tool.duration") == 3
    assert h.total("kit.sessions", project="proj") == 2
    assert h.total("kit.errors") == 0
    assert h.total("kit_otel.dropped") == 0
    assert h.count("gen_ai.client.operation.duration") == 2
    assert h.count("gen_ai.client.operation.time_to_first_chunk") == 1  # only LLM calls that reported usage
    events = {dict(p.attributes)["type"]: p.value for p in h.points("kit_otel.events")}
    assert events == {
        "session_start": 2, "model_change": 3, "input": 2, "agent_start": 2,
        "message_start": 2, "step_start": 5, "reasoning_start": 1, "message_update": 4,
        "tool_call": 3, "tool_execution_start": 2, "tool_execution_end": 2, "tool_result": 3,
        "acp_usage_update": 2, "llm_usage": 2, "step_finish": 2, "message_end": 1,
        "agent_end": 2, "acp_mode_change": 1, "acp_cancel": 1, "before_fork": 1,
        "session_shutdown": 2}


def test_uninstrument_restores_methods_and_stops_emitting(instrumentor):
    originals = {name: ClientSideConnection.__dict__[name] for name in WRAPPED_METHODS
                 if name in ClientSideConnection.__dict__}
    tracer_provider, meter_provider, exporter, _ = providers()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider,
                            translator_settings=TranslatorSettings(sessions_root=None))
    instrumentor.instrument()  # again: a no-op, the methods are wrapped once
    assert all(ClientSideConnection.__dict__[n] is not f for n, f in originals.items())
    assert all(ClientSideConnection.__dict__[n].__wrapped__ is f for n, f in originals.items())
    assert acp.core.ClientSideConnection is ClientSideConnection  # the class itself stays
    instrumentor.uninstrument()
    assert {n: ClientSideConnection.__dict__[n] for n in originals} == originals
    assert all(ClientSideConnection.__dict__[n] is f for n, f in originals.items())

    async def one_turn():
        async with spawn_agent_process(Client(), sys.executable, FIXTURE,
                                       use_unstable_protocol=True) as (conn, _process):
            await asyncio.wait_for(conn.initialize(protocol_version=PROTOCOL_VERSION), SAFETY)
            session = await asyncio.wait_for(conn.new_session(cwd="/tmp"), SAFETY)
            return await asyncio.wait_for(conn.prompt(
                session_id=session.session_id, prompt=[text_block("hello")]), SAFETY)

    assert asyncio.run(one_turn()).stop_reason == "end_turn"
    assert exporter.get_finished_spans() == ()


def test_connection_made_before_instrumenting_is_observed(instrumentor):
    tracer_provider, meter_provider, exporter, _ = providers()

    async def run():
        async with spawn_agent_process(Client(), sys.executable, FIXTURE,
                                       use_unstable_protocol=True) as (conn, _process):
            await asyncio.wait_for(conn.initialize(protocol_version=PROTOCOL_VERSION), SAFETY)
            session = await asyncio.wait_for(conn.new_session(cwd="/srv/app"), SAFETY)
            instrumentor.instrument(tracer_provider=tracer_provider,
                                    meter_provider=meter_provider,
                                    translator_settings=TranslatorSettings(sessions_root=None))
            with suppress_instrumentation():  # not a turn: the wrapper does not even run
                await asyncio.wait_for(conn.prompt(session_id=session.session_id,
                                                   prompt=[text_block("hello")]), SAFETY)
            await asyncio.wait_for(conn.prompt(session_id=session.session_id,
                                               prompt=[text_block("hello")]), SAFETY)

    asyncio.run(run())
    rows = span_tree(exporter.get_finished_spans(),
                     attrs=("kit.turn.stop_reason", "kit.project", "kit.message.chunks.count"))
    # the session began before instrumentation: its project and model are unknown, the turn
    # is complete, and closing the connection shuts the session down
    assert rows == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET",
         {"kit.turn.stop_reason": "end_turn", "kit.project": "unknown"}),
        (1, "chat", "CLIENT", "UNSET", {"kit.message.chunks.count": 1}),
        (0, "kit.session_shutdown", "INTERNAL", "UNSET", {"kit.project": "unknown"}),
    ]


class EchoClient(Client):
    def __init__(self):
        super().__init__()
        self.texts = []

    async def session_update(self, session_id, update, **kwargs):
        if update.session_update == "agent_message_chunk":
            self.texts.append(update.content.text)


def test_prompt_meta_carries_the_turns_trace_context_and_honours_an_incoming_one(instrumentor):
    tracer_provider, meter_provider, exporter, _ = providers()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider,
                            translator_settings=TranslatorSettings(sessions_root=None))
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client = EchoClient()

    async def two_turns():
        async with spawn_agent_process(client, sys.executable, FIXTURE,
                                       use_unstable_protocol=True) as (conn, _process):
            await asyncio.wait_for(conn.initialize(protocol_version=PROTOCOL_VERSION), SAFETY)
            session = await asyncio.wait_for(conn.new_session(cwd="/tmp"), SAFETY)
            await asyncio.wait_for(conn.prompt(session_id=session.session_id,
                                               prompt=[text_block("echo trace context")]), SAFETY)
            await asyncio.wait_for(conn.prompt(session_id=session.session_id,
                                               prompt=[text_block("echo trace context")],
                                               traceparent=caller, tracestate="vendor=x"),
                                   SAFETY)
            # acp's older style, one request model: it still works instrumented (acp knows
            # it only when it comes alone) and its own _meta carries the context
            from acp.schema import PromptRequest
            await asyncio.wait_for(conn.prompt(PromptRequest(
                session_id=session.session_id, prompt=[text_block("echo trace context")])),
                SAFETY)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (the older style's warning)
        asyncio.run(two_turns())
    turns = sorted((s for s in exporter.get_finished_spans() if s.name == "invoke_agent kit"),
                   key=lambda s: s.start_time)
    assert len(turns) == 3 and len(client.texts) == 3
    sent = [json.loads(text) for text in client.texts]
    for meta, turn in zip(sent, turns):  # the agent got the turn's own context
        ctx = turn.get_span_context()
        assert meta["traceparent"].startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert turns[0].parent is None  # no incoming context: a root span
    assert f"{turns[1].context.trace_id:032x}" == caller.split("-")[1]  # joined the caller's
    assert f"{turns[1].parent.span_id:016x}" == caller.split("-")[2]
    assert sent[1]["tracestate"] == "vendor=x"
