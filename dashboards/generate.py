#!/usr/bin/env python3
"""Generates the kit-otel Grafana dashboards (kit-overview.json, kit-budget.json).

The JSON files are the deliverable (import them, or provision them with dashboards/provisioning);
this script is their source, so the ~50 panels stay consistent: every panel gets a datasource
variable, a unit, a description and a stable id. Edit here, then run

    python3 dashboards/generate.py            # rewrite the JSON files and docs/dashboards.md
    python3 dashboards/generate.py --check    # exit 1 if any of them is out of date

It also writes docs/dashboards.md (every panel: what it shows, its query). tests/ops/
test_dashboards.py runs the check, type-checks both dashboards against @grafana/schema
(dashboards/typecheck) and executes every query against a real Prometheus.

Queries use only the Prometheus exposition names of [design: Metrics](design.md#metrics) (no recording rules, so the
dashboards work on a bare Prometheus that scrapes kit-otel) and aggregate with sum/min/max by
(...), so the labels added by the scrape or the OTel→Prometheus translation (job, instance,
otel_scope_*) never matter. Budget windows are calendar windows in UTC, like the alert rules:
the dashboards use the UTC timezone and "today so far" / "this month so far" panel time ranges.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent

# uids of the data sources in dashboards/provisioning/datasources.yaml
PROM_UID = "kit-prometheus"
TEMPO_UID = "kit-tempo"
PROM = {"type": "prometheus", "uid": "${datasource}"}
TEMPO = {"type": "tempo", "uid": "${tempo}"}

# label filters per metric family (only where the metric has the label)
F_TOKENS = 'project=~"$project", model=~"$model", provider=~"$provider"'
# cost_source: kit (KIT's number) | price_table (notional, where KIT said 0) | unknown
F_COST = F_TOKENS + ', cost_source=~"$cost_source"'
F_LLM = 'model=~"$model", provider=~"$provider"'
F_GENAI = 'gen_ai_request_model=~"$model", gen_ai_provider_name=~"$provider"'
F_PROJECT = 'project=~"$project"'

SCHEMA_VERSION = 41


# ── building blocks ─────────────────────────────────────────────────────────────────────────

def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False,
           table: bool = False, exemplar: bool = False, interval: str | None = None) -> dict:
    t = {
        "datasource": PROM,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "editorMode": "code",
    }
    if table:
        t["format"] = "table"
    if exemplar:
        t["exemplar"] = True
    if interval:
        t["interval"] = interval
    return t


def traceql(query: str, ref: str = "A", limit: int = 20) -> dict:
    return {"datasource": TEMPO, "refId": ref, "queryType": "traceql", "query": query,
            "limit": limit, "tableType": "traces"}


def thresholds(*steps: tuple[str, float | None]) -> dict:
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for color, value in steps]}


GREEN_ONLY = thresholds(("green", None))
BUDGET_RATIO = thresholds(("green", None), ("orange", 0.8), ("red", 1))


def tempo_explore_link(title: str, query: str) -> dict:
    """A panel link that opens Grafana Explore on the Tempo data source with a TraceQL search
    over the dashboard's time range."""
    pane = {"kit": {"datasource": "${tempo}",
                    "queries": [{"refId": "A", "datasource": TEMPO, "queryType": "traceql",
                                 "query": query, "limit": 50, "tableType": "traces"}],
                    "range": {"from": "${__from}", "to": "${__to}"}}}
    encoded = quote(json.dumps(pane, separators=(",", ":")), safe="")
    for var in ("${tempo}", "${__from}", "${__to}", "${project:pipe}", "$expensive_usd",
                "${__field.labels.project}"):  # Grafana interpolates these before opening
        encoded = encoded.replace(quote(var, safe=""), var)
    return {"title": title, "type": "link", "url": f"/explore?schemaVersion=1&panes={encoded}",
            "icon": "external link", "tooltip": "Open the matching turns in Tempo",
            "tags": [], "asDropdown": False, "includeVars": False, "keepTime": False,
            "targetBlank": True}


class Layout:
    """Places panels left to right, wrapping at 24 columns; rows start a new line."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.line_h = 0
        self.next_id = 1

    def _newline(self) -> None:
        self.y += self.line_h
        self.x = 0
        self.line_h = 0

    def row(self, title: str) -> None:
        if self.x:
            self._newline()
        self.panels.append({"type": "row", "id": self.next_id, "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.next_id += 1
        self.y += 1

    def add(self, panel: dict, w: int, h: int) -> dict:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.line_h = max(self.line_h, h)
        self.panels.append(panel)
        return panel


def _base(kind: str, title: str, description: str, targets: list[dict], unit: str,
          custom: dict | None = None, th: dict | None = None, decimals: int | None = None,
          links: list[dict] | None = None, time_from: str | None = None,
          datasource: dict = PROM, min_value: float | None = None) -> dict:
    defaults: dict = {"unit": unit, "color": {"mode": "palette-classic"}, "thresholds": th or GREEN_ONLY,
                      "mappings": []}
    if custom is not None:
        defaults["custom"] = custom
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_value is not None:
        defaults["min"] = min_value
    panel = {"type": kind, "title": title, "description": description, "datasource": datasource,
             "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []}}
    if links:
        panel["links"] = links
    if time_from:
        panel["timeFrom"] = time_from
    return panel


def timeseries(title: str, description: str, targets: list[dict], unit: str, *,
               stack: bool = False, bars: bool = False, links: list[dict] | None = None,
               time_from: str | None = None, legend_calcs: list[str] | None = None,
               th: dict | None = None, min_value: float | None = 0) -> dict:
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else (25 if stack else 10),
        "gradientMode": "none",
        "showPoints": "never",
        "spanNulls": False,
        "axisPlacement": "auto",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    panel = _base("timeseries", title, description, targets, unit, custom=custom, th=th,
                  links=links, time_from=time_from, min_value=min_value)
    panel["options"] = {
        "legend": {"showLegend": True, "displayMode": "table" if legend_calcs else "list",
                   "placement": "bottom", "calcs": legend_calcs or []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def stat(title: str, description: str, targets: list[dict], unit: str, *, th: dict | None = None,
         time_from: str | None = None, decimals: int | None = None, color_mode: str = "value",
         graph: bool = False, links: list[dict] | None = None) -> dict:
    panel = _base("stat", title, description, targets, unit, th=th, time_from=time_from,
                  decimals=decimals, links=links)
    panel["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "auto",
        "colorMode": color_mode,
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "textMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
        "percentChangeColorMode": "standard",
        "text": {},
    }
    return panel


def bargauge(title: str, description: str, targets: list[dict], unit: str, *,
             th: dict | None = None, time_from: str | None = None, max_value: float | None = None,
             decimals: int | None = None, data_links: list[dict] | None = None) -> dict:
    panel = _base("bargauge", title, description, targets, unit, th=th, time_from=time_from,
                  decimals=decimals, min_value=0)
    if data_links:  # per bar: a click opens what belongs to that bar
        panel["fieldConfig"]["defaults"]["links"] = [
            {"title": link["title"], "url": link["url"], "targetBlank": True} for link in data_links]
    panel["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    if max_value is not None:
        panel["fieldConfig"]["defaults"]["max"] = max_value
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "valueMode": "color",
        "namePlacement": "auto",
        "showUnfilled": True,
        "sizing": "auto",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "maxVizHeight": 300,
        "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom", "calcs": []},
        "text": {},
    }
    return panel


def table(title: str, description: str, targets: list[dict], unit: str, *,
          datasource: dict = PROM, transformations: list[dict] | None = None,
          time_from: str | None = None) -> dict:
    panel = _base("table", title, description, targets, unit, datasource=datasource,
                  custom={"align": "auto", "filterable": True}, time_from=time_from)
    panel["options"] = {"showHeader": True, "frameIndex": 0, "cellHeight": "sm"}
    if transformations:
        panel["transformations"] = transformations
    return panel


def q(expr: str) -> str:
    """Normalise whitespace of a multi-line PromQL expression."""
    return " ".join(expr.split())


def spend_to_date(window: str, filters: str = "", by: str = "") -> str:
    """Spend since 00:00 UTC today (window "day") or on the 1st ("month"): the computation of the
    kit:cost_usd:spend_to_date rules (alerts/kit-otel-rules.yaml), on the raw gauge so the panels
    need no ruler. kit_spend_to_date_usd is each kit-otel's exact spend in the current UTC window;
    each series counts with its latest value if that sample was taken inside the window, so a
    gap in delivery delays the number but never loses money, and panel equals alert."""
    sel = f'kit_spend_to_date_usd{{window="{window}"{", " + filters if filters else ""}}}'
    if window == "day":
        taken = f"timestamp({sel}) or last_over_time(timestamp({sel})[1d:10m])"
        current = f"floor(({taken}) / 86400) == scalar(floor(vector(time()) / 86400))"
        value = f"last_over_time({sel}[1d])"
    else:
        taken = f"timestamp({sel}) or last_over_time(timestamp({sel})[31d:1h])"
        current = f"month({taken}) == scalar(month()) and year({taken}) == scalar(year())"
        value = f"last_over_time({sel}[31d])"
    return f"sum{f' by ({by})' if by else ''} ({value} and ({current}))"


# ── shared templating ───────────────────────────────────────────────────────────────────────

def datasource_var(name: str, label: str, plugin: str, default_uid: str, default_name: str) -> dict:
    """Default: the data source provisioned by dashboards/provisioning/datasources.yaml; where
    that uid does not exist Grafana falls back to the first data source of the plugin type."""
    return {"name": name, "label": label, "type": "datasource", "query": plugin, "refresh": 1,
            "hide": 0, "includeAll": False, "multi": False, "regex": "", "options": [],
            "current": {"selected": True, "text": default_name, "value": default_uid}}


def query_var(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": PROM,
            "query": {"query": query, "refId": f"{name}-var"},
            "refresh": 2, "sort": 1, "hide": 0, "includeAll": True, "multi": True,
            "allValue": ".*", "regex": "", "options": [],
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def custom_var(name: str, label: str, values: list[str], default: str) -> dict:
    return {"name": name, "label": label, "type": "custom", "query": ",".join(values), "hide": 0,
            "includeAll": False, "multi": False,
            "options": [{"text": v, "value": v, "selected": v == default} for v in values],
            "current": {"selected": True, "text": default, "value": default}}


# kit_turn_cost_usd bucket bounds (src/kit_otel/model/names.py)
TURN_COST_BUCKETS = ["0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "25"]


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict],
              tags: list[str], time_from: str, links: list[dict]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": variables},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}, ALERT_ANNOTATION]},
        "links": links,
        "panels": panels,
    }


def dash_link(title: str, uid_tag: str) -> dict:
    return {"title": title, "type": "dashboards", "tags": [uid_tag], "asDropdown": False,
            "icon": "external link", "includeVars": True, "keepTime": True, "targetBlank": False,
            "tooltip": ""}


# TraceQL (Tempo only: Jaeger has no TraceQL; see docs/dashboards.md). Every search follows the
# dashboards' $project selection; "expensive" is the $expensive_usd variable, which should equal
# the gateway's tail-sampling threshold (KIT_TAIL_COST_USD, default 0.5).
IN_PROJECT = 'span.kit.project =~ "${project:pipe}"'
TURN_TRACES = f'{{ name = "invoke_agent kit" && {IN_PROJECT} }}'
SLOW_TURNS = f'{{ name = "invoke_agent kit" && duration > 2m && {IN_PROJECT} }}'
EXPENSIVE_TURNS = f'{{ name = "invoke_agent kit" && span.kit.turn.cost_usd > $expensive_usd && {IN_PROJECT} }}'
FAILED_TURNS = f'{{ name = "invoke_agent kit" && status = error && {IN_PROJECT} }}'
FAILED_TOOLS = f'{{ span.gen_ai.operation.name = "execute_tool" && status = error && {IN_PROJECT} }}'
# drill-down: the turns of one project (the clicked bar), with their session and cost
PROJECT_TURNS = ('{ name = "invoke_agent kit" && span.kit.project = "${__field.labels.project}" } '
                 '| select(span.session.id, span.kit.turn.cost_usd)')
SESSION_TURNS = (f'{{ name = "invoke_agent kit" && {IN_PROJECT} }} '
                 '| select(span.session.id, span.kit.project, span.kit.turn.cost_usd)')
EXPENSIVE_CHOICES = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"]
# Firing kit-otel alerts as annotations on every time series panel. Needs the rules loaded
# (alerts/kit-otel-rules.yaml). The Prometheus data source's own annotation fields (expr, step,
# titleFormat, ...), which Grafana migrates into its query editor on load.
ALERT_ANNOTATION = {
    "datasource": PROM, "enable": True, "hide": False, "iconColor": "red", "name": "KIT alerts",
    "expr": 'ALERTS{alertname=~"Kit.*", alertstate="firing"}', "step": "1m",
    "titleFormat": "{{alertname}}", "textFormat": "{{severity}} {{window}} {{scope}} {{project}} {{instance}}",
    "tagKeys": "severity,project", "useValueForTime": False}


def model_cost_table() -> dict:
    """One row per model over the selected range: cost, tokens by type, calls, USD per 1k tokens."""
    rng = "[$__range]"
    cols = [("cost (USD)", f'sum by (model) (increase(kit_cost_usd_total{{{F_COST}}}{rng}))', "currencyUSD")]
    for kind in ("input", "output", "cache_read", "cache_write"):
        cols.append((f"{kind} tokens",
                     f'sum by (model) (increase(kit_tokens_total{{type="{kind}", {F_TOKENS}}}{rng}))', "short"))
    cols.append(("LLM calls", f'sum by (model) (increase(kit_llm_calls_total{{{F_LLM}}}{rng}))', "short"))
    cols.append(("USD per 1k tokens",
                 f'1000 * sum by (model) (increase(kit_cost_usd_total{{{F_COST}}}{rng})) '
                 f'/ sum by (model) (increase(kit_tokens_total{{{F_TOKENS}}}{rng}))', "currencyUSD"))
    refs = "ABCDEFGH"
    panel = table("Cost per model (selected range)",
                  "Per model over the dashboard's selected time range: spend, tokens by type, LLM calls "
                  "and the resulting price per 1000 tokens (all token types).",
                  [target(q(expr), name, refs[i], instant=True, table=True)
                   for i, (name, expr, _) in enumerate(cols)], "short",
                  transformations=[
                      {"id": "merge", "options": {}},
                      {"id": "organize", "options": {
                          "excludeByName": {"Time": True},
                          "renameByName": {f"Value #{refs[i]}": name for i, (name, _, _) in enumerate(cols)}}}])
    panel["fieldConfig"]["overrides"] = [
        {"matcher": {"id": "byName", "options": name},
         "properties": [{"id": "unit", "value": unit}, {"id": "decimals", "value": 4 if "1k" in name else 2}]}
        for name, _, unit in cols if unit == "currencyUSD"]
    return panel


# ── Overview ────────────────────────────────────────────────────────────────────────────────

def overview() -> dict:
    L = Layout()
    usd_per_h = "suffix: USD/h"  # a rate, not an amount: no currency unit

    L.row("Spend")
    L.add(stat("Spend today (UTC)",
               "Spend since 00:00 UTC for the selected projects, models and providers, from "
               "kit_spend_to_date_usd (exact after any gap; the money the budget alerts compare).",
               [target(spend_to_date("day", F_COST), "spend", instant=True)],
               "currencyUSD", time_from="now/d", decimals=2), 4, 4)
    L.add(stat("Today vs global daily budget",
               "All spend today (no filters) divided by the lowest kit_budget_usd{window=\"day\", "
               "scope=\"global\"}. Orange from 80 %, red at 100 %; empty when no daily budget is configured.",
               [target(spend_to_date("day") + ' / min(last_over_time(kit_budget_usd{window="day", scope="global"}[1d]))',
                       "of budget", instant=True)],
               "percentunit", th=BUDGET_RATIO, time_from="now/d", color_mode="background"), 4, 4)
    L.add(stat("Spend this month (UTC)",
               "Spend since 00:00 UTC on the 1st for the selected projects, models and providers "
               "(kit_spend_to_date_usd, like the budget alerts).",
               [target(spend_to_date("month", F_COST), "spend", instant=True)],
               "currencyUSD", time_from="now/M", decimals=2), 4, 4)
    L.add(stat("This month vs global monthly budget",
               "All spend this month divided by the lowest kit_budget_usd{window=\"month\", scope=\"global\"}.",
               [target(spend_to_date("month") + ' / min(last_over_time(kit_budget_usd{window="month", scope="global"}[1d]))',
                       "of budget", instant=True)],
               "percentunit", th=BUDGET_RATIO, time_from="now/M", color_mode="background"), 4, 4)
    L.add(stat("Cost rate now",
               "Current spend rate in USD per hour (selected filters).",
               [target(q(f'sum(rate(kit_cost_usd_total{{{F_COST}}}[$__rate_interval])) * 3600'), "USD/h")],
               usd_per_h, decimals=2, graph=True), 4, 4)
    L.add(stat("Subagent share of spend",
               "Share of the spend made by subagents (agent=\"subagent\") over the dashboard's selected "
               "time range.",
               [target(q(f'sum(increase(kit_cost_usd_total{{agent="subagent", {F_COST}}}[$__range])) '
                         f'/ sum(increase(kit_cost_usd_total{{{F_COST}}}[$__range]))'), "subagents", instant=True)],
               "percentunit"), 4, 4)
    L.add(timeseries("Cost rate by model (USD/hour)",
                     "sum by (model) of the kit_cost_usd_total rate, in USD per hour.",
                     [target(q(f'sum by (model) (rate(kit_cost_usd_total{{{F_COST}}}[$__rate_interval])) * 3600'), "{{model}}")],
                     usd_per_h, stack=True, legend_calcs=["mean", "max"]), 8, 8)
    L.add(timeseries("Cost rate by provider (USD/hour)",
                     "sum by (provider) of the kit_cost_usd_total rate, in USD per hour.",
                     [target(q(f'sum by (provider) (rate(kit_cost_usd_total{{{F_COST}}}[$__rate_interval])) * 3600'), "{{provider}}")],
                     usd_per_h, stack=True, legend_calcs=["mean", "max"]), 8, 8)
    L.add(timeseries("Cost rate by project (USD/hour)",
                     "sum by (project) of the kit_cost_usd_total rate, in USD per hour.",
                     [target(q(f'sum by (project) (rate(kit_cost_usd_total{{{F_COST}}}[$__rate_interval])) * 3600'), "{{project}}")],
                     usd_per_h, stack=True, legend_calcs=["mean", "max"]), 8, 8)
    L.add(timeseries("Cost rate by cost source (USD/hour)",
                     "Whose price each cost is (docs/cost.md): kit = what KIT reported; "
                     "price_table = notional list price (genai-prices) of calls KIT priced at 0, "
                     "e.g. subscription (OAuth) use; unknown = unpriced calls (0).",
                     [target(q(f'sum by (cost_source) (rate(kit_cost_usd_total{{{F_COST}}}[$__rate_interval])) * 3600'), "{{cost_source}}")],
                     usd_per_h, stack=True, legend_calcs=["mean", "max"]), 24, 8)

    L.row("Tokens")
    L.add(timeseries("Tokens by type (tokens/s)",
                     "Token rate split into input, output, cache_read and cache_write.",
                     [target(q(f'sum by (type) (rate(kit_tokens_total{{{F_TOKENS}}}[$__rate_interval]))'), "{{type}}")],
                     "short", stack=True, legend_calcs=["mean", "max"]), 8, 8)
    L.add(timeseries("Tokens by model (tokens/s)",
                     "Token rate (all types) per model.",
                     [target(q(f'sum by (model) (rate(kit_tokens_total{{{F_TOKENS}}}[$__rate_interval]))'), "{{model}}")],
                     "short", stack=True), 8, 8)
    L.add(timeseries("Tokens by project and agent (tokens/s)",
                     "Token rate per project, main agent and subagents separately.",
                     [target(q(f'sum by (project, agent) (rate(kit_tokens_total{{{F_TOKENS}}}[$__rate_interval]))'),
                             "{{project}} {{agent}}")],
                     "short", stack=True), 8, 8)
    L.add(stat("Cache-hit ratio",
               "Share of prompt tokens served from the provider's cache over the dashboard's selected time range: "
               "cache_read / (input + cache_read + cache_write).",
               [target(q(f'sum(increase(kit_tokens_total{{type="cache_read", {F_TOKENS}}}[$__range])) '
                         f'/ sum(increase(kit_tokens_total{{type=~"input|cache_read|cache_write", {F_TOKENS}}}[$__range]))'),
                       "cache hits", instant=True)],
               "percentunit", th=thresholds(("red", None), ("orange", 0.3), ("green", 0.6))), 4, 8)
    L.add(timeseries("Cache-hit ratio by model",
                     "cache_read / (input + cache_read + cache_write) per model over time.",
                     [target(q(f'sum by (model) (rate(kit_tokens_total{{type="cache_read", {F_TOKENS}}}[$__rate_interval])) '
                               f'/ sum by (model) (rate(kit_tokens_total{{type=~"input|cache_read|cache_write", {F_TOKENS}}}[$__rate_interval]))'),
                             "{{model}}")],
                     "percentunit"), 8, 8)
    # today's histogram or, with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental, the
    # newer conventions' own input-token histogram: either name set (or a fleet mixing both) fills it
    input_tokens = (f'rate(gen_ai_client_token_usage_bucket{{gen_ai_token_type="input", {F_GENAI}}}[$__rate_interval]) '
                    f'or rate(gen_ai_client_inference_usage_input_tokens_bucket{{{F_GENAI}}}[$__rate_interval])')
    L.add(timeseries("Token usage per LLM call p50 / p95 (input)",
                     "Input tokens per chat call, cached included: the semantic-convention histogram "
                     "gen_ai.client.token.usage, or gen_ai.client.inference.usage.input_tokens "
                     "where kit-otel runs with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental.",
                     [target(q(f'histogram_quantile(0.5, sum by (le) ({input_tokens}))'), "p50", "A"),
                      target(q(f'histogram_quantile(0.95, sum by (le) ({input_tokens}))'), "p95", "B")],
                     "short"), 12, 8)

    L.add(model_cost_table(), 24, 8)

    L.row("Turns and LLM latency")
    L.add(stat("Turns per minute",
               "Agent turns ended per minute (selected projects).",
               [target(q(f'sum(rate(kit_turns_total{{{F_PROJECT}}}[$__rate_interval])) * 60'), "turns/min")],
               "short", decimals=1, graph=True,
               links=[tempo_explore_link("Turns in Tempo", TURN_TRACES)]), 4, 8)
    L.add(timeseries("Turns per minute by stop reason",
                     "kit_turns_total by stop_reason (stop, tool-calls, length, completed, error …).",
                     [target(q(f'sum by (stop_reason) (rate(kit_turns_total{{{F_PROJECT}}}[$__rate_interval])) * 60'), "{{stop_reason}}")],
                     "short", stack=True,
                     links=[tempo_explore_link("Failed turns in Tempo", FAILED_TURNS)]), 10, 8)
    L.add(timeseries("Turn duration p50 / p95",
                     "kit_turn_duration_seconds quantiles over all turns (the histogram has no project label). "
                     "Exemplars (OTLP through the Collector) link to the turn's trace.",
                     [target(q('histogram_quantile(0.5, sum by (le) (rate(kit_turn_duration_seconds_bucket[$__rate_interval])))'), "p50", "A", exemplar=True),
                      target(q('histogram_quantile(0.95, sum by (le) (rate(kit_turn_duration_seconds_bucket[$__rate_interval])))'), "p95", "B", exemplar=True)],
                     "s", links=[tempo_explore_link("Slow turns in Tempo", SLOW_TURNS)]), 10, 8)
    L.add(timeseries("LLM call latency p50 / p95 by model",
                     "gen_ai.client.operation.duration for chat calls (semantic-convention histogram).",
                     [target(q(f'histogram_quantile(0.5, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_bucket{{gen_ai_operation_name="chat", {F_GENAI}}}[$__rate_interval])))'),
                             "p50 {{gen_ai_request_model}}", "A"),
                      target(q(f'histogram_quantile(0.95, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_bucket{{gen_ai_operation_name="chat", {F_GENAI}}}[$__rate_interval])))'),
                             "p95 {{gen_ai_request_model}}", "B")],
                     "s"), 8, 8)
    L.add(timeseries("Time to first chunk p50 / p95 by model",
                     "gen_ai_client_operation_time_to_first_chunk_seconds: from the start of an LLM call to its first streamed chunk.",
                     [target(q(f'histogram_quantile(0.5, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{F_GENAI}}}[$__rate_interval])))'), "p50 {{gen_ai_request_model}}", "A"),
                      target(q(f'histogram_quantile(0.95, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{F_GENAI}}}[$__rate_interval])))'), "p95 {{gen_ai_request_model}}", "B")],
                     "s"), 8, 8)
    L.add(timeseries("LLM calls per minute by finish reason",
                     "kit_llm_calls_total by finish_reason.",
                     [target(q(f'sum by (finish_reason) (rate(kit_llm_calls_total{{{F_LLM}}}[$__rate_interval])) * 60'), "{{finish_reason}}")],
                     "short", stack=True), 8, 8)
    L.add(timeseries("Turn cost p50 / p95 by project",
                     "kit_turn_cost_usd quantiles per project (bucket resolution). Links to the expensive turns in Tempo.",
                     [target(q(f'histogram_quantile(0.5, sum by (le, project) (rate(kit_turn_cost_usd_bucket{{{F_PROJECT}}}[$__rate_interval])))'), "p50 {{project}}", "A", exemplar=True),
                      target(q(f'histogram_quantile(0.95, sum by (le, project) (rate(kit_turn_cost_usd_bucket{{{F_PROJECT}}}[$__rate_interval])))'), "p95 {{project}}", "B", exemplar=True)],
                     "currencyUSD", links=[tempo_explore_link("Expensive turns in Tempo", EXPENSIVE_TURNS)]), 12, 8)
    L.add(timeseries("Sessions started per hour by project",
                     "kit_sessions_total (extension hot reloads are not counted).",
                     [target(q(f'sum by (project) (rate(kit_sessions_total{{{F_PROJECT}}}[$__rate_interval])) * 3600'), "{{project}}")],
                     "short", stack=True), 12, 8)

    L.row("Tools")
    L.add(timeseries("Tool calls per minute by tool",
                     "kit_tool_calls_total by tool (all outcomes).",
                     [target(q('sum by (tool) (rate(kit_tool_calls_total[$__rate_interval])) * 60'), "{{tool}}")],
                     "short", stack=True), 8, 8)
    L.add(timeseries("Tool error rate by tool",
                     "Share of tool calls with outcome=\"error\" per tool (0 % for a tool that was called "
                     "without errors).",
                     [target(q('(sum by (tool) (rate(kit_tool_calls_total{outcome="error"}[$__rate_interval])) '
                               'or 0 * sum by (tool) (rate(kit_tool_calls_total[$__rate_interval]))) '
                               '/ sum by (tool) (rate(kit_tool_calls_total[$__rate_interval]))'), "{{tool}}")],
                     "percentunit", links=[tempo_explore_link("Failed tool calls in Tempo", FAILED_TOOLS)]), 8, 8)
    L.add(timeseries("Tool latency p95 by tool",
                     "kit_tool_duration_seconds 95th percentile per tool.",
                     [target(q('histogram_quantile(0.95, sum by (le, tool) (rate(kit_tool_duration_seconds_bucket[$__rate_interval])))'), "{{tool}}")],
                     "s"), 8, 8)
    L.add(bargauge("Top tools by calls (selected range)",
                   "The ten most called tools in the selected time range.",
                   [target(q('topk(10, sum by (tool) (increase(kit_tool_calls_total[$__range])))'), "{{tool}}", instant=True)],
                   "short", decimals=0), 12, 8)
    L.add(timeseries("Tool outcomes per minute",
                     "kit_tool_calls_total by outcome: ok, error, blocked (blocked = never executed).",
                     [target(q('sum by (outcome) (rate(kit_tool_calls_total[$__rate_interval])) * 60'), "{{outcome}}")],
                     "short", stack=True), 12, 8)

    L.row("Errors, retries, context, subagents")
    L.add(timeseries("Errors per minute by kind",
                     "kit_errors_total by kind.",
                     [target(q('sum by (kind) (rate(kit_errors_total[$__rate_interval])) * 60'), "{{kind}}")],
                     "short", stack=True, links=[tempo_explore_link("Failed turns in Tempo", FAILED_TURNS)]), 8, 8)
    L.add(timeseries("Retries per minute by kind",
                     "kit_retries_total by kind (LLM request retries).",
                     [target(q('sum by (kind) (rate(kit_retries_total[$__rate_interval])) * 60'), "{{kind}}")],
                     "short", stack=True), 8, 8)
    L.add(timeseries("Compactions per hour",
                     "kit_compactions_total by automatic=\"true\"|\"false\".",
                     [target(q('sum by (automatic) (rate(kit_compactions_total[$__rate_interval])) * 3600'), "automatic={{automatic}}")],
                     "short", stack=True), 8, 8)
    L.add(timeseries("Context usage at compaction p50 / p95 by model",
                     "kit_context_usage_ratio: how full the context window was when a compaction started.",
                     [target(q('histogram_quantile(0.5, sum by (le, model) (rate(kit_context_usage_ratio_bucket{model=~"$model"}[$__rate_interval])))'), "p50 {{model}}", "A"),
                      target(q('histogram_quantile(0.95, sum by (le, model) (rate(kit_context_usage_ratio_bucket{model=~"$model"}[$__rate_interval])))'), "p95 {{model}}", "B")],
                     "percentunit"), 8, 8)
    L.add(timeseries("Cost rate: main agent vs subagents (USD/hour)",
                     "kit_cost_usd_total by agent (main | subagent).",
                     [target(q(f'sum by (agent) (rate(kit_cost_usd_total{{{F_COST}}}[$__rate_interval])) * 3600'), "{{agent}}")],
                     usd_per_h, stack=True), 8, 8)
    L.add(timeseries("Subagent runs per hour by outcome",
                     "kit_subagents_total by outcome (ok | error).",
                     [target(q('sum by (outcome) (rate(kit_subagents_total[$__rate_interval])) * 3600'), "{{outcome}}")],
                     "short", stack=True), 8, 8)

    L.row("Exporter health (kit-otel)")
    L.add(stat("Reporting kit-otel processes",
               "Distinct kit-otel processes (job, instance) with metrics right now.",
               [target(q('count(count by (job, instance) (kit_otel_events_total))'), "processes", instant=True)],
               "short", decimals=0), 4, 8)
    L.add(timeseries("Events processed per second by type",
                     "kit_otel_events_total by type: KIT events kit-otel accepted.",
                     [target(q('sum by (type) (rate(kit_otel_events_total[$__rate_interval]))'), "{{type}}")],
                     "short", stack=True), 8, 8)
    L.add(timeseries("Rejected and dropped events per minute",
                     "kit_otel_events_rejected_total by reason (bad input lines) and kit_otel_dropped_total by "
                     "source (events a source had to drop). Both should stay at zero.",
                     [target(q('sum by (reason) (rate(kit_otel_events_rejected_total[$__rate_interval])) * 60'), "rejected {{reason}}", "A"),
                      target(q('sum by (source) (rate(kit_otel_dropped_total[$__rate_interval])) * 60'), "dropped {{source}}", "B")],
                     "short", th=thresholds(("green", None), ("red", 1))), 6, 8)
    L.add(timeseries("Lag by process",
                     "kit_otel_lag_seconds: age of the newest event each kit-otel process handled "
                     "(grows while idle; matters while events flow).",
                     [target(q('max by (job, instance) (kit_otel_lag_seconds)'), "{{instance}}")],
                     "s"), 6, 8)

    L.row("Traces (Tempo)")
    L.add(table("Recent failed turns",
                "TraceQL search in Tempo: turn spans with status ERROR. Click a trace id to open it.",
                [traceql(FAILED_TURNS)], "none", datasource=TEMPO), 12, 9)
    L.add(table("Expensive turns",
                "TraceQL search in Tempo: turns of the selected projects whose kit.turn.cost_usd is "
                "above $expensive_usd USD (the gateway's tail sampling keeps every turn above "
                "KIT_TAIL_COST_USD, default 0.5).",
                [traceql(EXPENSIVE_TURNS)], "none", datasource=TEMPO), 12, 9)
    L.add(table("Turns by session",
                "TraceQL search in Tempo: recent turns of the selected projects with their session id, "
                "project and cost; open a trace for the turn, filter the session column for a session. "
                "Only turns kept by tail sampling are there (every error and expensive turn).",
                [traceql(SESSION_TURNS, limit=50)], "none", datasource=TEMPO), 24, 9)

    variables = [
        datasource_var("datasource", "Prometheus", "prometheus", PROM_UID, "Prometheus"),
        datasource_var("tempo", "Tempo", "tempo", TEMPO_UID, "Tempo"),
        query_var("project", "Project", "label_values(kit_cost_usd_total, project)"),
        query_var("model", "Model", "label_values(kit_tokens_total, model)"),
        query_var("provider", "Provider", "label_values(kit_tokens_total, provider)"),
        custom_var("expensive_usd", "Expensive turn above (USD)", EXPENSIVE_CHOICES, "0.5"),
        query_var("cost_source", "Cost source", "label_values(kit_cost_usd_total, cost_source)"),
    ]
    return dashboard("kit-overview", "KIT agents — overview",
                     "Cost, tokens, latency, tools, errors and exporter health of KIT coding agents "
                     "(kit-otel). Budget details: KIT agents — budget.",
                     L.panels, variables, ["kit", "kit-otel"], "now-6h",
                     [dash_link("Budget", "kit-otel")])


# ── Budget ──────────────────────────────────────────────────────────────────────────────────

def budget() -> dict:
    L = Layout()
    secs_left_day = "(86400 - time() % 86400)"
    secs_left_month = "scalar((days_in_month() - day_of_month()) * 86400 + 86400 - time() % 86400)"

    L.row("Spend vs budget (UTC calendar windows)")
    L.add(stat("Spend today",
               "All spend since 00:00 UTC (kit_spend_to_date_usd: exact after any gap, the money "
               "KitBudgetExceeded compares).",
               [target(spend_to_date("day"), "today", instant=True)],
               "currencyUSD", time_from="now/d", decimals=2), 4, 5)
    L.add(stat("Daily budget",
               "Lowest kit_budget_usd{window=\"day\", scope=\"global\"} exported by any kit-otel in the "
               "last day (like the rules: a budget stays in force through a gap).",
               [target('min(last_over_time(kit_budget_usd{window="day", scope="global"}[1d]))', "budget", instant=True)],
               "currencyUSD", decimals=2), 4, 5)
    L.add(stat("Today vs daily budget",
               "Spend today divided by the daily global budget.",
               [target(spend_to_date("day") + ' / min(last_over_time(kit_budget_usd{window="day", scope="global"}[1d]))',
                       "of budget", instant=True)],
               "percentunit", th=BUDGET_RATIO, time_from="now/d", color_mode="background"), 4, 5)
    L.add(stat("Spend this month",
               "All spend since 00:00 UTC on the 1st (kit_spend_to_date_usd, like the budget alerts).",
               [target(spend_to_date("month"), "month", instant=True)],
               "currencyUSD", time_from="now/M", decimals=2), 4, 5)
    L.add(stat("Monthly budget",
               "Lowest kit_budget_usd{window=\"month\", scope=\"global\"} seen in the last day.",
               [target('min(last_over_time(kit_budget_usd{window="month", scope="global"}[1d]))', "budget", instant=True)],
               "currencyUSD", decimals=2), 4, 5)
    L.add(stat("This month vs monthly budget",
               "Spend this month divided by the monthly global budget.",
               [target(spend_to_date("month") + ' / min(last_over_time(kit_budget_usd{window="month", scope="global"}[1d]))',
                       "of budget", instant=True)],
               "percentunit", th=BUDGET_RATIO, time_from="now/M", color_mode="background"), 4, 5)
    L.add(bargauge("Projects today vs their daily budget",
                   "Spend today per project divided by that project's kit_budget_usd{window=\"day\", scope=\"project\"} "
                   "(projects without a budget are not shown).",
                   [target(spend_to_date("day", 'project=~"$project"', by="project")
                           + ' / on (project) min by (project) (last_over_time(kit_budget_usd{window="day", scope="project"}[1d]))',
                           "{{project}}", instant=True)],
                   "percentunit", th=BUDGET_RATIO, time_from="now/d", max_value=1.2), 6, 8)
    L.add(bargauge("Projects this month vs their monthly budget",
                   "Spend this month per project divided by its kit_budget_usd{window=\"month\", scope=\"project\"}.",
                   [target(spend_to_date("month", 'project=~"$project"', by="project")
                           + ' / on (project) min by (project) (last_over_time(kit_budget_usd{window="month", scope="project"}[1d]))',
                           "{{project}}", instant=True)],
                   "percentunit", th=BUDGET_RATIO, time_from="now/M", max_value=1.2), 6, 8)
    L.add(bargauge("Models today vs their daily budget",
                   "Spend today per model divided by its kit_budget_usd{window=\"day\", scope=\"model\"}.",
                   [target(spend_to_date("day", "", by="model")
                           + ' / on (model) min by (model) (last_over_time(kit_budget_usd{window="day", scope="model"}[1d]))',
                           "{{model}}", instant=True)],
                   "percentunit", th=BUDGET_RATIO, time_from="now/d", max_value=1.2), 6, 8)
    L.add(bargauge("Models this month vs their monthly budget",
                   "Spend this month per model divided by its kit_budget_usd{window=\"month\", scope=\"model\"}.",
                   [target(spend_to_date("month", "", by="model")
                           + ' / on (model) min by (model) (last_over_time(kit_budget_usd{window="month", scope="model"}[1d]))',
                           "{{model}}", instant=True)],
                   "percentunit", th=BUDGET_RATIO, time_from="now/M", max_value=1.2), 6, 8)
    L.add(table("Configured budgets",
                "Every kit_budget_usd series (window, scope, project, model), lowest value across kit-otel "
                "processes. window=\"turn\" is the limit for a single turn.",
                [target('min by (window, scope, project, model) (kit_budget_usd)', "", instant=True, table=True)],
                "currencyUSD",
                transformations=[{"id": "organize", "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": "budget (USD)"}}}]), 24, 7)

    L.row("Burn rate and projection")
    L.add(timeseries("Burn rate (USD/hour)",
                     "Spend rate now (rate over the panel's interval) and averaged over the last hour and "
                     "the last day, in USD per hour.",
                     [target('sum(rate(kit_cost_usd_total[$__rate_interval])) * 3600', "now", "A"),
                      target('sum(rate(kit_cost_usd_total[1h])) * 3600', "last hour", "B"),
                      target('sum(rate(kit_cost_usd_total[1d])) * 3600', "last day", "C")],
                     "suffix: USD/h"), 12, 8)
    L.add(stat("Projected spend at 24:00 UTC",
               "Spend today + last-hour burn rate × seconds left in the day (what the "
               "KitBudgetProjectedOverrun alert evaluates).",
               [target(q(f'{spend_to_date("day")} + sum(rate(kit_cost_usd_total[1h])) * {secs_left_day}'),
                       "projected", instant=True)],
               "currencyUSD", time_from="now/d", decimals=2), 4, 4)
    L.add(stat("Projected at end of month",
               "Spend this month + last-day burn rate × seconds left in the month.",
               [target(q(f'{spend_to_date("month")} + sum(rate(kit_cost_usd_total[1d])) * {secs_left_month}'),
                       "projected", instant=True)],
               "currencyUSD", time_from="now/M", decimals=2), 4, 4)
    L.add(stat("Projected vs monthly budget",
               "Projected end-of-month spend divided by the monthly global budget.",
               [target(q(f'({spend_to_date("month")} + sum(rate(kit_cost_usd_total[1d])) * {secs_left_month}) '
                         '/ min(kit_budget_usd{window="month", scope="global"})'),
                       "of budget", instant=True)],
               "percentunit", th=BUDGET_RATIO, time_from="now/M", color_mode="background"), 4, 4)
    L.add(stat("Projected vs daily budget",
               "Projected spend at 24:00 UTC divided by the daily global budget.",
               [target(q(f'({spend_to_date("day")} + sum(rate(kit_cost_usd_total[1h])) * {secs_left_day}) '
                         '/ min(kit_budget_usd{window="day", scope="global"})'),
                       "of budget", instant=True)],
               "percentunit", th=BUDGET_RATIO, time_from="now/d", color_mode="background"), 4, 4)
    L.add(stat("Turn limit",
               "kit_budget_usd{window=\"turn\", scope=\"global\"}: the single-turn cost limit of the "
               "KitTurnCostOverLimit alert.",
               [target('min(kit_budget_usd{window="turn", scope="global"})', "limit", instant=True)],
               "currencyUSD", decimals=2,
               links=[tempo_explore_link("Expensive turns in Tempo", EXPENSIVE_TURNS)]), 4, 4)
    L.add(stat("Most expensive turn (bucket bound)",
               "Upper bound of the highest kit_turn_cost_usd bucket that received a turn in the selected range.",
               [target('histogram_quantile(1, sum by (le) (increase(kit_turn_cost_usd_bucket[$__range])))',
                       "max", instant=True)],
               "currencyUSD", decimals=2,
               links=[tempo_explore_link("Expensive turns in Tempo", EXPENSIVE_TURNS)]), 4, 4)
    L.add(stat("Turns above $turn_limit USD (selected range)",
               "Turns that cost more than the bucket bound chosen in the 'Turn limit bucket' variable "
               "(set it to your turn limit; kit_turn_cost_usd buckets are fixed, so the limit should be "
               "one of them). The le matcher accepts both the '1' and the '1.0' spelling of a bound.",
               [target(q('sum(increase(kit_turn_cost_usd_bucket{le="+Inf"}[$__range])) - '
                         'sum(increase(kit_turn_cost_usd_bucket{le=~"${turn_limit:regex}|${turn_limit:regex}\\\\.0"}[$__range]))'),
                       "turns", instant=True)],
               "short", decimals=0, th=thresholds(("green", None), ("red", 1))), 4, 4)
    L.add(timeseries("Daily spend vs daily budget (last 30 days)",
                     "Spend per UTC day (bars; each bar sits at the midnight that ends its day, as Prometheus "
                     "evaluates increase() over the day before the step) and the global daily budget (line).",
                     [target('sum(increase(kit_cost_usd_total[$__interval]))', "spend", "A", interval="1d"),
                      target('min(kit_budget_usd{window="day", scope="global"})', "budget", "B", interval="1d")],
                     "currencyUSD", bars=True, time_from="30d"), 24, 8)

    L.row("Top spenders")
    L.add(bargauge("Top projects (selected range)",
                   "The ten projects that spent the most in the selected time range.",
                   [target(q('topk(10, sum by (project) (increase(kit_cost_usd_total{project=~"$project"}[$__range])))'),
                           "{{project}}", instant=True)],
                   "currencyUSD", decimals=2, data_links=[tempo_explore_link(
                       "Turns of ${__field.labels.project} in Tempo", PROJECT_TURNS)]), 8, 8)
    L.add(bargauge("Top models (selected range)",
                   "The ten models that cost the most in the selected time range.",
                   [target(q('topk(10, sum by (model) (increase(kit_cost_usd_total{project=~"$project"}[$__range])))'),
                           "{{model}}", instant=True)],
                   "currencyUSD", decimals=2), 8, 8)
    L.add(bargauge("Top providers (selected range)",
                   "Spend per provider in the selected time range.",
                   [target(q('sum by (provider) (increase(kit_cost_usd_total{project=~"$project"}[$__range]))'),
                           "{{provider}}", instant=True)],
                   "currencyUSD", decimals=2), 8, 8)
    L.add(bargauge("Spend by team (selected range)",
                   "Spend per `team` resource attribute (OTEL_RESOURCE_ATTRIBUTES=team=... on each "
                   "kit-otel), joined from target_info: one series per kit-otel process, so teams "
                   "never multiply the cost series (docs/cost.md).",
                   [target(q('sum by (team) (increase(kit_cost_usd_total{project=~"$project"}[$__range]) '
                             '* on (job, instance) group_left (team) '
                             'max by (job, instance, team) (target_info{team=~"$team"}))'),
                           "{{team}}", instant=True)],
                   "currencyUSD", decimals=2), 24, 6)
    L.add(timeseries("Cost rate by project (USD/hour)",
                     "sum by (project) of the kit_cost_usd_total rate.",
                     [target(q('sum by (project) (rate(kit_cost_usd_total{project=~"$project"}[$__rate_interval])) * 3600'), "{{project}}")],
                     "suffix: USD/h", stack=True), 12, 8)
    L.add(timeseries("Turn cost p95 by project",
                     "95th percentile of kit_turn_cost_usd per project.",
                     [target(q('histogram_quantile(0.95, sum by (le, project) (rate(kit_turn_cost_usd_bucket{project=~"$project"}[$__rate_interval])))'),
                             "{{project}}", exemplar=True)],
                     "currencyUSD", links=[tempo_explore_link("Expensive turns in Tempo", EXPENSIVE_TURNS)]), 12, 8)

    L.row("Alerts")
    L.add(table("Budget and agent alerts now",
                "ALERTS series of the kit-otel rules (alerts/kit-otel-rules.yaml): pending and firing.",
                [target(q('max by (alertname, alertstate, severity, window, scope, project, model) (ALERTS{alertname=~"Kit.*"})'),
                        "", instant=True, table=True)],
                "none",
                transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}]), 12, 8)
    L.add(timeseries("Firing alerts over time",
                     "Number of firing kit-otel alerts by alert name.",
                     [target(q('count by (alertname) (ALERTS{alertname=~"Kit.*", alertstate="firing"})'), "{{alertname}}")],
                     "short", stack=True, bars=True), 12, 8)

    variables = [
        datasource_var("datasource", "Prometheus", "prometheus", PROM_UID, "Prometheus"),
        datasource_var("tempo", "Tempo", "tempo", TEMPO_UID, "Tempo"),
        query_var("project", "Project", "label_values(kit_cost_usd_total, project)"),
        query_var("team", "Team", "label_values(target_info, team)"),
        custom_var("turn_limit", "Turn limit bucket (USD)", TURN_COST_BUCKETS, "1"),
        custom_var("expensive_usd", "Expensive turn above (USD)", EXPENSIVE_CHOICES, "0.5"),
    ]
    return dashboard("kit-budget", "KIT agents — budget",
                     "Spend against the configured kit_budget_usd budgets (UTC calendar windows), burn "
                     "rate, projections, top spenders and the state of the budget alerts.",
                     L.panels, variables, ["kit", "kit-otel"], "now-24h",
                     [dash_link("Overview", "kit-otel")])


DASHBOARDS = {"kit-overview.json": overview, "kit-budget.json": budget}
DOCS = HERE.parent / "docs" / "dashboards.md"

DOCS_INTRO = """# Dashboards

Two Grafana dashboards ship in `dashboards/`:

| file | uid | what for |
|---|---|---|
| `kit-overview.json` | `kit-overview` | cost, tokens, turns, LLM latency, tools, errors, context, subagents, exporter health, trace search |
| `kit-budget.json` | `kit-budget` | spend against the configured budgets, burn rate, projections, top spenders, alert state |

This page is generated from `dashboards/generate.py` together with the JSON files (so it always
describes exactly what the dashboards query); the tests fail when they drift apart. To change a
panel, edit `generate.py` and run `python3 dashboards/generate.py`.

## Installing

* **Import**: Grafana → Dashboards → New → Import → upload the JSON file; pick a Prometheus and a
  Tempo data source for the `datasource` and `tempo` variables.
* **Provisioning**: copy `dashboards/provisioning/datasources.yaml` to
  `/etc/grafana/provisioning/datasources/` and `dashboards/provisioning/dashboards.yaml` to
  `/etc/grafana/provisioning/dashboards/`, and mount `dashboards/*.json` at
  `/var/lib/grafana/dashboards/kit-otel`. The provisioned data sources have the uids
  `kit-prometheus` and `kit-tempo`, the defaults of the dashboards' variables. The Prometheus data
  source turns exemplars with a `trace_id` into links to Tempo, and Tempo links spans back to the
  cost metrics. kit-otel attaches exemplars (the turn's, LLM call's or tool call's trace and span
  id) to its histogram points in OTLP; they reach Prometheus through the Collector (remote write,
  or its `prometheus` exporter with `enable_open_metrics: true`). kit-otel's own `/metrics` uses
  the plain text format, which carries no exemplars: scraped directly, the panels have no links.
* **Sample interval**: the provisioned Prometheus data source has `timeInterval: 60s`, the push
  interval of kit-otel's OTLP metrics. Grafana's `$__rate_interval` is then at least 4 minutes,
  so rate panels have several samples per window on the remote-write path (with `15s` the window
  was 1 minute and held one sample: every rate panel was empty). On an imported dashboard, set
  the data source's *Scrape interval* to the slowest interval your series have.
* **Alerts**: every dashboard has an annotation "KIT alerts" (`ALERTS{alertname=~"Kit.*",
  alertstate="firing"}`, title = alert name) over its time series panels; it needs the rules of
  `alerts/kit-otel-rules.yaml` loaded into the Prometheus the dashboards query.

## Traces: Tempo only

The trace tables and the panel links search with **TraceQL**, which only Tempo (and Grafana
Cloud Traces) speaks; with Jaeger the trace tables stay empty and the links open an error.
Jaeger users can still follow exemplar links (set the Prometheus data source's exemplar
destination to the Jaeger data source) and search Jaeger by the same attributes: service
`kit-otel`, operation `invoke_agent kit`, tags `kit.project=<project>`,
`kit.turn.cost_usd`, `error=true`.

Every search follows the `project` selection (`span.kit.project =~ "${project:pipe}"`), and
"expensive" means `kit.turn.cost_usd` above the `expensive_usd` variable (default 0.5 USD, the
gateway's `KIT_TAIL_COST_USD`: keep both equal). Drill-down: *Top projects* bars open the turns of
that project in Tempo, with their session id and cost; *Turns by session* lists recent turns with
session id, project and cost.

**What a trace link can find.** Behind the gateway only sampled turns exist in Tempo: every turn
with an error span, every turn above `KIT_TAIL_COST_USD`, every turn slower than
`KIT_TAIL_LATENCY_MS`, and `KIT_TAIL_SAMPLE_PERCENT` (10 %) of the rest. Exemplars are attached
to histogram points before sampling, so an exemplar of a cheap, healthy turn usually points at a
trace that was dropped: most exemplar dots on the latency panels lead to "trace not found". The
links that always resolve are the failed-turn and expensive-turn searches and the exemplars of
the turn-cost panel's high buckets. On the single-node path nothing is sampled and every link
resolves.

## Conventions

* **Metric names** are exactly the Prometheus exposition names of [design: Metrics](design.md#metrics); no recording
  rules are needed for the panels, so the dashboards work on a plain Prometheus that scrapes
  kit-otel (`:9464`) or the Collector (`:8889`), and on Mimir/Thanos fed by the gateway.
* **Aggregation**: every query aggregates (`sum by (…)`, `min`, `max`, `topk`, `histogram_quantile`),
  so the labels added on the way (`job`, `instance`, `otel_scope_name`, `otel_scope_version`,
  `otel_scope_schema_url`) never split a line, and several kit-otel processes add up.
* **Budgets** come from the `kit_budget_usd` gauge (`window` = `day` | `month` | `turn`, `scope` =
  `global` | `project` | `model`); when several kit-otel processes export a budget, the lowest wins
  (`min`), as in the alert rules.
* **Calendar windows in UTC**: the dashboards use the UTC timezone; "today" panels have the panel
  time range *today so far* (`now/d`) and "this month" panels *this month so far* (`now/M`).
  Spend today / this month comes from `kit_spend_to_date_usd` (each kit-otel's exact spend in the
  current UTC window), with the computation of the `kit:cost_usd:spend_to_date` rules: after a
  delivery gap the panel and the budget alert show the same, complete amount (a test evaluates
  both on the same data with a 30-minute gap). Budgets are read with `last_over_time(…[1d])`, as
  the rules do.
* **Selected range**: ratio and share panels (cache-hit ratio, subagent share, per-model cost
  table, top spenders) are computed over the dashboard's selected time range, and say so.
* **Variables**: `datasource` (Prometheus), `tempo` (Tempo), `project`, `model`, `provider`
  (multi-value, "All" = `.*`). A filter is applied only where the metric has the label:
  `project` on kit_cost_usd_total, kit_tokens_total, kit_turns_total, kit_turn_cost_usd,
  kit_sessions_total; `model`/`provider` on kit_cost_usd_total, kit_tokens_total,
  kit_llm_calls_total, and as `gen_ai_request_model` /
  `gen_ai_provider_name` on the semantic-convention histograms. Both provider labels hold the
  same vocabulary, the GenAI conventions' `gen_ai.provider.name` values (`anthropic`, `openai`,
  `gcp.gemini`, `aws.bedrock`, …; KIT's `google` is `gcp.gemini`), so one `provider` selection
  filters every panel. Panels on metrics without those
  labels (turn duration, tools, errors, retries, compactions, subagents, exporter health) always
  show everything.
* **Rates** use `$__rate_interval`; "per minute" / "per hour" panels multiply the per-second rate
  by 60 / 3600.
* **Trace links**: panels about turns carry a panel link that opens Grafana Explore on the Tempo
  data source with a TraceQL search over the dashboard's time range; turn duration and turn cost
  panels request exemplars. The gateway's tail sampling keeps every failed, slow and expensive
  turn, so the failed/expensive searches find them (see "What a trace link can find").
* **Known approximations**: `increase()` cannot count the first increment of a series that appears
  with a non-zero value, and classic histogram quantiles resolve to bucket bounds
  (kit_turn_cost_usd buckets: 0.001 0.005 0.01 0.05 0.1 0.25 0.5 1 2.5 5 10 25 USD).

## Using the queries elsewhere

`tests/ops/dashboard_queries.py` extracts every Prometheus query of a dashboard with the variables
substituted (`panel_queries(path, {"__range": "1h", ...})` → `[(panel title, expr), …]`); the
tests run each one against a Prometheus holding synthetic kit-otel series.
"""


def _panel_doc(panel: dict) -> list[str]:
    lines = [f"#### {panel['title']}", "", panel.get("description", ""), ""]
    facts = [f"type `{panel['type']}`", f"unit `{panel['fieldConfig']['defaults'].get('unit', '')}`"]
    if panel.get("timeFrom"):
        facts.append({"now/d": "time range: today so far (UTC)", "now/M": "time range: this month so far (UTC)"}
                     .get(panel["timeFrom"], f"time range: last {panel['timeFrom']}"))
    for link in panel.get("links") or []:
        facts.append(f"link: {link['title']}")
    lines += ["- " + "; ".join(facts), ""]
    for t in panel.get("targets") or []:
        if "expr" in t:
            label = f"PromQL {t['refId']}" + (f" (legend `{t['legendFormat']}`)" if t.get("legendFormat") not in (None, "", "__auto") else "")
            label += " — instant" if t.get("instant") else ""
            label += f", min interval {t['interval']}" if t.get("interval") else ""
            lines += [f"{label}:", "", "```promql", t["expr"], "```", ""]
        else:
            lines += [f"TraceQL {t['refId']} (Tempo):", "", "```", t["query"], "```", ""]
    return lines


def render_docs() -> str:
    lines = [DOCS_INTRO]
    for name, builder in DASHBOARDS.items():
        d = builder()
        lines += [f"## {d['title']} (`{name}`)", "", d["description"], ""]
        for panel in d["panels"]:
            if panel["type"] == "row":
                lines += [f"### Row: {panel['title']}", ""]
            else:
                lines += _panel_doc(panel)
    return "\n".join(lines).rstrip() + "\n"


def render(builder) -> str:
    return json.dumps(builder(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    args = parser.parse_args(argv)
    outputs = {HERE / name: render(builder) for name, builder in DASHBOARDS.items()}
    outputs[DOCS] = render_docs()
    stale = []
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python3 dashboards/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
