"""Real processes for the Collector stack tests: Collectors run from the shipped configs (plus an
overlay that only moves their listeners to free loopback ports), a Collector with the file
exporter standing in for Tempo, real Prometheus, and `kit-otel serve` fed with simulated KIT
spool files. Holds no tests itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ._common import COLLECTOR_DIR, free_port, get_json, require_otelcol

WAIT_S = 90  # every wait in these stacks is bounded by this


def wait_for(what: str, check, *, timeout: float = WAIT_S, interval: float = 0.25,
             logs: tuple[Path, ...] = ()):
    """Poll `check()` until it returns something truthy; fail with the logs' tails otherwise."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}"
                      for log in logs if log.exists())
    pytest.fail(f"timed out waiting for {what} (last: {last!r})\n{tails}")


def http_text(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except (OSError, urllib.error.HTTPError):
        return None


def exposition_sum(text: str | None, name: str, **labels: str) -> float:
    """Sum of the samples of one metric in a Prometheus text exposition whose labels include
    `labels` (the Collector's own otelcol_* metrics)."""
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)", text or "", re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


class Collector:
    """One Collector process: `configs` merged in order (the Collector merges maps and replaces
    lists), the last being a generated overlay."""

    def __init__(self, name: str, work: Path, configs: list[Path], overlay: dict,
                 env: dict[str, str] | None = None):
        self.name, self.work = name, work
        self.health_port = free_port()
        overlay.setdefault("extensions", {}).setdefault("health_check", {})["endpoint"] = \
            f"127.0.0.1:{self.health_port}"
        self.overlay = work / f"{name}.overlay.yaml"
        self.overlay.write_text(json.dumps(overlay))  # JSON is YAML
        self.args = [require_otelcol()] + [f"--config={c}" for c in [*configs, self.overlay]]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
        self.env.update(env or {})
        self.log = work / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Collector":
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self.log.open("a"),
                                     stderr=subprocess.STDOUT, cwd=self.work)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            return http_text(f"http://127.0.0.1:{self.health_port}/") is not None
        wait_for(f"{self.name} health check", ready, logs=(self.log,))
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush — what an OOM kill or a node failure does."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def telemetry_overlay(port: int) -> dict:
    return {"service": {"telemetry": {"metrics": {"readers": [
        {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": port}}}}]}}}}


def otlp_receiver_overlay(grpc_port: int, http_port: int) -> dict:
    return {"receivers": {"otlp": {"protocols": {
        "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
        "http": {"endpoint": f"127.0.0.1:{http_port}"}}}}}


def merge(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


class TraceBackend(Collector):
    """A Collector that writes every span it receives to a file: Tempo's stand-in."""

    def __init__(self, name: str, work: Path):
        self.grpc_port = free_port()
        self.path = work / f"{name}.spans.jsonl"
        base = work / f"{name}.yaml"
        base.write_text(json.dumps({
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"}}}},
            "exporters": {"file": {"path": str(self.path), "flush_interval": "100ms"}},
            "extensions": {"health_check": {}},
            "service": {"extensions": ["health_check"],
                        "telemetry": {"metrics": {"level": "none"}},
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
        }))
        super().__init__(name, work, [base], {})

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def spans(self) -> dict[str, dict]:
        return read_otlp_spans(self.path)


def read_otlp_spans(path: Path) -> dict[str, dict]:
    """span id → {trace, name, error, attrs} from an OTLP-JSON lines file (the Collector's file
    exporter and kit-otel's otlp_json_file write the same format)."""
    spans: dict[str, dict] = {}
    if not path.exists():
        return spans
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        for rs in request.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    attrs = {a["key"]: next(iter(a["value"].values()), None)
                             for a in span.get("attributes", [])}
                    spans[span["spanId"]] = {
                        "trace": span["traceId"], "name": span["name"], "attrs": attrs,
                        "error": (span.get("status") or {}).get("code") in (2, "STATUS_CODE_ERROR")}
    return spans


def shipped(name: str) -> Path:
    return COLLECTOR_DIR / name


class Prometheus:
    def __init__(self, name: str, work: Path, config: str, *flags: str):
        self.port = free_port()
        self.work = work / name
        self.work.mkdir()
        (self.work / "prometheus.yml").write_text(config)
        self.log = self.work / "prometheus.log"
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={self.work / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.work / 'tsdb'}", "--enable-feature=exemplar-storage",
             f"--web.listen-address=127.0.0.1:{self.port}", *flags],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=self.work)
        wait_for(f"{name} ready", lambda: http_text(f"{self.base}/-/ready"), logs=(self.log,))

    def query(self, expr: str) -> list:
        body = get_json(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}

    def names(self, matcher: str) -> set[str]:
        body = get_json(f"{self.base}/api/v1/label/__name__/values?"
                        + urllib.parse.urlencode({"match[]": matcher}))
        return set(body["data"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class KitOtel:
    """`kit-otel serve` exporting over OTLP (and, for comparison, its own /metrics and an
    OTLP-JSON copy of every span it exported)."""

    def __init__(self, name: str, work: Path, otlp_grpc: str, processes: list,
                 projects: list[str]):
        self.name = name
        self.dir = work / name
        self.spool, self.state, self.out = self.dir / "spool", self.dir / "state", self.dir / "out"
        for d in (self.spool, self.state, self.out):
            d.mkdir(parents=True)
        self.spool.chmod(0o700)
        self.metrics_port = free_port()
        self.processes, self.projects = processes, projects
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
        self.env.update({
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{otlp_grpc}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",  # http/protobuf is kit-otel's default
            "OTEL_TRACES_EXPORTER": "otlp,otlp_json_file",
            "OTEL_METRICS_EXPORTER": "otlp,prometheus", "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "KIT_OTEL_PROMETHEUS_PORT": str(self.metrics_port), "KIT_OTEL_OUTPUT_DIR": str(self.out),
            "KIT_OTEL_SPOOL_DIR": str(self.spool), "KIT_OTEL_STATE_DIR": str(self.state),
            "KIT_OTEL_SESSIONS_ROOT": str(work / "sessions"),
            "KIT_OTEL_BUDGET_DAY_USD": "1000"})
        self.log = self.dir / "serve.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "KitOtel":
        self.proc = subprocess.Popen([sys.executable, "-m", "kit_otel.cli.main", "serve"], env=self.env,
                                     stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        wait_for(f"{self.name} /metrics", lambda: self.exposition(), logs=(self.log,))
        return self

    def write_spool(self) -> None:
        handles: dict = {}
        try:
            for p in self.processes:
                for file_name, line in p.lines:
                    fh = handles.get(file_name)
                    if fh is None:
                        fh = handles[file_name] = open(self.spool / file_name, "ab", buffering=0)
                    fh.write(line)
        finally:
            for fh in handles.values():
                fh.close()

    def exposition(self) -> str | None:
        return http_text(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def llm_calls_expected(self) -> int:
        return sum(1 for p in self.processes for _, line in p.lines if b'"type":"llm_usage"' in line)

    def turns_expected(self) -> int:
        """Main-agent turns (one trace each); a subagent's turn is a span inside its parent's."""
        return sum(1 for p in self.processes for _, line in p.lines
                   if b'"type":"agent_end"' in line and b'"agent":"subagent"' not in line)

    def turns_exported(self) -> int:
        return len({s["trace"] for s in self.exported_spans().values()
                    if s["name"] == "invoke_agent kit"})

    def caught_up(self) -> bool:
        """Every event translated and every turn's spans exported. The metrics alone are not
        enough: a turn's spans leave in a batch that may still be filling (export linger) after
        its LLM calls were counted, so a snapshot of the spans taken then would miss them."""
        return (exposition_sum(self.exposition(), "kit_llm_calls_total") == self.llm_calls_expected()
                and self.turns_exported() == self.turns_expected())

    def exported_spans(self) -> dict[str, dict]:
        return read_otlp_spans(self.out / "traces.jsonl")

    def cost_by_project(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for p, project in zip(self.processes, self.projects):
            totals[project] = totals.get(project, 0.0) + p.usage_totals().get("cost", 0.0)
        return totals

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def exposition_names(text: str) -> set[str]:
    """Metric names of kit-otel's own /metrics, as Prometheus stores them (no _created)."""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[A-Za-z_:][\w:]*", line).group(0)
            if not name.endswith("_created") and name != "target_info":
                names.add(name)
    return names
