"""The project label (a cwd basename) is bounded like tools and models: CI workspaces that make a
new directory per job fold into `other` instead of a new series set each."""

from __future__ import annotations

import pytest
from harness import make_harness
from scenarios import T0, script

from kit_otel.cli.generator import Step, Usage
from kit_otel.translate.translator import TranslatorSettings


def _session_in(project: str, pid: int):
    path = f"/home/ci/.kit/sessions/builds--{project}/2026-06-09T13-18-10-000Z_{pid:012x}.jsonl"
    s = script(path=path, pid=pid, start=T0 + pid * 10**9)
    s.session_start()
    s.turn("build", [Step(text="done", usage=Usage(1000, 100, 0, 0))])
    return s


def test_projects_beyond_the_limit_fold_into_other_and_keep_every_dollar():
    h = make_harness(TranslatorSettings(sessions_root=None, max_projects=3))
    projects = [f"job-{i}" for i in range(6)]
    for pid, project in enumerate(projects, start=100):
        h.feed(_session_in(project, pid).events)
    h.close()
    labels = {dict(p.attributes)["project"] for p in h.points("kit.cost.usd")}
    assert labels == {"job-0", "job-1", "job-2", "other"}
    turn_labels = {dict(p.attributes)["project"] for p in h.points("kit.turns")}
    assert turn_labels == labels
    per_project = h.total("kit.cost.usd", project="job-0")
    assert per_project > 0
    assert h.total("kit.cost.usd", project="other") == pytest.approx(3 * per_project, rel=1e-9)
    # spans keep the real project: only the metric label is bounded
    span_projects = {s.attributes.get("kit.project") for s in h.spans_named("invoke_agent kit")}
    assert span_projects == set(projects)



def test_a_project_with_a_budget_keeps_its_label_beyond_the_limit():
    """Folded into `other`, a budgeted project's spend could never meet its kit_budget_usd."""
    import random
    import time
    from kit_otel.cli.generator import KitScript
    from kit_otel.config import Budget, load_settings
    from kit_otel.export.pipeline import Pipeline
    settings = load_settings(env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                                  "KIT_OTEL_MAX_PROJECTS": "3"})
    settings.budgets = (Budget("day", "project", 1.0, project="payments"),)
    pipeline = Pipeline(settings)
    try:
        now = time.time_ns() - 600 * 10**9
        for i, project in enumerate(["ci-job-1", "ci-job-2", "ci-job-3", "payments"]):
            s = KitScript(pid=100 + i, session_path=f"/s/home--a--{project}/{i}.jsonl",
                          start_ns=now + i * 10**9, provider="anthropic",
                          model="claude-sonnet-4-5-20250929", rng=random.Random(i))
            s.session_start()
            s.turn("hi", [Step(text="ok", usage=Usage(1000, 10, 0, 0))])
            for event in s.events:
                pipeline.translator.process(event)
        projects = {dict(k).get("project")
                    for k in pipeline.translator.metrics.spend_to_date.totals()}
        assert "payments" in projects and "other" not in projects
    finally:
        pipeline.shutdown()
