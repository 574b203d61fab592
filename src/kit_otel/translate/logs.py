"""The logs signal: one OTel log record (an event, with `event_name`) per lifecycle moment worth
a record — a turn's end, an LLM call, a tool's result, an error, a retry, a compaction, a model
change, a subagent's end — at the event's own time and in the context of its span, so a backend
links every record to its trace.

GenAI event conventions are followed where they exist: an LLM call is a
`gen_ai.client.inference.operation.details` event, a KIT error a
`gen_ai.client.operation.exception` (severity WARN, as they say); the rest are `kit.*` events.
Prompt, response and tool text appear only with content capture on (the translator decides: it
hands this module attributes it has already filtered).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.context import Context

# GenAI event names (not in the installed semantic-conventions package: the newer conventions)
EVENT_INFERENCE_DETAILS = "gen_ai.client.inference.operation.details"
EVENT_OPERATION_EXCEPTION = "gen_ai.client.operation.exception"
# ours
EVENT_TURN_END = "kit.turn.end"
EVENT_TOOL_RESULT = "kit.tool.result"
EVENT_RETRY = "kit.retry"
EVENT_COMPACTION = "kit.compaction"
EVENT_MODEL_CHANGE = "kit.model.change"
EVENT_SUBAGENT_END = "kit.subagent.end"
ALL_EVENTS = (EVENT_INFERENCE_DETAILS, EVENT_OPERATION_EXCEPTION, EVENT_TURN_END,
              EVENT_TOOL_RESULT, EVENT_RETRY, EVENT_COMPACTION, EVENT_MODEL_CHANGE,
              EVENT_SUBAGENT_END)

INFO, WARN, ERROR = SeverityNumber.INFO, SeverityNumber.WARN, SeverityNumber.ERROR
_NO_SPAN = Context()  # not the caller's current context: records outside a span stand alone


class EventLog:
    """Emits the lifecycle's log records through an OTel Logger (None: the signal is off, and
    every call returns at once)."""

    __slots__ = ("logger",)

    def __init__(self, logger: Logger | None = None):
        self.logger = logger

    def emit(self, event_name: str, ts_ns: int, span: trace.Span | None,
             attributes: dict[str, object], severity: SeverityNumber = INFO,
             body: object = None) -> None:
        logger = self.logger
        if logger is None:
            return
        context = trace.set_span_in_context(span) if span is not None else _NO_SPAN
        logger.emit(timestamp=ts_ns, context=context, severity_number=severity,
                    severity_text=severity.name, event_name=event_name, body=body,
                    attributes={k: v for k, v in attributes.items() if v != "" and v is not None})
