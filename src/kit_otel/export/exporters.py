"""Exporter names → exporters, the way the OpenTelemetry SDK configuration spec says.

The SDK's own exporters read their `OTEL_EXPORTER_OTLP_*` variables themselves — the
signal-specific ones first (`…_TRACES_ENDPOINT` over `…_ENDPOINT`), headers percent-decoded,
`…_INSECURE`, timeouts, compression, certificates — so kit-otel passes an exporter only what its
config file (or command line) set and the environment does not override. `otlp` is resolved by
the signal's protocol to the SDK's `otlp_proto_http` / `otlp_proto_grpc` entry point, and any
other name is looked up among the installed exporters' entry points, as the SDK does.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any, Mapping

from opentelemetry.util.re import parse_env_headers

SIGNALS = ("traces", "metrics", "logs")
_GROUPS = {"traces": "opentelemetry_traces_exporter",
           "metrics": "opentelemetry_metrics_exporter",
           "logs": "opentelemetry_logs_exporter"}
# names kit-otel builds itself (prometheus: its own registry; otlp_json_file: files of ours)
OWN_NAMES = {"traces": ("otlp", "otlp_json_file", "console", "none"),
             "metrics": ("otlp", "prometheus", "otlp_json_file", "console", "none"),
             "logs": ("otlp", "otlp_json_file", "console", "none")}
PROTOCOLS = ("grpc", "http/protobuf")
GRPC_HINT = "OTLP over gRPC needs the grpc extra: pip install 'kit-otel[grpc]'"
_ENTRY_POINT_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_RETIRED = {"logging": "'logging' is the spec's retired name for 'console'",
            "jaeger": "Jaeger accepts OTLP: use 'otlp'"}


def _entry_point(signal: str, name: str):
    found = entry_points(group=_GROUPS[signal], name=name)
    return next(iter(found), None)


def signal_protocol(settings, signal: str) -> str:
    """OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL (or the file)."""
    return getattr(settings, f"otlp_{signal}_protocol", "") or settings.otlp_protocol


def check_exporter_names(settings) -> None:
    """Raises ValueError, one line naming the setting, where its value came from and why it is
    wrong: an unknown exporter name, or OTLP over gRPC without the grpc extra."""
    for signal in SIGNALS:
        setting = f"{signal}_exporter"
        origin = settings.sources.get(setting, "default")
        for name in getattr(settings, setting, ()):
            if name == "otlp":
                if _entry_point(signal, _ENTRY_POINT_BY_PROTOCOL[signal_protocol(settings, signal)]) \
                        is None:
                    raise ValueError(f"setting {setting} from {origin}: {GRPC_HINT}")
            elif name in OWN_NAMES[signal] or _entry_point(signal, name) is not None:
                continue
            else:
                known = sorted(set(OWN_NAMES[signal]) | {
                    e.name for e in entry_points(group=_GROUPS[signal])})
                why = _RETIRED.get(name, "no such exporter is installed")
                raise ValueError(f"setting {setting} from {origin}: unknown exporter {name!r} "
                                 f"({why}; known: {', '.join(known)})")


def _explicit(settings, name: str) -> bool:
    """Whether a setting was given by the config file or the command line (or in code), not by
    the environment — which the SDK's exporters read for themselves."""
    origin = settings.sources.get(name, "code")
    return bool(getattr(settings, name)) and not origin.startswith(("env:", "default"))


def explicit_exporter_arguments(settings, signal: str,
                                env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Constructor arguments for an SDK OTLP exporter: only what the config file set, and only
    where no environment variable for it exists (the environment outranks the file)."""
    env = os.environ if env is None else env
    upper = signal.upper()
    arguments: dict[str, Any] = {}
    if _explicit(settings, "otlp_endpoint") and not env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"):
        endpoint = settings.otlp_endpoint
        if signal_protocol(settings, signal) != "grpc":  # a base URL: the signal's path is added
            endpoint = endpoint.rstrip("/") + f"/v1/{signal}"
        arguments["endpoint"] = endpoint
    if _explicit(settings, "otlp_headers") and not env.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS"):
        arguments["headers"] = parse_env_headers(settings.otlp_headers, liberal=True)
    return arguments


def otlp_destination(settings, signal: str,
                     env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(where the OTLP exporter of `signal` sends, the variable that says so), resolved as the
    SDK resolves it: the signal's own OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT first."""
    env = os.environ if env is None else env
    variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    own = env.get(variable, "").strip()
    if own:
        return own, variable
    return settings.effective_otlp_endpoint(), "OTEL_EXPORTER_OTLP_ENDPOINT"


def otlp_exporter(settings, signal: str, **arguments: Any):
    """The SDK's OTLP exporter of this signal for its protocol (checked by
    `check_exporter_names`)."""
    entry_point = _entry_point(signal, _ENTRY_POINT_BY_PROTOCOL[signal_protocol(settings, signal)])
    if entry_point is None:
        raise ValueError(GRPC_HINT)
    arguments.update(explicit_exporter_arguments(settings, signal))
    exporter_class = entry_point.load()
    if signal == "traces":
        from kit_otel.export.otlp_proto import with_direct_encoding
        exporter_class = with_direct_encoding(exporter_class)
    return exporter_class(**arguments)


def installed_exporter(signal: str, name: str):
    """An exporter another package installed under this name (e.g. `zipkin`), built with the
    defaults it reads from the environment."""
    return _entry_point(signal, name).load()()
