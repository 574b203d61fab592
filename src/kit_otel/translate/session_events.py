"""Events outside the span kinds of a turn: session start and shutdown, model changes,
compaction, errors and retries, ambient events — a span event on the open span, or a short
out-of-turn span when no turn is open — with their metrics and log records."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from kit_otel.model import events as ev, names as n
from kit_otel.translate.classify import error_kind, error_type, is_user_cancel, split_model
from kit_otel.translate.logs import (
    EVENT_COMPACTION, EVENT_MODEL_CHANGE, EVENT_OPERATION_EXCEPTION, EVENT_RETRY, WARN,
)
from kit_otel.translate.span_state import EMPTY_CONTEXT, Session

# Events that only happen inside a turn: one arriving with no turn open opens one.
_IN_TURN_ONLY = frozenset({"context_prepare", "prepare_step", "message_start", "message_end"})


class SessionEvents:
    """The SessionEvents part of the translator (translate/translator.py), which holds the
    state these methods use: `sessions`, `tracer`, `metrics`, `content`, `settings`,
    `prices`, `event_log`."""

    def _out_of_turn(self, session: Session, event: ev.Event, extra: dict | None = None) -> None:
        attrs = dict(session.base_attributes)
        attrs.update(self._event_attributes(event))
        if extra:
            attrs.update(extra)
        span = self.tracer.start_span(n.SPAN_OUT_OF_TURN_PREFIX + event.type,
                                      context=EMPTY_CONTEXT, kind=SpanKind.INTERNAL,
                                      attributes=attrs, start_time=event.ts_ns)
        span.end(end_time=event.ts_ns)

    def _on_session_start(self, session: Session, event: ev.Event) -> None:
        data: ev.SessionStart = event.data
        if data.SessionID and data.SessionID != session.session_id:
            self._set_session_id(session, data.SessionID)
        reload = session.started  # hot reloads fire session_start again
        session.started = True
        session.shut_down = False
        self._count_session(session)  # a session without a file counts from its start
        self._out_of_turn(session, event, {n.KIT_SESSION_RELOAD: reload})

    def _count_session(self, session: Session) -> None:
        if not session.counted:
            session.counted = True
            self.metrics.sessions.add(1, self._labels_project(session, {}))

    def _on_session_shutdown(self, session: Session, event: ev.Event) -> None:
        session.shut_down = True  # forgotten after the idle timeout, unless it starts again
        self._out_of_turn(session, event)

    def _on_model_change(self, session: Session, event: ev.Event) -> None:
        data: ev.ModelChange = event.data
        provider, model = split_model(data.NewModel)
        if data.NewModel and session.pid in self.process_models:
            self.process_models[session.pid] = data.NewModel
        if model:
            session.model = model
        if provider:
            session.provider = provider
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_MODEL_CHANGE, event.ts_ns,
                                session.turn.span if session.turn else None,
                                {**self._log_attributes(session), **self._event_attributes(event)})
        self._in_turn_or_alone(session, event)

    def _on_before_compact(self, session: Session, event: ev.Event) -> None:
        data: ev.BeforeCompact = event.data
        self.metrics.compactions.add(1, {n.L_AUTOMATIC: "true" if data.IsAutomatic else "false"})
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_COMPACTION, event.ts_ns,
                                session.turn.span if session.turn else None,
                                {**self._log_attributes(session), **self._event_attributes(event)})
        if data.UsagePercent:
            self.metrics.context_usage.record(
                data.UsagePercent, {n.L_MODEL: self.metrics.model_value(session.model or "unknown")})
        self._in_turn_or_alone(session, event)

    def _on_ambient(self, session: Session, event: ev.Event) -> None:
        self._in_turn_or_alone(session, event)

    def _on_generic(self, session: Session, event: ev.Event) -> None:
        """In-turn events without a handler of their own, and unknown types (a newer KIT)."""
        if event.type in _IN_TURN_ONLY:
            self._turn(session, event)  # a stream that starts mid-turn still gets its turn
        self._in_turn_or_alone(session, event)

    def _in_turn_or_alone(self, session: Session, event: ev.Event) -> None:
        turn = session.turn
        if turn is None:
            self._out_of_turn(session, event)
            return
        turn.last_ns = max(turn.last_ns, event.ts_ns)
        target = turn.step.span if turn.step and not turn.step.stream_end_ns and \
            event.type not in ("message_end", "model_change", "before_compact") else turn.span
        self._span_event(target, event)

    def _log_error(self, session: Session, span: trace.Span | None, event: ev.Event) -> None:
        message = event.data.Error
        kind = error_type(message)
        # the message is free text: only with content capture (redacted, cut); the event then
        # needs exception.type (required without a message), and KIT's error has no class
        # name: its class is the best type there is
        self.event_log.emit(EVENT_OPERATION_EXCEPTION, event.ts_ns, span, {
            **self._log_attributes(session), n.ERROR_TYPE: kind, n.EXCEPTION_TYPE: kind,
            n.EXCEPTION_MESSAGE: self.content.text(message)}, WARN)

    def _current_span(self, session: Session) -> trace.Span | None:
        turn = session.turn
        if turn is None:
            return None
        return turn.step.span if turn.step is not None and not turn.step.stream_end_ns \
            else turn.span

    def _on_error(self, session: Session, event: ev.Event) -> None:
        message = event.data.Error
        kind = error_kind(message)
        turn = session.turn
        if is_user_cancel(message):
            # KIT reports the user's ESC as an error ("context canceled") and ends the turn with
            # StopReason "error": that turn is "cancelled", and not an error anybody is paged for.
            if turn is not None:
                turn.cancelled = True
            self._in_turn_or_alone(session, event)
            return
        self.metrics.errors.add(1, {n.L_KIND: kind})
        if self.event_log.logger is not None:
            self._log_error(session, self._current_span(session), event)
        if turn is not None:
            turn.last_error = message
            if turn.step is not None and not turn.step.stream_end_ns:
                turn.step.error = turn.last_error
        self._in_turn_or_alone(session, event)

    def _on_retry(self, session: Session, event: ev.Event) -> None:
        self.metrics.retries.add(1, {n.L_KIND: error_kind(event.data.Error)})
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_RETRY, event.ts_ns, self._current_span(session), {
                **self._log_attributes(session), **self._event_attributes(event),
                n.ERROR_TYPE: error_type(event.data.Error)}, WARN)
        self._in_turn_or_alone(session, event)
