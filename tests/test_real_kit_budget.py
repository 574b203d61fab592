"""The budget extension inside KIT's own extension runtime (tests/kithost_real), beside the bridge,
at KIT HEAD and at the seed commit: what KIT shows (the Runner's status-bar entries, the info
blocks of PrintInfo) and which tool calls KIT's tool wrapper refuses, for budget-status.json files
as serve writes them. Both KIT versions have ctx.SetStatus and ctx.PrintInfo, so both show the
status bar; the seed commit's interpreters get no environment, and the extension still finds the
default spool folder the bridge writes to ($XDG_STATE_HOME/kit-otel/spool).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kithost_real.runtime import BRIDGE, BUDGET, VARIANTS, build, run_host
from kit_otel.model import names as n
from kit_otel.serve.budget_status import STATUS_FILE
from test_budget_ext import status_file as budget_status_file
from test_real_kit import translate

PROJECT = "proj"  # the host's cwd is <home>/proj


@pytest.fixture(scope="module", params=VARIANTS)
def host(request):
    return request.param, build(request.param)


def status_file(folder: Path, name: str, spent_day: float, **kwargs) -> str:
    """A budget-status.json written by serve's own BudgetStatus, for this host's project."""
    return str(folder / budget_status_file(folder, name, spent_day, project=PROJECT, **kwargs))


def run_budget(binary: Path, home: Path, files: list[str], extra_args=(), **options: str):
    state = home / "xdg-state"  # the default both extensions derive from the environment
    spool = state / "kit-otel" / "spool"
    spool.mkdir(parents=True)
    run = run_host(binary, "budget", home, extensions=(BRIDGE, BUDGET), options=options,
                   env={"XDG_STATE_HOME": str(state)},
                   extra_args=("-status-files", ",".join(files),
                               "-status-path", str(spool / STATUS_FILE), *extra_args))
    assert run.spool == spool
    return run, run.truth["shown"]


def tool_outcomes(run) -> dict[str, float]:
    h = translate(run.spool)
    return {outcome: h.total(n.TOOL_CALLS.otel_name, outcome=outcome)
            for outcome in ("ok", "blocked")}


def test_status_bar_a_notice_per_threshold_and_refusal_when_spent(host, tmp_path):
    _, binary = host
    files = [status_file(tmp_path, "low.json", 4.0, project_spent=0.5),   # 40 %, proj 25 %
             status_file(tmp_path, "mid.json", 7.8, project_spent=1.6),   # 78 %, proj 80 %
             status_file(tmp_path, "same.json", 7.9, project_spent=1.6),  # nothing new crossed
             status_file(tmp_path, "over.json", 10.5, project_spent=2.1)]  # both spent
    run, shown = run_budget(binary, tmp_path / "home", files, **{"kit-otel-budget-block": "true"})
    assert shown[0]["status"] == [
        "kit-otel:budget=budget day $4.00/$10.00 (40%) · month $4.00/$100.00 (4%) · "
        "day (proj) $0.50/$2.00 (25%)"]
    assert shown[0]["info"] is None
    # 50 and 75 % crossed together: one notice, the highest, per budget
    assert shown[1]["info"] == [
        "kit-otel budget: 75% of the day budget spent ($7.80 of $10.00)",
        "kit-otel budget: 75% of the day (proj) budget spent ($1.60 of $2.00)"]
    assert "day $7.80/$10.00 (78%)" in shown[1]["status"][0]
    assert shown[2]["info"] is None and "day $7.90/$10.00 (79%)" in shown[2]["status"][0]
    assert shown[3]["info"] == [
        "kit-otel budget: 100% of the day budget spent ($10.50 of $10.00)",
        "kit-otel budget: 100% of the day (proj) budget spent ($2.10 of $2.00)"]
    # the refusal is KIT's own: its tool wrapper turned the extension's Block into the result
    # the agent loop gets, and the bridge saw that call as blocked
    assert run.truth["blocked"] == ["toolu_budget_3"]
    result = run.truth["blocked_results"]["toolu_budget_3"]
    assert result.startswith("Error: kit-otel budget: the day budget is spent ($10.50 of $10.00)")
    assert tool_outcomes(run) == {"ok": 2, "blocked": 1}


def test_configured_thresholds_and_no_refusal_unless_asked(host, tmp_path):
    _, binary = host
    files = [status_file(tmp_path, "low.json", 3.0),
             status_file(tmp_path, "mid.json", 6.5),
             status_file(tmp_path, "over.json", 11.0)]
    run, shown = run_budget(binary, tmp_path / "home", files,
                            **{"kit-otel-budget-thresholds": "25, 60%"})
    assert shown[0]["info"] == ["kit-otel budget: 25% of the day budget spent ($3.00 of $10.00)"]
    assert shown[1]["info"] == ["kit-otel budget: 60% of the day budget spent ($6.50 of $10.00)"]
    assert shown[2]["info"] is None  # no threshold above 60 was configured
    assert run.truth["blocked"] is None
    assert tool_outcomes(run) == {"ok": 2, "blocked": 0}


@pytest.mark.parametrize("case", ["missing", "stale", "corrupt", "foreign"])
def test_a_missing_stale_or_corrupt_status_is_said_once_and_nothing_else(host, tmp_path, case):
    _, binary = host
    if case == "missing":
        bad = "-"
    elif case == "stale":  # over budget, but written an hour ago: serve is not running
        bad = status_file(tmp_path, "stale.json", 11.0, written_ago_s=3600)
    elif case == "corrupt":
        (tmp_path / "corrupt.json").write_bytes(b'{"version": 1, "spend": {"day": ' + b"9" * 70000)
        bad = str(tmp_path / "corrupt.json")
    else:
        (tmp_path / "foreign.json").write_text('{"version": 7, "budgets": []}')
        bad = str(tmp_path / "foreign.json")
    run, shown = run_budget(binary, tmp_path / "home", [bad, bad, bad],
                            **{"kit-otel-budget-block": "true"})
    notice, = shown[0]["info"]
    assert notice.startswith("kit-otel budget: ") and notice.endswith("budgets not shown")
    assert [s["info"] for s in shown[1:]] == [None, None]
    assert all(s["status"] is None for s in shown)
    assert run.truth["blocked"] is None
    assert tool_outcomes(run) == {"ok": 2, "blocked": 0}  # the bridge beside it is unaffected


def test_a_status_that_goes_bad_takes_its_figure_down(host, tmp_path):
    _, binary = host
    files = [status_file(tmp_path, "over.json", 10.5), "-",
             status_file(tmp_path, "back.json", 10.5)]
    run, shown = run_budget(binary, tmp_path / "home", files, **{"kit-otel-budget-block": "true"})
    assert shown[0]["status"] and shown[2]["status"]
    assert shown[1]["status"] is None  # a spend figure nobody vouches for is not shown
    assert len(shown[1]["info"]) == 1 and "is `kit-otel serve` running?" in shown[1]["info"][0]
    # refused while the figure stood, allowed while it was unknown
    assert run.truth["blocked"] == ["toolu_budget_2"]


def test_a_subagent_started_under_budget_is_refused_once_the_budget_is_spent(host, tmp_path):
    """KIT gives a subagent's child Kit no options and no working directory: the parent's
    instance hands its settings to the child it is about to run."""
    _, binary = host
    files = [status_file(tmp_path, "low.json", 4.0), status_file(tmp_path, "mid.json", 7.8)]
    over = status_file(tmp_path, "over.json", 10.5)  # serve's next write, while the child works
    run, shown = run_budget(binary, tmp_path / "home", files, ("-subagent-status", over),
                            **{"kit-otel-budget-block": "true"})
    assert run.truth["blocked"] == ["toolu_budget_child_read"]
    assert run.truth["blocked_results"]["toolu_budget_child_read"].startswith(
        "Error: kit-otel budget: the day budget is spent ($10.50 of $10.00)")
    # the subagent call itself ran; the refused call inside it is blocked, not a failed tool,
    # although the parent's chunks (the SDK's events) show it started and failed: the child's
    # own bridge saw no tool_execution_start
    h = translate(run.spool)
    outcomes = {(dict(p.attributes)[n.L_TOOL], dict(p.attributes)[n.L_OUTCOME]): p.value
                for p in h.points(n.TOOL_CALLS.otel_name)}
    assert outcomes == {("subagent", "ok"): 1, ("read", "blocked"): 1}
    read, = h.spans_named("execute_tool read")
    assert read.attributes[n.KIT_TOOL_BLOCKED] is True
