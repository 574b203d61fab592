"""The OTel instruments of DESIGN.md §5, created from `names`, with bounded label cardinality."""

from __future__ import annotations

import logging
import threading
from typing import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import names as n

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
