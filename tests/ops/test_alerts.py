"""Budget alert rules and Alertmanager example (issue 6, part 2).

promtool/amtool do the real validation (`promtool check rules`, `promtool test rules` for every
unit-test file, `amtool check-config`, `amtool config routes test`); the Python checks on top
make sure every alert is unit-tested both firing and silent, that rules only query docs/design.md#metrics
names (or recording rules defined here), and that no alert hard-codes money.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ._common import (ALERTS_DIR, COLLECTOR_SERIES, CONTRACT_SERIES, load_yaml,
                      promql_metric_names)

RULES = ALERTS_DIR / "kit-otel-rules.yaml"
ALERTMANAGER = ALERTS_DIR / "alertmanager.yml"
TEST_FILES = sorted((ALERTS_DIR / "tests").glob("*.test.yaml"))
SEVERITIES = ("critical", "warning", "info")


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (Debian package {package}; scripts/test.sh installs it)")
    return path


def _run(args, timeout=600):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def rules():
    return load_yaml(RULES)


def _all_rules(rules):
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield group, rule


def _alerts(rules):
    return [rule for _, rule in _all_rules(rules) if "alert" in rule]


def _records(rules):
    return {rule["record"] for _, rule in _all_rules(rules) if "record" in rule}


# ── the tools ────────────────────────────────────────────────────────────────────────────────

def test_promtool_check_rules():
    promtool = _tool("promtool", "prometheus")
    code, out, err = _run([promtool, "check", "rules", str(RULES)])
    assert code == 0, out + err
    assert "SUCCESS" in out


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file):
    promtool = _tool("promtool", "prometheus")
    proc = subprocess.run([promtool, "test", "rules", test_file.name], cwd=test_file.parent,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_amtool_check_config():
    amtool = _tool("amtool", "prometheus-alertmanager")
    code, out, err = _run([amtool, "check-config", str(ALERTMANAGER)])
    assert code == 0, out + err
    assert "SUCCESS" in out


@pytest.mark.parametrize("labels,receivers", [
    (["severity=critical", "project=alpha", "alertname=KitBudgetExceeded"], {"kit-pager", "kit-chat"}),
    (["severity=warning", "project=alpha", "alertname=KitTurnCostOverLimit"], {"kit-chat"}),
    (["severity=warning", "alertname=KitOtelLagging", "instance=a"], {"kit-chat"}),
    (["severity=info", "alertname=KitOtelAbsent"], {"kit-ticket"}),
])
def test_alertmanager_routes_by_severity(labels, receivers):
    amtool = _tool("amtool", "prometheus-alertmanager")
    code, out, err = _run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels])
    assert code == 0, out + err
    got = {r.strip() for r in out.strip().splitlines()[-1].split(",")}
    assert got == receivers, out


# ── structure of the rules ───────────────────────────────────────────────────────────────────

def test_every_alert_has_severity_and_annotations(rules):
    alerts = _alerts(rules)
    assert len(alerts) >= 10
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in alerts:
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert alert["annotations"].get("summary") and alert["annotations"].get("description"), alert["alert"]
        assert re.fullmatch(r"Kit[A-Z]\w+", alert["alert"])


def test_required_alerts_exist(rules):
    names = {a["alert"] for a in _alerts(rules)}
    required = {"KitBudgetExceeded", "KitBudgetProjectedOverrun", "KitTurnCostOverLimit",
                "KitRunawayTokenRate", "KitErrorSpike", "KitRetrySpike", "KitOtelRejectingEvents",
                "KitOtelDroppingEvents", "KitOtelLagging", "KitOtelDown", "KitOtelSilent",
                "KitOtelAbsent", "KitBudgetGaugeMissing", "KitCollectorDown",
                "KitCollectorQueueFilling", "KitCollectorDroppingData", "KitCollectorSendFailing",
                "KitRemoteWriteFailing", "KitCollectorRefusingData", "KitTailSamplingDroppingTraces"}
    assert required <= names, required - names


def test_every_alert_is_tested_firing_and_silent(rules):
    firing, silent = set(), set()
    for path in TEST_FILES:
        suite = load_yaml(path)
        assert suite["rule_files"] == ["../kit-otel-rules.yaml"], path.name
        # promtool evaluates groups in random order unless told: alerts would read recordings
        # from the previous evaluation in some runs and not in others
        assert suite["group_eval_order"] == [g["name"] for g in rules["groups"]], path.name
        for case in suite["tests"]:
            for check in case.get("alert_rule_test") or []:
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in _alerts(rules)}
    assert names - firing == set(), f"never tested firing: {names - firing}"
    assert names - silent == set(), f"never tested silent: {names - silent}"


def test_queries_use_only_contract_names_and_local_records(rules):
    records = _records(rules)
    for _, rule in _all_rules(rules):
        used = promql_metric_names(rule["expr"])
        unknown = used - CONTRACT_SERIES - COLLECTOR_SERIES - records
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown series {unknown}"


def test_recording_rule_names_follow_convention(rules):
    for name in _records(rules):
        assert re.fullmatch(r"kit:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_budget_rules_read_kit_budget_usd(rules):
    budget = [rule for _, rule in _all_rules(rules) if rule.get("record") == "kit:budget_usd:min"]
    assert budget and "kit_budget_usd" in budget[0]["expr"]
    by_name = {a["alert"]: a for a in _alerts(rules)}
    for name in ("KitBudgetExceeded", "KitBudgetProjectedOverrun", "KitTurnCostOverLimit"):
        assert "kit:budget_usd:min" in by_name[name]["expr"], name
    assert 'window="turn"' in by_name["KitTurnCostOverLimit"]["expr"]
    assert "kit:turn_cost_usd_bucket:increase10m" in by_name["KitTurnCostOverLimit"]["expr"]
    turns, = [rule for _, rule in _all_rules(rules)
              if rule.get("record") == "kit:turn_cost_usd_bucket:increase10m"]
    assert "kit_turn_cost_usd_bucket" in turns["expr"]


def _numbers(expr: str) -> set[float]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^{}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    return {float(m) for m in re.findall(r"(?<![\w.:])(\d+(?:\.\d+)?)(?![\w.])", text)}


def test_no_thresholds_hard_coded_in_alerts(rules):
    """Money comes from kit_budget_usd; operational thresholds from kit:alert_param:*."""
    for alert in _alerts(rules):
        assert _numbers(alert["expr"]) <= {0.0, 1.0}, f"{alert['alert']}: literal threshold"
    for group, rule in _all_rules(rules):
        if "record" in rule and not rule["record"].startswith("kit:alert_param:"):
            # only time constants (5 min, 1 h, 1 day in seconds) and 0/1
            assert _numbers(rule["expr"]) <= {0.0, 1.0, 300.0, 3600.0, 86400.0}, rule["record"]


def test_spend_rules_evaluate_every_minute(rules):
    # the spend integral samples the recorded 5-minute rates on a 5-minute grid; evaluation must
    # be at least that frequent (the lookback is 5 minutes)
    for group in rules["groups"]:
        interval = group.get("interval", "1m")
        match = re.fullmatch(r"(\d+)([sm])", interval)
        assert match, interval
        seconds = int(match.group(1)) * (60 if match.group(2) == "m" else 1)
        assert seconds <= 60, group["name"]


def test_alertmanager_groups_by_project_and_routes_each_severity(rules):
    config = load_yaml(ALERTMANAGER)
    assert "project" in config["route"]["group_by"]
    routed = set()
    for route in config["route"]["routes"]:
        for matcher in route.get("matchers", []):
            match = re.fullmatch(r'severity(=~?)"([^"]+)"', matcher)
            if match:
                routed |= set(match.group(2).split("|"))
    used = {a["labels"]["severity"] for a in _alerts(rules)}
    assert used <= routed, used - routed
    receivers = {r["name"] for r in config["receivers"]}

    def walk(route):
        yield route
        for child in route.get("routes", []):
            yield from walk(child)

    for route in walk(config["route"]):
        if "receiver" in route:
            assert route["receiver"] in receivers


def test_alerts_doc_describes_every_alert_and_parameter(rules):
    from ._common import DOCS_DIR
    doc = (DOCS_DIR / "alerts.md").read_text()
    for alert in _alerts(rules):
        assert f"| {alert['alert']} | {alert['labels']['severity']} |" in doc, alert["alert"]
    for _, rule in _all_rules(rules):
        if rule.get("record", "").startswith("kit:alert_param:"):
            default = re.fullmatch(r"vector\(([\d.]+)\)", rule["expr"]).group(1)
            assert f"| `{rule['record']}` | {default} |" in doc, rule["record"]


# ── Alertmanager inhibition ──────────────────────────────────────────────────────────────────

def _matcher(text: str):
    name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', text).groups()

    def matches(labels: dict) -> bool:
        have = labels.get(name, "")
        hit = re.fullmatch(value, have) is not None if "~" in op else have == value
        return hit if op in ("=", "=~") else not hit
    return matches


def _tested_alerts() -> list[dict]:
    """Every alert (labels + alertname) the promtool unit tests prove the rules raise."""
    alerts = []
    for path in TEST_FILES:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test") or []:
                for exp in check.get("exp_alerts") or []:
                    alerts.append({"alertname": check["alertname"], **exp["exp_labels"]})
    return alerts


def _inhibited_pairs(rule: dict, alerts: list[dict]) -> set[tuple[str, str]]:
    sources = [a for a in alerts if all(_matcher(m)(a) for m in rule["source_matchers"])]
    targets = [a for a in alerts if all(_matcher(m)(a) for m in rule["target_matchers"])]
    equal = rule.get("equal") or []
    return {(s["alertname"], t["alertname"]) for s in sources for t in targets
            if s is not t and all(s.get(k, "") == t.get(k, "") for k in equal)}


def test_every_inhibit_rule_can_mute_a_real_alert():
    """R6: an inhibit rule that no pair of real alerts satisfies is dead configuration."""
    alerts = _tested_alerts()
    assert len({a["alertname"] for a in alerts}) >= 15
    for rule in load_yaml(ALERTMANAGER)["inhibit_rules"]:
        assert _inhibited_pairs(rule, alerts), f"inhibit rule never matches: {rule}"


def test_inhibit_check_finds_the_dead_rule():
    dead = {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "project"]}
    assert _inhibited_pairs(dead, _tested_alerts()) == set()


def test_project_criticals_do_not_mute_other_projects_or_exporter_health():
    rule = load_yaml(ALERTMANAGER)["inhibit_rules"][0]
    budget = {"alertname": "KitBudgetExceeded", "severity": "critical", "project": "alpha"}
    assert _inhibited_pairs(rule, [budget, {"alertname": "KitTurnCostOverLimit",
                                            "severity": "warning", "project": "alpha"}])
    assert not _inhibited_pairs(rule, [budget, {"alertname": "KitTurnCostOverLimit",
                                                "severity": "warning", "project": "beta"}])
    global_budget = {"alertname": "KitBudgetExceeded", "severity": "critical", "scope": "global"}
    assert not _inhibited_pairs(rule, [global_budget, {"alertname": "KitOtelLagging",
                                                       "severity": "warning", "instance": "a"}])
