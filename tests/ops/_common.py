"""Shared helpers for the ops tests: repository paths, YAML loading, the metric contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ports import free_port  # noqa: F401  (the ops tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_DIR = ROOT / "collector-config"
ALERTS_DIR = ROOT / "alerts"
DASHBOARDS_DIR = ROOT / "dashboards"
DOCS_DIR = ROOT / "docs"

# docs/design.md#metrics: the Prometheus exposition names dashboards and alert rules may query.
# Counters are listed with their _total suffix, histograms by base name (the _bucket, _sum and
# _count series derive from it), gauges as they are.
COUNTERS = frozenset({
    "kit_tokens_total", "kit_cost_usd_total", "kit_llm_calls_total", "kit_turns_total",
    "kit_tool_calls_total", "kit_errors_total", "kit_retries_total", "kit_compactions_total",
    "kit_subagents_total", "kit_sessions_total", "kit_otel_events_total",
    "kit_otel_events_rejected_total", "kit_otel_dropped_total",
})
HISTOGRAMS = frozenset({
    "gen_ai_client_token_usage", "gen_ai_client_operation_duration_seconds",
    # OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental's name for the input side of it
    "gen_ai_client_inference_usage_input_tokens",
    "gen_ai_client_operation_time_to_first_chunk_seconds", "kit_turn_duration_seconds", "kit_turn_cost_usd",
    "kit_tool_duration_seconds", "kit_context_usage_ratio",
})
GAUGES = frozenset({"kit_budget_usd", "kit_otel_lag_seconds", "kit_ext_state_value",
                    "kit_spend_to_date_usd"})
# The Collectors' own metrics (service::telemetry) the Collector alerts read; the live fleet
# test checks them against a real Collector.
COLLECTOR_SERIES = frozenset({
    "otelcol_exporter_queue_size", "otelcol_exporter_queue_capacity",
    "otelcol_exporter_send_failed_metric_points_total",
    "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
})
# Series Prometheus itself provides, and the OTel→Prometheus translation's resource series
# (target_info: the resource attributes of each kit-otel process, e.g. team).
STANDARD = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "target_info"})

CONTRACT_SERIES = (COUNTERS | GAUGES | STANDARD
                   | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")})


def load_yaml(path: Path):
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed (test extra: pyyaml)")
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# ── PromQL metric-name extraction ────────────────────────────────────────────────────────────
_PROMQL_FUNCTIONS = frozenset("""
abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
day_of_year days_in_month delta deriv exp floor histogram_count histogram_fraction
histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta
increase irate label_join label_replace ln log2 log10 minute month predict_linear rate resets
round scalar sgn sort sort_desc sqrt time timestamp vector year avg_over_time min_over_time
max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time
stdvar_over_time last_over_time present_over_time acos acosh asin asinh atan atanh cos cosh
sin sinh tan tanh deg pi rad sort_by_label sort_by_label_desc double_exponential_smoothing
""".split())
_PROMQL_KEYWORDS = frozenset("""
sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
limit_ratio by without on ignoring group_left group_right and or unless bool offset inf nan
start end
""".split())
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")


def promql_metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (best effort, but strict enough for tests).

    Removes string literals, label matchers `{...}`, range/subquery brackets and grouping
    clauses, then keeps identifiers that are neither functions nor keywords.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)", text):
        word = match.group(1)
        if word.lower() in _PROMQL_KEYWORDS or word in _PROMQL_FUNCTIONS:
            continue
        if _DURATION.match(word) or re.fullmatch(r"[eE]\d*", word):
            continue
        names.add(word)
    return names


def get_json(url: str) -> dict:
    """GET a Prometheus API URL; 400/422 answers carry the PromQL error as JSON."""
    import json
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def find_otelcol() -> str | None:
    """A real Collector: $KIT_OTEL_OTELCOL, otelcol-contrib / otelcol on PATH, then the shared
    tools beside the repository (../shared/tools/otelcol, as CI lays it out)."""
    import os
    import shutil
    explicit = os.environ.get("KIT_OTEL_OTELCOL")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("otelcol-contrib", "otelcol"):
        found = shutil.which(name)
        if found:
            return found
    for candidate in (ROOT.parent / "shared" / "tools" / "otelcol",
                      Path("/work/shared/tools/otelcol")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_otelcol() -> str:
    """The Collector binary, or a skip (which CI, with KIT_OTEL_REQUIRE_TOOLS=1, turns into a
    failure)."""
    found = find_otelcol()
    if found is None:
        pytest.skip("no OpenTelemetry Collector: set KIT_OTEL_OTELCOL, put otelcol-contrib on "
                    "PATH, or provide ../shared/tools/otelcol")
    return found


def backfilled_prometheus(work: Path, openmetrics_lines):
    """A real Prometheus on 127.0.0.1 serving a TSDB made by `promtool tsdb create-blocks-from
    openmetrics` from the given lines; a context manager yielding its base URL (a skip without
    prometheus/promtool, which CI turns into a failure)."""
    import contextlib
    import shutil
    import subprocess
    import time
    import urllib.request

    prom, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prom or not promtool:
        pytest.skip("prometheus/promtool not installed (Debian package prometheus)")

    @contextlib.contextmanager
    def running():
        data = work / "data.om"
        with data.open("w") as fh:
            fh.writelines(openmetrics_lines)
        tsdb = work / "tsdb"
        proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(data),
                               str(tsdb)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        config = work / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\n")
        port = free_port()
        log_path = work / "prometheus.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(
                [prom, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=10y"],
                stdout=log, stderr=subprocess.STDOUT, cwd=work)
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.time() + 60
                while True:
                    try:
                        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
                            if resp.status == 200:
                                break
                    except OSError:
                        pass
                    if server.poll() is not None or time.time() > deadline:
                        pytest.fail("prometheus did not start:\n" + log_path.read_text())
                    time.sleep(0.3)
                yield base
            finally:
                server.terminate()
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()

    return running()
