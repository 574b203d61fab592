"""One provider vocabulary on the dashboards, checked on what the translator really exports.

KIT names a provider by its prefix (`google`); the GenAI conventions by their well-known value
(`gcp.gemini`). The dashboards' `$provider` filters both the kit_* metrics (`provider`) and the
semantic-convention histograms (`gen_ai_provider_name`), so both labels must hold the same
vocabulary and the variable must offer it. A KIT session on Gemini and one on Anthropic go
through the real Translator and the OTel Prometheus reader, scraped once a minute into a real
Prometheus; every panel that filters by `$provider` is then queried with `$provider=gcp.gemini`.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections import defaultdict

import pytest

from ._common import DASHBOARDS_DIR, backfilled_prometheus, get_json
from .dashboard_queries import panel_query_specs
from .test_dashboards import DASHBOARD_FILES, PUSH_INTERVAL_S, _load, grafana_intervals

GEMINI = "gcp.gemini"  # what the conventions call KIT's `google`
SCRAPES = 30


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _translator_scrapes(end: int, gen_ai_latest: bool) -> list[str]:
    """OpenMetrics text of SCRAPES scrapes of the translator's /metrics registry, one a minute
    up to `end`, with KIT's events fed between them."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from kit_otel.cli.generator import KitScript, Step, Subagent, Tool, Usage, demo_session
    from kit_otel.translate.translator import Translator, TranslatorSettings

    registry = CollectorRegistry()
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    translator = Translator(TracerProvider(), meter_provider,
                            TranslatorSettings(sessions_root=None, gen_ai_latest=gen_ai_latest))
    # the calls happen now (today, UTC), so the spend-to-date gauges count them in today's window
    rng = random.Random(14)
    sessions = [demo_session(rng, pid=5000 + i, session_path=f"/home/a/.kit/sessions/{i}.jsonl",
                             start_ns=time.time_ns() - 600 * 10**9, provider=provider, model=model)
                for i, (provider, model) in enumerate([("google", "gemini-2.5-pro"),
                                                       ("anthropic", "claude-sonnet-4-5")])]
    # and a Gemini session whose subagent runs on Gemini too (the demo's subagents use Haiku)
    delegating = KitScript(pid=5002, session_path="/home/a/.kit/sessions/2.jsonl",
                           start_ns=time.time_ns() - 300 * 10**9, provider="google",
                           model="gemini-2.5-pro", rng=rng)
    delegating.session_start()
    child = Subagent(task="find every caller", tools=[Tool("grep", "search")],
                     child_usage=[Usage(2100, 120, 0, 0)], child_model=("google", "gemini-2.5-flash"))
    delegating.turn("who calls it?", [
        Step(text="Delegating.", usage=Usage(900, 40), tools=[Tool("subagent", "agent", subagent=child)]),
        Step(text="Three callers.", usage=Usage(1000, 50))])
    delegating.shutdown()
    sessions.append(delegating)
    events = sorted((e for s in sessions for e in s.events), key=lambda e: (e.ts_ns, e.pid, e.seq))
    per_scrape = -(-len(events) // SCRAPES)
    types: dict[str, str] = {}
    series: dict[str, dict[str, list[tuple[str, int]]]] = defaultdict(lambda: defaultdict(list))
    for i in range(SCRAPES):
        for event in events[i * per_scrape:(i + 1) * per_scrape]:
            translator.process(event)
        at = end - (SCRAPES - 1 - i) * PUSH_INTERVAL_S
        text = generate_latest(registry).decode()
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
                series[family.name][f"{sample.name}{{{labels}}}"].append((repr(float(sample.value)), at))
    translator.close()
    lines = []
    for name, kind in types.items():
        lines.append(f"# TYPE {name} {kind}\n")
        for key, points in series[name].items():
            lines.extend(f"{key} {value} {at}\n" for value, at in points)
    lines.append("# EOF\n")
    return lines


@pytest.fixture(scope="module", params=["default names", "gen_ai_latest_experimental"])
def translator_prometheus(tmp_path_factory, request):
    """Both name sets: OTEL_SEMCONV_STABILITY_OPT_IN must not empty a panel."""
    end = int(time.time()) // 60 * 60 - 60
    lines = _translator_scrapes(end, gen_ai_latest=request.param != "default names")
    with backfilled_prometheus(tmp_path_factory.mktemp("prometheus"), lines) as base:
        yield base, end


def _run(base: str, end: int, spec: dict) -> dict:
    if spec["instant"]:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": spec["expr"], "time": end})
    else:
        url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": spec["expr"], "start": end - 3600, "end": end, "step": 60})
    return get_json(url)


def _provider_specs(name: str, provider: str) -> list[dict]:
    """The queries of the dashboard's panels that filter by $provider, with $provider set."""
    values = {"__range": "1h", **grafana_intervals(3600)}
    with_it = panel_query_specs(DASHBOARDS_DIR / name, {**values, "provider": provider})
    without = panel_query_specs(DASHBOARDS_DIR / name, {**values, "provider": "\x00"})
    return [spec for spec, other in zip(with_it, without) if spec["expr"] != other["expr"]]


def _label_values(base: str, end: int, metric: str, label: str) -> set[str]:
    body = get_json(f"{base}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
        {"match[]": metric, "start": end - 3600, "end": end}))
    assert body["status"] == "success", body
    return set(body["data"])


def test_every_provider_panel_shows_the_translators_data_for_a_convention_provider(
        translator_prometheus):
    base, end = translator_prometheus
    checked, failures = 0, []
    for name in DASHBOARD_FILES:
        for spec in _provider_specs(name, GEMINI):
            checked += 1
            body = _run(base, end, spec)
            where = f"{name}: {spec['title']} [{spec['ref_id']}]"
            if body.get("status") != "success":
                failures.append(f"{where}: {body.get('error')} — {spec['expr']}")
                continue
            if not body["data"]["result"]:
                failures.append(f"{where}: no data for provider {GEMINI} — {spec['expr']}")
            for result in body["data"]["result"]:
                shown = {result["metric"].get(k) for k in ("provider", "gen_ai_provider_name")} - {None}
                if shown - {GEMINI}:
                    failures.append(f"{where}: the {GEMINI} filter let {shown} through")
    assert checked >= 10, checked  # the dashboards really filter by provider in many panels
    assert not failures, "\n".join(failures)


def test_kits_own_provider_names_are_no_label_value(translator_prometheus):
    # `google` is only KIT's prefix: no panel finds it, because no label holds it
    base, end = translator_prometheus
    for name in DASHBOARD_FILES:
        for spec in _provider_specs(name, "google"):
            body = _run(base, end, spec)
            assert body["status"] == "success" and body["data"]["result"] == [], spec["title"]


def test_the_provider_variable_offers_what_the_panels_filter_on(translator_prometheus):
    base, end = translator_prometheus
    (variable,) = [v for v in _load("kit-overview.json")["templating"]["list"]
                   if v["name"] == "provider"]
    metric, label = variable["query"]["query"][len("label_values("):-1].split(", ")
    offered = _label_values(base, end, metric, label)
    # the sessions' own providers (the demo's model change may add another), never KIT's prefix
    assert {GEMINI, "anthropic"} <= offered and "google" not in offered, offered
    # every label a panel filters with $provider holds exactly the variable's vocabulary
    for metric, label in [("kit_cost_usd_total", "provider"), ("kit_llm_calls_total", "provider"),
                          ("kit_spend_to_date_usd", "provider"),
                          ("gen_ai_client_operation_duration_seconds_count", "gen_ai_provider_name"),
                          ('{__name__=~"gen_ai_client_token_usage_count|'
                           'gen_ai_client_inference_usage_input_tokens_count"}',
                           "gen_ai_provider_name")]:
        assert _label_values(base, end, metric, label) == offered, (metric, label)
