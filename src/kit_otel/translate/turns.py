"""Turn spans (`invoke_agent kit`): what opens one (input, before_agent_start, agent_start,
or any in-turn event of a stream that began mid-turn), what it carries, and how it ends —
agent_end with KIT's aggregate, or closed as incomplete — with the turn metrics and the summary's
turn record."""

from __future__ import annotations

from collections import Counter

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from kit_otel.model import events as ev, names as n
from kit_otel.translate import messages
from kit_otel.translate.aggregate import has_enriched_fields, TurnAggregate
from kit_otel.translate.classify import error_type
from kit_otel.translate.logs import EVENT_TURN_END, INFO, WARN
from kit_otel.translate.pricing import run_cost_attributes
from kit_otel.translate.records import TurnRecord
from kit_otel.translate.span_state import EMPTY_CONTEXT, Session, Turn
from kit_otel.translate.subagents import TURN_ENDED_FIRST
from kit_otel.translate.vcs import read_checkout

class TurnSpans:
    """The TurnSpans part of the translator (translate/translator.py), which holds the
    state these methods use: `sessions`, `tracer`, `metrics`, `content`, `settings`,
    `prices`, `event_log`."""

    def _open_turn(self, session: Session, event: ev.Event) -> Turn:
        attrs = dict(session.base_attributes)
        attrs[n.GEN_AI_OPERATION_NAME] = n.OP_INVOKE_AGENT
        attrs[n.GEN_AI_AGENT_NAME] = n.AGENT_KIT
        self._model_attributes(session, attrs)
        if event.source:
            attrs[n.KIT_SOURCE] = event.source
        checkout = read_checkout(session.cwd) if self.settings.git_attribution else None
        if checkout is not None:
            attrs.update(checkout.span_attributes())
        links = [Link(session.previous_turn)] if session.previous_turn else None
        parent = self.next_turn_parents.pop((session.pid, session.path), None) or \
            self.process_parents.get(session.pid, EMPTY_CONTEXT)
        span = self.tracer.start_span(n.SPAN_TURN, context=parent,
                                      kind=SpanKind.INTERNAL, attributes=attrs,
                                      start_time=event.ts_ns, links=links)
        turn = Turn(span=span, agent="main", start_ns=event.ts_ns, last_ns=event.ts_ns,
                     state_at_start=dict(session.state))
        session.turn = turn
        return turn

    def _turn(self, session: Session, event: ev.Event) -> Turn:
        """The open turn, or one opened by an in-turn event (a stream that starts mid-turn)."""
        turn = session.turn
        if turn is None:
            turn = self._open_turn(session, event)
        turn.last_ns = max(turn.last_ns, event.ts_ns)
        return turn

    def _on_turn_opening(self, session: Session, event: ev.Event) -> None:
        turn = session.turn
        begins_loop = event.type != "input"
        if turn is not None and begins_loop and turn.agent_started:
            # a new agent loop while one is open: the old one never ended
            self._close_incomplete(session, turn)
            turn = None
        if turn is None:
            turn = self._open_turn(session, event)
        turn.last_ns = max(turn.last_ns, event.ts_ns)
        if event.type == "agent_start":
            turn.agent_started = True
            turn.agent_start_ns = event.ts_ns
        self._span_event(turn.span, event)
        prompt = getattr(event.data, "Prompt", None) or getattr(event.data, "Text", None)
        if prompt is not None and event.type != "before_agent_start":
            full = getattr(event.data, "PromptBytes", 0) or getattr(event.data, "TextBytes", 0)
            turn.span.set_attribute(n.KIT_TURN_PROMPT_LENGTH, max(len(prompt), full))
            captured = messages.input_messages(self.content, prompt)
            if captured is not None:
                turn.span.set_attribute(n.GEN_AI_INPUT_MESSAGES, captured)

    def _on_agent_end(self, session: Session, event: ev.Event) -> None:
        data: ev.AgentEnd = event.data
        turn = session.turn
        seen_from_start = turn is not None and turn.agent_started
        if turn is None:  # agent_end alone: rebuild the turn from its own duration
            start = event.ts_ns - data.DurationMs * 1_000_000
            turn = self._open_turn(session, ev.Event(type="agent_start", data=ev.AgentStart(),
                                                     ts_ns=start, pid=event.pid,
                                                     session_path=event.session_path))
            turn.agent_started, turn.agent_start_ns = True, start
        self._span_event(turn.span, event)
        stop_reason = data.StopReason or "completed"
        if stop_reason == "error" and turn.cancelled:
            stop_reason = "cancelled"
        if seen_from_start:  # what a turn seen from its start missed was blocked
            self._count_unseen_blocked(turn, data)
        self._finish_turn(session, turn, event.ts_ns, stop_reason, data)

    def _count_unseen_blocked(self, turn: Turn, end: ev.AgentEnd) -> None:
        """Tool calls KIT counted that the bridge never saw (a blocking extension loaded before
        it, and no streamed input): counted as blocked from KIT's own ToolNames."""
        missing = Counter(end.ToolNames or ()) - Counter(turn.aggregate.tool_names)
        unnamed = end.ToolCallCount - turn.aggregate.tool_call_count - sum(missing.values())
        m = self.metrics
        for name, count in missing.items():
            m.tool_calls.add(count, {n.L_TOOL: m.tool_value(name), n.L_KIND: "unknown",
                                     n.L_OUTCOME: "blocked"})
        if unnamed > 0:
            m.tool_calls.add(unnamed, {n.L_TOOL: m.tool_value("unknown"), n.L_KIND: "unknown",
                                       n.L_OUTCOME: "blocked"})

    def _close_incomplete(self, session: Session, turn: Turn) -> None:
        turn.span.set_attribute(n.KIT_TURN_INCOMPLETE, True)
        self._finish_turn(session, turn, turn.last_ns, "incomplete", None)

    def _finish_turn(self, session: Session, turn: Turn, end_ns: int, stop_reason: str,
                     agent_end: ev.AgentEnd | None) -> None:
        """End the turn and everything still open in it; then its span, its log record, its
        metrics and the summary's record, in that order."""
        self._end_step(session, turn, end_ns)
        # (and any open subagent of this turn that lost its place there: none should, but one
        # left open would keep the process from ever being quiescent)
        open_ones = list(turn.subagents.values())
        open_ones += [s for s in self.open_subagents.get(session.pid, ())
                      if s.turn is turn and s not in open_ones]
        for subagent in open_ones:
            self._end_subagent(session, turn, subagent, end_ns, TURN_ENDED_FIRST)
        for call_id, tool in list(turn.tools.items()):
            tool.span.set_attribute(n.KIT_TURN_INCOMPLETE, True)
            self._end_tool_span(tool, tool.result_ns or end_ns, unfinished=not tool.result_ns)
            del turn.tools[call_id]
        final = self._turn_aggregate(turn, end_ns, agent_end)
        attrs = self._end_turn_span(session, turn, end_ns, stop_reason, agent_end, final)
        if self.event_log.logger is not None:
            self._log_turn_end(session, turn.span, end_ns, stop_reason, attrs)
        self._record_turn_metrics(session, turn, stop_reason, final)
        session.previous_turn = turn.span.get_span_context()
        session.turn = None
        self.turns_closed += 1
        if self.on_turn_end:
            turn_record = TurnRecord(
                session_id=session.session_id, project=session.project, stop_reason=stop_reason,
                provider=session.provider, model=session.model, aggregate=final, cost=turn.cost,
                subagent_usage=turn.subagent_usage, subagent_cost=turn.subagent_cost,
                start_ns=turn.start_ns, end_ns=end_ns, span=turn.span)
            for hook in self.on_turn_end:
                hook(turn_record)

    @staticmethod
    def _turn_aggregate(turn: Turn, end_ns: int, agent_end: ev.AgentEnd | None) -> TurnAggregate:
        """KIT's own aggregate when its AgentEnd carries one (checked against ours), else ours."""
        computed = turn.aggregate
        computed.duration_ms = max(end_ns - (turn.agent_start_ns or turn.start_ns), 0) // 1_000_000
        span = turn.span
        if agent_end is not None and has_enriched_fields(agent_end):
            reported = TurnAggregate.from_agent_end(agent_end)
            span.set_attribute(n.KIT_TURN_AGGREGATE_SOURCE, "agent_end")
            if not reported.agrees_with(computed):
                span.set_attribute(n.KIT_TURN_AGGREGATE_MISMATCH, True)
            return reported
        span.set_attribute(n.KIT_TURN_AGGREGATE_SOURCE, "computed")
        return computed

    def _end_turn_span(self, session: Session, turn: Turn, end_ns: int, stop_reason: str,
                       agent_end: ev.AgentEnd | None, final: TurnAggregate) -> dict[str, object]:
        """What the turn span carries at its end; returns the attributes set in one go (the
        log record repeats them)."""
        span = turn.span
        if agent_end is not None:
            span.set_attribute(n.KIT_TURN_RESPONSE_LENGTH,
                               max(len(agent_end.Response), agent_end.ResponseBytes))
            captured = messages.output_messages(self.content, agent_end.Response, stop_reason)
            if captured is not None:
                span.set_attribute(n.GEN_AI_OUTPUT_MESSAGES, captured)
        attrs = {
            n.KIT_TURN_STOP_REASON: stop_reason,
            n.KIT_TURN_TOOL_CALL_COUNT: final.tool_call_count,
            n.KIT_TURN_TOOL_NAMES: list(final.tool_names),
            n.KIT_TURN_LLM_CALL_COUNT: final.llm_call_count,
            **self._usage_attributes(final.input_tokens, final.output_tokens,
                                     final.cache_read_tokens, final.cache_write_tokens),
            n.KIT_TURN_COST_USD: final.cost_usd,
            n.KIT_TURN_DURATION_MS: final.duration_ms,
        }
        self._model_attributes(session, attrs)
        attrs.update(run_cost_attributes(turn.cost, self.prices.version))
        attrs.update(self._inclusive_attributes(turn, final))
        attrs.update(self.settings.state.turn_attributes(turn.state_at_start, session.state))
        span.set_attributes(attrs)
        if stop_reason in ("error", "incomplete"):
            span.set_status(Status(StatusCode.ERROR, self._error_description(turn.last_error) or
                                   ("turn never ended" if stop_reason == "incomplete" else "error")))
            if turn.last_error or stop_reason == "error":
                span.set_attribute(n.ERROR_TYPE, error_type(turn.last_error))
        span.end(end_time=max(end_ns, turn.start_ns))
        return attrs

    def _log_turn_end(self, session: Session, span: trace.Span, end_ns: int, stop_reason: str,
                      attrs: dict[str, object]) -> None:
        record = {**self._log_attributes(session), n.GEN_AI_OPERATION_NAME: n.OP_INVOKE_AGENT,
                  n.GEN_AI_AGENT_NAME: n.AGENT_KIT, **attrs}
        for key in (n.GEN_AI_INPUT_MESSAGES, n.GEN_AI_OUTPUT_MESSAGES, n.ERROR_TYPE):
            if key in span.attributes:
                record[key] = span.attributes[key]
        self.event_log.emit(EVENT_TURN_END, end_ns, span, record,
                            WARN if stop_reason in ("error", "incomplete") else INFO)

    def _record_turn_metrics(self, session: Session, turn: Turn, stop_reason: str,
                             final: TurnAggregate) -> None:
        m = self.metrics
        m.turns.add(1, self._labels_project(session, {n.L_STOP_REASON: stop_reason}))
        in_turn = trace.set_span_in_context(turn.span)  # exemplars: the points name their trace
        m.turn_duration.record(final.duration_ms / 1000.0, {n.L_STOP_REASON: stop_reason},
                               context=in_turn)
        m.turn_cost.record(final.cost_usd + turn.cost.notional_usd,
                           self._labels_project(session, {n.L_COST_SOURCE: turn.cost.source}),
                           context=in_turn)

    @staticmethod
    def _inclusive_attributes(turn: Turn, own: TurnAggregate) -> dict[str, object]:
        """The turn's usage with its subagents': KIT's own numbers plus each child agent's.
        Input tokens include cached ones, like the turn's gen_ai.usage.input_tokens beside it."""
        total = TurnAggregate()
        total.add_usage_of(own)
        total.add_usage_of(turn.subagent_usage)
        attrs: dict[str, object] = {
            n.KIT_TURN_SUBAGENT_COUNT: turn.subagent_count,
            n.KIT_TURN_INCLUSIVE_LLM_CALL_COUNT: total.llm_call_count,
            n.KIT_TURN_INCLUSIVE_INPUT_TOKENS: (total.input_tokens + total.cache_read_tokens
                                                + total.cache_write_tokens),
            n.KIT_TURN_INCLUSIVE_OUTPUT_TOKENS: total.output_tokens,
            n.KIT_TURN_INCLUSIVE_CACHE_READ_TOKENS: total.cache_read_tokens,
            n.KIT_TURN_INCLUSIVE_CACHE_WRITE_TOKENS: total.cache_write_tokens,
            n.KIT_TURN_INCLUSIVE_COST_USD: total.cost_usd,
        }
        notional = turn.cost.notional_usd + turn.subagent_cost.notional_usd
        if notional:
            attrs[n.KIT_TURN_INCLUSIVE_NOTIONAL_USD] = notional
        return attrs
