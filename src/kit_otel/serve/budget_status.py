"""Spend against the configured budgets, handed from `serve` to KIT: today's and this month's
spend (UTC calendar windows, like the alert rules) globally and per project, from the LLM calls
serve translates, written to `<spool_dir>/budget-status.json` — the directory bridge and serve
already agree on — so code running inside KIT can read it without asking anybody.

Which cost counts is the user's choice (`budget_cost_sources`, default KIT's own number plus the
notional price of calls KIT priced at 0); the file names it. The file is replaced atomically and
at most once per `write_interval_s`, so a reader never sees a torn file and a busy serve does not
rewrite it per call; it is rewritten at least every `heartbeat_s` and when a new day or month
begins by the wall clock, so an idle serve's file stays fresh and shows the new window at 0.

On start, the spend begins from the translator's spend-to-date ledger as the checkpoints
restored it (`start_from`), not from the file: serve reads the spool again from the last
checkpoint, so a call translated after it — in a turn open at the stop, or while the collector
was down — is added once more; the file's own number already had it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from kit_otel.state.atomic_file import write_atomically
from kit_otel.config import Budget
from kit_otel.model.names import L_COST_SOURCE, L_PROJECT
from kit_otel.translate.instruments import L_WINDOW, spend_windows
from kit_otel.translate.records import LlmCallRecord

log = logging.getLogger("kit_otel.budget_status")

STATUS_FILE = "budget-status.json"
FORMAT_VERSION = 1
ALL_PROJECTS = "*"
_MAX_PROJECTS = 1000  # beyond this, projects fold into "other" (the file stays small)


def _windows(ts_ns: int) -> dict[str, str]:
    """{"day": "2026-12-01", "month": "2026-12"}: the same UTC windows as the spend gauge."""
    return dict(spend_windows(ts_ns))


def _add(totals: dict[str, float], project: str | None, usd: float) -> None:
    """`usd` spent in one window: to its project's total and to all projects'."""
    project = project or "unknown"
    if project not in totals and len(totals) > _MAX_PROJECTS:
        project = "other"
    totals[project] = totals.get(project, 0.0) + usd
    totals[ALL_PROJECTS] = totals.get(ALL_PROJECTS, 0.0) + usd


class BudgetStatus:
    def __init__(self, path: Path, budgets: tuple[Budget, ...],
                 cost_sources: tuple[str, ...] = ("kit", "price_table"),
                 write_interval_s: float = 1.0, heartbeat_s: float = 60.0):
        self.path = path
        self.budgets = budgets
        self.cost_sources = frozenset(cost_sources)
        self.write_interval_s = write_interval_s
        self.heartbeat_s = heartbeat_s
        self.windows = _windows(time.time_ns())
        self.spend: dict[str, dict[str, float]] = {"day": {}, "month": {}}
        self._dirty = True  # the first write says serve is up, even before any spend
        self._written_at: float | None = None
        self._failing = False

    def start_from(self, spend_to_date) -> None:
        """The spend of the current windows as the translator's ledger holds it (a
        `WindowSpend` restored from the checkpoints), in the cost sources counted here."""
        periods, sums = spend_to_date.current()
        self.windows = {window: periods[window] for window in ("day", "month")}
        self.spend = {"day": {}, "month": {}}
        for labels, usd in sums:
            if labels.get(L_COST_SOURCE) not in self.cost_sources or usd <= 0:
                continue
            totals = self.spend.get(labels.get(L_WINDOW))
            if totals is None:
                continue
            _add(totals, labels.get(L_PROJECT), usd)
        self._dirty = True

    def _roll(self, windows: dict[str, str]) -> None:
        for window in ("day", "month"):
            if windows[window] > self.windows[window]:  # a new day (or month) began
                self.windows[window] = windows[window]
                self.spend[window] = {}
                self._dirty = True

    def add_call(self, call: LlmCallRecord) -> None:
        """translator.on_llm_call hook: one LLM call's cost, in the windows of its own time."""
        source = call.cost_source
        if source not in self.cost_sources:
            return
        usd = call.cost if source == "kit" else call.notional_cost
        if usd <= 0:
            return
        windows = _windows(call.ts_ns or time.time_ns())
        self._roll(windows)
        for window in ("day", "month"):
            if windows[window] < self.windows[window]:
                continue  # a late call of a window already over
            _add(self.spend[window], call.project, usd)
        self._dirty = True

    def snapshot(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "written_unix_ms": int(time.time() * 1000),
            "cost_sources": sorted(self.cost_sources),
            "windows": dict(self.windows),
            "spend": {window: dict(totals) for window, totals in self.spend.items()},
            "budgets": [{"window": b.window, "scope": b.scope, "usd": b.usd,
                         **({"project": b.project} if b.project else {}),
                         **({"model": b.model} if b.model else {})} for b in self.budgets],
        }

    def maybe_write(self, now: float | None = None, force: bool = False) -> None:
        now = time.monotonic() if now is None else now
        self._roll(_windows(time.time_ns()))  # midnight passes while nothing is spent too
        since = None if self._written_at is None else now - self._written_at
        due = since is None or (self._dirty and since >= self.write_interval_s) or \
            since >= self.heartbeat_s
        if not (due or force):
            return
        try:
            write_atomically(self.path, json.dumps(self.snapshot(), sort_keys=True).encode())
        except OSError as exc:
            if not self._failing:  # once until it works again, not every second
                log.warning("%s: not written (%s)", self.path, exc.strerror or exc)
            self._failing = True
        else:
            self._failing = False
        self._dirty = False
        self._written_at = now
