"""Grafana dashboards and provisioning (issue 6, part 3).

1. dashboards/*.json are what dashboards/generate.py produces (no hand edits drift away).
2. Type check against Grafana's published schema: dashboards/typecheck embeds each JSON into a
   .ts file typed with @grafana/schema's Dashboard and the panel plugins' option types, then
   `tsc --noEmit --strict`.
3. Structure: unique ids, non-overlapping grid, a datasource, a query, a unit and a description
   on every panel, only docs/design.md#metrics metric names, only defined variables, Tempo trace links.
4. Every Prometheus query runs on a real Prometheus (backfilled with synthetic kit-otel series)
   and returns data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from ._common import (CONTRACT_SERIES, DASHBOARDS_DIR, backfilled_prometheus, get_json, load_yaml,
                      promql_metric_names)
from .dashboard_queries import BUILTIN_DEFAULTS, iter_panels, panel_queries, panel_query_specs

DASHBOARD_FILES = ("kit-overview.json", "kit-budget.json")
TYPECHECK = DASHBOARDS_DIR / "typecheck"
PROVISIONING = DASHBOARDS_DIR / "provisioning"
GRID_WIDTH = 24


def _load(name: str) -> dict:
    return json.loads((DASHBOARDS_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=DASHBOARD_FILES)
def dash(request):
    return request.param, _load(request.param)


def _panels(dashboard):
    return [p for p in iter_panels(dashboard["panels"]) if p.get("type") != "row"]


# ── 1. generated ─────────────────────────────────────────────────────────────────────────────

def test_json_matches_generator():
    proc = subprocess.run([sys.executable, str(DASHBOARDS_DIR / "generate.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ── 2. Grafana schema types ──────────────────────────────────────────────────────────────────

def test_typecheck_against_grafana_schema():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed (Debian package npm; scripts/test.sh installs it)")
    if not (TYPECHECK / "node_modules" / "@grafana" / "schema").is_dir():
        proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=TYPECHECK,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"npm install failed:\n{proc.stdout}\n{proc.stderr}"
    gen = subprocess.run([node, "gen.mjs"], cwd=TYPECHECK, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    generated = sorted(p.name for p in (TYPECHECK / "generated").glob("*.ts"))
    assert generated == sorted(n.replace("-", "_").replace(".json", ".ts") for n in DASHBOARD_FILES)
    tsc = TYPECHECK / "node_modules" / ".bin" / "tsc"
    proc = subprocess.run([str(tsc), "--noEmit", "--strict", "-p", "tsconfig.json"], cwd=TYPECHECK,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"tsc found schema violations:\n{proc.stdout}{proc.stderr}"


def test_typecheck_rejects_a_schema_violation(tmp_path):
    """The type check is not vacuous: a misspelt enum value in a panel's options and an unknown
    panel key both fail it."""
    node = shutil.which("node")
    tsc = TYPECHECK / "node_modules" / ".bin" / "tsc"
    if not node or not tsc.exists():
        pytest.skip("typecheck dependencies not installed (see test_typecheck_against_grafana_schema)")
    bad = _load("kit-budget.json")
    stat_panel = next(p for p in _panels(bad) if p["type"] == "stat")
    stat_panel["options"]["colorMode"] = "valu"
    other = next(p for p in _panels(bad) if p["type"] == "timeseries")
    other["gridPoz"] = other.pop("gridPos")
    work = tmp_path / "typecheck"
    shutil.copytree(TYPECHECK, work, ignore=shutil.ignore_patterns("node_modules", "generated"))
    (work / "node_modules").symlink_to(TYPECHECK / "node_modules")
    for name in DASHBOARD_FILES:  # gen.mjs reads ../*.json
        (tmp_path / name).write_text(json.dumps(bad if name == "kit-budget.json" else _load(name)))
    assert subprocess.run([node, "gen.mjs"], cwd=work, capture_output=True).returncode == 0
    proc = subprocess.run([str(tsc), "--noEmit", "--strict", "-p", "tsconfig.json"], cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert '"valu"' in proc.stdout and "gridPoz" in proc.stdout, proc.stdout


# ── 3. structure ─────────────────────────────────────────────────────────────────────────────

def test_dashboard_identity(dash):
    name, d = dash
    assert d["uid"] in ("kit-overview", "kit-budget") and d["title"].startswith("KIT agents")
    assert d["timezone"] == "utc", "budget windows are UTC calendar windows, like the alert rules"
    assert d["schemaVersion"] >= 39
    titles = [p["title"] for p in iter_panels(d["panels"])]
    assert len(titles) == len(set(titles)), f"{name}: duplicate panel titles"


def test_datasource_variables(dash):
    name, d = dash
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["tempo"]["type"] == "datasource" and variables["tempo"]["query"] == "tempo"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}", var["name"]
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"]["query"])
            assert match and match.group(1) in CONTRACT_SERIES, var["query"]


def test_panel_ids_unique(dash):
    name, d = dash
    ids = [p["id"] for p in iter_panels(d["panels"])]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"


def test_grid_positions_do_not_overlap(dash):
    name, d = dash
    cells: dict[tuple[int, int], str] = {}
    for panel in iter_panels(d["panels"]):
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0
        assert g["x"] + g["w"] <= GRID_WIDTH, f"{name}: {panel['title']} wider than the grid"
        if panel["type"] == "row":
            assert (g["x"], g["w"], g["h"]) == (0, GRID_WIDTH, 1)
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{name}: {panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_every_panel_has_datasource_query_unit_description(dash):
    name, d = dash
    panels = _panels(d)
    assert len(panels) >= 20
    for panel in panels:
        where = f"{name}: {panel['title']}"
        ds = panel.get("datasource") or {}
        assert ds.get("uid") in ("${datasource}", "${tempo}"), f"{where}: datasource {ds}"
        targets = panel.get("targets") or []
        assert targets, f"{where}: no query"
        for t in targets:
            t_ds = t.get("datasource") or ds
            assert t_ds.get("uid") in ("${datasource}", "${tempo}"), where
            query = t.get("expr") if t_ds["type"] == "prometheus" else t.get("query")
            assert query and query.strip(), f"{where}: empty query"
            assert t.get("refId"), where
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert panel.get("description"), f"{where}: no description"


def test_queries_use_only_contract_metric_names(dash):
    name, d = dash
    for title, expr in panel_queries(DASHBOARDS_DIR / name):
        unknown = promql_metric_names(expr) - CONTRACT_SERIES
        assert not unknown, f"{name}: {title}: not a docs/design.md#metrics name: {unknown}"


def test_queries_aggregate_away_scrape_labels(dash):
    """Several kit-otel processes must add up: every selector sits inside an aggregation."""
    name, _ = dash
    for title, expr in panel_queries(DASHBOARDS_DIR / name):
        assert re.search(r"\b(sum|min|max|count|avg|topk|histogram_quantile)\b", expr), (
            f"{name}: {title}: {expr}")


def test_variables_resolve(dash):
    name, d = dash
    specs = panel_query_specs(DASHBOARDS_DIR / name)
    prom_targets = [t for p in _panels(d) for t in p["targets"] if (t.get("datasource") or p["datasource"])["type"] == "prometheus"]
    assert len(specs) == len(prom_targets)
    for spec in specs:
        assert "$" not in spec["expr"] and "[[" not in spec["expr"], spec
    with pytest.raises(KeyError):
        panel_queries({"panels": [{"type": "timeseries", "title": "t", "datasource": {"type": "prometheus"},
                                   "targets": [{"expr": "sum(x{a=~\"$nope\"})"}]}]})


def test_panel_queries_substitutes_given_values():
    queries = dict(panel_queries(DASHBOARDS_DIR / "kit-overview.json",
                                 {"project": ["alpha", "beta"], "__rate_interval": "2m", "__range": "6h"}))
    expr = queries["Cost rate by model (USD/hour)"]
    assert 'project=~"alpha|beta"' in expr and "[2m]" in expr
    assert "[6h]" in queries["Subagent share of spend"]
    defaults = dict(panel_queries(DASHBOARDS_DIR / "kit-overview.json"))
    assert 'project=~".*"' in defaults["Cost rate by model (USD/hour)"]
    assert f"[{BUILTIN_DEFAULTS['__rate_interval']}]" in defaults["Cost rate by model (USD/hour)"]
    budget = {s["title"]: s for s in panel_query_specs(DASHBOARDS_DIR / "kit-budget.json")
              if s["ref_id"] == "A"}
    daily = budget["Daily spend vs daily budget (last 30 days)"]
    assert "[1d]" in daily["expr"], "a target's min interval is its $__interval"
    assert budget["Spend today"]["instant"] and budget["Spend today"]["time_from"] == "now/d"


REQUIRED_OVERVIEW = ("Spend today", "This month vs global monthly budget", "Today vs global daily budget",
                     "Cost rate by model", "Cost rate by provider", "Cost rate by project", "Tokens by type",
                     "Cache-hit ratio", "Turns per minute", "Turn duration p50 / p95", "LLM call latency",
                     "Time to first chunk", "Tool calls per minute", "Tool error rate", "Tool latency",
                     "Errors per minute", "Retries per minute", "Compactions", "Context usage",
                     "Subagent share of spend", "Events processed", "Rejected and dropped", "Lag")
REQUIRED_BUDGET = ("Today vs daily budget", "This month vs monthly budget", "Burn rate",
                   "Projected spend at 24:00 UTC", "Projected at end of month", "Top projects",
                   "Top models", "Configured budgets", "Projects today vs their daily budget",
                   "Budget and agent alerts now")


@pytest.mark.parametrize("name,required", [("kit-overview.json", REQUIRED_OVERVIEW),
                                           ("kit-budget.json", REQUIRED_BUDGET)])
def test_required_panels_present(name, required):
    titles = [p["title"] for p in _panels(_load(name))]
    for want in required:
        assert any(t.startswith(want) for t in titles), f"{name}: no panel {want!r}"


def test_alert_state_panel_uses_alerts_metric():
    exprs = [e for _, e in panel_queries(DASHBOARDS_DIR / "kit-budget.json")]
    assert any('ALERTS{alertname=~"Kit.*"' in e for e in exprs)


def test_spend_panels_use_calendar_windows():
    for name in DASHBOARD_FILES:
        for panel in _panels(_load(name)):
            title = panel["title"].lower()
            if "today" in title or "24:00" in title:
                assert panel.get("timeFrom") == "now/d", f"{name}: {panel['title']}"
            if "this month" in title or "end of month" in title or "vs monthly" in title:
                assert panel.get("timeFrom") == "now/M", f"{name}: {panel['title']}"


def _tempo_links(panel):
    for link in panel.get("links") or []:
        if link["url"].startswith("/explore?"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(link["url"]).query)
            yield json.loads(query["panes"][0])


def test_turn_panels_link_to_tempo():
    d = _load("kit-overview.json")
    linked = {p["title"]: list(_tempo_links(p)) for p in _panels(d) if list(_tempo_links(p))}
    for title in ("Turns per minute", "Turn duration p50 / p95", "Turn cost p50 / p95 by project"):
        assert title in linked, f"{title} has no Tempo link"
    for panes in linked.values():
        pane = panes[0]["kit"]
        assert pane["datasource"] == "${tempo}"
        assert pane["range"] == {"from": "${__from}", "to": "${__to}"}
        q = pane["queries"][0]
        assert q["queryType"] == "traceql" and q["datasource"]["type"] == "tempo"
        assert q["query"].startswith("{") and q["query"].endswith("}")
    assert any('name = "invoke_agent kit"' in panes[0]["kit"]["queries"][0]["query"] for panes in linked.values())
    tempo_panels = [p for p in _panels(d) if p["datasource"]["type"] == "tempo"]
    assert tempo_panels and all(t["queryType"] == "traceql" for p in tempo_panels for t in p["targets"])
    assert any("kit.turn.cost_usd" in t["query"] for p in tempo_panels for t in p["targets"])


def test_provisioning_files():
    dashboards = load_yaml(PROVISIONING / "dashboards.yaml")
    assert dashboards["apiVersion"] == 1
    provider = dashboards["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    datasources = load_yaml(PROVISIONING / "datasources.yaml")
    by_type = {ds["type"]: ds for ds in datasources["datasources"]}
    prom, tempo = by_type["prometheus"], by_type["tempo"]
    assert urllib.parse.urlsplit(prom["url"]).scheme in ("http", "https")
    assert urllib.parse.urlsplit(tempo["url"]).scheme in ("http", "https")
    dest = prom["jsonData"]["exemplarTraceIdDestinations"][0]
    assert dest["datasourceUid"] == tempo["uid"] and dest["name"] == "trace_id"
    assert tempo["jsonData"]["tracesToMetrics"]["datasourceUid"] == prom["uid"]
    # the dashboards' variables default to these data sources
    for name in DASHBOARD_FILES:
        variables = {v["name"]: v for v in _load(name)["templating"]["list"]}
        assert variables["datasource"]["current"]["value"] == prom["uid"]
        assert variables["tempo"]["current"]["value"] == tempo["uid"]


# ── 4. every query on a real Prometheus ──────────────────────────────────────────────────────





@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    from .synthetic_metrics import openmetrics

    work = tmp_path_factory.mktemp("prometheus")
    end = int(time.time()) // 60 * 60 - 60
    # one sample a minute: what the fleet path delivers (kit-otel pushes every 60 s)
    with backfilled_prometheus(work, openmetrics(end - 2 * 3600, end, step=PUSH_INTERVAL_S)) as base:
        yield base, end


PUSH_INTERVAL_S = 60


def grafana_intervals(range_s: int, max_data_points: int = 1000) -> dict[str, str]:
    """$__interval and $__rate_interval as Grafana computes them from the provisioned data
    source's timeInterval (the minimum interval): interval = max(range / points, timeInterval);
    rate interval = max(interval + timeInterval, 4 × timeInterval)."""
    ds = next(d for d in load_yaml(PROVISIONING / "datasources.yaml")["datasources"]
              if d["type"] == "prometheus")
    match = re.fullmatch(r"(\d+)(s|m)", ds["jsonData"]["timeInterval"])
    scrape = int(match.group(1)) * (60 if match.group(2) == "m" else 1)
    interval = max(range_s // max_data_points, scrape)
    return {"__interval": f"{interval}s", "__rate_interval": f"{max(interval + scrape, 4 * scrape)}s"}


def test_rate_interval_spans_several_pushes():
    """D1: with 60-second pushes a rate needs at least two samples in its window."""
    rate_s = int(grafana_intervals(3600)["__rate_interval"][:-1])
    assert rate_s >= 3 * PUSH_INTERVAL_S


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_query_returns_data_on_prometheus(prometheus, name):
    """Every panel shows data on the remote-write path: one sample a minute, with the
    $__rate_interval Grafana derives from the provisioned data source."""
    base, end = prometheus
    failures = []
    specs = panel_query_specs(DASHBOARDS_DIR / name,
                              {"__range": "1h", **grafana_intervals(3600)})
    assert specs
    for spec in specs:
        if spec["instant"]:
            url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": spec["expr"], "time": end})
        else:
            url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
                {"query": spec["expr"], "start": end - 3600, "end": end, "step": 60})
        body = get_json(url)
        where = f"{spec['title']} [{spec['ref_id']}]"
        if body.get("status") != "success":
            failures.append(f"{where}: {body.get('error')} — {spec['expr']}")
        elif not body["data"]["result"]:
            failures.append(f"{where}: no data — {spec['expr']}")
    assert not failures, "\n".join(failures)


def test_label_values_of_variables_exist(prometheus):
    base, end = prometheus
    for name in DASHBOARD_FILES:
        for var in _load(name)["templating"]["list"]:
            if var["type"] != "query":
                continue
            metric, label = var["query"]["query"][len("label_values("):-1].split(", ")
            body = get_json(f"{base}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
                {"match[]": metric, "start": end - 3600, "end": end}))
            assert body["status"] == "success" and body["data"], (name, var["name"])


# ── the money a panel shows is the money an alert compares ───────────────────────────────────

SPEND_PANELS = {"kit-overview.json": ["Spend today (UTC)", "Spend this month (UTC)"],
                "kit-budget.json": ["Spend today", "Spend this month"]}


def test_spend_panels_equal_the_budget_rules_after_a_gap(tmp_path):
    """R1: 3 USD/h, no sample from 03:30 to 04:00. At 04:00 the panels and
    kit:cost_usd:spend_to_date both say 12 USD (the old rate-sum rule said 10.50 for good)."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian package prometheus)")
    from ._common import ALERTS_DIR
    rules = load_yaml(ALERTS_DIR / "kit-otel-rules.yaml")
    labels = 'provider="openai",model="gpt",agent="main",project="alpha",job="kit-otel",instance="a"'
    series = [{"series": f'kit_spend_to_date_usd{{window="{w}",{labels}}}',
               "values": "0+0.05x210 _x29 12+0.05x120"} for w in ("day", "month")]
    checks = []
    for name, titles in SPEND_PANELS.items():
        specs = {s["title"]: s["expr"] for s in panel_query_specs(DASHBOARDS_DIR / name)}
        for title in titles:
            window = "day" if "today" in title else "month"
            for eval_time, usd in (("3h", 9), ("225m", 10.5), ("4h", 12)):
                for expr in (specs[title],
                             f'sum(kit:cost_usd:spend_to_date{{window="{window}",scope="global"}})'):
                    checks.append({"expr": f"round({expr}, 0.001)", "eval_time": eval_time,
                                   "exp_samples": [{"labels": "{}", "value": usd}]})
    assert len(checks) == 24
    test = {"rule_files": [str(ALERTS_DIR / "kit-otel-rules.yaml")], "evaluation_interval": "1m",
            "group_eval_order": [g["name"] for g in rules["groups"]],
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}]}
    path = tmp_path / "spend.test.yaml"
    path.write_text(json.dumps(test))
    proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
