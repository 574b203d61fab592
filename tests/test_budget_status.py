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


def test_a_restart_starts_from_the_ledger_not_from_the_file(tmp_path):
    """serve reads the spool again from its last checkpoint, so the spend starts from what the
    checkpoints restored (the translator's spend-to-date ledger), in the sources counted."""
    h = make_harness()
    s = script(start=time.time_ns())
    s.oauth = True  # one notional (price_table) call ...
    s.session_start()
    s.turn("hi", [Step(text="ok", usage=Usage(1000, 100, 0, 0))])
    h.feed(s.events)
    path = tmp_path / STATUS_FILE
    path.write_text('{"version": 1, "windows": {}, "spend": {"day": {"*": 99}}}')  # not read
    status = BudgetStatus(path, ())
    status.start_from(h.translator.metrics.spend_to_date)
    notional = (1000 * 3 + 100 * 15) / 1e6
    assert status.snapshot()["spend"]["day"] == pytest.approx({"proj": notional, "*": notional})
    billed_only = BudgetStatus(path, (), cost_sources=("kit",))
    billed_only.start_from(h.translator.metrics.spend_to_date)
    assert billed_only.snapshot()["spend"]["day"] == {}
    h.close()


def test_an_idle_serve_rewrites_the_file_and_rolls_into_a_new_day(tmp_path, monkeypatch):
    path = tmp_path / STATUS_FILE
    status = BudgetStatus(path, (), heartbeat_s=60)
    status.add_call(call(cost=5.0))
    status.maybe_write(now=1000.0)
    first = json.loads(path.read_text())["written_unix_ms"]
    time.sleep(0.01)
    status.maybe_write(now=1030.0)  # nothing new, within the heartbeat: left alone
    assert json.loads(path.read_text())["written_unix_ms"] == first
    status.maybe_write(now=1061.0)  # a heartbeat: serve is up
    assert json.loads(path.read_text())["written_unix_ms"] > first
    tomorrow = time.time_ns() + DAY_NS
    monkeypatch.setattr("kit_otel.serve.budget_status.time.time_ns", lambda: tomorrow)
    status.maybe_write(now=1062.0)  # past midnight, nothing spent since
    saved = json.loads(path.read_text())
    assert saved["windows"]["day"] == time.strftime("%Y-%m-%d", time.gmtime(tomorrow // 10**9))
    assert saved["spend"]["day"] == {}


def test_a_call_a_nanosecond_before_midnight_is_the_old_days(tmp_path):
    status = BudgetStatus(tmp_path / STATUS_FILE, ())
    midnight = (time.time_ns() // DAY_NS + 1) * DAY_NS
    status.windows = {"day": "1970-01-01", "month": "1970-01"}
    status.add_call(call(cost=1.0, ts_ns=midnight - 1))
    assert status.windows["day"] == time.strftime("%Y-%m-%d", time.gmtime(midnight // 10**9 - 1))


def test_serve_stopped_mid_turn_does_not_count_a_call_twice(tmp_path):
    """A stop in an open turn: the next start reads the spool again from the last checkpoint
    (before the turn), so its first call is translated again; the file counts it once."""
    from kit_otel.cli.generator import Tool
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"
    spool.mkdir()
    s = script(start=time.time_ns() - 60 * 10**9)
    s.session_start()
    s.turn("one", [Step(text="ok", usage=Usage(1000, 100, 0, 0))])
    s.turn("two", [Step(text="look", usage=Usage(2000, 200, 0, 0),
                        tools=[Tool(name="read", kind="read")]),
                   Step(text="done", usage=Usage(3000, 300, 0, 0))])
    usages = [i for i, e in enumerate(s.events) if e.type == "llm_usage"]
    kit_cost = sum(e.data.Cost for e in s.events if e.type == "llm_usage")
    lines = [encode_event(e) for e in s.events]
    cut = usages[1] + 1  # after turn two's first call, before its end
    name = "kit-4242-20260609T131810.000000000Z-1.ndjson"
    (spool / name).write_bytes(b"".join(lines[:cut]))
    with OTLPReceiver() as receiver:
        settings = settings_for(receiver, spool, state, root)
        run = InProcess(settings)
        receiver.wait_for(lambda: run.server.processed >= cut, timeout=30)
        assert run.server.translator.open_turn_count() == 1
        assert run.stop() == 0
        with open(spool / name, "ab") as fh:
            fh.write(b"".join(lines[cut:]))
        run = InProcess(settings)
        receiver.wait_for(lambda: run.server.processed >= len(lines) - cut, timeout=30)
        assert run.stop() == 0
    saved = json.loads((spool / STATUS_FILE).read_text())
    assert saved["spend"]["day"]["*"] == pytest.approx(kit_cost, rel=1e-12)


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
