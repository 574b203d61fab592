"""Synthetic kit-otel metrics in OpenMetrics text, for backfilling a test Prometheus.

Every series of docs/design.md#metrics with realistic labels (plus the labels the scrape and the OTel
translation add: job, instance, otel_scope_name), sampled every `step` seconds, so that every
dashboard query has something to return. Values follow simple deterministic curves; nothing
here claims to be what kit-otel emits for a given KIT stream — that is the end-to-end test's job.
"""

from __future__ import annotations

import math
from typing import Iterator

COMMON = {"job": "kit-otel", "instance": "host-a:9464", "otel_scope_name": "kit_otel"}
PROJECTS = ("alpha", "beta")
MODELS = (("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-5"))
TOOLS = (("read", "builtin"), ("bash", "builtin"), ("subagent", "builtin"))
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TOKENS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
USD = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25)
RATIO = (0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def _labels(**labels: str) -> str:
    merged = {**labels, **COMMON}
    return "{" + ",".join(f'{k}="{v}"' for k, v in merged.items()) + "}"


def _fmt(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else f"{float(value):.1f}"


class _Family:
    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.series: list[tuple[str, list[float]]] = []


def _counter(times: list[int], per_second: float, phase: float = 0.0) -> list[float]:
    out, total, prev = [], 0.0, times[0]
    for t in times:
        total += per_second * (t - prev) * (1.2 + math.sin(t / 900.0 + phase))
        prev = t
        out.append(round(total, 6))
    return out


def _histogram(fam: _Family, times: list[int], bounds: tuple[float, ...], per_second: float,
               typical: float, **labels: str) -> None:
    """Observations around `typical`; cumulative buckets, _sum and _count."""
    counts = _counter(times, per_second)
    for bound in bounds:
        share = 1.0 / (1.0 + math.exp(-(math.log(bound) - math.log(typical)) * 2.0))
        fam.series.append((f'{fam.name}_bucket{_labels(**labels, le=_fmt(bound))}',
                           [round(c * share, 6) for c in counts]))
    fam.series.append((f'{fam.name}_bucket{_labels(**labels, le="+Inf")}', counts))
    fam.series.append((f"{fam.name}_sum{_labels(**labels)}", [round(c * typical, 6) for c in counts]))
    fam.series.append((f"{fam.name}_count{_labels(**labels)}", counts))


def families(times: list[int]) -> list[_Family]:
    fams: list[_Family] = []

    def family(name: str, kind: str) -> _Family:
        fams.append(_Family(name, kind))
        return fams[-1]

    tokens = family("kit_tokens", "counter")
    cost = family("kit_cost_usd", "counter")
    calls = family("kit_llm_calls", "counter")
    for i, (provider, model) in enumerate(MODELS):
        for project in PROJECTS:
            for agent in ("main", "subagent"):
                scale = 1.0 if agent == "main" else 0.3
                for ttype, rate in (("input", 300), ("output", 60), ("cache_read", 2000), ("cache_write", 100)):
                    tokens.series.append((f"kit_tokens_total{_labels(provider=provider, model=model, type=ttype, agent=agent, project=project)}",
                                          _counter(times, rate * scale, i)))
                # subscription (OAuth) use of Anthropic in the first project: notional cost
                source = ({"cost_source": "price_table", "price_data": "genai-prices 0.2.3"}
                          if provider == "anthropic" and project == PROJECTS[0]
                          else {"cost_source": "kit"})
                cost.series.append((f"kit_cost_usd_total{_labels(provider=provider, model=model, agent=agent, project=project, **source)}",
                                    _counter(times, 0.002 * scale * (i + 1), i)))
        for reason in ("tool-calls", "stop"):
            calls.series.append((f"kit_llm_calls_total{_labels(provider=provider, model=model, finish_reason=reason)}",
                                 _counter(times, 0.2)))

    # kit-otel's spend in the current UTC window: the cost counter's growth since the start
    spend = family("kit_spend_to_date_usd", "gauge")
    for series, values in list(cost.series):
        labels = series[len("kit_cost_usd_total{"):-1]
        for window in ("day", "month"):
            spend.series.append((f'kit_spend_to_date_usd{{window="{window}",{labels}}}',
                                 [v - values[0] for v in values]))

    usage = family("gen_ai_client_token_usage", "histogram")
    duration = family("gen_ai_client_operation_duration_seconds", "histogram")
    ttfc = family("gen_ai_client_operation_time_to_first_chunk_seconds", "histogram")
    context = family("kit_context_usage_ratio", "histogram")
    for provider, model in MODELS:
        for ttype, typical in (("input", 3000), ("output", 400)):
            _histogram(usage, times, TOKENS, 0.2, typical, gen_ai_operation_name="chat",
                       gen_ai_provider_name=provider, gen_ai_request_model=model, gen_ai_token_type=ttype)
        _histogram(duration, times, SECONDS, 0.2, 4.0, gen_ai_operation_name="chat",
                   gen_ai_provider_name=provider, gen_ai_request_model=model)
        _histogram(ttfc, times, SECONDS, 0.2, 0.8, gen_ai_operation_name="chat",
                   gen_ai_provider_name=provider, gen_ai_request_model=model)
        _histogram(context, times, RATIO, 0.001, 0.85, model=model)

    turns = family("kit_turns", "counter")
    sessions = family("kit_sessions", "counter")
    turn_cost = family("kit_turn_cost_usd", "histogram")
    for project in PROJECTS:
        for reason, rate in (("stop", 0.03), ("error", 0.003)):
            turns.series.append((f"kit_turns_total{_labels(stop_reason=reason, project=project)}", _counter(times, rate)))
        sessions.series.append((f"kit_sessions_total{_labels(project=project)}", _counter(times, 0.001)))
        _histogram(turn_cost, times, USD, 0.03, 0.2, project=project)
    turn_duration = family("kit_turn_duration_seconds", "histogram")
    for reason in ("stop", "error"):
        _histogram(turn_duration, times, SECONDS, 0.03, 40.0, stop_reason=reason)

    tool_calls = family("kit_tool_calls", "counter")
    tool_duration = family("kit_tool_duration_seconds", "histogram")
    for tool, kind in TOOLS:
        for outcome, rate in (("ok", 0.2), ("error", 0.02), ("blocked", 0.002)):
            tool_calls.series.append((f"kit_tool_calls_total{_labels(tool=tool, kind=kind, outcome=outcome)}", _counter(times, rate)))
        _histogram(tool_duration, times, SECONDS, 0.2, 0.4, tool=tool, kind=kind)

    for name, label, values in (("kit_errors", "kind", ("rate_limit", "timeout")),
                                ("kit_retries", "kind", ("overloaded",)),
                                ("kit_compactions", "automatic", ("true", "false")),
                                ("kit_subagents", "outcome", ("ok", "error")),
                                ("kit_otel_events", "type", ("llm_usage", "tool_call", "agent_end")),
                                ("kit_otel_events_rejected", "reason", ("bad_json",)),
                                ("kit_otel_dropped", "source", ("bridge",))):
        fam = family(name, "counter")
        for value in values:
            fam.series.append((f"{name}_total{_labels(**{label: value})}", _counter(times, 0.01)))

    budget = family("kit_budget_usd", "gauge")
    for labels, usd in (({"window": "day", "scope": "global"}, 50), ({"window": "month", "scope": "global"}, 1000),
                        ({"window": "turn", "scope": "global"}, 1),
                        ({"window": "day", "scope": "project", "project": "alpha"}, 20),
                        ({"window": "month", "scope": "project", "project": "alpha"}, 400),
                        ({"window": "month", "scope": "model", "model": "gpt-5"}, 300),
                        ({"window": "day", "scope": "model", "model": "gpt-5"}, 15)):
        budget.series.append((f"kit_budget_usd{_labels(**labels)}", [usd] * len(times)))
    lag = family("kit_otel_lag_seconds", "gauge")
    lag.series.append((f"kit_otel_lag_seconds{_labels()}", [0.5] * len(times)))
    ext = family("kit_ext_state_value", "gauge")
    ext.series.append((f'kit_ext_state_value{_labels(key="usage-budget:warn-at-usd", project="alpha")}', [5] * len(times)))
    target_info = family("target_info", "gauge")  # OTEL_RESOURCE_ATTRIBUTES=team=payments
    target_info.series.append((f'target_info{_labels(service_name="kit-otel", team="payments")}',
                               [1] * len(times)))
    up = family("up", "gauge")
    up.series.append((f"up{_labels()}", [1] * len(times)))
    alerts = family("ALERTS", "gauge")
    alerts.series.append((f'ALERTS{_labels(alertname="KitBudgetProjectedOverrun", alertstate="firing", severity="warning", window="day", scope="global")}',
                          [1] * len(times)))
    return fams


def openmetrics(start: int, end: int, step: int = 30) -> Iterator[str]:
    """OpenMetrics text lines (timestamps in seconds), family by family, ending with # EOF."""
    times = list(range(start, end + 1, step))
    for fam in families(times):
        yield f"# TYPE {fam.name} {fam.kind}\n"
        for series, values in fam.series:
            for t, v in zip(times, values):
                yield f"{series} {_fmt(v)} {t}\n"
    yield "# EOF\n"


def series_names() -> set[str]:
    """Metric names of every synthetic series."""
    return {series.split("{", 1)[0] for fam in families([0, 30]) for series, _ in fam.series}
