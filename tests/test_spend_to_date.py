"""kit_spend_to_date_usd: each process's exact spend in the current UTC day and month, what the
budget rules compare (a gauge survives any gap in delivery; summed rates do not)."""

from __future__ import annotations

import calendar

import pytest
from harness import make_harness
from scenarios import script

from kit_otel.serve.checkpoint import totals_from_json, totals_to_json
from kit_otel.cli.generator import Step, Usage
from kit_otel.translate.instruments import WindowSpend
from kit_otel.translate.translator import TranslatorSettings

NOV_30_23H = calendar.timegm((2026, 11, 30, 23, 0, 0)) * 10**9
DEC_01_01H = calendar.timegm((2026, 12, 1, 1, 0, 0)) * 10**9


def _turn_at(start_ns: int, pid: int):
    s = script(pid=pid, start=start_ns, seed=pid)
    s.session_start()
    s.turn("go", [Step(text="ok", usage=Usage(1000, 100, 0, 0))])
    return s


def _harness(now_ns: int):
    h = make_harness(TranslatorSettings(sessions_root=None))
    h.translator.metrics.spend_to_date._clock = lambda: now_ns / 1e9
    return h


def _spend(h) -> dict[str, float]:
    out: dict[str, float] = {}
    for point in h.points("kit.spend_to_date.usd"):
        window = dict(point.attributes)["window"]
        out[window] = out.get(window, 0.0) + point.value
    return out


def test_spend_is_split_by_utc_day_and_month():
    h = _harness(DEC_01_01H + 3600 * 10**9)
    h.feed(_turn_at(NOV_30_23H, 1).events).feed(_turn_at(DEC_01_01H, 2).events).close()
    cost_all = h.total("kit.cost.usd")
    cost_today = _turn_at(DEC_01_01H, 2).total_cost
    assert 0 < cost_today < cost_all
    spend = _spend(h)
    # 1 December: yesterday's turn (30 November) is in neither the day nor the month
    assert spend == {"day": pytest.approx(cost_today), "month": pytest.approx(cost_today)}
    point = next(p for p in h.points("kit.spend_to_date.usd"))
    assert "period" not in point.attributes
    assert {"project", "model", "provider", "window"} <= set(point.attributes)


def test_the_month_holds_every_day_of_it():
    h = _harness(NOV_30_23H + 1800 * 10**9)
    h.feed(_turn_at(NOV_30_23H - 86400 * 10**9 * 3, 1).events).feed(_turn_at(NOV_30_23H, 2).events)
    h.close()
    spend = _spend(h)
    assert spend["month"] == pytest.approx(h.total("kit.cost.usd"))
    assert spend["day"] == pytest.approx(_turn_at(NOV_30_23H, 2).total_cost)


def test_a_checkpoint_restores_the_current_windows_and_drops_past_ones():
    h = _harness(DEC_01_01H + 60 * 10**9)
    h.feed(_turn_at(NOV_30_23H, 1).events).feed(_turn_at(DEC_01_01H, 2).events).close()
    saved = totals_from_json(totals_to_json(h.translator.metrics.counter_totals()))
    assert "kit.spend_to_date.usd" in saved
    restarted = _harness(DEC_01_01H + 120 * 10**9)
    restarted.translator.metrics.restore_counter_totals(saved)
    assert _spend(restarted) == _spend(h)
    periods = {dict(k)["period"] for k in restarted.translator.metrics.spend_to_date.totals()}
    assert periods == {"2026-12-01", "2026-12"}


def test_keys_name_the_window_and_period():
    keys = WindowSpend.keys(DEC_01_01H, {"project": "p"})
    assert [dict(k) for k in keys] == [
        {"project": "p", "window": "day", "period": "2026-12-01"},
        {"project": "p", "window": "month", "period": "2026-12"}]
