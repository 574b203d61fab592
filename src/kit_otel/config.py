"""Effective configuration: command line > environment > config file (TOML) > defaults.

Standard OTEL_* variables mean what they mean everywhere else; kit-otel's own settings use the
KIT_OTEL_ prefix and the same names (lower case) in the config file. Every value remembers
where it came from, so `kit-otel config` can show it.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

DEFAULT_CONFIG_FILE = Path("~/.config/kit-otel/config.toml")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "span_only", "span_and_event", "event_only"):
        return True
    if value in ("0", "false", "no", "off", "", "no_content"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Budget:
    window: str  # day | month | turn
    scope: str  # global | project | model
    usd: float
    project: str = ""
    model: str = ""


@dataclass
class Settings:
    # (name, env vars in priority order, parser) come from `_SPECS` below
    service_name: str = "kit-otel"
    traces_exporter: tuple[str, ...] = ("otlp_json_file",)
    metrics_exporter: tuple[str, ...] = ("prometheus", "otlp_json_file")
    logs_exporter: tuple[str, ...] = ("none",)  # off unless asked for (docs/decisions.md)
    otlp_endpoint: str = ""
    otlp_protocol: str = "http/protobuf"  # the spec's default
    otlp_traces_protocol: str = ""  # signal-specific protocols outrank otlp_protocol
    otlp_metrics_protocol: str = ""
    otlp_logs_protocol: str = ""
    otlp_headers: str = ""
    sdk_disabled: bool = False
    metric_export_interval_ms: int = 60000
    metrics_temporality: str = "cumulative"
    semconv_stability_opt_in: str = ""  # gen_ai_latest_experimental: the newest GenAI names
    output_dir: str = "kit-otel-out"
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = 9464
    capture_content: bool = False
    content_max_length: int = 2048
    redact_content: bool = True
    record_all_deltas: bool = False
    idle_timeout_s: float = 900.0
    session_forget_s: float = 86400.0
    sessions_root: str = "~/.kit/sessions"
    session_id_label: bool = False
    max_tools: int = 100
    max_models: int = 100
    max_projects: int = 100
    max_line_bytes: int = 1 << 20
    state_allow: tuple[str, ...] = ("*",)
    state_deny: tuple[str, ...] = ()
    state_gauge_keys: tuple[str, ...] = ("usage-budget:warn-at-usd", "usage-budget:total-cost")
    state_max_value_length: int = 256
    state_value_keys: tuple[str, ...] = ()  # key globs whose values leave with content off
    budget_day_usd: float = 0.0
    budget_month_usd: float = 0.0
    budget_turn_usd: float = 0.0
    budgets: tuple[Budget, ...] = ()
    # which costs count against budgets (budget-status.json): kit, price_table
    budget_cost_sources: tuple[str, ...] = ("kit", "price_table")
    git_attribution: bool = True  # repository/branch/commit of the session's cwd on turns
    price_table: bool = True  # notional cost (genai-prices) for calls KIT priced at 0
    subscription_providers: tuple[str, ...] = ("anthropic",)  # KIT's 0 there = OAuth plan
    # serve
    spool_dir: str = "~/.local/state/kit-otel/spool"
    state_dir: str = "~/.local/state/kit-otel"
    socket_path: str = ""
    tcp_port: int = 0
    spool_retention_s: float = 3600.0
    export_queue_spans: int = 16384  # spans waiting for export before serve pauses its input
    shutdown_timeout_s: float = 15.0  # how long serve's SIGTERM waits for queued spans
    sources: dict[str, str] = field(default_factory=dict, repr=False)

    def effective_otlp_endpoint(self) -> str:
        """The base endpoint, for display (the SDK's exporters resolve their own, signal-specific
        variables first)."""
        if self.otlp_endpoint:
            return self.otlp_endpoint
        return "http://localhost:4317" if self.otlp_protocol == "grpc" else "http://localhost:4318"

    def all_budgets(self) -> tuple[Budget, ...]:
        extra = tuple(Budget(window, "global", usd) for window, usd in (
            ("day", self.budget_day_usd), ("month", self.budget_month_usd),
            ("turn", self.budget_turn_usd)) if usd > 0)
        return extra + self.budgets


# The values a numeric setting may take (inclusive): a type check alone let `inf`, `nan`, 0 and
# negative numbers through, to fail later under another setting's name or to drop everything
# with a "success" exit code (max_line_bytes=10 rejected every line).
_RANGES: dict[str, tuple[float, float]] = {
    "metric_export_interval_ms": (1, 86_400_000),
    "content_max_length": (1, 1 << 30),
    "idle_timeout_s": (0.001, 365 * 86400.0), "session_forget_s": (0.001, 365 * 86400.0),
    "spool_retention_s": (0, 365 * 86400.0), "shutdown_timeout_s": (0, 86400.0),
    "max_tools": (1, 1_000_000), "max_models": (1, 1_000_000), "max_projects": (1, 1_000_000),
    "max_line_bytes": (4096, 1 << 30), "state_max_value_length": (0, 1 << 30),
    "tcp_port": (0, 65535), "export_queue_spans": (1, 1 << 26),
    "budget_day_usd": (0, 1e12), "budget_month_usd": (0, 1e12), "budget_turn_usd": (0, 1e12),
}
_BUDGET_WINDOWS = ("day", "month", "turn")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"

_BUDGET_SCOPES = ("global", "project", "model")


def _check_ranges(settings: Settings, sources: dict[str, str]) -> None:
    for name, (low, high) in _RANGES.items():
        value = getattr(settings, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
            raise ValueError(f"setting {name} from {sources[name]}: {value!r} is not a number "
                             f"from {_number(low)} to {_number(high)}")
    for budget in settings.budgets:
        where = f"setting budgets from {sources['budgets']}"
        if budget.window not in _BUDGET_WINDOWS:
            raise ValueError(f"{where}: window {budget.window!r} is not one of "
                             f"{', '.join(_BUDGET_WINDOWS)}")
        if budget.scope not in _BUDGET_SCOPES:
            raise ValueError(f"{where}: scope {budget.scope!r} is not one of "
                             f"{', '.join(_BUDGET_SCOPES)}")
        usd = budget.usd
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or \
                not math.isfinite(usd) or usd < 0:
            raise ValueError(f"{where}: usd {usd!r} is not a non-negative number")


_PROTOCOLS = ("grpc", "http/protobuf")
_TEMPORALITIES = ("cumulative", "delta", "lowmemory")


def _env_names(name: str) -> tuple[str, ...]:
    standard = {
        "service_name": ("OTEL_SERVICE_NAME",),
        "traces_exporter": ("OTEL_TRACES_EXPORTER",),
        "metrics_exporter": ("OTEL_METRICS_EXPORTER",),
        "logs_exporter": ("OTEL_LOGS_EXPORTER",),
        "otlp_endpoint": ("OTEL_EXPORTER_OTLP_ENDPOINT",),
        "otlp_protocol": ("OTEL_EXPORTER_OTLP_PROTOCOL",),
        "otlp_traces_protocol": ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",),
        "otlp_metrics_protocol": ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",),
        "otlp_logs_protocol": ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",),
        "otlp_headers": ("OTEL_EXPORTER_OTLP_HEADERS",),
        "sdk_disabled": ("OTEL_SDK_DISABLED",),
        "metric_export_interval_ms": ("OTEL_METRIC_EXPORT_INTERVAL",),
        "metrics_temporality": ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",),
        "semconv_stability_opt_in": ("OTEL_SEMCONV_STABILITY_OPT_IN",),
        "capture_content": ("KIT_OTEL_CAPTURE_CONTENT",
                            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
    }
    return standard.get(name, ("KIT_OTEL_" + name.upper(),))


def _parse(name: str, default: Any, raw: Any) -> Any:
    if isinstance(default, bool):
        return raw if isinstance(raw, bool) else _bool(str(raw))
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        return tuple(raw) if isinstance(raw, (list, tuple)) else _list(str(raw))
    return str(raw)


def load_settings(env: Mapping[str, str] | None = None, config_file: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Raises ValueError naming the setting and where its bad value came from."""
    env = os.environ if env is None else env
    settings = Settings()
    sources = {f.name: "default" for f in fields(Settings) if f.name != "sources"}
    file_path = config_file or env.get("KIT_OTEL_CONFIG")
    file_values: dict[str, Any] = {}
    if file_path or DEFAULT_CONFIG_FILE.expanduser().exists():
        path = Path(file_path or DEFAULT_CONFIG_FILE).expanduser()
        try:
            file_values = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"config file {path}: {exc}") from None
        file_label = f"file:{path}"
        unknown = set(file_values) - set(sources)
        if unknown:
            raise ValueError(f"config file {path}: unknown setting(s) {sorted(unknown)}")
    for f in fields(Settings):
        name = f.name
        if name == "sources":
            continue
        default = getattr(settings, name)
        candidates: list[tuple[str, Any]] = []
        if overrides and overrides.get(name) is not None:
            candidates.append(("command line", overrides[name]))
        candidates += [(f"env:{var}", env[var]) for var in _env_names(name) if env.get(var)]
        if name in file_values:
            candidates.append((file_label, file_values[name]))
        if not candidates:
            if name in ("spool_dir", "state_dir") and env.get("XDG_STATE_HOME"):
                # the bridge's default folder follows XDG_STATE_HOME: so does serve's
                suffix = "kit-otel/spool" if name == "spool_dir" else "kit-otel"
                setattr(settings, name, str(Path(env["XDG_STATE_HOME"]) / suffix))
                sources[name] = "default (env:XDG_STATE_HOME)"
            continue
        origin, raw = candidates[0]
        try:
            if name == "budgets":
                value = tuple(Budget(**b) for b in raw)
            elif name == "metric_export_interval_ms":
                value = int(float(raw))
            else:
                value = _parse(name, default, raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"setting {name} from {origin}: {exc}") from None
        setattr(settings, name, value)
        sources[name] = origin
    for name in ("otlp_protocol", "otlp_traces_protocol", "otlp_metrics_protocol",
                 "otlp_logs_protocol"):
        value = getattr(settings, name)
        if value == "http":  # what kit-otel once accepted for http/protobuf
            value = "http/protobuf"
        setattr(settings, name, value)
        if value and value not in _PROTOCOLS:
            why = ("the OpenTelemetry Python SDK has no OTLP/HTTP JSON exporter: use http/protobuf"
                   if value == "http/json" else "not grpc or http/protobuf")
            raise ValueError(f"setting {name} from {sources[name]}: {value!r} is {why}"
                             if value != "http/json" else
                             f"setting {name} from {sources[name]}: {why}")
    _check_ranges(settings, sources)
    if settings.metrics_temporality.lower() not in _TEMPORALITIES:
        raise ValueError(f"setting metrics_temporality from {sources['metrics_temporality']}: "
                         f"{settings.metrics_temporality!r} is not cumulative, delta or lowmemory")
    settings.sources = sources
    from kit_otel.export.exporters import check_exporter_names  # exporter names are checked with the rest
    check_exporter_names(settings)
    return settings


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, value, source) rows for `kit-otel config`."""
    rows = []
    for f in fields(Settings):
        if f.name == "sources":
            continue
        value = getattr(settings, f.name)
        if f.name == "otlp_headers" and value:
            value = "<set, hidden>"
        if f.name == "otlp_endpoint" and not value:
            value = f"{settings.effective_otlp_endpoint()} (OTel default)"
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        rows.append((f.name, str(value), settings.sources.get(f.name, "default")))
    return rows
