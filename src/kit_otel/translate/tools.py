"""Tool spans (`execute_tool {name}`): a tool call from its call to its result, blocked calls
(no execution), tool output deltas, and the tool metrics and log records."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from kit_otel.model import events as ev, names as n
from kit_otel.translate import messages
from kit_otel.translate.classify import tool_type
from kit_otel.translate.logs import EVENT_TOOL_RESULT, INFO, WARN
from kit_otel.translate.span_state import Deltas, NS_PER_S, Run, Session, Step, Tool, Turn

# what a tool's log record repeats of its span
# The ERROR status of a call KIT's tool wrapper refused (kit-otel's words, not an event's text).
BLOCKED_STATUS = "blocked by an extension"

_TOOL_LOG_KEYS = (n.GEN_AI_OPERATION_NAME, n.GEN_AI_TOOL_NAME, n.GEN_AI_TOOL_CALL_ID,
                  n.GEN_AI_TOOL_TYPE, n.GEN_AI_CONVERSATION_ID, n.GEN_AI_AGENT_NAME, n.KIT_TOOL_KIND,
                  n.ERROR_TYPE, n.GEN_AI_TOOL_CALL_ARGUMENTS, n.GEN_AI_TOOL_CALL_RESULT)


class ToolSpans:
    """The ToolSpans part of the translator (translate/translator.py), which holds the
    state these methods use: `sessions`, `tracer`, `metrics`, `content`, `settings`,
    `prices`, `event_log`."""

    def _on_tool_call(self, session: Session, run: Run, event: ev.Event) -> None:
        data: ev.ToolCall = event.data
        step = run.step
        if step is not None and not step.stream_end_ns:
            step.stream_end_ns = event.ts_ns  # the LLM call ended before its first tool call
        if not isinstance(run, Turn):
            return  # a child agent's tools are spanned from the subagent's chunks
        extra = {n.GEN_AI_TOOL_CALL_ID: data.ToolCallID}
        if data.Source:
            extra[n.KIT_TOOL_SOURCE] = data.Source
        existing = run.tools.get(data.ToolCallID)
        if existing is not None:  # opened by its subagent_start, which KIT fires first
            extra[n.KIT_TOOL_INPUT_BYTES] = max(len(data.Input), data.InputBytes)
            captured = messages.tool_arguments(self.content, data.Input)
            if captured is not None:
                extra[n.GEN_AI_TOOL_CALL_ARGUMENTS] = captured
            existing.span.set_attributes(extra)
            return
        run.tools[data.ToolCallID] = self._start_tool(session, run.span, data.ToolName,
                                                      data.ToolKind, data.Input, event.ts_ns,
                                                      extra, data.InputBytes)

    def _start_tool(self, session: Session, parent: trace.Span, name: str, kind: str,
                    arguments: str, ts_ns: int, extra: dict, arguments_bytes: int = 0) -> Tool:
        attrs = {n.GEN_AI_OPERATION_NAME: n.OP_EXECUTE_TOOL, n.GEN_AI_TOOL_NAME: name,
                 n.GEN_AI_TOOL_TYPE: tool_type(name, kind),
                 n.KIT_TOOL_INPUT_BYTES: max(len(arguments), arguments_bytes),
                 n.GEN_AI_CONVERSATION_ID: session.session_id, **extra}
        if kind:
            attrs[n.KIT_TOOL_KIND] = kind
        captured = messages.tool_arguments(self.content, arguments)
        if captured is not None:
            attrs[n.GEN_AI_TOOL_CALL_ARGUMENTS] = captured
        span = self.tracer.start_span(f"{n.SPAN_TOOL_PREFIX} {name}",
                                      context=trace.set_span_in_context(parent),
                                      kind=SpanKind.INTERNAL, attributes=attrs, start_time=ts_ns)
        return Tool(span=span, name=name, kind=kind, start_ns=ts_ns)

    def _finish_tool(self, tool: Tool, kind: str, content: str, is_error: bool,
                     ts_ns: int, content_bytes: int = 0) -> None:
        """Outcome, status and metrics of a tool whose result arrived (the span ends apart)."""
        outcome = ("error" if is_error else "ok") if tool.executed else "blocked"
        span = tool.span
        if outcome == "blocked":
            span.set_attribute(n.KIT_TOOL_BLOCKED, True)
        captured = self.content.text(content)
        if is_error:
            span.set_attribute(n.ERROR_TYPE, "tool_error")
            span.set_status(Status(StatusCode.ERROR, captured or "tool error"))
        if captured is not None:
            span.set_attribute(n.GEN_AI_TOOL_CALL_RESULT, captured)
        span.set_attribute(n.KIT_TOOL_OUTPUT_BYTES, max(len(content.encode()), content_bytes))
        self._delta_attributes_on(span, n.KIT_DELTAS_TOOL_OUTPUT, tool.output)
        m = self.metrics
        labels = {n.L_TOOL: m.tool_value(tool.name), n.L_KIND: kind or "unknown"}
        m.tool_calls.add(1, {**labels, n.L_OUTCOME: outcome})
        if self.event_log.logger is not None:
            record = {key: span.attributes[key] for key in _TOOL_LOG_KEYS if key in span.attributes}
            record[n.KIT_TOOL_OUTCOME] = outcome
            record[n.KIT_TOOL_DURATION_S] = max(ts_ns - tool.start_ns, 0) / NS_PER_S
            self.event_log.emit(EVENT_TOOL_RESULT, ts_ns, span, record,
                                WARN if outcome != "ok" else INFO)
        m.tool_duration.record(max(ts_ns - tool.start_ns, 0) / NS_PER_S, labels,
                               context=trace.set_span_in_context(span))

    def _on_tool_execution(self, session: Session, run: Run, event: ev.Event) -> None:
        tool = run.tools.get(event.data.ToolCallID) if isinstance(run, Turn) else None
        if tool is None:
            self._span_event(run.span, event)
            return
        if event.type == "tool_execution_start":
            tool.executed = True
        self._span_event(tool.span, event)

    def _on_tool_output(self, session: Session, run: Run, event: ev.Event) -> None:
        tool = run.tools.get(event.data.ToolCallID) if isinstance(run, Turn) else None
        if tool is None:
            return
        self._coalesce(tool.span, tool.output, event, event.data.Chunk)

    def _on_tool_result(self, session: Session, run: Run, event: ev.Event) -> None:
        data: ev.ToolResult = event.data
        if not isinstance(run, Turn):
            return
        run.aggregate.add_tool(data.ToolName)
        tool = run.tools.get(data.ToolCallID)
        if tool is None:  # result without its call (stream began mid-tool): a zero-length span
            self._on_tool_call(session, run, ev.Event(
                type="tool_call", ts_ns=event.ts_ns, data=ev.ToolCall(
                    ToolName=data.ToolName, ToolCallID=data.ToolCallID, ToolKind=data.ToolKind,
                    Input=data.Input)))
            tool = run.tools[data.ToolCallID]
            tool.executed = True
        self._finish_tool(tool, data.ToolKind or tool.kind, data.Content, data.IsError,
                          event.ts_ns, data.ContentBytes)
        if data.ToolCallID in run.subagents:
            tool.result_ns = event.ts_ns  # the subagent span ends first; this span waits
            return
        del run.tools[data.ToolCallID]
        run.finished_calls.add(data.ToolCallID)
        tool.span.end(end_time=max(event.ts_ns, tool.start_ns))

    def _end_blocked_tools(self, session: Session, turn: Turn, step: Step,
                           ts_ns: int) -> None:
        """At step_finish every tool of the step has run: one that never started was blocked.

        KIT's wrapper returns before tool_execution_start for a blocked call and emits no
        tool_result (internal/extensions/wrapper.go); if the blocking extension loads before the
        bridge, the call is known only from the stream (tool_call_input_start)."""
        for call_id, tool in list(turn.tools.items()):
            if not tool.executed and not tool.result_ns and call_id not in turn.subagents:
                self._block_tool(turn, call_id, tool, ts_ns)
        for call_id, (name, kind, start_ns) in step.streamed_calls.items():
            if call_id in turn.tools or call_id in turn.finished_calls:
                continue
            tool = self._start_tool(session, turn.span, name, kind, "", start_ns,
                                    {n.GEN_AI_TOOL_CALL_ID: call_id})
            turn.tools[call_id] = tool
            self._block_tool(turn, call_id, tool, ts_ns)

    def _block_tool(self, turn: Turn, call_id: str, tool: Tool, ts_ns: int) -> None:
        turn.aggregate.add_tool(tool.name)  # KIT's aggregate counts blocked calls too
        self._finish_tool(tool, tool.kind, "", True, ts_ns)
        tool.span.set_status(Status(StatusCode.ERROR, BLOCKED_STATUS))
        del turn.tools[call_id]
        turn.finished_calls.add(call_id)
        tool.span.end(end_time=max(ts_ns, tool.start_ns))

    def _delta_attributes_on(self, span: trace.Span, prefix: str, deltas: Deltas) -> None:
        attrs: dict = {}
        self._delta_attributes(attrs, prefix, deltas)
        if attrs:
            span.set_attributes(attrs)

    def _end_tool_span(self, tool: Tool, end_ns: int, unfinished: bool = False) -> None:
        if unfinished:
            tool.span.set_status(Status(StatusCode.ERROR, "tool never finished"))
        tool.span.end(end_time=max(end_ns, tool.start_ns))
