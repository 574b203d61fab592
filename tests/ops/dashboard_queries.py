"""Extract the Prometheus queries of a Grafana dashboard, with template variables substituted.

    from tests.ops.dashboard_queries import panel_queries      # or: from .dashboard_queries import ...
    for title, expr in panel_queries("dashboards/kit-overview.json", {"__range": "1h"}):
        ...  # run expr through Prometheus' HTTP API

Variables are taken, in this order, from the `variables` argument, from the dashboard's own
template variables (a multi-value "All" selection becomes its allValue, ".*"; custom variables
their current value), and from Grafana's built-ins with test-friendly defaults ($__range=1h,
$__rate_interval=1m, $__interval=15s, …). A target's own "interval" (Grafana's min interval)
is used for its $__interval. A list value is joined with "|" (regex alternation, as Grafana
formats multi-value variables inside =~ matchers). A variable that cannot be resolved raises
KeyError, so a typo in a dashboard cannot slip through.

Only Prometheus targets are returned (the Tempo TraceQL panels are skipped); rows are walked
into, hidden targets are skipped. Panels with a relative time override ("now/d", "now/M") use
the same $__range as every other panel: pass what the test needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

BUILTIN_DEFAULTS: dict[str, str] = {
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__rate_interval": "1m",
    "__rate_interval_ms": "60000",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__from": "0",
    "__to": "0",
}

_VAR = re.compile(r"\$\{(\w+)(?::([\w]+))?\}|\[\[(\w+)(?::[\w]+)?\]\]|\$(\w+)")


def _load(path_or_dict: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(path_or_dict, Mapping):
        return path_or_dict
    return json.loads(Path(path_or_dict).read_text(encoding="utf-8"))


def iter_panels(panels: Iterable[Mapping[str, Any]] | None) -> Iterable[Mapping[str, Any]]:
    """Every panel, rows included, with the panels nested in (collapsed) rows."""
    for panel in panels or []:
        yield panel
        if panel.get("type") == "row":
            yield from iter_panels(panel.get("panels"))


def dashboard_variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Default values of the dashboard's template variables (datasource variables excluded)."""
    values: dict[str, str] = {}
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") == "datasource":
            continue
        current = (var.get("current") or {}).get("value")
        if isinstance(current, list):
            if "$__all" in current:
                values[var["name"]] = var.get("allValue") or ".*"
            else:
                values[var["name"]] = "|".join(current)
        elif current == "$__all":
            values[var["name"]] = var.get("allValue") or ".*"
        elif current is not None:
            values[var["name"]] = str(current)
        elif var.get("includeAll"):
            values[var["name"]] = var.get("allValue") or ".*"
    return values


def substitute(text: str, values: Mapping[str, Any]) -> str:
    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        if name not in values:
            raise KeyError(f"unresolved dashboard variable ${name} in {text!r}")
        value = values[name]
        # Grafana's ${var:regex} escapes regex metacharacters of the value
        fmt = re.escape if match.group(2) == "regex" else str
        if isinstance(value, (list, tuple)):
            return "|".join(fmt(str(v)) for v in value)
        return fmt(str(value))

    return _VAR.sub(repl, text)


def _is_prometheus(panel: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    ds = target.get("datasource") or panel.get("datasource") or {}
    if isinstance(ds, str):
        return "tempo" not in ds.lower() and bool(target.get("expr"))
    return ds.get("type", "prometheus") == "prometheus" and bool(target.get("expr"))


def panel_query_specs(dashboard_json_path: str | Path | Mapping[str, Any],
                      variables: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Like panel_queries, with more detail per query: title, panel id, refId, expr,
    instant (bool), time_from (the panel's relative time override, if any)."""
    dashboard = _load(dashboard_json_path)
    base = {**BUILTIN_DEFAULTS, **dashboard_variables(dashboard), **(variables or {})}
    specs = []
    for panel in iter_panels(dashboard.get("panels")):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets") or []:
            if target.get("hide") or not _is_prometheus(panel, target):
                continue
            values = dict(base)
            if target.get("interval") and "__interval" not in (variables or {}):
                values["__interval"] = target["interval"]
            specs.append({
                "title": panel.get("title", ""),
                "panel_id": panel.get("id"),
                "ref_id": target.get("refId", ""),
                "expr": substitute(target["expr"], values),
                "instant": bool(target.get("instant")) and not target.get("range", False),
                "time_from": panel.get("timeFrom"),
            })
    return specs


def panel_queries(dashboard_json_path: str | Path | Mapping[str, Any],
                  variables: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """[(panel title, PromQL expression with every variable substituted), ...] in panel order."""
    return [(s["title"], s["expr"]) for s in panel_query_specs(dashboard_json_path, variables)]
