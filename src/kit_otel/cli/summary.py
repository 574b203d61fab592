"""The terminal summary: per turn and per model tokens, cost, calls and duration, and the span
tree of the richest turn — what a developer wants to see right after a session."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

from kit_otel.model.names import SPAN_TURN
from kit_otel.translate.records import LlmCallRecord, TurnRecord
from kit_otel.translate.translator import Translator


def _richness(spans: list[ReadableSpan]) -> tuple[int, int]:
    """(span count, nesting depth): of equally large turns, the deeper one shows more."""
    if not spans:
        return (0, 0)
    parents = {s.context.span_id: s.parent.span_id if s.parent else None for s in spans}

    def depth(span_id):
        d = 0
        while parents.get(span_id) is not None and d < 64:
            span_id, d = parents[span_id], d + 1
        return d

    return (len(spans), max(depth(s.context.span_id) for s in spans))


class RichestTurnKeeper(SpanProcessor):
    """Keeps the spans of the turn trace with the most spans, and nothing else for long.

    Memory is bounded: at most `max_open_traces` traces are held while their root is open, each
    up to `max_tree_spans` spans (a tree larger than that is not printable anyway)."""

    def __init__(self, max_open_traces: int = 256, max_tree_spans: int = 2000):
        self._open: dict[int, list[ReadableSpan]] = {}
        self._too_big: set[int] = set()
        self._max_open = max_open_traces
        self._max_spans = max_tree_spans
        self.best: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        trace_id = span.context.trace_id
        if trace_id in self._too_big:
            if span.parent is None:
                self._too_big.discard(trace_id)
            return
        spans = self._open.setdefault(trace_id, [])
        spans.append(span)
        if span.parent is None:
            self._open.pop(trace_id, None)
            if span.name == SPAN_TURN and _richness(spans) > _richness(self.best):
                self.best = spans
        elif len(spans) > self._max_spans:
            del self._open[trace_id]
            if len(self._too_big) < self._max_open:
                self._too_big.add(trace_id)
        elif len(self._open) > self._max_open:  # traces whose root never ends here
            self._open.pop(next(iter(self._open)))

    def shutdown(self) -> None:
        self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass
class _Totals:
    calls: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    cost: float = 0.0
    notional: float = 0.0
    seconds: float = 0.0

    def add(self, tokens, cost: float, notional: float, seconds: float) -> None:
        self.calls += 1
        for i, v in enumerate(tokens):
            self.tokens[i] += v
        self.cost += cost
        self.notional += notional
        self.seconds += seconds


@dataclass
class _ProjectSpend:
    turns: int = 0
    cost: float = 0.0  # KIT's, the turns' own calls
    notional: float = 0.0  # the turns' own calls KIT priced at 0
    with_subagents: float = 0.0  # both, plus every subagent's

    def add(self, own_cost: float, own_notional: float, with_subagents: float) -> None:
        self.turns += 1
        self.cost += own_cost
        self.notional += own_notional
        self.with_subagents += with_subagents


def _turn_spend(turn: TurnRecord) -> tuple[float, float, float]:
    """(KIT's cost, notional cost, both with the subagents') of a turn record."""
    own, notional = turn.aggregate.cost_usd, turn.cost.notional_usd
    inclusive = own + notional + turn.subagent_usage.cost_usd + turn.subagent_cost.notional_usd
    return own, notional, inclusive


class Summary:
    """Totals of a stream, in memory bounded by what is printed: the first `max_turns` turn
    rows, a count of the others, totals per (provider, model, agent) and one span tree."""

    def __init__(self, translator: Translator, keeper: RichestTurnKeeper, max_turns: int = 40):
        self.turns: list[TurnRecord] = []
        self.turn_count = 0
        self.sessions: set[str] = set()
        self.max_turns = max_turns
        self.models: dict[tuple[str, str, str], _Totals] = defaultdict(_Totals)
        self.projects: dict[str, _ProjectSpend] = defaultdict(_ProjectSpend)  # every turn's
        self.keeper = keeper
        self.translator = translator
        translator.on_turn_end.append(self._turn_end)
        translator.on_llm_call.append(self._llm_call)

    def _turn_end(self, turn: TurnRecord) -> None:
        self.turn_count += 1
        self.sessions.add(turn.session_id)
        self.projects[turn.project].add(*_turn_spend(turn))
        if len(self.turns) < self.max_turns:
            self.turns.append(turn)

    def _llm_call(self, call: LlmCallRecord) -> None:
        self.models[(call.provider, call.model, call.agent)].add(
            call.tokens, call.cost, call.notional_cost, call.duration_ns / 1e9)

    def render(self, max_turns: int = 40) -> str:
        t = self.translator
        out = [f"kit-otel summary: {len(self.sessions)} session(s), {self.turn_count} turn(s), "
               f"{t.events_seen} event(s), {t.rejected} rejected line(s)", ""]
        out.append("Per turn")
        head = (f"  {'session':<12} {'project':<12} {'stop':<11} {'dur s':>7} {'LLM':>4} "
                f"{'tools':>5} {'input':>8} {'output':>7} {'cache_r':>8} {'cache_w':>7} "
                f"{'cost $':>9} {'notional $':>10} {'w/ subag $':>10}")
        out.append(head)
        for turn in self.turns[:max_turns]:
            a = turn.aggregate
            _, notional, inclusive = _turn_spend(turn)
            # the end of an id tells sessions apart (file-name ids all start with the date)
            out.append(f"  {turn.session_id[-12:]:<12} {turn.project[:12]:<12} "
                       f"{turn.stop_reason[:11]:<11} {a.duration_ms / 1000:>7.2f} "
                       f"{a.llm_call_count:>4} {a.tool_call_count:>5} {a.input_tokens:>8} "
                       f"{a.output_tokens:>7} {a.cache_read_tokens:>8} "
                       f"{a.cache_write_tokens:>7} {a.cost_usd:>9.4f} {notional:>10.4f} "
                       f"{inclusive:>10.4f}")
        shown = min(max_turns, len(self.turns))
        if self.turn_count > shown:
            out.append(f"  … {self.turn_count - shown} more turn(s)")
        out.append("  cost $: KIT's, the turn's own calls (subagents apart, as KIT's AgentEnd)"
                   "; notional $: list price of the calls KIT priced at 0")
        out.append("  w/ subag $: both, with the turn's subagents (see docs/cost.md)")
        out += ["", "Per project"]
        out.append(f"  {'project':<24} {'turns':>5} {'cost $':>9} {'notional $':>10} "
                   f"{'w/ subag $':>10}")
        for name, p in sorted(self.projects.items()):
            out.append(f"  {name[:24]:<24} {p.turns:>5} {p.cost:>9.4f} {p.notional:>10.4f} "
                       f"{p.with_subagents:>10.4f}")
        out += ["", "Per model (LLM calls, subagents apart)"]
        out.append(f"  {'provider/model':<42} {'agent':<8} {'calls':>5} {'input':>9} "
                   f"{'output':>8} {'cache_r':>9} {'cache_w':>8} {'cost $':>9} "
                   f"{'notional $':>10} {'LLM s':>7}")
        total = _Totals()
        for (provider, model, agent), m in sorted(self.models.items()):
            out.append(f"  {(provider + '/' + model)[:42]:<42} {agent:<8} {m.calls:>5} "
                       f"{m.tokens[0]:>9} {m.tokens[1]:>8} {m.tokens[2]:>9} {m.tokens[3]:>8} "
                       f"{m.cost:>9.4f} {m.notional:>10.4f} {m.seconds:>7.1f}")
            total.calls += m.calls
            total.tokens = [a + b for a, b in zip(total.tokens, m.tokens)]
            total.cost += m.cost
            total.notional += m.notional
            total.seconds += m.seconds
        out.append(f"  {'total':<42} {'':<8} {total.calls:>5} {total.tokens[0]:>9} "
                   f"{total.tokens[1]:>8} {total.tokens[2]:>9} {total.tokens[3]:>8} "
                   f"{total.cost:>9.4f} {total.notional:>10.4f} {total.seconds:>7.1f}")
        if self.keeper.best:
            out += ["", "Span tree of the richest turn", *render_tree(self.keeper.best)]
        return "\n".join(out)


def render_tree(spans: list[ReadableSpan]) -> list[str]:
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    ids = {s.context.span_id for s in spans}
    for s in spans:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children[parent].append(s)
    for group in children.values():
        group.sort(key=lambda s: s.start_time or 0)
    lines: list[str] = []

    def describe(s: ReadableSpan) -> str:
        a = s.attributes or {}
        ms = ((s.end_time or 0) - (s.start_time or 0)) / 1e6
        bits = [f"{ms:.0f} ms"]
        if "gen_ai.usage.input_tokens" in a:
            bits.append(f"in={a['gen_ai.usage.input_tokens']} out={a['gen_ai.usage.output_tokens']}")
        for key, label in (("kit.cost.usd", "$"), ("kit.turn.cost_usd", "$"),
                           ("kit.cost.notional_usd", "notional $"),
                           ("kit.turn.cost.notional_usd", "notional $")):
            if key in a:
                bits.append(f"{label}{a[key]:.4f}")
        if a.get("kit.turn.subagent_count"):
            bits.append(f"with subagents ${a['kit.turn.inclusive.cost_usd']:.4f}")
        if "kit.turn.stop_reason" in a:
            bits.append(f"stop={a['kit.turn.stop_reason']}")
        if a.get("kit.tool.blocked"):
            bits.append("blocked")
        if s.status.status_code is StatusCode.ERROR:
            bits.append("ERROR" + (f": {s.status.description[:60]}" if s.status.description else ""))
        if s.events:
            bits.append(f"{len(s.events)} event(s)")
        return f"{s.name}  [{', '.join(bits)}]"

    def walk(s: ReadableSpan, prefix: str, last: bool, root: bool) -> None:
        lines.append("  " + (prefix + ("└─ " if last else "├─ ") if not root else "") + describe(s))
        kids = children.get(s.context.span_id, [])
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("" if root else ("   " if last else "│  ")), i == len(kids) - 1,
                 False)

    for root in children.get(None, []):
        walk(root, "", True, True)
    return lines
