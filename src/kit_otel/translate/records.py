"""What the translator tells its hooks (the terminal summary): one record per finished turn and
per LLM call whose usage was counted, typed so that a consumer reads fields, not dict keys."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace

from kit_otel.translate.aggregate import TurnAggregate
from kit_otel.translate.pricing import RunCost


@dataclass(frozen=True, slots=True)
class TurnRecord:
    session_id: str
    project: str
    stop_reason: str  # completed, error, cancelled, incomplete, or KIT's own
    provider: str
    model: str
    aggregate: TurnAggregate  # KIT's AgentEnd when it reported one, else computed
    cost: RunCost  # provenance and notional spend of the turn's own calls
    subagent_usage: TurnAggregate  # its subagents' child agents, which KIT's AgentEnd leaves out
    subagent_cost: RunCost
    start_ns: int
    end_ns: int
    span: trace.Span


@dataclass(frozen=True, slots=True)
class LlmCallRecord:
    provider: str
    model: str
    agent: str  # "main" | "subagent"
    tokens: tuple[int, int, int, int]  # input (uncached), output, cache read, cache write
    cost: float  # KIT's
    cost_source: str  # kit | price_table | unknown
    notional_cost: float  # list price where KIT reported 0
    duration_ns: int
    ts_ns: int  # when the call ended
    project: str
