"""Chat spans (`chat {model}`): one per LLM call (KIT's step), its streaming (first chunk,
coalesced deltas), and its end once both `step_finish` and `llm_usage` are in — with the usage,
cost and GenAI client metrics of the call, counted exactly once."""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from kit_otel.model import events as ev, names as n
from kit_otel.translate.classify import chat_span_name, error_type
from kit_otel.translate.instruments import WindowSpend
from kit_otel.translate.logs import EVENT_INFERENCE_DETAILS, INFO, WARN
from kit_otel.translate.pricing import CallCost, call_cost_attributes, cost_metric_labels
from kit_otel.translate.records import LlmCallRecord
from kit_otel.translate.span_state import Deltas, NS_PER_S, Run, Session, Step, Turn


class ReportedCall(NamedTuple):
    """What an LLM call reported: by `llm_usage` (KIT's usage with cost), else by
    `step_finish` (tokens only), else nothing (tokens None: the call never reported back)."""

    tokens: tuple[int, int, int, int] | None  # input (uncached), output, cache read, cache write
    cost: float
    finish_reason: str
    provider: str
    response_model: str
    usage_source: str
    request_id: str


def reported_call(step: Step) -> ReportedCall:
    usage, finish = step.usage, step.finish
    if usage is not None:
        return ReportedCall(
            (usage.InputTokens, usage.OutputTokens, usage.CacheReadTokens, usage.CacheWriteTokens),
            usage.Cost, usage.FinishReason or (finish.FinishReason if finish else ""),
            usage.Provider, usage.Model, "llm_usage", usage.RequestID)
    if finish is not None:
        return ReportedCall(
            (finish.InputTokens, finish.OutputTokens, finish.CacheReadTokens,
             finish.CacheWriteTokens), 0.0, finish.FinishReason, "", "", "step_finish", "")
    return ReportedCall(None, 0.0, "", "", "", "", "")

class ChatSpans:
    """The ChatSpans part of the translator (translate/translator.py), which holds the
    state these methods use: `sessions`, `tracer`, `metrics`, `content`, `settings`,
    `prices`, `event_log`."""

    def _start_step(self, session: Session, run: Run, number: int, ts_ns: int) -> Step:
        model = session.model
        attrs = {n.GEN_AI_OPERATION_NAME: n.OP_CHAT, n.KIT_STEP_NUMBER: number,
                 n.GEN_AI_CONVERSATION_ID: session.session_id}
        self._model_attributes(session, attrs)
        if run.agent != "main":
            attrs[n.GEN_AI_AGENT_NAME] = n.AGENT_SUBAGENT
        span = self.tracer.start_span(chat_span_name(model),
                                      context=trace.set_span_in_context(run.span),
                                      kind=SpanKind.CLIENT, attributes=attrs, start_time=ts_ns)
        step = Step(span=span, number=number, start_ns=ts_ns, request_model=model)
        run.step = step
        return step

    def _on_step_start(self, session: Session, run: Run, event: ev.Event) -> None:
        self._end_step(session, run, event.ts_ns)
        self._start_step(session, run, event.data.StepNumber, event.ts_ns)

    def _step_for(self, session: Session, run: Run, event: ev.Event) -> Step:
        step = run.step
        if step is None:  # usage/finish without step_start (stream began mid-step)
            step = self._start_step(session, run, getattr(event.data, "StepNumber", 0),
                                    event.ts_ns)
        return step

    def _on_step_finish(self, session: Session, run: Run, event: ev.Event) -> None:
        step = self._step_for(session, run, event)
        if isinstance(run, Turn):
            self._end_blocked_tools(session, run, step, event.ts_ns)
        step.finish = event.data
        step.finish_ns = event.ts_ns
        if not step.stream_end_ns:
            step.stream_end_ns = event.ts_ns
        if step.usage is not None:
            self._end_step(session, run, event.ts_ns)

    def _on_llm_usage(self, session: Session, run: Run, event: ev.Event) -> None:
        step = self._step_for(session, run, event)
        step.usage = event.data
        if not step.stream_end_ns:
            step.stream_end_ns = event.ts_ns
        if step.finish is not None:
            self._end_step(session, run, event.ts_ns)

    def _end_step(self, session: Session, run: Run, now_ns: int) -> None:
        """Finish the open chat span exactly once: what the call reported, then its span, its
        log record, the run's totals, the summary's record and its metrics, in that order."""
        step = run.step
        if step is None:
            return
        run.step = None
        call = reported_call(step)
        if call.provider:
            session.provider = call.provider
        if call.response_model:
            session.model = call.response_model
        end_ns = step.stream_end_ns or now_ns
        call_cost = None if call.tokens is None else self.prices.cost_of(
            call.cost, session.provider, session.model, call.tokens, end_ns)
        attrs = self._end_chat_span(session, step, call, call_cost, end_ns)
        if self.event_log.logger is not None and (call.tokens is not None or step.error):
            self.event_log.emit(EVENT_INFERENCE_DETAILS, end_ns, step.span, {
                **self._log_attributes(session), n.GEN_AI_OPERATION_NAME: n.OP_CHAT,
                n.KIT_STEP_NUMBER: step.number, **attrs},
                WARN if step.error else INFO)
        error = attrs.get(n.ERROR_TYPE, "")
        if call.tokens is None:
            if step.error:  # a failed call: its duration counts, with its error.type
                self._record_call_duration(step, self._call_semconv_labels(session), end_ns,
                                           error, reported=False)
            return  # an LLM call that never reported back (abandoned turn): no usage to count
        tokens = call.tokens
        run.aggregate.add_llm_call(tokens[0], tokens[1], tokens[2], tokens[3], call.cost)
        run.cost.add(call_cost)
        if self.on_llm_call:
            call_record = LlmCallRecord(
                provider=session.provider or "unknown", model=session.model or "unknown",
                agent=run.agent, tokens=tokens, cost=call.cost, cost_source=call_cost.source,
                notional_cost=call_cost.notional_usd,
                duration_ns=max(end_ns - step.start_ns, 0), ts_ns=end_ns,
                project=session.project)
            for hook in self.on_llm_call:
                hook(call_record)
        semconv = self._call_semconv_labels(session)
        self._record_call_metrics(session, run, call, call_cost, semconv, end_ns)
        self._record_call_duration(step, semconv, end_ns, error)

    def _end_chat_span(self, session: Session, step: Step, call: ReportedCall,
                       call_cost: CallCost | None, end_ns: int) -> dict[str, object]:
        """What the chat span carries at its end; returns the attributes set in one go (the
        log record repeats them)."""
        span = step.span
        attrs: dict[str, object] = {}
        if session.model:
            span.update_name(chat_span_name(session.model))
            # the model asked for when the call started, else the one that answered
            attrs[n.GEN_AI_REQUEST_MODEL] = step.request_model or session.model
        if call.response_model:
            attrs[n.GEN_AI_RESPONSE_MODEL] = call.response_model
        if session.provider:
            attrs[n.GEN_AI_PROVIDER_NAME] = n.provider_name(session.provider)
        if call.request_id:
            attrs[n.GEN_AI_RESPONSE_ID] = call.request_id
        if step.error:
            span.set_status(Status(StatusCode.ERROR, self._error_description(step.error)))
            attrs[n.ERROR_TYPE] = error_type(step.error)
        if step.first_chunk_ns:
            attrs[n.GEN_AI_REQUEST_STREAM] = True  # chunks arrived: the call was streamed
            attrs[n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = \
                max(step.first_chunk_ns - step.start_ns, 0) / NS_PER_S
        self._delta_attributes(attrs, n.KIT_DELTAS_MESSAGE, step.message)
        self._delta_attributes(attrs, n.KIT_DELTAS_TOOL_INPUT, step.tool_input)
        if call.tokens is not None:
            attrs.update(self._usage_attributes(*call.tokens))
            attrs[n.KIT_COST_USD] = call.cost
            attrs[n.KIT_LLM_USAGE_SOURCE] = call.usage_source
            if call.finish_reason:
                attrs[n.GEN_AI_RESPONSE_FINISH_REASONS] = [call.finish_reason]
            attrs.update(call_cost_attributes(call_cost, self.prices.version))
        span.set_attributes(attrs)
        span.end(end_time=max(end_ns, step.start_ns))
        return attrs

    def _call_semconv_labels(self, session: Session) -> dict[str, str]:
        """The GenAI client metrics' attributes of a call (model bounded like every label)."""
        return {n.GEN_AI_OPERATION_NAME: n.OP_CHAT,
                n.GEN_AI_PROVIDER_NAME: n.provider_name(session.provider or "unknown"),
                n.GEN_AI_REQUEST_MODEL: self.metrics.model_value(session.model or "unknown")}

    def _record_call_metrics(self, session: Session, run: Run, call: ReportedCall,
                             call_cost: CallCost, semconv: dict[str, str], end_ns: int) -> None:
        """Usage, cost and call counters of a call that reported its usage."""
        m = self.metrics
        tokens = call.tokens
        # one provider vocabulary on every metric: the `provider` label is the conventions'
        # name too, so a dashboard's one $provider filters kit_* and gen_ai_* panels alike
        provider = semconv[n.GEN_AI_PROVIDER_NAME]
        bounded_model = semconv[n.GEN_AI_REQUEST_MODEL]
        labels = self._labels_project(session, {n.L_PROVIDER: provider, n.L_MODEL: bounded_model,
                                                n.L_AGENT: run.agent})
        for token_type, value in zip(("input", "output", "cache_read", "cache_write"), tokens):
            m.tokens.add(value, {**labels, n.L_TYPE: token_type})
        spend = call.cost + call_cost.notional_usd  # KIT's plus notional, here and to date
        m.cost.add(spend, {**labels, **cost_metric_labels(call_cost, self.prices.version)})
        # by cost source too: budget-status.json counts the sources the user chose, from these
        for key in WindowSpend.keys(end_ns, {**labels, n.L_COST_SOURCE: call_cost.source}):
            m.spend_to_date.add_key(key, spend)
        m.llm_calls.add(1, {n.L_PROVIDER: provider, n.L_MODEL: bounded_model,
                            n.L_FINISH_REASON: call.finish_reason or "unknown"})
        input_tokens = tokens[0] + tokens[2] + tokens[3]  # cached included, as on the span
        if m.token_usage is not None:
            m.token_usage.record(input_tokens, {**semconv, n.GEN_AI_TOKEN_TYPE: n.TOKEN_TYPE_INPUT})
            m.token_usage.record(tokens[1], {**semconv, n.GEN_AI_TOKEN_TYPE: n.TOKEN_TYPE_OUTPUT})
        else:
            m.inference_input_tokens.record(input_tokens, semconv)
            m.inference_output_tokens.record(tokens[1], semconv)

    def _record_call_duration(self, step: Step, semconv: dict[str, str], end_ns: int,
                              error: object, reported: bool = True) -> None:
        """gen_ai.client.operation.duration (failed calls too, with their error.type) and, for
        a call that reported back, the time to its first chunk — exemplars of the call's span."""
        m = self.metrics
        in_call = trace.set_span_in_context(step.span)
        duration_labels = {**semconv, n.ERROR_TYPE: error} if error else semconv
        m.operation_duration.record(max(end_ns - step.start_ns, 0) / NS_PER_S, duration_labels,
                                    context=in_call)
        if reported and step.first_chunk_ns:
            m.time_to_first_chunk.record(max(step.first_chunk_ns - step.start_ns, 0) / NS_PER_S,
                                         semconv, context=in_call)

    def _stream_target(self, run: Run) -> tuple[trace.Span, Step | None]:
        step = run.step
        if step is not None and not step.stream_end_ns:
            return step.span, step
        return run.span, None

    def _mark_first_chunk(self, step: Step | None, ts_ns: int) -> None:
        if step is not None and not step.first_chunk_ns:
            step.first_chunk_ns = ts_ns

    def _on_stream_marker(self, session: Session, run: Run, event: ev.Event) -> None:
        span, step = self._stream_target(run)
        if event.type in ("reasoning_start", "tool_call_input_start"):
            self._mark_first_chunk(step, event.ts_ns)
            if event.type == "tool_call_input_start" and run.step is not None:
                data = event.data
                run.step.streamed_calls[data.ToolCallID] = (data.ToolName, data.ToolKind,
                                                            event.ts_ns)
        self._span_event(span, event)

    def _on_message_update(self, session: Session, run: Run, event: ev.Event) -> None:
        step = run.step
        if step is not None and not step.stream_end_ns:  # the common case, kept short
            if not step.first_chunk_ns:
                step.first_chunk_ns = event.ts_ns
            deltas = step.message
            chunk = event.data.Chunk
            deltas.count += 1
            deltas.bytes += len(chunk) if chunk.isascii() else len(chunk.encode())
            if deltas.count == 1 or self.settings.record_all_deltas:
                self._span_event(step.span, event)
            return
        span, step = self._stream_target(run)
        self._mark_first_chunk(step, event.ts_ns)
        deltas = step.message if step is not None else Deltas()
        self._coalesce(span, deltas, event, event.data.Chunk)

    def _on_tool_input_delta(self, session: Session, run: Run, event: ev.Event) -> None:
        span, step = self._stream_target(run)
        deltas = step.tool_input if step is not None else Deltas()
        self._coalesce(span, deltas, event, event.data.Delta)

    def _coalesce(self, span: trace.Span, deltas: Deltas, event: ev.Event, text: str) -> None:
        deltas.count += 1
        deltas.bytes += len(text.encode()) if not text.isascii() else len(text)
        if deltas.count == 1 or self.settings.record_all_deltas:
            self._span_event(span, event)

    @staticmethod
    def _delta_attributes(attrs: dict, prefix: str, deltas: Deltas) -> None:
        if deltas.count:
            attrs[prefix + ".count"] = deltas.count
            attrs[prefix + ".bytes"] = deltas.bytes
