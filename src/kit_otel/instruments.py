"""The OTel instruments of DESIGN.md §5, created from `names`, with bounded label cardinality."""

from __future__ import annotations

from opentelemetry.metrics import Meter

from . import names as n


class BoundedValues:
    """Label values beyond `limit` distinct ones fold into `other`, so a misbehaving stream (or
    thousands of MCP tools) cannot blow up the metric backend."""

    __slots__ = ("limit", "_seen")

    def __init__(self, limit: int):
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return n.OTHER
        self._seen.add(value)
        return value


class KitInstruments:
    def __init__(self, meter: Meter, *, max_tools: int = 100, max_models: int = 100,
                 max_event_types: int = 100):
        self.tool_value = BoundedValues(max_tools)
        self.model_value = BoundedValues(max_models)
        self.event_type_value = BoundedValues(max_event_types)
        made = {}
        for spec in n.ALL_METRICS:
            if spec.kind == "counter":
                made[spec] = meter.create_counter(spec.otel_name, unit=spec.unit,
                                                  description=spec.description)
            elif spec.kind == "histogram":
                made[spec] = meter.create_histogram(
                    spec.otel_name, unit=spec.unit, description=spec.description,
                    explicit_bucket_boundaries_advisory=list(spec.buckets or ()) or None)
            else:
                made[spec] = meter.create_gauge(spec.otel_name, unit=spec.unit,
                                                description=spec.description)
        self.tokens = made[n.TOKENS]
        self.cost = made[n.COST]
        self.llm_calls = made[n.LLM_CALLS]
        self.token_usage = made[n.TOKEN_USAGE]
        self.operation_duration = made[n.OPERATION_DURATION]
        self.time_to_first_chunk = made[n.TIME_TO_FIRST_CHUNK]
        self.turns = made[n.TURNS]
        self.turn_duration = made[n.TURN_DURATION]
        self.turn_cost = made[n.TURN_COST]
        self.tool_calls = made[n.TOOL_CALLS]
        self.tool_duration = made[n.TOOL_DURATION]
        self.errors = made[n.ERRORS]
        self.retries = made[n.RETRIES]
        self.compactions = made[n.COMPACTIONS]
        self.context_usage = made[n.CONTEXT_USAGE]
        self.subagents = made[n.SUBAGENTS]
        self.sessions = made[n.SESSIONS]
        self.budget = made[n.BUDGET]
        self.ext_state_value = made[n.EXT_STATE_VALUE]
        self.events = made[n.OTEL_EVENTS]
        self.rejected = made[n.OTEL_REJECTED]
        self.dropped = made[n.OTEL_DROPPED]
        self.lag = made[n.OTEL_LAG]
