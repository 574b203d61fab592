"""The per-turn aggregate KIT reports in its enriched `agent_end` (tool calls, LLM calls, tokens,
cost, duration), computed from the events of a turn for sources that do not report it.

It follows KIT's own turn aggregator: a tool call is counted at its `tool_result` (blocked ones
too), tool names are kept in that order with repeats, an LLM call is one finished step, and the
duration runs from the start of the agent loop to `agent_end`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kit_otel.model.events import AgentEnd


DURATION_TOLERANCE_MS = 50


@dataclass
class TurnAggregate:
    tool_call_count: int = 0
    tool_names: list[str] = field(default_factory=list)
    llm_call_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int = 0

    def add_tool(self, name: str) -> None:
        self.tool_call_count += 1
        if name:
            self.tool_names.append(name)

    def add_llm_call(self, input_tokens: int, output_tokens: int, cache_read: int,
                     cache_write: int, cost: float) -> None:
        self.llm_call_count += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cache_read_tokens += cache_read
        self.cache_write_tokens += cache_write
        self.cost_usd += cost

    def add_usage_of(self, other: "TurnAggregate") -> None:
        """Another agent loop's LLM usage (a subagent's), for totals that include it."""
        self.llm_call_count += other.llm_call_count
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cost_usd += other.cost_usd

    @classmethod
    def from_agent_end(cls, end: AgentEnd) -> "TurnAggregate":
        return cls(tool_call_count=end.ToolCallCount, tool_names=list(end.ToolNames or ()),
                   llm_call_count=end.LLMCallCount, input_tokens=end.InputTokensDelta,
                   output_tokens=end.OutputTokensDelta,
                   cache_read_tokens=end.CacheReadTokensDelta,
                   cache_write_tokens=end.CacheWriteTokensDelta, cost_usd=end.CostDelta,
                   duration_ms=end.DurationMs)

    def agrees_with(self, other: "TurnAggregate") -> bool:
        """Equal up to float rounding of cost (sums in another order), the order of tool names
        (parallel tools finish in any order) and DURATION_TOLERANCE_MS of duration: KIT times the
        turn from its own TurnStart listener to its TurnEnd listener, a few ms off the events'
        timestamps (3-8 ms measured in KIT's runtime)."""
        return (self.tool_call_count == other.tool_call_count
                and sorted(self.tool_names) == sorted(other.tool_names)
                and self.llm_call_count == other.llm_call_count
                and self.input_tokens == other.input_tokens
                and self.output_tokens == other.output_tokens
                and self.cache_read_tokens == other.cache_read_tokens
                and self.cache_write_tokens == other.cache_write_tokens
                and abs(self.cost_usd - other.cost_usd) < 1e-9
                and abs(self.duration_ms - other.duration_ms) <= DURATION_TOLERANCE_MS)


def has_enriched_fields(end: AgentEnd) -> bool:
    """Older KIT, ACP and Python sources send agent_end without the aggregate: all zeros."""
    return bool(end.DurationMs or end.LLMCallCount or end.ToolCallCount or end.ToolNames
                or end.InputTokensDelta or end.OutputTokensDelta or end.CostDelta)
