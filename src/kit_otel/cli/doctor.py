"""`kit-otel doctor`: why a user sees nothing. One line per piece of the path from KIT to the
backend — ok, warn or fail, with the fix — and a non-zero exit when something is broken.

Every check is bounded (stat calls, one lock probe, one short test export, one HTTP GET with a
timeout) and none changes anything, except the one test span sent to the OTLP endpoint.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from kit_otel.cli import bridge_install as bridge_cli
from kit_otel.bridge import option_env_name
from kit_otel.config import DEFAULT_CONFIG_FILE, Settings, describe, load_settings
from kit_otel.sources.spool import pid_alive

OK, WARN, FAIL = "ok", "warn", "fail"
_SPOOL_FILE = re.compile(r"^kit-(\d+)-.*\.ndjson$")
_MAX_SPOOL_ENTRIES = 10_000  # a spool directory is scanned this far, no further
_MAX_PROCESSES_SHOWN = 10
TEST_SPAN_NAME = "kit-otel doctor"


@dataclass(frozen=True)
class Finding:
    status: str  # ok | warn | fail
    topic: str
    message: str
    fix: str = ""


def diagnose(settings: Settings, env: Mapping[str, str] | None = None, cwd: Path | None = None,
             *, config_file: str | None = None, timeout_s: float = 3.0) -> list[Finding]:
    env = dict(os.environ if env is None else env)
    from kit_otel.serve.options import use_daemon_output_dir
    use_daemon_output_dir(settings)  # the exporters are checked as serve runs them
    findings = [_config(settings, env, config_file)]
    findings += _settings_rows(settings)
    findings += _bridge(env, cwd)
    findings.append(_spool_dirs(settings, env))
    serve = _serve(settings)
    findings.append(serve)
    findings += _processes(settings)
    findings += _exporters(settings, timeout_s)
    findings += _metrics_port(settings, serve.status == OK, timeout_s)
    findings.append(_budget_status(settings, serve.status == OK))
    findings.append(_content(settings, env))
    findings.append(_price_table(settings))
    return findings


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.status == FAIL for f in findings) else 0


def render(findings: list[Finding]) -> str:
    width = max(len(f.topic) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"{f.status:<4}  {f.topic:<{width}}  {f.message}")
        if f.fix and f.status != OK:
            lines.append(f"{'':<4}  {'':<{width}}  → {f.fix}")
    return "\n".join(lines)


# ── checks ─────────────────────────────────────────────────────────────────────────────────

def _config(settings: Settings, env: Mapping[str, str], config_file: str | None) -> Finding:
    named = config_file or env.get("KIT_OTEL_CONFIG")
    path = Path(named or DEFAULT_CONFIG_FILE).expanduser()
    if path.is_file():
        return Finding(OK, "config", f"config file {path}")
    return Finding(OK, "config", f"no config file ({path} absent): defaults and environment")


def _settings_rows(settings: Settings) -> list[Finding]:
    return [Finding(OK, "setting", f"{name} = {value}  ({source})")
            for name, value, source in describe(settings) if source != "default"]


def _bridge(env: Mapping[str, str], cwd: Path | None) -> list[Finding]:
    locations = [bridge_cli.inspect(bridge_cli.global_extensions_dir(env), "global"),
                 bridge_cli.inspect(bridge_cli.project_extensions_dir(cwd), "project")]
    installed = [loc for loc in locations if loc.state != bridge_cli.MISSING]
    if not installed:
        return [Finding(FAIL, "bridge", "not installed: KIT sends kit-otel nothing",
                        "kit-otel bridge install  (or kit -e \"$(kit-otel bridge path)\")")]
    found = []
    for loc in installed:
        if loc.state == bridge_cli.CURRENT:
            found.append(Finding(OK, "bridge", f"{loc.scope}: {loc.file} (current)"))
        elif loc.state == bridge_cli.OUTDATED:
            found.append(Finding(WARN, "bridge", f"{loc.scope}: {loc.file} is a stale copy from "
                                 "an older kit-otel",
                                 "kit-otel bridge install" + (" --project" if loc.scope ==
                                                              "project" else "")))
        else:
            found.append(Finding(WARN, "bridge", f"{loc.scope}: {loc.file} differs from the "
                                 "shipped bridge (edited, or not written by kit-otel)",
                                 "kit-otel bridge install --force" + (
                                     " --project" if loc.scope == "project" else "")))
    if len(installed) > 1:
        found.append(Finding(WARN, "bridge", "installed globally and in this project: KIT loads "
                             "both and every event arrives twice",
                             "kit-otel bridge uninstall --project"))
    return found


def _spool_dirs(settings: Settings, env: Mapping[str, str]) -> Finding:
    bridge_dir = bridge_cli.spool_dir(env).expanduser()
    serve_dir = Path(settings.spool_dir).expanduser()
    if _same_dir(bridge_dir, serve_dir):
        return Finding(OK, "spool", f"bridge and serve both use {serve_dir}")
    return Finding(FAIL, "spool", f"the bridge writes to {bridge_dir} but serve reads "
                   f"{serve_dir}",
                   f"KIT_OTEL_SPOOL_DIR={bridge_dir} for serve, or "
                   f"{option_env_name('kit-otel-spool-dir')}={serve_dir} for KIT")


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _serve(settings: Settings) -> Finding:
    """serve holds an exclusive flock on state_dir/serve.lock while it runs: a non-blocking
    shared lock that fails means it is running (the probe holds nothing afterwards)."""
    lock = Path(settings.state_dir).expanduser() / "serve.lock"
    down = Finding(FAIL, "serve", f"not running (no lock held on {lock})",
                   "start `kit-otel serve` (a systemd user unit is in docs/serve.md)")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return down
    except OSError as exc:
        return Finding(WARN, "serve", f"cannot read {lock}: {exc.strerror}",
                       "run doctor as the user that runs serve")
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return down
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return Finding(OK, "serve", f"running (state directory {lock.parent})")
        return Finding(WARN, "serve", f"cannot probe {lock}: {exc.strerror}")
    finally:
        os.close(fd)


def _processes(settings: Settings) -> list[Finding]:
    """The newest spool write of each KIT process (file names carry the pid)."""
    spool = Path(settings.spool_dir).expanduser()
    newest: dict[int, float] = {}
    try:
        with os.scandir(spool) as entries:
            for count, entry in enumerate(entries):
                if count >= _MAX_SPOOL_ENTRIES:
                    break
                match = _SPOOL_FILE.match(entry.name)
                if not match:
                    continue
                try:
                    mtime = entry.stat().st_mtime
                except OSError:
                    continue
                pid = int(match.group(1))
                newest[pid] = max(newest.get(pid, 0.0), mtime)
    except FileNotFoundError:
        return [Finding(WARN, "events", f"spool directory {spool} does not exist yet: no KIT "
                        "process has written an event",
                        "run kit with the bridge installed, then doctor again")]
    except OSError as exc:
        return [Finding(FAIL, "events", f"cannot list {spool}: {exc.strerror}",
                        "fix the permissions of the spool directory")]
    if not newest:
        return [Finding(WARN, "events", f"no spool files in {spool}: no KIT process has "
                        "written an event (or serve already exported and removed them)",
                        "run kit with the bridge installed, then doctor again")]
    now = time.time()
    found = []
    for pid, mtime in sorted(newest.items(), key=lambda item: -item[1])[:_MAX_PROCESSES_SHOWN]:
        state = "running" if pid_alive(pid) else "ended"
        found.append(Finding(OK, "events", f"KIT process {pid} ({state}): last event "
                             f"{_age(now - mtime)} ago"))
    if len(newest) > _MAX_PROCESSES_SHOWN:
        found.append(Finding(OK, "events", f"... and {len(newest) - _MAX_PROCESSES_SHOWN} "
                             "more processes"))
    return found


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _exporters(settings: Settings, timeout_s: float) -> list[Finding]:
    found = []
    wanted = set(settings.traces_exporter) | set(settings.metrics_exporter)
    if "otlp" in wanted:
        found.append(_test_export(settings, timeout_s))
    if "otlp_json_file" in wanted:
        out = Path(settings.output_dir).expanduser()
        if _can_make_dir(out):
            found.append(Finding(OK, "export", f"OTLP-JSON files into {out.resolve()}"))
        else:
            found.append(Finding(FAIL, "export", f"OTLP-JSON output {out} is not writable",
                                 "KIT_OTEL_OUTPUT_DIR=<a writable directory>"))
    if wanted <= {"none", ""}:
        found.append(Finding(WARN, "export", "every exporter is `none`: nothing leaves kit-otel",
                             "OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp"))
    return found


def _can_make_dir(path: Path) -> bool:
    """serve creates the missing parents of its output: the nearest existing one must be a
    folder it may write in."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def _test_export(settings: Settings, timeout_s: float) -> Finding:
    """One real OTLP export of one span, with the settings serve uses."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    from kit_otel.export.exporters import otlp_destination, otlp_exporter, signal_protocol
    endpoint, variable = otlp_destination(settings, "traces")
    where = f"{endpoint} ({signal_protocol(settings, 'traces')})"
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    span = provider.get_tracer("kit_otel.doctor").start_span(TEST_SPAN_NAME)
    span.end()
    try:
        exporter = otlp_exporter(settings, "traces", timeout=timeout_s)
        result = exporter.export([span])
        exporter.shutdown()
    except Exception as exc:  # noqa: BLE001 - any exporter failure is the finding itself
        result, detail = None, f"{type(exc).__name__}: {exc}"
    else:
        detail = ""
    provider.shutdown()
    if result == SpanExportResult.SUCCESS:
        return Finding(OK, "export", f"OTLP endpoint {where} accepted a test span "
                       f"({TEST_SPAN_NAME!r})")
    return Finding(FAIL, "export", f"OTLP endpoint {where} did not accept a test span within "
                   f"{timeout_s:g} s{': ' + detail if detail else ''}",
                   f"start the Collector, or set {variable} / "
                   "OTEL_EXPORTER_OTLP_PROTOCOL to where it listens")


def _metrics_port(settings: Settings, serve_running: bool, timeout_s: float) -> list[Finding]:
    if "prometheus" not in settings.metrics_exporter:
        return []
    url = f"http://{settings.prometheus_host}:{settings.prometheus_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(1 << 20)
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        if serve_running:
            return [Finding(FAIL, "metrics", f"{url}: {reason}, though serve runs",
                            "is serve using another config? see `kit-otel config` as its user")]
        return [Finding(WARN, "metrics", f"{url}: {reason} (serve is not running)",
                        "start `kit-otel serve`")]
    except (OSError, ValueError) as exc:
        return [Finding(FAIL, "metrics", f"{url}: {exc}", "check prometheus_host/port")]
    if b"kit_otel_" in body:
        return [Finding(OK, "metrics", f"{url} serves kit-otel's metrics")]
    return [Finding(FAIL, "metrics", f"{url} answers, but not with kit-otel's metrics: the port "
                    "belongs to something else",
                    "KIT_OTEL_PROMETHEUS_PORT=<a free port> for serve, and scrape that")]


def _budget_status(settings: Settings, serve_running: bool) -> Finding:
    """The spend serve hands to the budget extension inside KIT (docs/cost.md)."""
    from kit_otel.serve.budget_status import STATUS_FILE
    path = Path(settings.spool_dir).expanduser() / STATUS_FILE
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        if serve_running:
            return Finding(WARN, "budgets", f"{path} missing although serve runs: budgets "
                           "inside KIT show nothing", "restart `kit-otel serve`")
        return Finding(OK, "budgets", f"no {path} (written by serve while it runs)")
    if age > 600 and serve_running:
        return Finding(WARN, "budgets", f"{path} last written {_age(age)} ago although serve "
                       "runs", "check serve's log for 'not written'")
    return Finding(OK, "budgets", f"spend against budgets in {path}, written {_age(age)} ago")


def _content(settings: Settings, env: Mapping[str, str]) -> Finding:
    bridge_capture = env.get(option_env_name("kit-otel-capture-content"), "").lower() in (
        "1", "true", "yes", "on")
    if settings.capture_content or bridge_capture:
        where = "kit-otel" if settings.capture_content else "the bridge"
        return Finding(WARN, "content", f"content capture ON ({where}): prompts, responses and "
                       f"tool text are recorded (redacted: {settings.redact_content}, cut to "
                       f"{settings.content_max_length} chars)",
                       "unset KIT_OTEL_CAPTURE_CONTENT unless you mean it")
    return Finding(OK, "content", "content capture off (lengths only)")


def _price_table(settings: Settings) -> Finding:
    from kit_otel.translate.pricing import price_data_version
    if not settings.price_table:
        return Finding(OK, "pricing", "notional cost off: calls KIT priced at 0 are `unknown`")
    version = price_data_version()
    if version:
        return Finding(OK, "pricing", f"notional cost for calls KIT priced at 0 from {version}")
    return Finding(WARN, "pricing", "genai-prices is not installed: subscription usage shows as "
                   "$0", "pip install genai-prices")


# ── command line ───────────────────────────────────────────────────────────────────────────

def cmd_doctor(args) -> int:
    config_file = getattr(args, "config", None)
    try:
        settings = load_settings(config_file=config_file)
    except ValueError as exc:
        print(render([Finding(FAIL, "config", str(exc),
                              "fix the setting named above (kit-otel config shows them all)")]))
        return 1
    findings = diagnose(settings, config_file=config_file, timeout_s=args.timeout)
    print(render(findings))
    return exit_code(findings)


def add_parser(subparsers) -> argparse.ArgumentParser:
    doctor = subparsers.add_parser(
        "doctor", help="tell why KIT telemetry does not arrive",
        description="Check every piece between KIT and the backend: the bridge install, the "
        "spool directory the bridge and serve use, serve, the last event of each KIT process, "
        "the OTLP endpoint (one real test span), the /metrics port, the configuration and "
        "content capture. Each line is ok, warn or fail with the fix; the exit code is 1 when "
        "something fails.\n\nexample: kit-otel doctor",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    doctor.add_argument("--timeout", type=float, default=3.0,
                        help="seconds to wait for the OTLP endpoint and /metrics (default 3)")
    doctor.set_defaults(func=cmd_doctor)
    return doctor


__all__ = ["Finding", "OK", "WARN", "FAIL", "diagnose", "exit_code", "render", "add_parser"]
