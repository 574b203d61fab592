"""budget-status.json: the day/month spend per project that serve hands to code inside KIT."""

from __future__ import annotations

import json
import time

import pytest
from harness import make_harness
from scenarios import script

from otlp_receiver import OTLPReceiver
from test_serve import InProcess, settings_for

from kit_otel.translate.records import LlmCallRecord
from kit_otel.serve.budget_status import STATUS_FILE, BudgetStatus
from kit_otel.config import Budget
from kit_otel.model.decoder import encode_event
from kit_otel.cli.generator import Step, Usage

DAY_NS = 86_400 * 10**9


def call(project="alpha", cost=0.0, notional=0.0, source="kit", ts_ns=None) -> LlmCallRecord:
    return LlmCallRecord(provider="anthropic", model="claude-sonnet-4-5", agent="main",
                         tokens=(0, 0, 0, 0), cost=cost, cost_source=source,
                         notional_cost=notional, duration_ns=0, ts_ns=ts_ns or time.time_ns(),
                         project=project)


def test_day_and_month_spend_per_project_and_in_all(tmp_path):
    status = BudgetStatus(tmp_path / STATUS_FILE, (Budget("day", "global", 10.0),
                                                   Budget("month", "project", 50.0, "alpha")))
    status.add_call(call("alpha", cost=1.25))
    status.add_call(call("beta", notional=0.5, source="price_table"))
    status.add_call(call("alpha", source="unknown"))
    status.maybe_write(force=True)
    saved = json.loads((tmp_path / STATUS_FILE).read_text())
    assert saved["spend"]["day"] == {"alpha": 1.25, "beta": 0.5, "*": 1.75}
    assert saved["spend"]["month"] == saved["spend"]["day"]
    assert saved["cost_sources"] == ["kit", "price_table"]
    assert saved["budgets"] == [{"window": "day", "scope": "global", "usd": 10.0},
                                {"window": "month", "scope": "project", "usd": 50.0,
                                 "project": "alpha"}]
    assert saved["windows"]["day"] == time.strftime("%Y-%m-%d", time.gmtime())


def test_the_user_chooses_which_cost_counts(tmp_path):
    status = BudgetStatus(tmp_path / STATUS_FILE, (), cost_sources=("kit",))
    status.add_call(call(cost=1.0))
    status.add_call(call(notional=3.0, source="price_table"))
    assert status.snapshot()["spend"]["day"] == {"alpha": 1.0, "*": 1.0}


def test_a_new_day_starts_at_zero_and_late_calls_of_yesterday_do_not_count(tmp_path):
    status = BudgetStatus(tmp_path / STATUS_FILE, ())
    now = time.time_ns()
    status.add_call(call(cost=2.0, ts_ns=now))
    status.add_call(call(cost=5.0, ts_ns=now - DAY_NS))  # replayed late: yesterday's
    assert status.snapshot()["spend"]["day"]["*"] == 2.0
    status.add_call(call(cost=1.0, ts_ns=now + DAY_NS))
    assert status.snapshot()["spend"]["day"] == {"alpha": 1.0, "*": 1.0}


def test_a_restart_keeps_todays_spend_and_a_broken_file_is_not_fatal(tmp_path):
    path = tmp_path / STATUS_FILE
    first = BudgetStatus(path, ())
    first.add_call(call(cost=0.75))
    first.maybe_write(force=True)
    again = BudgetStatus(path, ())
    assert again.snapshot()["spend"]["day"] == {"alpha": 0.75, "*": 0.75}
    path.write_text("{not json")
    assert BudgetStatus(path, ()).snapshot()["spend"]["day"] == {}


def test_writes_are_throttled(tmp_path):
    path = tmp_path / STATUS_FILE
    status = BudgetStatus(path, (), write_interval_s=60)
    status.maybe_write(now=1000.0)
    first = path.read_bytes()
    status.add_call(call(cost=1.0))
    status.maybe_write(now=1001.0)
    assert path.read_bytes() == first  # within the interval: not rewritten
    status.maybe_write(now=1061.0)
    assert json.loads(path.read_bytes())["spend"]["day"]["*"] == 1.0


def test_translator_calls_feed_notional_spend_of_a_subscription_user(tmp_path):
    h = make_harness()
    status = BudgetStatus(tmp_path / STATUS_FILE, ())
    h.translator.on_llm_call.append(status.add_call)
    s = script(start=time.time_ns())
    s.oauth = True
    s.session_start()
    s.turn("hi", [Step(text="ok", usage=Usage(1000, 100, 10000, 0))])
    h.feed(s.events).close()
    expected = (1000 * 3 + 100 * 15 + 10000 * 0.3) / 1e6
    assert status.snapshot()["spend"]["day"]["proj"] == pytest.approx(expected, rel=1e-12)


def test_serve_writes_the_status_next_to_the_spool(tmp_path):
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"
    spool.mkdir()
    s = script(start=time.time_ns())
    s.session_start()
    s.turn("hi", [Step(text="ok", usage=Usage(1200, 85, 900, 0))])
    kit_cost = sum(e.data.Cost for e in s.events if e.type == "llm_usage")
    (spool / "kit-4242-20260609T131810.000000000Z-1.ndjson").write_bytes(
        b"".join(encode_event(e) for e in s.events))
    with OTLPReceiver() as receiver:
        serve = InProcess(settings_for(receiver, spool, state, root, budget_day_usd=5.0))
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                path = spool / STATUS_FILE
                if path.exists() and json.loads(path.read_text())["spend"]["day"]:
                    break
                time.sleep(0.1)
        finally:
            assert serve.stop() == 0
    saved = json.loads((spool / STATUS_FILE).read_text())
    assert saved["spend"]["day"]["*"] == pytest.approx(kit_cost, rel=1e-12)
    assert saved["budgets"] == [{"window": "day", "scope": "global", "usd": 5.0}]
