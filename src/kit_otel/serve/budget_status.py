"""Spend against the configured budgets, handed from `serve` to KIT: today's and this month's
spend (UTC calendar windows, like the alert rules) globally and per project, from the LLM calls
serve translates, written to `<spool_dir>/budget-status.json` — the directory bridge and serve
already agree on — so code running inside KIT can read it without asking anybody.

Which cost counts is the user's choice (`budget_cost_sources`, default KIT's own number plus the
notional price of calls KIT priced at 0); the file names it. The file is replaced atomically and
at most once per `write_interval_s`, so a reader never sees a torn file and a busy serve does not
rewrite it per call. On start, a file of the current windows is read back: a restart keeps
today's spend.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from kit_otel.state.atomic_file import write_atomically
from kit_otel.config import Budget
from kit_otel.translate.records import LlmCallRecord

log = logging.getLogger("kit_otel.budget_status")

STATUS_FILE = "budget-status.json"
FORMAT_VERSION = 1
ALL_PROJECTS = "*"
_MAX_PROJECTS = 1000  # beyond this, projects fold into "other" (the file stays small)


def _windows(ts_ns: int) -> dict[str, str]:
    day = datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc)
    return {"day": day.strftime("%Y-%m-%d"), "month": day.strftime("%Y-%m")}


class BudgetStatus:
    def __init__(self, path: Path, budgets: tuple[Budget, ...],
                 cost_sources: tuple[str, ...] = ("kit", "price_table"),
                 write_interval_s: float = 1.0):
        self.path = path
        self.budgets = budgets
        self.cost_sources = frozenset(cost_sources)
        self.write_interval_s = write_interval_s
        self.windows = _windows(time.time_ns())
        self.spend: dict[str, dict[str, float]] = {"day": {}, "month": {}}
        self._dirty = True  # the first write says serve is up, even before any spend
        self._written_at = 0.0
        self._failing = False
        self._restore()

    def _restore(self) -> None:
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("%s: not read back (%s); spend starts at 0", self.path, exc)
            return
        if not isinstance(saved, dict) or saved.get("version") != FORMAT_VERSION:
            return
        spend = saved.get("spend") if isinstance(saved.get("spend"), dict) else {}
        windows = saved.get("windows") if isinstance(saved.get("windows"), dict) else {}
        for window in ("day", "month"):
            values = spend.get(window)
            if windows.get(window) == self.windows[window] and isinstance(values, dict):
                self.spend[window] = {str(k): float(v) for k, v in values.items()
                                      if isinstance(v, (int, float)) and v >= 0}

    def add_call(self, call: LlmCallRecord) -> None:
        """translator.on_llm_call hook: one LLM call's cost, in the windows of its own time."""
        source = call.cost_source
        if source not in self.cost_sources:
            return
        usd = call.cost if source == "kit" else call.notional_cost
        if usd <= 0:
            return
        windows = _windows(call.ts_ns or time.time_ns())
        for window in ("day", "month"):
            if windows[window] > self.windows[window]:  # a new day (or month) began
                self.windows[window] = windows[window]
                self.spend[window] = {}
            elif windows[window] < self.windows[window]:
                continue  # a late call of a window already over
            totals = self.spend[window]
            project = call.project or "unknown"
            if project not in totals and len(totals) > _MAX_PROJECTS:
                project = "other"
            totals[project] = totals.get(project, 0.0) + usd
            totals[ALL_PROJECTS] = totals.get(ALL_PROJECTS, 0.0) + usd
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
        if not (self._dirty or force) or (not force and now - self._written_at <
                                          self.write_interval_s):
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
