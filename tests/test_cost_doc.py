"""docs/cost.md's worked example, recomputed: the page's token counts go through the translator as
a subscription turn (KIT's Cost 0), and every number the page states must be what kit-otel emits
from the installed price table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import make_harness
from scenarios import script

from kit_otel.model import names as n
from kit_otel.cli.generator import Step, Usage
from kit_otel.translate.pricing import CostSource, price_data_version

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cost.md"


def worked_example() -> str:
    text = PAGE.read_text()
    start = text.index("## Worked example: a subscription user")
    return text[start:text.index("\n## ", start + 1)]


def number(text: str) -> float:
    return float(text.replace(",", ""))


def calls(section: str) -> list[tuple[Usage, float]]:
    """The example's table: per call its tokens and the notional cost the page states."""
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            usage = Usage(*(int(number(c)) for c in cells[1:5]))
            stated, = re.findall(r"\*\*\$([\d.]+)\*\*", cells[5])
            rows.append((usage, float(stated)))
    return rows


def test_the_worked_example_is_what_kit_otel_emits():
    section = worked_example()
    rows = calls(section)
    assert len(rows) == 2
    model = re.search(r"on `anthropic/([^`]+)`", section).group(1)
    s = script(provider="anthropic", model=model)
    s.oauth = True  # KIT's OAuth path: Cost 0
    s.session_start()
    s.turn("go", [Step(text="a", usage=rows[0][0]), Step(text="b", usage=rows[1][0])])
    h = make_harness().feed(s.events).close()
    chats = sorted((sp for sp in h.spans if sp.name.startswith("chat")),
                   key=lambda sp: sp.start_time)
    assert [sp.name for sp in chats] == [f"chat {model}"] * 2
    for (usage, stated), chat in zip(rows, chats):
        a = chat.attributes
        assert a[n.KIT_COST_USD] == 0.0 and a[n.KIT_COST_SOURCE] == CostSource.PRICE_TABLE
        assert a[n.KIT_COST_NOTIONAL_USD] == pytest.approx(stated, rel=1e-12)
        assert a[n.KIT_COST_SUBSCRIPTION] is True
        assert f'`kit.cost.priced_as="{a[n.KIT_COST_PRICED_AS]}"`' in section
        assert f'`kit.cost.price_data="{a[n.KIT_COST_PRICE_DATA]}"`' in section
    assert f'"{price_data_version()}"' in section  # the page names the installed price data
    # the published per-token prices the page quotes give the same numbers
    rates = [number(re.search(pattern + r"\s*\$(\d+(?:\.\d+)?)", section).group(1)) for pattern in
             (r"input", r"output", r"cache read", r"cache write \(5 min\)")]
    for usage, stated in rows:
        by_rates = (usage.input * rates[0] + usage.output * rates[1]
                    + usage.cache_read * rates[2] + usage.cache_write * rates[3]) / 1e6
        assert by_rates == pytest.approx(stated, rel=1e-12)
    turn, = h.spans_named(n.SPAN_TURN)
    total = sum(stated for _, stated in rows)
    assert f"`kit.turn.cost.notional_usd={total:g}`" in section
    assert turn.attributes[n.KIT_TURN_COST_USD] == 0.0
    assert turn.attributes[n.KIT_TURN_COST_NOTIONAL_USD] == pytest.approx(total, rel=1e-12)
    assert h.total(n.COST.otel_name, cost_source="price_table") == pytest.approx(total, rel=1e-12)
    assert h.total(n.TURN_COST.otel_name, cost_source="price_table") == \
        pytest.approx(total, rel=1e-12)
    # the over-pricing the page warns of: every cache token priced as plain input
    cache = sum(u.cache_read + u.cache_write for u, _ in rows)
    naive = sum((u.input + u.cache_read + u.cache_write) * rates[0] + u.output * rates[1]
                for u, _ in rows) / 1e6
    claim = re.search(r"Pricing the ([\d,]+) cache tokens as plain input would have said "
                      r"\$([\d.]+) for this turn, ([\d.]+)×", section)
    assert claim, "the page states the over-pricing"
    assert int(number(claim.group(1))) == cache
    assert float(claim.group(2)) == pytest.approx(naive, rel=1e-12)
    assert float(claim.group(3)) == round(naive / total, 1)
