"""The budget extension (src/kit_otel/bridge/kit_otel_budget.go) interpreted by yaegi — the Go
interpreter KIT embeds — on the kit/ext stand-in: what KIT would show and refuse, for the
budget-status.json that serve writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_budget_status import call

from kit_otel.serve.budget_status import STATUS_FILE, BudgetStatus
from kit_otel.config import Budget

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = ROOT / "src" / "kit_otel" / "bridge" / "kit_otel_budget.go"
DRIVER = Path(__file__).resolve().parent / "budget_ext" / "drive.go"
STAND_IN = Path(__file__).resolve().parent / "bridge" / "gopath" / "src" / "kit"

pytestmark = pytest.mark.skipif(shutil.which("yaegi") is None,
                                reason="the yaegi command is not installed (apt install yaegi)")


def status_file(tmp_path: Path, name: str, spent_day: float, *, project_spent: float = 0.0,
                written_ago_s: float = 0.0, project: str = "payments") -> str:
    """A budget-status.json as serve writes it: BudgetStatus fed with the day's calls (the
    project's a subscription call: KIT said 0, the price table did not)."""
    status = BudgetStatus(tmp_path / "serve" / STATUS_FILE,
                          (Budget("day", "global", 10.0), Budget("month", "global", 100.0),
                           Budget("day", "project", 2.0, project),
                           Budget("day", "project", 1.0, "elsewhere"),
                           Budget("turn", "global", 0.5)))
    status.add_call(call("other", cost=spent_day - project_spent))
    if project_spent:
        status.add_call(call(project, notional=project_spent, source="price_table"))
    snap = status.snapshot()
    snap["written_unix_ms"] -= int(written_ago_s * 1000)
    (tmp_path / name).write_text(json.dumps(snap))
    return name


def drive(tmp_path: Path, steps: list[str], **options: str) -> dict:
    gopath = tmp_path / "gopath"
    pkg = gopath / "src" / "budgetdrive"
    pkg.mkdir(parents=True, exist_ok=True)
    if not (gopath / "src" / "kit").exists():
        (gopath / "src" / "kit").symlink_to(STAND_IN)
    shutil.copy(EXTENSION, pkg / "kit_otel_budget.go")
    shutil.copy(DRIVER, pkg / "drive.go")
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_OPT_")}
    env.update({"GOPATH": str(gopath), "GO111MODULE": "off", "HOME": str(tmp_path),
                "BUDGET_DIR": str(tmp_path), "BUDGET_STEPS": ",".join(steps),
                "BUDGET_CWD": "/home/alice/src/payments",
                "KIT_OPT_KIT_OTEL_SPOOL_DIR": str(spool),
                **{"KIT_OPT_" + k.upper(): v for k, v in options.items()}})
    proc = subprocess.run(["yaegi", "run", "-syscall", "-tags", "ignore", "./"], cwd=pkg,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_status_bar_and_each_threshold_once(tmp_path):
    low = status_file(tmp_path, "low.json", 4.0, project_spent=0.5)  # 40 % of the day, 25 % of payments
    mid = status_file(tmp_path, "mid.json", 7.8, project_spent=1.6)  # 78 %, 80 %
    shown = drive(tmp_path, [f"use:{low}", "session_start", f"use:{mid}", "agent_end",
                             "agent_end"])
    assert shown["status"][0] == ("kit-otel:budget=budget day $4.00/$10.00 (40%) · month "
                                  "$4.00/$100.00 (4%) · day (payments) $0.50/$2.00 (25%)")
    assert "day $7.80/$10.00 (78%)" in shown["status"][-1]
    # 50 and 75 % crossed together: one notice for the highest, per budget, never repeated
    assert shown["info"] == [
        "kit-otel budget: 75% of the day budget spent ($7.80 of $10.00)",
        "kit-otel budget: 75% of the day (payments) budget spent ($1.60 of $2.00)"]
    assert not shown["blocked"]


def test_tool_calls_are_refused_when_over_only_if_asked(tmp_path):
    over = status_file(tmp_path, "over.json", 10.5)
    shown = drive(tmp_path, [f"use:{over}", "session_start", "tool_call"])
    assert not shown["blocked"] and shown["allowed"] == 1  # off by default
    assert "kit-otel budget: 100% of the day budget spent ($10.50 of $10.00)" in shown["info"]
    shown = drive(tmp_path, [f"use:{over}", "session_start", "tool_call"],
                  kit_otel_budget_block="true")
    assert len(shown["blocked"]) == 1 and "the day budget is spent ($10.50 of $10.00)" in \
        shown["blocked"][0]


def test_custom_thresholds(tmp_path):
    mid = status_file(tmp_path, "mid.json", 6.5)
    shown = drive(tmp_path, [f"use:{mid}", "session_start"],
                  kit_otel_budget_thresholds="25, 60%")
    assert shown["info"] == ["kit-otel budget: 60% of the day budget spent ($6.50 of $10.00)"]


@pytest.mark.parametrize("case", ["missing", "stale", "garbage"])
def test_serve_down_or_a_bad_file_is_said_once_and_nothing_else(tmp_path, case):
    if case == "missing":
        steps = ["use:-"]
    elif case == "stale":
        steps = [f"use:{status_file(tmp_path, 'stale.json', 11.0, written_ago_s=3600)}"]
    else:
        (tmp_path / "garbage.json").write_text("{not json")
        steps = ["use:garbage.json"]
    shown = drive(tmp_path, steps + ["session_start", "agent_end", "tool_call"],
                  kit_otel_budget_block="true")
    assert len(shown["info"]) == 1 and "budgets not shown" in shown["info"][0], shown
    assert not shown["status"] and not shown["blocked"] and shown["allowed"] == 1


def test_gofmt_and_go_vet_clean(tmp_path):
    for tool in ("gofmt", "go"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt install golang-go)")
    fmt = subprocess.run(["gofmt", "-l", str(EXTENSION), str(DRIVER)], capture_output=True,
                         text=True)
    assert fmt.returncode == 0 and fmt.stdout == "", fmt.stdout + fmt.stderr
    drive(tmp_path, ["use:-", "session_start"])  # lays out the GOPATH package
    pkg = tmp_path / "gopath" / "src" / "budgetdrive"
    for go_file in pkg.glob("*.go"):  # `-tags ignore` would pull the std lib's generators in
        go_file.write_text(go_file.read_text().replace("//go:build ignore\n", "", 1))
    vet = subprocess.run(["go", "vet", "."], cwd=pkg,
                         env={**os.environ, "GOPATH": str(tmp_path / "gopath"),
                              "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0"},
                         capture_output=True, text=True, timeout=600)
    assert vet.returncode == 0, vet.stdout + vet.stderr
