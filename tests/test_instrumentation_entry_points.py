"""Declared entry points on a small agent loop: sync, async, streaming (early close, exhaustion,
garbage collection), exceptions, subagents, compaction, threads; suppression and idempotence;
the config-file forms; ext-state baggage. Span trees and metrics are asserted exactly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import logging
import sys
import textwrap

import pytest
from opentelemetry import baggage
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from harness import Harness, span_tree
from kit_otel.instrumentation import (BaggageStateSpanProcessor, EntryPoint, EntryPointError,
                                      KitInstrumentor, ext_state_baggage, normalize_usage)
from kit_otel.instrumentation.extractors import Call, Params, compile_extractor
from kit_otel.translate.ext_state import StatePolicy
from kit_otel.translate.translator import TranslatorSettings

AGENT = '''
import asyncio
from concurrent.futures import ThreadPoolExecutor


class Usage:  # shaped like Anthropic's
    def __init__(self, input_tokens, output_tokens, cache_read_input_tokens=0,
                 cache_creation_input_tokens=0):
        self.input_tokens, self.output_tokens = input_tokens, output_tokens
        self.cache_read_input_tokens = cache_read_input_tokens
        self.cache_creation_input_tokens = cache_creation_input_tokens


class Reply:
    def __init__(self, text="", tool=None, args=None, usage=None, stop_reason="end_turn"):
        self.text, self.tool, self.args = text, tool, args or {}
        self.usage, self.stop_reason = usage, stop_reason


class Chunk:
    def __init__(self, text, usage=None, stop_reason=None):
        self.text, self.usage, self.stop_reason = text, usage, stop_reason


class Model:
    def __init__(self, script):
        self.script = list(script)

    def _next(self):
        reply = self.script.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def complete(self, messages, model="anthropic/claude-sonnet-4-5"):
        return self._next()

    async def acomplete(self, messages, model="anthropic/claude-sonnet-4-5"):
        await asyncio.sleep(0)
        return self._next()

    def stream(self, messages, model="anthropic/claude-haiku-4-5"):
        reply = self._next()
        words = reply.text.split(" ")
        for word in words[:-1]:
            yield Chunk(word + " ")
        yield Chunk(words[-1], usage=reply.usage, stop_reason=reply.stop_reason)


    async def astream(self, messages, model="anthropic/claude-haiku-4-5"):
        for chunk in self.stream(messages, model):
            await asyncio.sleep(0)
            yield chunk


def read_file(path):
    return "contents of " + path


async def run_tests(target):
    await asyncio.sleep(0)
    raise RuntimeError("2 tests failed in " + target)


def grep(pattern):
    for line in ("a.py:1: " + pattern, "b.py:7: " + pattern):
        yield line


def call_tool(name, args):
    return {"read_file": read_file, "grep": lambda **a: list(grep(**a))}[name](**args)


class Agent:
    def __init__(self, model):
        self.model = model
        self.messages = []

    def run_turn(self, prompt):
        self.messages.append(prompt)
        while True:
            reply = self.model.complete(self.messages)
            if reply.tool is None:
                return reply.text
            self.messages.append(call_tool(reply.tool, reply.args))

    async def arun_turn(self, prompt):
        while True:
            reply = await self.model.acomplete([prompt])
            if reply.tool is None:
                return reply.text
            try:
                await run_tests(**reply.args)
            except RuntimeError as exc:
                prompt = str(exc)

    def stream_turn(self, prompt):
        for chunk in self.model.stream([prompt]):
            yield chunk.text

    def delegate(self, task):
        reply = self.model.complete([task])
        read_file("notes.md")
        return reply.text

    def compact(self, messages, automatic=True):
        return messages[-2:]

    def read_all(self, paths):
        with ThreadPoolExecutor(2) as pool:  # threads do not inherit the context
            return list(pool.map(read_file, paths))

    @staticmethod
    def version():
        return "1.0"

    @classmethod
    def create(cls, script):
        return cls(Model(script))
'''


def price(call: Call) -> float:
    usage = call.result.usage
    return usage.input_tokens * 3e-6 + usage.output_tokens * 15e-6


def entry_points(m: str) -> list[EntryPoint]:
    usage = {"usage": "result.usage", "finish_reason": "result.stop_reason"}
    return [
        EntryPoint(f"{m}:Agent.run_turn", "turn"),
        EntryPoint(f"{m}:Agent.arun_turn", "turn", stop_reason="=end_turn"),
        EntryPoint(f"{m}:Agent.stream_turn", "turn"),
        EntryPoint(f"{m}:Agent.read_all", "turn", prompt=lambda call: ",".join(call.arg("paths"))),
        EntryPoint(f"{m}:Agent.delegate", "subagent"),
        EntryPoint(f"{m}:Agent.compact", "compaction", automatic="automatic",
                   message_count=lambda call: len(call.arg("messages"))),
        EntryPoint(f"{m}:Model.complete", "llm_call", model="model", cost=price, **usage),
        EntryPoint(f"{m}:Model.acomplete", "llm_call", model="model", cost=price, **usage),
        EntryPoint(f"{m}:Model.stream", "llm_call", model="model", chunk_text="result.text",
                   **usage),
        EntryPoint(f"{m}:Model.astream", "llm_call", model="model", chunk_text="result.text",
                   **usage),
        EntryPoint(f"{m}:read_file", "tool", tool_kind="=read"),
        EntryPoint(f"{m}:run_tests", "tool", tool_kind="=execute"),
        EntryPoint(f"{m}:grep", "tool", tool_kind="=search"),
    ]


def write_module(directory, name: str):
    (directory / f"{name}.py").write_text(textwrap.dedent(AGENT))
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))


@pytest.fixture(scope="module")
def agent_module(tmp_path_factory):
    directory = tmp_path_factory.mktemp("agent")
    write_module(directory, "mini_agent")
    module = importlib.import_module("mini_agent")
    yield module
    sys.modules.pop("mini_agent", None)


class Setup:
    def __init__(self, translator_settings=None, **kwargs):
        self.exporter, self.reader = InMemorySpanExporter(), InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.inst = KitInstrumentor()
        self.inst.instrument(tracer_provider=self.tracer_provider,
                             meter_provider=self.meter_provider, acp=False,
                             translator_settings=translator_settings or
                             TranslatorSettings(sessions_root=None), **kwargs)
        self.h = Harness(self.inst.translator, self.exporter, self.reader)

    def tree(self, *attrs):
        return span_tree(self.exporter.get_finished_spans(), attrs=attrs)

    def spans(self, name):
        return sorted((s for s in self.exporter.get_finished_spans() if s.name == name),
                      key=lambda s: s.start_time)


@pytest.fixture
def setup(agent_module):
    made = []

    def make(**kwargs):
        kwargs.setdefault("entry_points", entry_points("mini_agent"))
        s = Setup(**kwargs)
        made.append(s)
        return s
    yield make
    inst = KitInstrumentor()
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()


TURN = ("kit.turn.stop_reason", "kit.turn.tool_call_count", "kit.turn.tool_names",
        "kit.turn.llm_call_count", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens",
        "kit.turn.cost_usd", "kit.turn.prompt_length", "kit.turn.response_length", "kit.source")
CHAT = ("kit.step.number", "gen_ai.request.model", "gen_ai.provider.name",
        "gen_ai.response.finish_reasons", "kit.cost.usd", "kit.message.chunks.count",
        "gen_ai.agent.name", "error.type")
TOOL = ("gen_ai.tool.name", "kit.tool.kind", "kit.tool.output.bytes", "error.type",
        "exception.type")


def rounded(rows):
    """Float attributes rounded (sums of prices)."""
    return [(d, name, kind, status, {k: round(v, 9) if isinstance(v, float) else v
                                      for k, v in attrs.items()})
            for d, name, kind, status, attrs in rows]


# ── sync ────────────────────────────────────────────────────────────────────────────────────

def test_sync_turn_with_tool(setup, agent_module):
    s = setup()
    m = agent_module
    agent = m.Agent(m.Model([
        m.Reply(tool="read_file", args={"path": "README.md"}, stop_reason="tool_use",
                usage=m.Usage(1000, 100, 400, 0)),
        m.Reply(text="All good.", usage=m.Usage(1500, 50, 1000, 200))]))
    assert agent.run_turn("fix the bug") == "All good."
    assert rounded(s.tree(*TURN, *CHAT, *TOOL)) == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "completed", "kit.turn.tool_call_count": 1,
            "kit.turn.tool_names": ("read_file",), "kit.turn.llm_call_count": 2,
            "gen_ai.usage.input_tokens": 4100, "gen_ai.usage.output_tokens": 150,
            "gen_ai.usage.cache_read.input_tokens": 1400,
            "gen_ai.usage.cache_creation.input_tokens": 200, "kit.turn.cost_usd": 0.00975,
            "kit.turn.prompt_length": 11, "kit.turn.response_length": 9, "kit.source": "python",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.provider.name": "anthropic",
            "gen_ai.agent.name": "kit"}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {
            "kit.step.number": 0, "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.provider.name": "anthropic", "gen_ai.response.finish_reasons": ("tool_use",),
            "kit.cost.usd": 0.0045, "gen_ai.usage.input_tokens": 1400,
            "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 400,
            "gen_ai.usage.cache_creation.input_tokens": 0}),
        (1, "execute_tool read_file", "INTERNAL", "UNSET", {
            "gen_ai.tool.name": "read_file", "kit.tool.kind": "read",
            "kit.tool.output.bytes": 21}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {
            "kit.step.number": 1, "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.provider.name": "anthropic", "gen_ai.response.finish_reasons": ("end_turn",),
            "kit.cost.usd": 0.00525, "gen_ai.usage.input_tokens": 2700,
            "gen_ai.usage.output_tokens": 50, "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 200}),
    ]
    h = s.h
    labels = {"provider": "anthropic", "model": "claude-sonnet-4-5", "agent": "main",
              "project": "unknown"}
    assert [h.total("kit.tokens", **labels, type=t) for t in
            ("input", "output", "cache_read", "cache_write")] == [2500, 150, 1400, 200]
    assert h.total("kit.cost.usd", **labels) == pytest.approx(0.00975)
    assert h.total("kit.llm.calls", finish_reason="tool_use") == 1
    assert h.total("kit.llm.calls", finish_reason="end_turn") == 1
    assert h.total("kit.tool.calls", tool="read_file", kind="read", outcome="ok") == 1
    assert h.total("kit.turns", stop_reason="completed", project="unknown") == 1
    assert h.count("kit.turn.duration", stop_reason="completed") == 1
    assert h.total("kit.turn.cost.usd") == pytest.approx(0.00975)
    assert h.count("gen_ai.client.operation.duration") == 2
    assert h.total("gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) == 4100
    assert h.total("kit.errors") == 0
    assert s.inst.failures == 0
    turn = s.spans("invoke_agent kit")[0]
    assert [e.name for e in turn.events] == ["kit.input", "kit.agent_start", "kit.message_start",
                                             "kit.message_end", "kit.agent_end"]
    # the turn is one trace: every span is in it
    assert {sp.context.trace_id for sp in s.exporter.get_finished_spans()} == \
        {turn.context.trace_id}


def test_nested_spans_of_other_instrumentations_nest_under_the_current_role(setup, agent_module):
    s = setup()
    m = agent_module
    tracer = s.tracer_provider.get_tracer("httpx-like")
    original = m.Model._next

    def _next(self):  # "an HTTP call" inside the LLM call
        with tracer.start_as_current_span("POST /v1/messages"):
            return original(self)
    m.Model._next = _next
    try:
        m.Agent(m.Model([m.Reply(text="hi", usage=m.Usage(1, 1))])).run_turn("hello")
    finally:
        m.Model._next = original
    assert [row[:3] for row in s.tree()] == [
        (0, "invoke_agent kit", "INTERNAL"), (1, "chat claude-sonnet-4-5", "CLIENT"),
        (2, "POST /v1/messages", "INTERNAL")]


def test_tools_in_worker_threads_join_the_open_turn(setup, agent_module):
    s = setup()
    m = agent_module
    assert m.Agent(m.Model([])).read_all(["a.txt", "b.txt"]) == ["contents of a.txt",
                                                                 "contents of b.txt"]
    rows = s.tree("kit.turn.tool_call_count", "kit.turn.prompt_length")
    assert rows[0] == (0, "invoke_agent kit", "INTERNAL", "UNSET",
                       {"kit.turn.tool_call_count": 2, "kit.turn.prompt_length": 11})
    assert sorted(r[:4] for r in rows[1:]) == [(1, "execute_tool read_file", "INTERNAL",
                                                "UNSET")] * 2


# ── async, exceptions ───────────────────────────────────────────────────────────────────────

def test_async_turn_with_failing_async_tool(setup, agent_module):
    s = setup()
    m = agent_module
    agent = m.Agent(m.Model([
        m.Reply(tool="run_tests", args={"target": "tests/"}, stop_reason="tool_use",
                usage=m.Usage(100, 10)),
        m.Reply(text="Two tests fail.", usage=m.Usage(200, 20))]))
    assert asyncio.run(agent.arun_turn("run the tests")) == "Two tests fail."
    assert rounded(s.tree("kit.turn.stop_reason", "kit.turn.tool_names", "kit.turn.cost_usd",
                          "kit.turn.llm_call_count", *TOOL, "kit.step.number")) == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "end_turn", "kit.turn.tool_names": ("run_tests",),
            "kit.turn.cost_usd": 0.00135, "kit.turn.llm_call_count": 2}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {"kit.step.number": 0}),
        (1, "execute_tool run_tests", "INTERNAL", "ERROR", {
            "gen_ai.tool.name": "run_tests", "kit.tool.kind": "execute",
            "kit.tool.output.bytes": 38, "error.type": "tool_error",  # "RuntimeError: 2 tests…"
            "exception.type": "RuntimeError"}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {"kit.step.number": 1}),
    ]
    tool = s.spans("execute_tool run_tests")[0]
    assert tool.status.description == "tool error"  # content is not captured by default
    h = s.h
    assert h.total("kit.tool.calls", tool="run_tests", kind="execute", outcome="error") == 1
    assert h.total("kit.errors", kind="other") == 1
    assert h.total("kit.turns", stop_reason="end_turn") == 1
    turn = s.spans("invoke_agent kit")[0]
    assert [e.name for e in turn.events] == ["kit.input", "kit.agent_start", "kit.message_start",
                                             "kit.error", "kit.message_end", "kit.agent_end"]


def test_exceptions_are_reraised_unchanged(setup, agent_module):
    s = setup()
    m = agent_module
    boom = ConnectionError("connection reset by peer")
    agent = m.Agent(m.Model([boom]))
    with pytest.raises(ConnectionError) as raised:
        agent.run_turn("hello")
    assert raised.value is boom
    assert s.tree("kit.turn.stop_reason", "error.type", "kit.turn.llm_call_count",
                  "gen_ai.response.finish_reasons") == [
        (0, "invoke_agent kit", "INTERNAL", "ERROR", {
            "kit.turn.stop_reason": "error", "error.type": "network",
            "kit.turn.llm_call_count": 1}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "ERROR", {
            "error.type": "network", "gen_ai.response.finish_reasons": ("error",)}),
    ]
    turn = s.spans("invoke_agent kit")[0]
    assert turn.status.description == "network"  # the exception's text is content: off
    # one error event per failure, however many instrumented layers it crossed
    assert s.h.total("kit.errors", kind="network") == 1
    assert [e.name for e in turn.events] == ["kit.input", "kit.agent_start", "kit.message_start",
                                             "kit.agent_end"]
    assert [e.name for e in s.spans("chat claude-sonnet-4-5")[0].events] == ["kit.error"]
    assert s.h.total("kit.turns", stop_reason="error") == 1
    assert s.h.total("kit.llm.calls", finish_reason="error") == 1

    async def failing():
        await m.run_tests("x")  # a tool outside any turn: an implicit turn of its own
    with pytest.raises(RuntimeError, match="2 tests failed in x"):
        asyncio.run(failing())
    implicit = s.spans("invoke_agent kit")[1]
    assert implicit.attributes["kit.turn.stop_reason"] == "error"
    assert implicit.attributes["kit.turn.tool_names"] == ("run_tests",)


# ── streams ─────────────────────────────────────────────────────────────────────────────────

def test_stream_exhausted_reports_usage_of_the_last_chunk(setup, agent_module):
    s = setup()
    m = agent_module
    agent = m.Agent(m.Model([m.Reply(text="one two three", usage=m.Usage(300, 3))]))
    assert "".join(agent.stream_turn("count")) == "one two three"
    assert s.tree("kit.turn.stop_reason", "kit.turn.response_length", *CHAT,
                  "gen_ai.usage.input_tokens") == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "completed", "kit.turn.response_length": 13,
            "gen_ai.request.model": "claude-haiku-4-5", "gen_ai.provider.name": "anthropic",
            "gen_ai.agent.name": "kit", "gen_ai.usage.input_tokens": 300}),
        (1, "chat claude-haiku-4-5", "CLIENT", "UNSET", {
            "kit.step.number": 0, "gen_ai.request.model": "claude-haiku-4-5",
            "gen_ai.provider.name": "anthropic", "gen_ai.response.finish_reasons": ("end_turn",),
            "kit.cost.usd": 0.0, "kit.message.chunks.count": 3,
            "gen_ai.usage.input_tokens": 300}),
    ]
    assert s.h.count("gen_ai.client.operation.time_to_first_chunk") == 1


def test_stream_closed_early_ends_once(setup, agent_module):
    s = setup()
    m = agent_module
    agent = m.Agent(m.Model([m.Reply(text="one two three four", usage=m.Usage(300, 4))]))
    stream = agent.stream_turn("count")
    assert [next(stream), next(stream)] == ["one ", "two "]
    stream.close()
    stream.close()  # closing again changes nothing
    assert list(stream) == []
    assert s.tree("kit.turn.stop_reason", "kit.turn.response_length",
                  "gen_ai.response.finish_reasons", "kit.message.chunks.count",
                  "gen_ai.usage.input_tokens") == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "cancelled", "kit.turn.response_length": 8,
            "gen_ai.usage.input_tokens": 0}),
        (1, "chat claude-haiku-4-5", "CLIENT", "UNSET", {
            "gen_ai.response.finish_reasons": ("cancelled",), "kit.message.chunks.count": 2,
            "gen_ai.usage.input_tokens": 0}),
    ]
    assert s.h.total("kit.turns", stop_reason="cancelled") == 1
    assert s.h.total("kit.llm.calls", finish_reason="cancelled") == 1


def test_async_generator_exhausted_and_closed_early(setup, agent_module):
    s = setup()
    m = agent_module

    async def consume():
        model = m.Model([m.Reply(text="x y", usage=m.Usage(7, 2)),
                         m.Reply(text="a b c", usage=m.Usage(9, 3))])
        # Model.stream is itself an llm_call; inside astream's open call it is a nested one
        first = [c.text async for c in model.astream(["q"])]
        stream = model.astream(["q"])
        second = [(await stream.__anext__()).text]
        await stream.aclose()
        await stream.aclose()
        return first, second
    assert asyncio.run(consume()) == (["x ", "y"], ["a "])
    rows = s.tree("kit.turn.stop_reason", "gen_ai.response.finish_reasons",
                  "kit.message.chunks.count", "gen_ai.usage.input_tokens")
    assert [r for r in rows if r[0] == 0] == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "end_turn", "gen_ai.usage.input_tokens": 7}),
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {
            "kit.turn.stop_reason": "cancelled", "gen_ai.usage.input_tokens": 0}),
    ]
    astream_chats = [r for r in rows if r[0] == 1]
    assert astream_chats == [
        (1, "chat claude-haiku-4-5", "CLIENT", "UNSET", {
            "gen_ai.response.finish_reasons": ("end_turn",), "kit.message.chunks.count": 2,
            "gen_ai.usage.input_tokens": 7}),
        (1, "chat claude-haiku-4-5", "CLIENT", "UNSET", {
            "gen_ai.response.finish_reasons": ("cancelled",), "kit.message.chunks.count": 1,
            "gen_ai.usage.input_tokens": 0}),
    ]


def test_stream_garbage_collected_ends_once(setup, agent_module):
    s = setup()
    m = agent_module
    chunks = m.Model([m.Reply(text="a b c", usage=m.Usage(5, 5))]).stream(["x"])
    assert next(chunks).text == "a "
    del chunks
    gc.collect()
    rows = s.tree("kit.turn.stop_reason", "gen_ai.response.finish_reasons")
    assert rows == [  # an llm_call outside a turn gets an implicit one
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {"kit.turn.stop_reason": "cancelled"}),
        (1, "chat claude-haiku-4-5", "CLIENT", "UNSET",
         {"gen_ai.response.finish_reasons": ("cancelled",)}),
    ]
    gc.collect()
    assert len(s.exporter.get_finished_spans()) == 2


def test_tool_generator_streams_output(setup, agent_module):
    s = setup()
    m = agent_module
    agent = m.Agent(m.Model([m.Reply(tool="grep", args={"pattern": "TODO"}),
                             m.Reply(text="2 TODOs.")]))
    assert agent.run_turn("find todos") == "2 TODOs."
    grep = s.spans("execute_tool grep")[0]
    assert dict(grep.attributes)["kit.tool.output.chunks.count"] == 2
    assert [e.name for e in grep.events] == ["kit.tool_execution_start", "kit.tool_output",
                                             "kit.tool_execution_end"]
    assert s.h.total("kit.tool.calls", tool="grep", kind="search", outcome="ok") == 1


# ── subagents, compaction ───────────────────────────────────────────────────────────────────

def test_subagent_and_its_own_calls(setup, agent_module):
    s = setup()
    m = agent_module
    agent = m.Agent(m.Model([
        m.Reply(text="notes summarised", usage=m.Usage(700, 70))]))
    assert agent.delegate("summarise the notes") == "notes summarised"
    assert s.tree("kit.turn.tool_names", "gen_ai.agent.name", "kit.subagent.task_length",
                  "gen_ai.usage.input_tokens", "kit.tool.kind") == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {  # implicit turn
            "kit.turn.tool_names": ("subagent",), "gen_ai.agent.name": "kit",
            "gen_ai.usage.input_tokens": 0}),
        (1, "execute_tool subagent", "INTERNAL", "UNSET", {"kit.tool.kind": "agent"}),
        (2, "invoke_agent subagent", "INTERNAL", "UNSET", {
            "gen_ai.agent.name": "subagent", "kit.subagent.task_length": 19,
            "gen_ai.usage.input_tokens": 700}),
        (3, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {
            "gen_ai.agent.name": "subagent", "gen_ai.usage.input_tokens": 700}),
        (3, "execute_tool read_file", "INTERNAL", "UNSET", {"gen_ai.agent.name": "subagent",
                                                            "kit.tool.kind": "subagent"}),
    ]
    h = s.h
    assert h.total("kit.tokens", agent="subagent", type="input") == 700
    assert h.total("kit.tokens", agent="main") == 0
    assert h.total("kit.subagents", outcome="ok") == 1
    assert h.total("kit.tool.calls", tool="read_file", kind="subagent", outcome="ok") == 1
    assert h.total("kit.tool.calls", tool="subagent", kind="agent", outcome="ok") == 1


def test_subagent_failure(setup, agent_module):
    s = setup()
    m = agent_module
    boom = TimeoutError("deadline exceeded")
    with pytest.raises(TimeoutError) as raised:
        m.Agent(m.Model([boom])).delegate("summarise")
    assert raised.value is boom
    assert s.tree("kit.turn.stop_reason", "error.type") == [
        (0, "invoke_agent kit", "INTERNAL", "ERROR", {"kit.turn.stop_reason": "error",
                                                      "error.type": "timeout"}),
        (1, "execute_tool subagent", "INTERNAL", "ERROR", {"error.type": "tool_error"}),
        (2, "invoke_agent subagent", "INTERNAL", "ERROR", {"error.type": "timeout"}),
        # the subagent's LLM call failed, as a main agent's would (test_exceptions_are_...)
        (3, "chat claude-sonnet-4-5", "CLIENT", "ERROR", {"error.type": "timeout"}),
    ]
    # the subagent's LLM call failed (one error for the subagent loop, not one per layer), and
    # the failure escaped the turn (one for the main loop)
    assert s.h.total("kit.errors", kind="timeout") == 2
    assert s.h.total("kit.subagents", outcome="error") == 1


def test_compaction(setup, agent_module):
    s = setup()
    m = agent_module
    assert m.Agent(m.Model([])).compact(["a", "b", "c"], automatic=False) == ["b", "c"]
    assert s.tree("kit.message_count", "kit.is_automatic") == [
        (0, "kit.before_compact", "INTERNAL", "UNSET",
         {"kit.message_count": 3, "kit.is_automatic": False})]
    assert s.h.total("kit.compactions", automatic="false") == 1


# ── suppression, idempotence, uninstrument ──────────────────────────────────────────────────

def test_suppressed_calls_emit_nothing(setup, agent_module):
    s = setup()
    m = agent_module
    with suppress_instrumentation():
        agent = m.Agent(m.Model([m.Reply(tool="read_file", args={"path": "x"}),
                                 m.Reply(text="done")]))
        assert agent.run_turn("quiet") == "done"
        assert "".join(m.Agent(m.Model([m.Reply(text="a b")])).stream_turn("q")) == "a b"
        assert asyncio.run(m.Agent(m.Model([m.Reply(text="ok")])).arun_turn("q")) == "ok"
    assert s.exporter.get_finished_spans() == ()
    assert s.inst.translator.events_seen == 0


def test_double_instrument_is_idempotent_and_uninstrument_restores(setup, agent_module):
    m = agent_module
    originals = {"run_turn": m.Agent.__dict__["run_turn"], "read_file": m.read_file,
                 "version": m.Agent.__dict__["version"], "create": m.Agent.__dict__["create"]}
    s = setup(entry_points=entry_points("mini_agent") + [
        EntryPoint("mini_agent:Agent.version", "tool"),
        EntryPoint("mini_agent:Agent.create", "tool"),
        EntryPoint("mini_agent:read_file", "tool")])  # declared twice: wrapped once
    first_wrapper = m.Agent.__dict__["run_turn"]
    s.inst.instrument(entry_points=entry_points("mini_agent"))  # a no-op (logged warning)
    s.inst._instrument(entry_points=entry_points("mini_agent"))  # even when forced
    assert m.Agent.__dict__["run_turn"] is first_wrapper
    assert first_wrapper.__wrapped__ is originals["run_turn"]
    assert m.read_file.__wrapped__ is originals["read_file"]
    assert m.Agent.version() == "1.0"
    assert isinstance(m.Agent.create([]), m.Agent)
    m.Agent(m.Model([m.Reply(text="x")])).run_turn("once")
    assert len(s.spans("invoke_agent kit")) == 3  # version, create (implicit turns), run_turn
    s.inst.uninstrument()
    assert m.Agent.__dict__["run_turn"] is originals["run_turn"]
    assert m.read_file is originals["read_file"]
    assert m.Agent.__dict__["version"] is originals["version"]
    assert m.Agent.__dict__["create"] is originals["create"]
    before = len(s.exporter.get_finished_spans())
    m.Agent(m.Model([m.Reply(text="x")])).run_turn("after")
    assert len(s.exporter.get_finished_spans()) == before


# ── configuration forms, deferred import, failures ──────────────────────────────────────────

def test_config_file_and_env_forms(setup, agent_module, tmp_path, monkeypatch):
    config = tmp_path / "entry-points.toml"
    config.write_text(textwrap.dedent('''
        [[entry_point]]
        target = "mini_agent:Model.complete"
        role = "llm_call"
        model = "model"
        provider = "=acme"
        usage = "result.usage"
        cost = "test_instrumentation_entry_points:price"

        [[entry_point]]
        target = "mini_agent:Agent.run_turn"
        role = "turn"
        stop_reason = "=end_turn"
    '''))
    monkeypatch.setenv("KIT_OTEL_ENTRY_POINTS", "mini_agent:read_file=tool")
    s = setup(entry_points=None, entry_points_file=str(config))
    m = agent_module
    m.Agent(m.Model([m.Reply(tool="read_file", args={"path": "a"}, usage=m.Usage(10, 1)),
                     m.Reply(text="ok", usage=m.Usage(20, 2))])).run_turn("go")
    assert [r[1] for r in s.tree()] == ["invoke_agent kit", "chat claude-sonnet-4-5",
                                        "execute_tool read_file", "chat claude-sonnet-4-5"]
    assert s.h.total("kit.tokens", provider="acme", type="input") == 30
    assert s.h.total("kit.cost.usd") == pytest.approx(30 * 3e-6 + 3 * 15e-6)
    assert s.h.total("kit.turns", stop_reason="end_turn") == 1


def test_entry_points_added_after_instrumenting(setup, agent_module):
    s = setup(entry_points=None)  # as opentelemetry-instrument does: no arguments
    m = agent_module
    assert m.read_file("a") == "contents of a"
    assert s.exporter.get_finished_spans() == ()
    assert s.inst.add_entry_points("mini_agent:read_file=tool")
    assert s.inst.add_entry_points([{"target": "mini_agent:read_file", "role": "tool"}])
    assert m.read_file("b") == "contents of b"
    assert [r[1] for r in s.tree()] == ["invoke_agent kit", "execute_tool read_file"]
    s.inst.uninstrument()
    assert not s.inst.add_entry_points("mini_agent:read_file=tool")
    assert not hasattr(m.read_file, "__wrapped__")


def test_module_imported_after_instrumenting(setup, tmp_path):
    write_module(tmp_path, "late_agent")
    assert "late_agent" not in sys.modules
    s = setup(entry_points=[EntryPoint("late_agent:read_file", "tool")])
    late = importlib.import_module("late_agent")
    try:
        assert late.read_file("x") == "contents of x"
        assert [r[1] for r in s.tree()] == ["invoke_agent kit", "execute_tool read_file"]
    finally:
        sys.modules.pop("late_agent", None)


def test_bad_declarations_are_reported_not_raised(setup, agent_module, caplog):
    with pytest.raises(EntryPointError):
        EntryPoint("no-colon", "tool")
    with pytest.raises(EntryPointError):
        EntryPoint("m:f", "planner")
    with pytest.raises(EntryPointError):
        EntryPoint("m:f", "tool", model="x")  # not an extractor of tools
    with caplog.at_level(logging.ERROR, logger="kit_otel.instrumentation"):
        s = setup(entry_points=[EntryPoint("mini_agent:nothing_here", "tool"),
                                EntryPoint("mini_agent:read_file", "tool", tool_name="nope.x")])
    assert len(s.inst.entry_point_errors) == 2
    assert "nothing_here" in s.inst.entry_point_errors[0]
    assert "'nope' is not a parameter" in s.inst.entry_point_errors[1]
    assert agent_module.read_file("x") == "contents of x"


def test_telemetry_failures_never_reach_the_host(setup, agent_module, caplog):
    s = setup(entry_points=[EntryPoint("mini_agent:read_file", "tool",
                                       tool_name=lambda call: 1 / 0)])
    m = agent_module
    assert m.read_file("a") == "contents of a"  # a failing extractor: the default name
    assert s.tree()[1][1] == "execute_tool read_file"
    assert s.inst._entry.extractor_failures == 1

    def broken(event):
        raise RuntimeError("translator bug")
    s.inst.translator.process = broken
    with caplog.at_level(logging.WARNING, logger="kit_otel.instrumentation"):
        for _ in range(3):
            assert m.read_file("b") == "contents of b"
    assert s.inst.failures == 3  # each call: its telemetry dropped at the start
    assert len([r for r in caplog.records if "instrumentation failed" in r.message]) == 1
    del s.inst.translator.process
    assert s.h.total("kit_otel.dropped", source="python") == 3


# ── extension state ─────────────────────────────────────────────────────────────────────────

def test_ext_state_is_baggage_during_the_turn(setup, agent_module, tmp_path):
    session = tmp_path / "home--bob--shop" / "2026-06-09T13-18-10-000Z_3f9a1c2b7d4e.jsonl"
    session.parent.mkdir()
    session.write_text("")
    sidecar = session.with_name(session.stem + ".ext-state.json")
    sidecar.write_text(json.dumps({"plan": "pro", "github_token": "ghp_" + "x" * 36}))
    s = setup(session_path=str(session), translator_settings=TranslatorSettings(
        sessions_root=None, state=StatePolicy(value_keys=("plan",))))
    m = agent_module
    tracer = s.tracer_provider.get_tracer("db-client")
    original = m.read_file

    def read_and_query(path):
        with tracer.start_as_current_span("SELECT"):
            assert baggage.get_baggage("kit.ext_state.plan") == "pro"
        return original(path)
    m.read_file = read_and_query
    try:
        m.Agent(m.Model([m.Reply(tool="read_file", args={"path": "a"}),
                         m.Reply(text="ok")])).run_turn("go")
    finally:
        m.read_file = original
    assert baggage.get_baggage("kit.ext_state.plan") is None  # only during the turn
    state = {"kit.ext_state.plan": "pro", "kit.ext_state.github_token": "[REDACTED]"}
    rows = s.tree("kit.ext_state.plan", "kit.ext_state.github_token", "kit.project")
    assert rows == [
        (0, "invoke_agent kit", "INTERNAL", "UNSET", {**state, "kit.project": "shop"}),
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {}),
        (1, "SELECT", "INTERNAL", "UNSET", state),  # another instrumentation's span
        (1, "execute_tool read_file", "INTERNAL", "UNSET", {}),  # kit-otel's: via the turn
        (1, "chat claude-sonnet-4-5", "CLIENT", "UNSET", {}),
    ]


def test_ext_state_baggage_helper_and_processor(tmp_path):
    session = tmp_path / "s.jsonl"
    session.with_name("s.ext-state.json").write_text(json.dumps({"mode": "review"}))
    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(BaggageStateSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with ext_state_baggage(session, StatePolicy(value_keys=("mode",))) as state:
        assert state == {"mode": "review"}
        provider.get_tracer("x").start_span("inside").end()
        provider.get_tracer("kit_otel").start_span("translator's").end()
    provider.get_tracer("x").start_span("outside").end()
    assert [(sp.name, dict(sp.attributes)) for sp in exporter.get_finished_spans()] == [
        ("inside", {"kit.ext_state.mode": "review"}), ("translator's", {}), ("outside", {})]
    with ext_state_baggage(tmp_path / "none.jsonl") as state:  # no sidecar: empty state
        assert state == {} and dict(baggage.get_all()) == {}


# ── extractors ──────────────────────────────────────────────────────────────────────────────

def test_extractor_paths_and_usage_shapes():
    def target(request, model="m1", *, stream=False, **extra):
        pass
    params = Params(target, drop_first=False)

    class Req:
        messages = [{"role": "user", "content": "hi"}]
        meta = {"user": {"id": 7}}

    call = Call((Req(),), {"stream": True, "tag": "x"}, None, params)
    call.result = {"usage": {"prompt_tokens": 10, "completion_tokens": 2,
                             "prompt_tokens_details": {"cached_tokens": 4}},
                   "choices": [{"finish_reason": "stop"}]}
    get = lambda spec: compile_extractor(spec, params, "test")(call)  # noqa: E731
    assert get("model") == "m1"  # the default
    assert get("stream") is True
    assert get("tag") == "x"  # **extra
    assert get("request.messages[0]['content']") == "hi"
    assert get("request.meta.user.id") == 7
    assert get("request.missing.deeper") is None
    assert get("result.choices[0].finish_reason") == "stop"
    assert get("result.choices[5].finish_reason") is None
    assert get("args[0].meta['user']") == {"id": 7}
    assert get("kwargs.tag") == "x"
    assert get("=anthropic") == "anthropic"
    assert get("operator:truth") is True  # "module:function" names a callable
    assert get(lambda c: c.arg("model") + "!") == "m1!"
    assert normalize_usage(call.result["usage"]) == (10, 2, 4, None)
    assert normalize_usage({"input_tokens": 5, "output_tokens": 6,
                            "cache_read_input_tokens": 7,
                            "cache_creation_input_tokens": 8}) == (5, 6, 7, 8)
    assert normalize_usage({"inputTokens": 1, "outputTokens": 2, "cachedReadTokens": 3,
                            "cachedWriteTokens": 4}) == (1, 2, 3, 4)
    assert normalize_usage((9, 8)) == (9, 8, None, None)
    assert normalize_usage(None) == (None, None, None, None)
    with pytest.raises(EntryPointError):
        compile_extractor("requests.model", Params(lambda request: None, False), "test")
    with pytest.raises(EntryPointError):
        compile_extractor("result..x", params, "test")


def test_a_process_started_with_traceparent_parents_its_turns(setup, agent_module, monkeypatch):
    monkeypatch.setenv("TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    s = setup()
    m = agent_module
    agent = m.Agent(m.Model([m.Reply(text="ok", usage=m.Usage(1, 1))]))
    assert agent.run_turn("hi") == "ok"
    (turn,) = s.spans("invoke_agent kit")
    assert f"{turn.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert turn.parent is not None and f"{turn.parent.span_id:016x}" == "00f067aa0ba902b7"


@contextlib.contextmanager
def program_module(directory, name: str, source: str):
    """A module of the instrumented program, importable for the duration of the block."""
    (directory / f"{name}.py").write_text(source)
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(name, None)


def test_an_exception_through_a_wrapped_call_keeps_no_frame_alive(setup, tmp_path):
    """The program's objects live as long as without kit-otel: holding the exception on the
    call record made a cycle that kept its traceback's frames (and their locals) until the
    cyclic collector ran, or for good with gc disabled."""
    with program_module(tmp_path, "cycle_agent",
                        "class Big:\n    pass\n\nREF = []\n\n"
                        "def tool(x):\n    big = Big()\n    REF.append(__import__('weakref').ref(big))\n"
                        "    raise ValueError('no')\n") as module:
        setup(entry_points=[EntryPoint("cycle_agent:tool", "tool")])
        gc.disable()
        try:
            try:
                module.tool(1)
            except ValueError:
                pass
            assert module.REF[-1]() is None, "a local of the failed call outlived the except"
        finally:
            gc.enable()


def test_each_caught_failure_is_its_own_error_even_at_a_reused_address(setup, tmp_path):
    """Failures are told apart by id (exceptions take no weak references): a new call resets
    it, so a fresh exception at a freed one's address is still reported."""
    with program_module(tmp_path, "reuse_agent",
                        "def tool(i):\n    raise ValueError(i)\n\n"
                        "def turn(prompt):\n    for i in range(5):\n        try:\n            tool(i)\n"
                        "        except ValueError:\n            pass\n        __import__('gc').collect()\n"
                        "    return 'done'\n") as module:
        s = setup(entry_points=[EntryPoint("reuse_agent:turn", "turn"),
                                EntryPoint("reuse_agent:tool", "tool")])
        assert module.turn("go") == "done"
    gc.collect()
    assert s.h.total("kit.errors") == 5


def test_uninstrument_of_an_inherited_method_leaves_no_copy_behind(setup, tmp_path):
    with program_module(tmp_path, "inherit_agent",
                        "class Base:\n    def run(self, x):\n        return 'base:' + x\n\n"
                        "class Sub(Base):\n    pass\n") as module:
        setup(entry_points=[EntryPoint("inherit_agent:Sub.run", "tool")])
        assert module.Sub().run("x") == "base:x"
        KitInstrumentor().uninstrument()
        assert "run" not in vars(module.Sub)  # as before instrumenting
        module.Base.run = lambda self, x: "patched"
        assert module.Sub().run("x") == "patched"


def test_a_generator_turn_with_ext_state_runs_in_its_consumers_context(setup, tmp_path):
    """The session's state is baggage on top of the context current at each step: the body
    sees the consumer's own baggage, and a suppression around the iteration holds."""
    import json
    from opentelemetry import baggage, context
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    session = tmp_path / "s1.jsonl"
    (tmp_path / "s1.ext-state.json").write_text(json.dumps({"mode": "fast"}))
    with program_module(tmp_path, "gen_agent",
                        "from opentelemetry import baggage\nSEEN = []\n\ndef tool(x):\n    return x\n\n"
                        "def turn(prompt):\n    SEEN.append(baggage.get_baggage('tenant'))\n    yield 'a'\n"
                        "    tool('inside')\n    SEEN.append(baggage.get_baggage('tenant'))\n    yield 'b'\n") as module:
        s = setup(entry_points=[EntryPoint("gen_agent:turn", "turn"),
                                EntryPoint("gen_agent:tool", "tool")],
                  session_path=str(session))
        steps = module.turn("p")
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            with suppress_instrumentation():
                assert list(steps) == ["a", "b"]
        finally:
            context.detach(token)
        assert module.SEEN == ["acme", "acme"]
        assert not [sp for sp in s.exporter.get_finished_spans()
                    if sp.name == "execute_tool tool"]
