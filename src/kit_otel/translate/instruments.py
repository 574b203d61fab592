"""The OTel instruments of docs/design.md#metrics, created from `names`, with bounded label cardinality."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from kit_otel.model import names as n

LabelKey = frozenset  # frozenset of (label, value) pairs
_INT64_LIMIT = 1 << 63
_log = logging.getLogger("kit_otel")


class LedgerCounter:
    """A monotonic counter kept as plain sums per label set and reported through an OTel
    ObservableCounter at each collection.

    Why: a synchronous SDK counter costs ~15 µs per `add` (attribute hashing, locks, views)
    and kit-otel adds several per LLM call and one per event; a dict update costs a fraction of
    that, and the exported numbers are the same cumulative sums. The ledger is also what a
    checkpoint saves and restores, so totals survive a restart exactly."""

    __slots__ = ("name", "_sums", "_lock")

    def __init__(self, meter: Meter, spec: n.MetricSpec):
        self.name = spec.otel_name
        self._sums: dict[LabelKey, float] = {}
        self._lock = threading.Lock()
        meter.create_observable_counter(spec.otel_name, callbacks=[self._observe],
                                        unit=spec.unit, description=spec.description)

    def add(self, amount: float, attributes: dict | None = None) -> None:
        key = frozenset(attributes.items()) if attributes else frozenset()
        with self._lock:
            self._sums[key] = self._sums.get(key, 0) + amount

    def add_key(self, key: LabelKey, amount: float) -> None:
        """`add` for a caller that keeps its label sets frozen (hot paths)."""
        with self._lock:
            self._sums[key] = self._sums.get(key, 0) + amount

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._sums.items())
        return [Observation(value, dict(key)) for key, value in items]

    def totals(self) -> dict[LabelKey, float]:
        with self._lock:
            return dict(self._sums)

    def restore(self, totals: dict[LabelKey, float]) -> None:
        """Add saved totals (a restarted process continues where the last one stopped).

        A saved total OTLP cannot carry (beyond int64, negative, not a number: written before
        counts were bounded at decode time) is left behind, or it would fail every export of
        this counter again after every restart."""
        with self._lock:
            for key, value in totals.items():
                if not 0 <= value < _INT64_LIMIT:  # also False for NaN
                    _log.warning("%s: a saved total of %r cannot be exported; starting that "
                                 "series from 0", self.name, value)
                    continue
                self._sums[key] = self._sums.get(key, 0) + value


L_WINDOW = "window"
L_PERIOD = "period"  # internal: which calendar window a sum belongs to, never exported


def spend_windows(ts_ns: int) -> tuple[tuple[str, str], ...]:
    """(window, period) pairs of a UTC instant: ("day", "2026-12-01"), ("month", "2026-12")."""
    day = time.strftime("%Y-%m-%d", time.gmtime(ts_ns // 1_000_000_000))  # (not /1e9: rounds up)
    return (("day", day), ("month", day[:7]))


class WindowSpend(LedgerCounter):
    """Spend per UTC day and month, reported as a gauge of the current window's sum.

    Why not let the rules derive it from kit_cost_usd_total: PromQL has no "since 00:00 UTC"
    range, and summing recorded rates loses whatever arrived late or not at all (a scrape or
    remote-write gap). kit-otel knows each call's time and cost, so the gauge it reports after a
    gap is the exact spend of the window. Sums are ledger entries keyed by their window and period
    (so checkpoints save and restore them like any counter); only the current periods, by the
    wall clock, are reported, and older ones are dropped."""

    __slots__ = ("_clock",)

    def __init__(self, meter: Meter, spec: n.MetricSpec, clock: Callable[[], float] = time.time):
        self.name = spec.otel_name
        self._sums = {}
        self._lock = threading.Lock()
        self._clock = clock
        meter.create_observable_gauge(spec.otel_name, callbacks=[self._observe], unit=spec.unit,
                                      description=spec.description)

    @staticmethod
    def keys(ts_ns: int, labels: dict) -> tuple[LabelKey, ...]:
        """The ledger keys an amount spent at `ts_ns` adds to (one per window)."""
        return tuple(frozenset({**labels, L_WINDOW: window, L_PERIOD: period}.items())
                     for window, period in spend_windows(ts_ns))

    def _current(self) -> frozenset:
        return frozenset(spend_windows(int(self._clock() * 1e9)))

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        current = self._current()
        with self._lock:
            for key in [k for k in self._sums if self._is_past(k, current)]:
                del self._sums[key]
            items = list(self._sums.items())
        out = []
        for key, value in items:
            labels = dict(key)
            if (labels[L_WINDOW], labels.pop(L_PERIOD)) in current:
                out.append(Observation(value, labels))
        return out

    @staticmethod
    def _is_past(key: LabelKey, current: frozenset) -> bool:
        labels = dict(key)
        window, period = labels.get(L_WINDOW), labels.get(L_PERIOD, "")
        return not any(w == window and period >= p for w, p in current)

    def restore(self, totals: dict[LabelKey, float]) -> None:
        current = self._current()
        super().restore({k: v for k, v in totals.items() if not self._is_past(k, current)})

    def current(self) -> tuple[dict[str, str], list[tuple[dict, float]]]:
        """The current periods by the wall clock ({window: period}) and the sums of each, with
        their labels (the window's among them, the period's not): what the gauge reports."""
        periods = dict(self._current())
        with self._lock:
            items = list(self._sums.items())
        out = []
        for key, value in items:
            labels = dict(key)
            if periods.get(labels.get(L_WINDOW)) == labels.pop(L_PERIOD, None):
                out.append((labels, value))
        return periods, out


class BoundedValues:
    """Label values beyond `limit` distinct ones fold into `other`, so a misbehaving stream (or
    thousands of MCP tools) cannot blow up the metric backend."""

    __slots__ = ("limit", "_seen", "_reserved")

    def __init__(self, limit: int):
        self.limit = limit
        self._seen: set[str] = set()
        self._reserved: frozenset[str] = frozenset()

    def reserve(self, values) -> None:
        """Values that always keep their own label, beyond the limit too: the projects and
        models a budget names (folded into `other`, a budget's spend could never be compared)."""
        self._reserved = self._reserved | frozenset(v for v in values if v)

    def __call__(self, value: str) -> str:
        if value in self._seen or value in self._reserved:
            return value
        if len(self._seen) >= self.limit:
            return n.OTHER
        self._seen.add(value)
        return value

    def values(self) -> list[str]:
        """The values let through so far (a checkpoint saves them, so that after a restart the
        same values fold into `other`)."""
        return sorted(self._seen.copy())

    def admit(self, values: list[str]) -> None:
        """Let these values through again, as far as the limit allows."""
        self._seen.update(values[: max(self.limit - len(self._seen), 0)])


class KitInstruments:
    def __init__(self, meter: Meter, *, max_tools: int = 100, max_models: int = 100,
                 max_event_types: int = 100, max_projects: int = 100,
                 gen_ai_latest: bool = False):
        self.tool_value = BoundedValues(max_tools)
        self.model_value = BoundedValues(max_models)
        # the project label is a cwd basename: CI workspaces make a new one per job
        self.project_value = BoundedValues(max_projects)
        self.event_type_value = BoundedValues(max_event_types)
        made = {}
        self.gen_ai_latest = gen_ai_latest
        for spec in n.metric_set(gen_ai_latest):
            if spec.kind == "counter":
                made[spec] = LedgerCounter(meter, spec)
            elif spec.kind == "window_spend":
                made[spec] = WindowSpend(meter, spec)
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
        # one of the two: the default token histogram, or the newer conventions' split pair
        self.token_usage = made.get(n.TOKEN_USAGE)
        self.inference_input_tokens = made.get(n.INFERENCE_INPUT_TOKENS)
        self.inference_output_tokens = made.get(n.INFERENCE_OUTPUT_TOKENS)
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
        self.spend_to_date = made[n.SPEND_TO_DATE]
        self.ext_state_value = made[n.EXT_STATE_VALUE]
        self.events = made[n.OTEL_EVENTS]
        self.rejected = made[n.OTEL_REJECTED]
        self.dropped = made[n.OTEL_DROPPED]
        self.dead_lettered = made[n.OTEL_DEAD_LETTERED]
        self.lag = made[n.OTEL_LAG]

    def counters(self) -> list[LedgerCounter]:
        return [v for v in vars(self).values() if isinstance(v, LedgerCounter)]

    def counter_totals(self) -> dict[str, dict[LabelKey, float]]:
        """Every counter's sums, by OTel instrument name (for checkpoints)."""
        return {c.name: c.totals() for c in self.counters()}

    def restore_counter_totals(self, saved: dict[str, dict[LabelKey, float]]) -> None:
        for counter in self.counters():
            if counter.name in saved:
                counter.restore(saved[counter.name])
