"""Subagent spans (`invoke_agent subagent`) under their tool span: the subagent's chunks
(tool calls paired with results by name), its child agent's own events (linked by the parent's
tool call id, or the newest open subagent of the process), and its end.

A chunk tool's outcome waits for the child's own stream when there is one: the chunks come from
the SDK's events, in which a call KIT's tool wrapper refused still starts, ends and fails; only
the child's bridge sees that it never ran (no tool_execution_start)."""

from __future__ import annotations

from collections import deque

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from kit_otel.model import events as ev, names as n
from kit_otel.translate import messages
from kit_otel.translate.classify import error_kind, error_type, is_user_cancel
from kit_otel.translate.logs import EVENT_SUBAGENT_END, INFO, WARN
from kit_otel.translate.span_state import (REFUSED, RAN, ChildCall, HeldResult, Run, Session,
                                          Subagent, Tool, Turn)
from kit_otel.translate.tools import BLOCKED_STATUS

# kit-otel's own reason for a subagent's ERROR status (not text from an event).
TURN_ENDED_FIRST = "turn ended first"


class SubagentSpans:
    """The SubagentSpans part of the translator (translate/translator.py), which holds the
    state these methods use: `sessions`, `tracer`, `metrics`, `content`, `settings`,
    `prices`, `event_log`."""

    def _on_subagent_start(self, session: Session, run: Run, event: ev.Event) -> None:
        if not isinstance(run, Turn):
            return
        data: ev.SubagentStart = event.data
        known = run.subagents.get(data.ToolCallID)
        if known is not None:
            # its child's first lines came first (two bridge instances, each flushing on its own
            # timer) and opened the subagent: it only learns its task now
            self._describe_task(known.span, data.Task, data.TaskBytes)
            return
        tool = run.tools.get(data.ToolCallID)
        if tool is None:
            # KIT fires subagent_start on the SDK's ToolExecutionStart, still inside the LLM
            # stream, before the extension-side tool_call of the same call (kit.go generate,
            # fantasy's dispatch after the stream): the tool span starts here.
            tool = run.tools[data.ToolCallID] = self._start_tool(
                session, run.span, "subagent", "agent", "", event.ts_ns,
                {n.GEN_AI_TOOL_CALL_ID: data.ToolCallID})
        parent = tool.span
        attrs = {n.GEN_AI_OPERATION_NAME: n.OP_INVOKE_AGENT,
                 n.GEN_AI_AGENT_NAME: n.AGENT_SUBAGENT, n.GEN_AI_TOOL_CALL_ID: data.ToolCallID,
                 **session.base_attributes}
        self._model_attributes(session, attrs)
        span = self.tracer.start_span(n.SPAN_SUBAGENT, context=trace.set_span_in_context(parent),
                                      kind=SpanKind.INTERNAL, attributes=attrs,
                                      start_time=event.ts_ns)
        self._describe_task(span, data.Task, data.TaskBytes)
        subagent = Subagent(span=span, call_id=data.ToolCallID, start_ns=event.ts_ns,
                             session=session, turn=run)
        run.subagents[data.ToolCallID] = subagent
        self.open_subagents.setdefault(session.pid, []).append(subagent)

    def _describe_task(self, span: trace.Span, task: str, task_bytes: int = 0) -> None:
        attrs: dict = {n.KIT_SUBAGENT_TASK_LENGTH: max(len(task), task_bytes)}
        captured = messages.input_messages(self.content, task)
        if captured is not None:
            attrs[n.GEN_AI_INPUT_MESSAGES] = captured
        span.set_attributes(attrs)

    def _on_subagent_chunk(self, session: Session, run: Run, event: ev.Event) -> None:
        data: ev.SubagentChunk = event.data
        subagent = run.subagents.get(data.ToolCallID) if isinstance(run, Turn) else None
        if subagent is None:
            self._span_event(run.span, event)
            return
        kind = data.ChunkType
        if kind in ("text", "reasoning"):
            self._coalesce(subagent.span, subagent.text, event, data.Content)
        elif kind == "tool_call":
            tool = self._start_tool(session, subagent.span, data.ToolName, "subagent", data.ToolArgs,
                                    event.ts_ns, {n.GEN_AI_AGENT_NAME: n.AGENT_SUBAGENT},
                                    data.ToolArgsBytes)
            subagent.chunk_tools.setdefault(data.ToolName, deque()).append(tool)
        elif kind in ("tool_execution_start", "tool_execution_end", "tool_result"):
            queue = subagent.chunk_tools.get(data.ToolName)
            tool = queue[0] if queue else None
            if tool is None:
                self._span_event(subagent.span, event)
                return
            if kind == "tool_execution_start":
                tool.executed = True
                self._span_event(tool.span, event)
            elif kind == "tool_execution_end":
                self._span_event(tool.span, event)
            else:
                queue.popleft()
                if subagent.child is None:  # no stream of the child's own: the chunks are all
                    self._end_chunk_tool(tool, data.ToolResult, data.IsError, event.ts_ns,
                                         data.ToolResultBytes)
                    unheard = subagent.settled_unheard
                    unheard[data.ToolName] = unheard.get(data.ToolName, 0) + 1
                else:
                    subagent.held.setdefault(data.ToolName, deque()).append(
                        HeldResult(tool, data.ToolResult, data.IsError, event.ts_ns,
                                   data.ToolResultBytes))
                    self._settle_chunk_tools(subagent, data.ToolName)
        else:  # turn_start, turn_end and kinds a newer KIT adds
            self._span_event(subagent.span, event)

    def _end_chunk_tool(self, tool: Tool, content: str, is_error: bool, ts_ns: int,
                        content_bytes: int = 0, refused: bool = False) -> None:
        if refused:
            tool.executed = False
        self._finish_tool(tool, "subagent", content, is_error, ts_ns, content_bytes)
        if refused:
            tool.span.set_status(Status(StatusCode.ERROR, BLOCKED_STATUS))
        tool.span.end(end_time=max(ts_ns, tool.start_ns))

    def _settle_chunk_tools(self, subagent: Subagent, name: str, final: bool = False) -> None:
        """End the held chunk tools named `name` whose call the child's stream has judged, in
        call order; at the subagent's end (`final`) the rest, as the chunks tell them.

        The two streams are written by two bridge instances, each flushing on its own timer, so
        a chunk result may be read before or after the child's events of the same call."""
        held = subagent.held.get(name)
        verdicts = subagent.verdicts.get(name)
        while held:
            call = verdicts[0] if verdicts else None
            if call is not None and (call.verdict or final):
                verdicts.popleft()
            elif not final:
                return  # the child has not said yet whether the call ran
            result = held.popleft()
            self._end_chunk_tool(result.tool, result.content, result.is_error, result.ts_ns,
                                 result.content_bytes,
                                 refused=call is not None and call.verdict == REFUSED)

    def _judge_child_call(self, subagent: Subagent, event: ev.Event) -> None:
        """What the child's own stream says of its tool calls: a tool_call is pending until its
        tool_execution_start (it ran); at step_finish every call of the step has had its chance,
        so one still pending — or known only from the LLM stream, when the refusing extension
        loads before the bridge — was refused by KIT's tool wrapper."""
        if event.type in ("tool_call_input_start", "tool_call"):
            # in the LLM stream's order, which is the chunks' order too: a call the bridge
            # never sees as tool_call (refused before it) keeps its place among the others
            self._new_child_call(subagent, event.data.ToolCallID, event.data.ToolName)
        elif event.type == "tool_execution_start":
            call = subagent.pending_calls.pop(event.data.ToolCallID, None)
            if call is not None:
                call.verdict = RAN
                self._settle_chunk_tools(subagent, call.name)
        else:  # step_finish
            for call in subagent.pending_calls.values():
                call.verdict = REFUSED
            subagent.pending_calls.clear()
            subagent.step_call_ids.clear()
            for name in [name for name, held in subagent.held.items() if held]:
                self._settle_chunk_tools(subagent, name)

    def _new_child_call(self, subagent: Subagent, call_id: str, name: str) -> None:
        if call_id in subagent.step_call_ids:
            return
        subagent.step_call_ids.add(call_id)
        call = ChildCall(name)
        unheard = subagent.settled_unheard
        if unheard.get(name):  # its chunk result was ended before the child's stream began
            unheard[name] -= 1
            return
        subagent.pending_calls[call_id] = call
        subagent.verdicts.setdefault(name, deque()).append(call)

    def _on_subagent_end(self, session: Session, run: Run, event: ev.Event) -> None:
        data: ev.SubagentEnd = event.data
        subagent = run.subagents.get(data.ToolCallID) if isinstance(run, Turn) else None
        if subagent is None:
            self._span_event(run.span, event)
            return
        subagent.span.set_attribute(n.KIT_SUBAGENT_RESPONSE_LENGTH,
                                    max(len(data.Response), data.ResponseBytes))
        captured = messages.output_messages(self.content, data.Response,
                                            "error" if data.ErrorMsg else "stop")
        if captured is not None:
            subagent.span.set_attribute(n.GEN_AI_OUTPUT_MESSAGES, captured)
        self._end_subagent(session, run, subagent, event.ts_ns, data.ErrorMsg)

    def _end_subagent(self, session: Session, turn: Turn, subagent: Subagent, end_ns: int,
                      error: str) -> None:
        turn.subagents.pop(subagent.call_id, None)
        open_list = self.open_subagents.get(session.pid, [])
        if subagent in open_list:
            open_list.remove(subagent)
        turn.subagent_count += 1
        if subagent.child is not None:
            self._end_step(session, subagent.child, end_ns)
            child = subagent.child.aggregate
            turn.subagent_usage.add_usage_of(child)
            turn.subagent_cost.add_run(subagent.child.cost)
            subagent.span.set_attributes({
                n.KIT_TURN_LLM_CALL_COUNT: child.llm_call_count,
                **self._usage_attributes(child.input_tokens, child.output_tokens,
                                         child.cache_read_tokens, child.cache_write_tokens),
                n.KIT_COST_USD: child.cost_usd, n.KIT_COST_SOURCE: subagent.child.cost.source})
            if subagent.child.cost.notional_usd:
                subagent.span.set_attribute(n.KIT_COST_NOTIONAL_USD,
                                            subagent.child.cost.notional_usd)
        for name in [name for name, held in subagent.held.items() if held]:
            self._settle_chunk_tools(subagent, name, final=True)
        for queue in subagent.chunk_tools.values():
            for tool in queue:
                self._end_tool_span(tool, end_ns, unfinished=True)
        self._delta_attributes_on(subagent.span, n.KIT_DELTAS_SUBAGENT_TEXT, subagent.text)
        # required by the conventions: known by now if the start came before any usage
        subagent.span.set_attributes(self._model_attributes(session, {}))
        if error:
            subagent.span.set_status(Status(StatusCode.ERROR, error if error == TURN_ENDED_FIRST
                                            else self._error_description(error)))
            subagent.span.set_attribute(n.ERROR_TYPE, error_type(error))
        subagent.span.end(end_time=max(end_ns, subagent.start_ns))
        self.metrics.subagents.add(1, {n.L_OUTCOME: "error" if error else "ok"})
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_SUBAGENT_END, end_ns, subagent.span, {
                **self._log_attributes(session), **subagent.span.attributes,
                n.KIT_OUTCOME: "error" if error else "ok"}, WARN if error else INFO)
        tool = turn.tools.get(subagent.call_id)
        if tool is not None and tool.result_ns:
            del turn.tools[subagent.call_id]
            turn.finished_calls.add(subagent.call_id)
            tool.span.end(end_time=max(tool.result_ns, end_ns, tool.start_ns))

    def _linked_subagent(self, event: ev.Event) -> Subagent:
        """The subagent a child agent's event belongs to, by the parent's tool call that runs it.

        The bridge of a child Kit names that call (`parent_tool_call_id`) and writes the parent's
        session path, so parallel subagents stay apart and no session is made up for a child.
        A child seen before its subagent_start (or without one) opens the subagent itself."""
        session = self._session(event)
        session.last_ns = max(session.last_ns, event.ts_ns)
        turn = self._turn(session, event)
        call_id = event.parent_tool_call_id
        subagent = turn.subagents.get(call_id)
        if subagent is None:
            self._on_subagent_start(session, turn, ev.Event(
                type="subagent_start", data=ev.SubagentStart(ToolCallID=call_id),
                ts_ns=event.ts_ns, pid=event.pid, session_path=event.session_path))
            subagent = turn.subagents[call_id]
        return subagent

    def _child_target(self, event: ev.Event) -> Subagent | None:
        """The open subagent a child agent's event belongs to, if it is one."""
        if event.session_path or event.agent == "main":
            return None
        candidates = self.open_subagents.get(event.pid)
        if not candidates:
            return None
        # Parallel subagents of one process cannot be told apart: the newest takes the event.
        return candidates[-1]

    def _on_child_event(self, subagent: Subagent, event: ev.Event) -> None:
        child = subagent.child
        if child is None:
            child = subagent.child = Run(span=subagent.span, agent="subagent")
        child.last_ns = event.ts_ns
        subagent.turn.last_ns = max(subagent.turn.last_ns, event.ts_ns)
        session = subagent.session
        if event.type in ("tool_call_input_start", "tool_call", "tool_execution_start",
                          "step_finish"):
            self._judge_child_call(subagent, event)
        if event.type in ("step_start", "step_finish", "llm_usage", "message_update",
                          "reasoning_start", "tool_call_input_start", "tool_call_input_delta",
                          "tool_call_input_end", "tool_call"):
            self._run_handlers[event.type](session, child, event)
        elif event.type in ("tool_execution_start", "tool_execution_end", "tool_output",
                            "tool_result", "message_start", "context_prepare", "prepare_step"):
            return  # the chunks already describe these; counted in kit_otel_events_total
        elif event.type == "error":
            # as the main agent's (session_events._on_error): a user's cancel is no error, and
            # a failure while the child's LLM call streams fails that call
            message = event.data.Error
            if not is_user_cancel(message):
                self.metrics.errors.add(1, {n.L_KIND: error_kind(message)})
                step = child.step
                if step is not None and not step.stream_end_ns:
                    step.error = message
                if self.event_log.logger is not None:
                    self._log_error(session, step.span if step is not None and step.error
                                    else subagent.span, event)
            self._span_event(subagent.span, event)
        elif event.type == "retry":
            self.metrics.retries.add(1, {n.L_KIND: error_kind(event.data.Error)})
            self._span_event(subagent.span, event)
        else:
            self._span_event(subagent.span, event)
