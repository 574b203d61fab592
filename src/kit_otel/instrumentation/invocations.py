"""One instrumented call of one role (turn, LLM call, tool, subagent, compaction): the KIT
events it emits at its start, for each stream item, and at its end, in KIT's order."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._core import current_frame, current_role, enter, Frame
from .baggage import ext_state_context, read_ext_state
from .declarations import SOURCE
from .extractors import (
    as_int, Call, dump, error_text, normalize_usage, text_of,
)
from kit_otel.model import events as ev
from kit_otel.translate.classify import split_model

Event = ev.Event

if TYPE_CHECKING:  # the target makes invocations; an invocation only names its type
    from .entry_points import WrappedTarget


class Invocation:
    __slots__ = ("t", "em", "call", "frame", "path", "sid", "span", "done", "implicit",
                 "ts_start", "streaming", "last", "chunks", "_baggage")

    def __init__(self, target: WrappedTarget, call: Call):
        self.t, self.em, self.call = target, target.instr.emitter, call
        self.done = False
        self.implicit = None  # the implicit turn's Frame, when this call made one
        self.span = None
        self.streaming = False
        self.last: dict[str, Any] = {}
        self.chunks: list[str] | None = None
        self._baggage = None
        self.ts_start = time.time_ns()
        if self.NESTS_AS_ONE and current_role() == target.role:
            # e.g. a declared SDK method calling another declared one: one LLM call, not two
            self.done, self.frame = True, None
            return
        self.frame = self._frame()
        # a new call in this agent loop: any exception reported before was handled by the
        # program (one still propagating starts no call), so the next one is new even at a
        # freed one's address (the dedupe is by id: exceptions take no weak references)
        self.frame.reported = ()
        self.path, self.sid = self.frame.path, self.frame.session_id
        self.begin()

    # where this call reports to
    def _frame(self) -> Frame:
        frame = current_frame()
        if frame is not None:
            return frame
        t, call = self.t, self.call
        path = text_of(t.get("session_path", call)) or t.instr.default_session_path
        sid = text_of(t.get("session_id", call))
        frame = t.instr.open_frames.get(path)  # joins the open turn of its session (threads)
        if frame is not None:
            return frame
        frame = Frame(path, sid, SOURCE)
        self.implicit = frame
        begin_turn(self, frame, "")
        return frame

    NESTS_AS_ONE = False  # a call of this role inside one of the same role is part of it

    def begin(self) -> None:
        pass

    def enter(self) -> object:
        if self.frame is None:
            return None
        try:
            ctx = None
            if self._baggage is not None:
                # the state's baggage on top of the context current now: a generator's step
                # runs in its consumer's context (its baggage, a suppression), not the call's
                state, policy = self._baggage
                ctx = ext_state_context(state, policy)
            return enter(self.span, self.frame, ctx, self.t.role)
        except Exception:  # noqa: BLE001
            return None

    def item_mode(self) -> None:
        self.streaming = True

    # public entry points from the wrapper: each runs under the emitter's lock
    def succeed(self, result: Any) -> None:
        self.em.run(SOURCE, self._finish, result, None, "")

    def fail(self, exc: BaseException) -> None:
        self.em.run(SOURCE, self._finish, None, exc, "")

    def item(self, item: Any) -> None:
        self.em.run(SOURCE, self._item, item)

    def end_stream(self, how: str) -> None:
        """`exhausted`, `closed` (early) or `abandoned` (garbage-collected unfinished)."""
        if how == "abandoned":  # from __del__: the collector may run inside the translator
            self.em.run_later(SOURCE, self._finish, None, None, how)
        else:
            self.em.run(SOURCE, self._finish, None, None, how)

    def _finish(self, result: Any, exc: BaseException | None, how: str) -> None:
        if self.done:
            return
        self.done = True
        call = self.call
        if how:
            call.result = None
        else:
            call.result = result
        call.exception = exc
        try:
            self.finish(result, exc, how)
        finally:
            if self.implicit is not None:
                stop = "error" if exc is not None else (
                    "cancelled" if how in ("closed", "abandoned") else self.implicit_stop())
                end_turn(self, self.implicit, stop, "", exc)  # `exc` once, if not reported
            # what the call returned or raised is the program's: holding it here made a cycle
            # (exception → traceback → the wrapper's frame → this → exception) that kept the
            # frames' locals alive until the cyclic collector ran, or for good without it
            call.result = call.exception = None

    def _item(self, item: Any) -> None:
        if self.done:
            return
        call = self.call
        call.result = item
        for name in ("model", "provider", "usage", "input_tokens", "output_tokens",
                     "cache_read_tokens", "cache_write_tokens", "cost", "finish_reason"):
            if name in self.t.x:
                value = self.t.get(name, call)
                if value is not None:
                    self.last[name] = value
        text = text_of(self.t.get("chunk_text", call, item if isinstance(item, str) else None))
        self.on_item(text)

    def on_item(self, text: str) -> None:
        pass

    def finish(self, result: Any, exc: BaseException | None, how: str) -> None:
        pass

    def implicit_stop(self) -> str:
        return "completed"

    def value(self, name: str, default: Any = None) -> Any:
        """An extractor's value: from the stream's items (last wins) or the call/result."""
        if name not in self.t.x:
            return default
        if name in self.last:
            return self.last[name]
        return self.t.get(name, self.call, default)

    def error_event(self, exc: BaseException, child: bool = False) -> None:
        """The `error` event of an exception — once, however many instrumented calls it
        propagates through (as KIT reports one error for one failure)."""
        frame = self.frame
        if frame.already_reported(exc):
            return
        self.feed("error", ev.Error(Error=error_text(exc)), child)
        frame.mark_reported(exc)

    def feed(self, type_: str, data: ev.EventData, child: bool = False, ts_ns: int = 0,
             state: dict[str, str] | None = None) -> None:
        em = self.em
        if child:  # an event of the subagent's own agent loop
            event = Event(type=type_, data=data, ts_ns=ts_ns or time.time_ns(), pid=em.pid,
                           source=SOURCE, agent="subagent")
        else:
            event = Event(type=type_, data=data, ts_ns=ts_ns or time.time_ns(), pid=em.pid,
                           session_path=self.path, session_id=self.sid, source=SOURCE,
                           agent="main", state=state)
        em.translator.process(event)


def begin_turn(inv: Invocation, frame: Frame, prompt: str) -> Any:
    """input, agent_start (with the session's ext-state), message_start; returns the baggage
    context to run the turn in, if the session has state."""
    em, path, sid = inv.em, frame.path, frame.session_id
    instr = inv.t.instr
    state = read_ext_state(path) if path and instr.ext_state else None
    ts = inv.ts_start
    em.feed("input", ev.Input(Text=prompt, Source=SOURCE), path, sid, SOURCE, ts_ns=ts)
    em.feed("agent_start", ev.AgentStart(Prompt=prompt), path, sid, SOURCE, ts_ns=ts, state=state)
    em.feed("message_start", ev.MessageStart(), path, sid, SOURCE, ts_ns=ts)
    instr.open_frames[path] = frame
    inv.span = em.turn_span(path)
    if state:
        inv._baggage = (state, instr.state_policy)
    return state


def end_turn(inv: Invocation, frame: Frame, stop: str, response: str,
              exc: BaseException | None) -> None:
    em, path, sid = inv.em, frame.path, frame.session_id
    instr = inv.t.instr
    if instr.open_frames.get(path) is frame:
        del instr.open_frames[path]
    state = read_ext_state(path) if path and instr.ext_state else None
    if exc is not None:
        if not frame.already_reported(exc):
            em.feed("error", ev.Error(Error=error_text(exc)), path, sid, SOURCE)
    elif stop not in ("error", "cancelled"):
        em.feed("message_end", ev.MessageEnd(Content=response), path, sid, SOURCE)
    em.feed("agent_end", ev.AgentEnd(Response=response, StopReason=stop), path, sid, SOURCE,
            state=state)


class TurnCall(Invocation):
    __slots__ = ()

    def _frame(self) -> Frame:
        t, call = self.t, self.call
        outer = current_frame()
        path = text_of(t.get("session_path", call)) or (
            outer.path if outer is not None else t.instr.default_session_path)
        sid = text_of(t.get("session_id", call)) or (outer.session_id if outer is not None else "")
        return Frame(path, sid, SOURCE)

    def begin(self) -> None:
        t, call = self.t, self.call
        if self.em.in_turn(self.path):  # a turn inside a turn of the same session: not a new one
            self.done = True
            self.frame = current_frame() or self.frame
            return
        prompt = t.get("prompt", call)
        if prompt is None and call.args and isinstance(call.args[0], str):
            prompt = call.args[0]
        self.chunks = []
        begin_turn(self, self.frame, text_of(prompt))

    def enter(self) -> object:
        if self.done and self.span is None:
            return None
        return super().enter()

    def on_item(self, text: str) -> None:
        if text:
            self.chunks.append(text)

    def finish(self, result, exc, how) -> None:
        call = self.call
        if how:
            response = "".join(self.chunks or ())
            stop = "cancelled" if how != "exhausted" else text_of(self.value("stop_reason")) or "completed"
        else:
            response = text_of(self.t.get("response", call, result if isinstance(result, str) else None))
            stop = "error" if exc is not None else (text_of(self.t.get("stop_reason", call)) or "completed")
        end_turn(self, self.frame, stop, response, exc)


_TOKEN_EXTRACTORS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


class LLMCall(Invocation):
    __slots__ = ("number", "child")
    NESTS_AS_ONE = True

    def begin(self) -> None:
        frame = self.frame
        self.child = bool(frame.sub)
        self.number = frame.next_step()
        self.feed("step_start", ev.StepStart(StepNumber=self.number), self.child, self.ts_start)
        self.span = self.em.step_span(self.path, frame.sub)

    def on_item(self, text: str) -> None:
        self.feed("message_update", ev.MessageUpdate(Chunk=text), self.child)

    def implicit_stop(self) -> str:
        return text_of(self.value("finish_reason")) or "completed"

    def finish(self, result, exc, how) -> None:
        x = self.t.x
        tokens = list(normalize_usage(self.value("usage")))
        for i, name in enumerate(_TOKEN_EXTRACTORS):
            if name in x:
                explicit = as_int(self.value(name))
                if explicit is not None:
                    tokens[i] = explicit
        tokens = [v or 0 for v in tokens]
        cost = self.value("cost")
        try:
            cost = float(cost) if cost is not None else 0.0
        except (TypeError, ValueError):
            cost = 0.0
        provider, model = split_model(text_of(self.value("model")))
        if "provider" in x:
            provider = text_of(self.value("provider")) or provider
        if exc is not None:
            finish = "error"  # the error event, in the open stream, makes the chat span ERROR
            self.error_event(exc, self.child)
        elif how in ("closed", "abandoned"):
            finish = text_of(self.value("finish_reason")) or "cancelled"
        else:
            finish = text_of(self.value("finish_reason")) or "stop"
        self.feed("llm_usage", ev.LLMUsage(
            InputTokens=tokens[0], OutputTokens=tokens[1], CacheReadTokens=tokens[2],
            CacheWriteTokens=tokens[3], Cost=cost, Model=model, Provider=provider,
            StepNumber=self.number, FinishReason=finish), self.child)
        self.feed("step_finish", ev.StepFinish(
            StepNumber=self.number, FinishReason=finish, InputTokens=tokens[0],
            OutputTokens=tokens[1], CacheReadTokens=tokens[2], CacheWriteTokens=tokens[3]),
            self.child)


class ToolCall(Invocation):
    __slots__ = ("name", "call_id", "sub", "input", "kind")
    NESTS_AS_ONE = True

    def begin(self) -> None:
        t, call, frame = self.t, self.call, self.frame
        x = t.x
        self.name = (text_of(t.get("tool_name", call)) or t.name) if "tool_name" in x else t.name
        self.sub = frame.sub
        capture = self.em.translator.content.capture
        self.input = dump(t.get("tool_input", call, call.kwargs or call.args or None)) \
            if capture else ""
        self.chunks = []
        if self.sub:
            self.call_id = self.sub
            self._chunk("tool_call", ToolArgs=self.input, ts_ns=self.ts_start)
            self._chunk("tool_execution_start", ts_ns=self.ts_start)
            self.span = self.em.chunk_tool_span(self.path, self.sub, self.name)
            return
        self.call_id = (text_of(t.get("tool_call_id", call)) if "tool_call_id" in x else "") \
            or self.em.new_id("call")
        kind = self.kind = (text_of(t.get("tool_kind", call)) if "tool_kind" in x else "") \
            or "function"
        ts = self.ts_start
        self.feed("tool_call", ev.ToolCall(ToolName=self.name, ToolCallID=self.call_id,
                                           ToolKind=kind, Input=self.input, Source=SOURCE),
                  ts_ns=ts)
        self.feed("tool_execution_start", ev.ToolExecutionStart(
            ToolCallID=self.call_id, ToolName=self.name, ToolKind=kind), ts_ns=ts)
        self.span = self.em.tool_span(self.path, self.call_id)

    def _chunk(self, chunk_type: str, ts_ns: int = 0, **fields) -> None:
        self.em.feed("subagent_chunk", ev.SubagentChunk(
            ToolCallID=self.sub, ChunkType=chunk_type, ToolName=self.name, **fields),
            self.path, self.sid, SOURCE, ts_ns=ts_ns)

    def on_item(self, text: str) -> None:
        if self.sub:
            return
        self.chunks.append(text)
        self.feed("tool_output", ev.ToolOutput(ToolCallID=self.call_id, ToolName=self.name,
                                               Chunk=text))

    def finish(self, result, exc, how) -> None:
        t, call = self.t, self.call
        if exc is not None:
            is_error, content = True, error_text(exc)
            if self.span is not None:
                self.span.set_attribute("exception.type", type(exc).__qualname__)
            self.error_event(exc, bool(self.sub))
        else:
            x = t.x
            is_error = bool(t.get("is_error", call, False)) if "is_error" in x else False
            out = t.get("tool_output", call) if "tool_output" in x else None
            if out is None:
                out = "".join(self.chunks) if how else result
            content = text_of(out) if isinstance(out, (str, bytes)) else (
                dump(out) if self.em.translator.content.capture else "")
        ts = time.time_ns()
        if self.sub:
            self._chunk("tool_execution_end", ts_ns=ts)
            self._chunk("tool_result", ts_ns=ts, ToolResult=content, IsError=is_error)
            return
        self.feed("tool_execution_end", ev.ToolExecutionEnd(
            ToolCallID=self.call_id, ToolName=self.name, ToolKind=self.kind), ts_ns=ts)
        self.feed("tool_result", ev.ToolResult(
            ToolCallID=self.call_id, ToolName=self.name, ToolKind=self.kind, Input=self.input,
            Content=content, IsError=is_error), ts_ns=ts)


class SubagentCall(Invocation):
    __slots__ = ("call_id", "task", "nested")

    def begin(self) -> None:
        t, call, frame = self.t, self.call, self.frame
        task = t.get("task", call)
        if task is None and call.args and isinstance(call.args[0], str):
            task = call.args[0]
        self.task = text_of(task)
        self.chunks = []
        self.nested = bool(frame.sub)
        if self.nested:  # a subagent of a subagent: one of the outer subagent's tool calls
            self.call_id = frame.sub
            self.em.feed("subagent_chunk", ev.SubagentChunk(
                ToolCallID=frame.sub, ChunkType="tool_call", ToolName="subagent"),
                self.path, self.sid, SOURCE, ts_ns=self.ts_start)
            self.span = self.em.chunk_tool_span(self.path, frame.sub, "subagent")
            return
        self.call_id = self.em.new_id("subagent")
        ts = self.ts_start
        self.feed("tool_call", ev.ToolCall(ToolName="subagent", ToolCallID=self.call_id,
                                           ToolKind="agent", Source=SOURCE), ts_ns=ts)
        self.feed("tool_execution_start", ev.ToolExecutionStart(
            ToolCallID=self.call_id, ToolName="subagent", ToolKind="agent"), ts_ns=ts)
        self.feed("subagent_start", ev.SubagentStart(ToolCallID=self.call_id, Task=self.task),
                  ts_ns=ts)
        self.span = self.em.subagent_span(self.path, self.call_id)
        self.frame = Frame(self.path, self.sid, SOURCE, sub=self.call_id, parent=frame)

    def on_item(self, text: str) -> None:
        self.chunks.append(text)
        if not self.nested:
            self.feed("subagent_chunk", ev.SubagentChunk(
                ToolCallID=self.call_id, Task="", ChunkType="text", Content=text))

    def finish(self, result, exc, how) -> None:
        call = self.call
        error = error_text(exc) if exc is not None else ""
        if how:
            response = "".join(self.chunks)
        else:
            response = text_of(self.t.get("response", call, result if isinstance(result, str) else None))
        if exc is not None:
            self.error_event(exc, child=True)  # the subagent's own error
        if self.nested:
            self.em.feed("subagent_chunk", ev.SubagentChunk(
                ToolCallID=self.call_id, ChunkType="tool_result", ToolName="subagent",
                ToolResult=error or response, IsError=exc is not None),
                self.path, self.sid, SOURCE)
            return
        self.feed("subagent_end", ev.SubagentEnd(ToolCallID=self.call_id, Task="",
                                                 Response=response, ErrorMsg=error))
        self.feed("tool_execution_end", ev.ToolExecutionEnd(
            ToolCallID=self.call_id, ToolName="subagent", ToolKind="agent"))
        self.feed("tool_result", ev.ToolResult(
            ToolCallID=self.call_id, ToolName="subagent", ToolKind="agent",
            Content=error or response, IsError=exc is not None))


class CompactionCall(Invocation):
    __slots__ = ()

    def _frame(self) -> Frame:
        frame = current_frame()
        if frame is not None:
            return frame
        t, call = self.t, self.call
        path = text_of(t.get("session_path", call)) or t.instr.default_session_path
        return t.instr.open_frames.get(path) or Frame(path, text_of(t.get("session_id", call)), SOURCE)

    def begin(self) -> None:
        t, call = self.t, self.call

        def num(name, conv):
            try:
                value = t.get(name, call)
                return conv(value) if value is not None else conv()
            except (TypeError, ValueError):
                return conv()
        self.feed("before_compact", ev.BeforeCompact(
            EstimatedTokens=num("estimated_tokens", int), ContextLimit=num("context_limit", int),
            UsagePercent=num("usage_percent", float), MessageCount=num("message_count", int),
            IsAutomatic=bool(t.get("automatic", call, False))), bool(self.frame.sub), self.ts_start)

    def enter(self) -> object:
        return None

    def finish(self, result, exc, how) -> None:
        if exc is not None:
            self.error_event(exc, bool(self.frame.sub))
