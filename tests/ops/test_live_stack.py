"""The proof that it all fits together (issue 6, part 4).

A real `kit-otel serve` follows spool files that simulated KIT processes write over ~15 s; a real
Prometheus scrapes its /metrics every second. Then:
- every Prometheus query of every dashboard panel runs through Prometheus's HTTP API on that
  live data and must return data;
- the alert rules are evaluated over that run's data: the series are exported from Prometheus
  and, stretched from one-second to one-minute steps (the rules think in minutes and hours),
  given to `promtool test rules`; the over-budget scenario raises the budget alerts, the normal
  one does not.
Two scenarios run side by side, each with its own kit-otel and Prometheus: "normal" (generous
budgets) and "over" (a daily budget and a turn limit the stream exceeds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ._common import ALERTS_DIR, DASHBOARDS_DIR, free_port, get_json, load_yaml
from .dashboard_queries import panel_query_specs

FEED_SECONDS = 15
BUDGETS = {
    "normal": {"day": 1000.0, "month": 20000.0, "turn": 25.0},
    "over": {"day": 0.10, "month": 20000.0, "turn": 0.01},
}






def _wait_ready(url: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"{what} did not start:\n{log.read_text()[-3000:]}")


class Scenario:
    def __init__(self, name: str, work: Path):
        from test_serve_helpers import kit_process
        self.name, self.work = name, work
        self.spool, self.state, self.sessions = (work / "spool", work / "state", work / "sessions")
        for d in (self.spool, self.state, self.sessions):
            d.mkdir(parents=True)
        self.spool.chmod(0o700)
        budgets = BUDGETS[name]
        config = work / "kit-otel.toml"
        scoped = "".join(  # project and model budgets too, as generous in both scenarios
            f'[[budgets]]\nwindow = "{window}"\nscope = "{scope}"\nusd = 5000.0\n{scope} = "{value}"\n'
            for window in ("day", "month")
            for scope, value in (("project", "payments"), ("model", "gpt-5-mini")))
        config.write_text(
            f"budget_day_usd = {budgets['day']}\nbudget_month_usd = {budgets['month']}\n"
            f"budget_turn_usd = {budgets['turn']}\n" + scoped)
        self.metrics_port, self.prom_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
        env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "prometheus",
                    "KIT_OTEL_CONFIG": str(config), "KIT_OTEL_PROMETHEUS_PORT": str(self.metrics_port),
                    "KIT_OTEL_SPOOL_DIR": str(self.spool), "KIT_OTEL_STATE_DIR": str(self.state),
                    "KIT_OTEL_SESSIONS_ROOT": str(self.sessions),
                    "OTEL_RESOURCE_ATTRIBUTES": "team=platform"})  # the dashboards' team
        self.serve_log = work / "serve.log"
        self.serve = subprocess.Popen([sys.executable, "-m", "kit_otel.cli.main", "serve"], env=env,
                                      stdout=self.serve_log.open("w"), stderr=subprocess.STDOUT)
        # the same rules, evaluated every second (their groups say every minute, longer than
        # this whole run), so ALERTS has something to show while the data is live
        rules = load_yaml(ALERTS_DIR / "kit-otel-rules.yaml")
        for group in rules["groups"]:
            group.pop("interval", None)
        fast_rules = work / "rules.yaml"
        fast_rules.write_text(json.dumps(rules))
        prom_config = work / "prometheus.yml"
        prom_config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {fast_rules}\n"
            "scrape_configs:\n  - job_name: kit-otel\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.metrics_port}']\n")
        self.prom_log = work / "prometheus.log"
        self.prometheus = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={prom_config}",
             f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.prom_port}"],
            stdout=self.prom_log.open("w"), stderr=subprocess.STDOUT, cwd=work)
        self.base = f"http://127.0.0.1:{self.prom_port}"
        _wait_ready(f"http://127.0.0.1:{self.metrics_port}/metrics", self.serve, self.serve_log,
                    "kit-otel serve")
        _wait_ready(f"{self.base}/-/ready", self.prometheus, self.prom_log, "prometheus")
        self.processes = [kit_process(31 + i, 7000 + i, self.sessions, turns=6, index=i)
                          for i in range(3)]
        self.start = time.time()

    def lines(self):
        """Every spool line in a realistic order: the processes' lines interleaved; one line the
        bridge reports drops on, one malformed line (the exporter's health panels need both)."""
        from kit_otel.model.decoder import decode_line, encode_event
        queues = [list(p.lines) for p in self.processes]
        out = []
        while any(queues):
            for q in queues:
                if q:
                    out.append(q.pop(0))
        name, line = out[40]
        event = decode_line(line)
        event.dropped = 3
        out[40] = (name, encode_event(event))
        out.insert(60, (out[59][0], b'{"v":1,"ts":"not a time","type":"input"}\n'))
        return out

    def query(self, expr: str) -> list:
        body = get_json(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def close(self) -> None:
        for proc in (self.serve, self.prometheus):
            proc.terminate()
        for proc in (self.serve, self.prometheus):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("prometheus/promtool not installed (Debian package prometheus)")
    scenarios = {}
    try:
        for name in BUDGETS:
            scenarios[name] = Scenario(name, tmp_path_factory.mktemp(name))
        plans = {name: s.lines() for name, s in scenarios.items()}
        handles: dict = {}
        steps = 30
        for step in range(steps):  # the KIT processes write over FEED_SECONDS
            for name, s in scenarios.items():
                lines = plans[name]
                chunk = lines[step * len(lines) // steps:(step + 1) * len(lines) // steps]
                for file_name, line in chunk:
                    fh = handles.get((name, file_name))
                    if fh is None:
                        fh = handles[(name, file_name)] = open(s.spool / file_name, "ab",
                                                               buffering=0)
                    fh.write(line)
            time.sleep(FEED_SECONDS / steps)
        for fh in handles.values():
            fh.close()
        for name, s in scenarios.items():  # all in, and scraped at least twice since
            expected = sum(1 for _, line in plans[name] if b'"type":"llm_usage"' in line)
            deadline = time.time() + 60
            while time.time() < deadline:
                got = s.query('sum(kit_llm_calls_total{job="kit-otel"})')
                if got and float(got[0]["value"][1]) == expected:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"{name}: Prometheus never saw {expected} LLM calls:\n"
                            + s.serve_log.read_text()[-3000:])
            time.sleep(2.5)
            s.end = time.time()
        yield scenarios
    finally:
        for s in scenarios.values():
            s.close()


@pytest.mark.parametrize("dashboard", ["kit-overview.json", "kit-budget.json"])
def test_every_panel_query_returns_data_from_the_live_stack(stack, dashboard):
    over = stack["over"]  # the scenario where alert-state panels have something to show
    specs = panel_query_specs(DASHBOARDS_DIR / dashboard, {
        "__range": "5m", "__rate_interval": "30s"})
    assert len(specs) > 10
    failures = []
    for spec in specs:
        if spec["instant"]:
            url = f"{over.base}/api/v1/query?" + urllib.parse.urlencode(
                {"query": spec["expr"], "time": over.end})
        else:
            url = f"{over.base}/api/v1/query_range?" + urllib.parse.urlencode(
                {"query": spec["expr"], "start": over.start, "end": over.end, "step": 1})
        body = get_json(url)
        where = f"{spec['title']} [{spec['ref_id']}]"
        if body.get("status") != "success":
            failures.append(f"{where}: {body.get('error')} — {spec['expr']}")
        elif not body["data"]["result"]:
            failures.append(f"{where}: no data — {spec['expr']}")
    assert not failures, f"{len(failures)} of {len(specs)} queries failed:\n" + "\n".join(failures)


def test_live_totals_equal_the_streams(stack):
    for name, s in stack.items():
        want = sum(p.usage_totals().get("cost", 0.0) for p in s.processes)
        got = float(s.query('sum(kit_cost_usd_total{job="kit-otel"})')[0]["value"][1])
        assert got == pytest.approx(want, abs=1e-9), name
        budget = s.query('kit_budget_usd{window="day",scope="global"}')
        assert float(budget[0]["value"][1]) == BUDGETS[name]["day"]


def test_team_is_one_target_info_series_per_kit_otel_not_a_label_of_the_cost_series(stack):
    """OTEL_RESOURCE_ATTRIBUTES=team=… slices spend through a join, so a fleet's teams cost one
    series per kit-otel process, never teams × projects × models (docs/cost.md)."""
    for name, s in stack.items():
        info = s.query('target_info{job="kit-otel"}')
        assert [r["metric"].get("team") for r in info] == ["platform"], name
        labelled = {r["metric"]["__name__"] for r in s.query('{job="kit-otel", team!=""}')}
        assert labelled == {"target_info"}, name
        by_team = s.query('sum by (team) (kit_cost_usd_total{job="kit-otel"} '
                          '* on (job, instance) group_left (team) target_info)')
        total = float(s.query('sum(kit_cost_usd_total{job="kit-otel"})')[0]["value"][1])
        assert [(r["metric"]["team"], float(r["value"][1])) for r in by_team] == \
            [("platform", pytest.approx(total, abs=1e-9))], name


def _stretched_series(s: Scenario) -> tuple[list[dict], int]:
    """Every series Prometheus scraped from kit-otel, one sample a second, as promtool input
    series with one sample a minute; the last value held for 90 more minutes."""
    body = get_json(f"{s.base}/api/v1/query_range?" + urllib.parse.urlencode({
        "query": '{job="kit-otel"}', "start": int(s.start), "end": int(s.end) + 1, "step": 1}))
    assert body["status"] == "success", body
    grid = list(range(int(s.start), int(s.end) + 2))
    series = []
    for result in body["data"]["result"]:
        labels = dict(result["metric"])
        name = labels.pop("__name__")
        if name.startswith(("scrape_", "ALERTS")) or ":" in name:  # recorded by the rules
            continue
        values = {int(t): v for t, v in result["values"]}
        cells = [values.get(t, "_") for t in grid]
        last = next(v for v in reversed(cells) if v != "_")
        text = " ".join(cells) + f" {last}+0x90"
        selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series.append({"series": f"{name}{{{selector}}}", "values": text})
    names = {x["series"].split("{")[0] for x in series}
    assert {"kit_cost_usd_total", "kit_budget_usd", "kit_turn_cost_usd_bucket"} <= names, names
    return series, len(grid)


def _alerts_over_run(s: Scenario, tmp_path: Path, alertnames: list[str]) -> dict[str, list[dict]]:
    """Evaluate the rules with promtool over this run's data; the alerts each name raises
    (promtool prints what it got when it differs from the expected [])."""
    rules = load_yaml(ALERTS_DIR / "kit-otel-rules.yaml")
    series, minutes = _stretched_series(s)
    alert_for = {r["alert"]: r.get("for", "0m") for g in rules["groups"] for r in g["rules"]
                 if "alert" in r}
    # alerts with a `for:` are read once it has surely elapsed (spend stays spent all day);
    # the others, like a turn over its limit, are about the last minutes: read at the run's end
    eval_times = {a: f"{minutes + 60}m" if alert_for[a] != "0m" else f"{minutes}m"
                  for a in alertnames}
    test = {
        "rule_files": [str(ALERTS_DIR / "kit-otel-rules.yaml")],
        "evaluation_interval": "1m",
        "group_eval_order": [g["name"] for g in rules["groups"]],
        "tests": [{"interval": "1m", "input_series": series,
                   "alert_rule_test": [{"eval_time": eval_times[a], "alertname": a,
                                        "exp_alerts": []} for a in alertnames]}],
    }
    path = tmp_path / f"{s.name}.test.yaml"
    path.write_text(json.dumps(test))  # JSON is YAML
    result = subprocess.run([shutil.which("promtool"), "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    raised: dict[str, list[dict]] = {a: [] for a in alertnames}
    for block in re.split(r"alertname: ", out)[1:]:
        name = block.split(",", 1)[0].strip()
        for labels in re.findall(r"Labels:\{([^}]*)\}", block):
            raised.setdefault(name, []).append(dict(re.findall(r'(\w+)="([^"]*)"', labels)))
    if result.returncode == 0:
        assert all(not v for v in raised.values())
    else:
        assert any(raised.values()), out  # a failure must be an alert we can read, not an error
    return raised


BUDGET_ALERTS = ["KitBudgetExceeded", "KitTurnCostOverLimit"]


def test_over_budget_scenario_raises_the_budget_alerts(stack, tmp_path):
    raised = _alerts_over_run(stack["over"], tmp_path, BUDGET_ALERTS)
    exceeded = raised["KitBudgetExceeded"]
    assert {"window": "day", "scope": "global", "severity": "critical"}.items() <= \
        next(iter(exceeded), {}).items(), raised
    assert not any(a.get("window") == "month" for a in exceeded)  # 20,000 USD a month is plenty
    assert raised["KitTurnCostOverLimit"], raised


def test_normal_scenario_raises_no_budget_alert(stack, tmp_path):
    raised = _alerts_over_run(stack["normal"], tmp_path, BUDGET_ALERTS)
    assert raised == {name: [] for name in BUDGET_ALERTS}
