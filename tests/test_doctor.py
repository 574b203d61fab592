"""`kit-otel doctor` against a real set-up (an installed bridge, a running serve exporting to a
real OTLP receiver, /metrics) that each test then breaks in one place: doctor must name it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otlp_receiver import OTLPReceiver
from test_serve import InProcess

from ports import free_port

from kit_otel.cli import bridge_install as bridge_cli
from kit_otel.bridge import BRIDGE_FILENAME, option_env_name
from kit_otel.config import Settings
from kit_otel.model.decoder import encode_event
from kit_otel.cli.doctor import FAIL, OK, TEST_SPAN_NAME, WARN, diagnose, exit_code, render
from kit_otel.model.events import SessionStart, make_event




@dataclasses.dataclass
class Setup:
    env: dict[str, str]
    settings: Settings
    project: Path
    receiver: OTLPReceiver

    def env_for_cli(self) -> dict[str, str]:
        s = self.settings
        return {**self.env, "PATH": os.environ.get("PATH", ""),
                "KIT_OTEL_SPOOL_DIR": s.spool_dir, "KIT_OTEL_STATE_DIR": s.state_dir,
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp,prometheus",
                "OTEL_EXPORTER_OTLP_ENDPOINT": s.otlp_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": s.otlp_protocol,
                "KIT_OTEL_PROMETHEUS_PORT": str(s.prometheus_port)}


def by_status(findings, status):
    return [f for f in findings if f.status == status]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("doctor")
    home, project = root / "home", root / "project"
    project.mkdir()
    env = {"HOME": str(home)}
    bridge_cli.install(env=env)
    spool = bridge_cli.spool_dir(env)
    spool.mkdir(parents=True)
    line = encode_event(make_event("session_start", 1_781_000_000_000_000_000, pid=os.getpid(),
                                   seq=1, session_path="", data=SessionStart()))
    (spool / f"kit-{os.getpid()}-20260609T131810.000000000Z-1.ndjson").write_bytes(line)
    with OTLPReceiver() as receiver:
        settings = Settings(traces_exporter=("otlp",), metrics_exporter=("otlp", "prometheus"),
                            otlp_endpoint=receiver.grpc_endpoint, otlp_protocol="grpc",
                            metric_export_interval_ms=500,
                            spool_dir=str(spool), state_dir=str(root / "state"),
                            sessions_root=str(root / "sessions"), socket_path="",
                            prometheus_port=0, idle_timeout_s=86400)
        serve = InProcess(settings)
        try:
            port = serve.server.pipeline.prometheus.server.server_port
            receiver.wait_for(lambda: receiver.spans(), timeout=30,
                              message="serve exported the spool's event")
            yield Setup(env, dataclasses.replace(settings, prometheus_port=port), project,
                        receiver)
        finally:
            serve.stop()


def test_a_healthy_setup_is_all_ok_and_sends_one_real_test_span(setup):
    findings = diagnose(setup.settings, setup.env, setup.project, timeout_s=5.0)
    assert by_status(findings, FAIL) == [] and by_status(findings, WARN) == [], render(findings)
    assert exit_code(findings) == 0
    topics = {f.topic for f in findings}
    assert {"config", "bridge", "spool", "serve", "events", "export", "metrics", "budgets",
            "content", "pricing"} <= topics
    budgets, = [f for f in findings if f.topic == "budgets"]
    assert "budget-status.json, written" in budgets.message
    events, = [f for f in findings if f.topic == "events"]
    assert f"KIT process {os.getpid()} (running)" in events.message
    assert [s.name for s in setup.receiver.spans() if s.name == TEST_SPAN_NAME] == \
        [TEST_SPAN_NAME]


def only_failure(findings, topic: str):
    failed = by_status(findings, FAIL)
    assert [f.topic for f in failed] == [topic], render(findings)
    assert failed[0].fix, "a failure says how to fix it"
    assert exit_code(findings) == 1
    return failed[0]


def other_user(setup, home: Path) -> dict[str, str]:
    """An environment whose bridge would write to the same spool, with its own HOME."""
    return {"HOME": str(home), option_env_name("kit-otel-spool-dir"): setup.settings.spool_dir}


def test_no_bridge_installed(setup, tmp_path):
    found = only_failure(diagnose(setup.settings, other_user(setup, tmp_path), setup.project,
                                  timeout_s=2.0), "bridge")
    assert "bridge install" in found.fix


def test_a_stale_bridge_copy_is_a_warning_with_the_update(setup, tmp_path):
    env = other_user(setup, tmp_path)
    target = bridge_cli.global_extensions_dir(env) / BRIDGE_FILENAME
    target.parent.mkdir(parents=True)
    old = b"package main\n// an older kit-otel bridge\n"
    target.write_bytes(old)
    (target.parent / (BRIDGE_FILENAME + ".sha256")).write_text(
        f"{hashlib.sha256(old).hexdigest()}  {BRIDGE_FILENAME}\n")  # as kit-otel wrote it
    findings = diagnose(setup.settings, env, setup.project, timeout_s=2.0)
    stale, = [f for f in findings if f.topic == "bridge"]
    assert stale.status == WARN and "stale copy" in stale.message
    assert stale.fix == "kit-otel bridge install"


def test_installed_twice_is_a_warning(setup):
    bridge_cli.install(project=True, cwd=setup.project, env=setup.env)
    try:
        findings = diagnose(setup.settings, setup.env, setup.project, timeout_s=2.0)
    finally:
        bridge_cli.uninstall(project=True, cwd=setup.project, env=setup.env)
    assert any(f.status == WARN and "twice" in f.message for f in findings), render(findings)
    assert exit_code(findings) == 0


def test_bridge_and_serve_disagree_on_the_spool_directory(setup, tmp_path):
    env = {**setup.env, "XDG_STATE_HOME": str(tmp_path / "state-home")}
    found = only_failure(diagnose(setup.settings, env, setup.project, timeout_s=2.0), "spool")
    assert str(tmp_path / "state-home" / "kit-otel" / "spool") in found.message
    assert option_env_name("kit-otel-spool-dir") in found.fix


def test_serve_not_running(setup, tmp_path):
    settings = dataclasses.replace(setup.settings, state_dir=str(tmp_path / "other-state"),
                                   prometheus_port=free_port())
    findings = diagnose(settings, setup.env, setup.project, timeout_s=2.0)
    assert only_failure(findings, "serve").fix.startswith("start `kit-otel serve`")
    metrics, = [f for f in findings if f.topic == "metrics"]
    assert metrics.status == WARN and "serve is not running" in metrics.message


def test_otlp_endpoint_unreachable(setup):
    settings = dataclasses.replace(setup.settings,
                                   otlp_endpoint=f"http://127.0.0.1:{free_port()}")
    found = only_failure(diagnose(settings, setup.env, setup.project, timeout_s=1.0), "export")
    assert "did not accept a test span" in found.message
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in found.fix


def test_metrics_port_answered_by_something_else(setup):
    class NotKitOtel(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"node_load1 0.5\n")

        def log_message(self, *args):
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), NotKitOtel)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        settings = dataclasses.replace(setup.settings, prometheus_port=other.server_port)
        found = only_failure(diagnose(settings, setup.env, setup.project, timeout_s=2.0),
                             "metrics")
    finally:
        other.shutdown()
        other.server_close()
    assert "belongs to something else" in found.message


def test_content_capture_on_is_a_warning_and_every_non_default_setting_is_listed(setup):
    settings = dataclasses.replace(setup.settings, capture_content=True,
                                   sources={**setup.settings.sources,
                                            "capture_content": "env:KIT_OTEL_CAPTURE_CONTENT"})
    findings = diagnose(settings, setup.env, setup.project, timeout_s=2.0)
    content, = [f for f in findings if f.topic == "content"]
    assert content.status == WARN and "content capture ON" in content.message
    assert any(f.topic == "setting" and "capture_content = True  (env:KIT_OTEL_CAPTURE_CONTENT)"
               in f.message for f in findings)
    assert exit_code(findings) == 0


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kit_otel.cli.main", *args, "doctor",
                           "--timeout", "2"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_cli_exit_code_follows_the_findings(setup, tmp_path):
    env = setup.env_for_cli()
    healthy = run_cli(env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "fail" not in healthy.stdout.split()
    broken = run_cli({**env, "KIT_OTEL_STATE_DIR": str(tmp_path / "nobody")})
    assert broken.returncode == 1
    assert any(line.startswith("fail  serve") for line in broken.stdout.splitlines())
    assert "Traceback" not in broken.stdout + broken.stderr


def test_cli_bad_config_is_one_line_and_exit_1(setup, tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("idle_timeout_s = 'soon'\n")
    result = run_cli(setup.env_for_cli(), "--config", str(bad))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("fail  config") and "idle_timeout_s" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_an_edited_bridge_copy_is_a_warning_with_the_forced_install(setup, tmp_path):
    env = other_user(setup, tmp_path)
    target = bridge_cli.global_extensions_dir(env) / BRIDGE_FILENAME
    target.parent.mkdir(parents=True)
    target.write_bytes(b"package main\n// edited by hand\n")  # no checksum kit-otel wrote
    findings = diagnose(setup.settings, env, setup.project, timeout_s=2.0)
    edited, = [f for f in findings if f.topic == "bridge"]
    assert edited.status == WARN and "differs from the shipped bridge" in edited.message
    assert edited.fix == "kit-otel bridge install --force"


def own_spool(setup, spool: Path) -> tuple[Settings, dict[str, str]]:
    """serve's settings and KIT's environment agreeing on another spool directory."""
    return (dataclasses.replace(setup.settings, spool_dir=str(spool)),
            {**setup.env, option_env_name("kit-otel-spool-dir"): str(spool)})


def test_no_spool_directory_yet(setup, tmp_path):
    settings, env = own_spool(setup, tmp_path / "spool")
    findings = diagnose(settings, env, setup.project, timeout_s=2.0)
    events, = [f for f in findings if f.topic == "events"]
    assert events.status == WARN and "does not exist yet" in events.message
    budgets, = [f for f in findings if f.topic == "budgets"]
    assert budgets.status == WARN and "missing although serve runs" in budgets.message
    assert exit_code(findings) == 0


def test_an_empty_spool_directory(setup, tmp_path):
    settings, env = own_spool(setup, tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    events, = [f for f in diagnose(settings, env, setup.project, timeout_s=2.0)
               if f.topic == "events"]
    assert events.status == WARN and "no spool files" in events.message


def test_a_spool_path_that_is_no_directory_fails(setup, tmp_path):
    settings, env = own_spool(setup, tmp_path / "spool")
    (tmp_path / "spool").write_text("not a directory")
    found = only_failure(diagnose(settings, env, setup.project, timeout_s=2.0), "events")
    assert "cannot list" in found.message


def test_many_kit_processes_are_listed_newest_first_and_counted(setup, tmp_path):
    settings, env = own_spool(setup, tmp_path / "spool")
    spool = tmp_path / "spool"
    spool.mkdir()
    for pid in range(4_000_000, 4_000_012):  # past pid_max: ended processes
        path = spool / f"kit-{pid}-20260609T131810.000000000Z-1.ndjson"
        path.write_text("{}\n")
        os.utime(path, (1_700_000_000 + pid, 1_700_000_000 + pid))
    events = [f for f in diagnose(settings, env, setup.project, timeout_s=2.0)
              if f.topic == "events"]
    assert len(events) == 11 and events[0].message.startswith("KIT process 4000011 (ended)")
    assert events[-1].message == "... and 2 more processes"


def test_a_stale_budget_status_while_serve_runs(setup, tmp_path):
    settings, env = own_spool(setup, tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    status = tmp_path / "spool" / "budget-status.json"
    status.write_text("{}")
    os.utime(status, (status.stat().st_atime, status.stat().st_mtime - 3600))
    budgets, = [f for f in diagnose(settings, env, setup.project, timeout_s=2.0)
                if f.topic == "budgets"]
    assert budgets.status == WARN and "last written 1 h ago although serve runs" in \
        budgets.message


def test_metrics_port_closed_although_serve_runs(setup):
    settings = dataclasses.replace(setup.settings, prometheus_port=free_port())
    found = only_failure(diagnose(settings, setup.env, setup.project, timeout_s=2.0), "metrics")
    assert "though serve runs" in found.message and "kit-otel config" in found.fix


def test_every_exporter_none_is_a_warning(setup):
    settings = dataclasses.replace(setup.settings, traces_exporter=("none",),
                                   metrics_exporter=("none",))
    findings = diagnose(settings, setup.env, setup.project, timeout_s=2.0)
    export, = [f for f in findings if f.topic == "export"]
    assert export.status == WARN and "nothing leaves kit-otel" in export.message
    assert exit_code(findings) == 0


def test_otlp_json_files(setup, tmp_path):
    def export_finding(output: Path):
        settings = dataclasses.replace(setup.settings, traces_exporter=("otlp_json_file",),
                                       metrics_exporter=("otlp_json_file",))
        if output is not None:
            settings.output_dir = str(output)
            settings.sources = {**settings.sources, "output_dir": "env:KIT_OTEL_OUTPUT_DIR"}
        found, = [f for f in diagnose(settings, setup.env, setup.project, timeout_s=2.0)
                  if f.topic == "export"]
        return found
    # by default, where serve writes them: with its state, not in doctor's working directory
    default = export_finding(None)
    assert default.status == OK and str(Path(setup.settings.state_dir).expanduser().resolve()
                                        / "otlp-json") in default.message
    # a folder serve will create (it makes the parents) is fine ...
    assert export_finding(tmp_path / "not" / "yet" / "out").status == OK
    # ... one under a regular file can never be made
    (tmp_path / "file").write_text("")
    blocked = export_finding(tmp_path / "file" / "out")
    assert blocked.status == FAIL and "is not writable" in blocked.message
    assert "KIT_OTEL_OUTPUT_DIR" in blocked.fix


def test_notional_pricing_off(setup):
    settings = dataclasses.replace(setup.settings, price_table=False)
    pricing, = [f for f in diagnose(settings, setup.env, setup.project, timeout_s=2.0)
                if f.topic == "pricing"]
    assert pricing.status == OK and "calls KIT priced at 0 are `unknown`" in pricing.message


def test_genai_prices_not_installed_is_a_warning(setup, tmp_path):
    """A real environment without the package: the interpreter's site-packages minus
    genai-prices, and kit-otel's source."""
    import kit_otel
    import genai_prices
    site = Path(genai_prices.__file__).resolve().parent.parent
    without = tmp_path / "site"
    without.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().replace("-", "_").startswith("genai_prices"):
            (without / entry.name).symlink_to(entry)
    src = Path(kit_otel.__file__).resolve().parent.parent
    env = {**setup.env_for_cli(), "PYTHONPATH": f"{src}{os.pathsep}{without}",
           "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([sys.executable, "-S", "-m", "kit_otel.cli.main", "doctor",
                             "--timeout", "2"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stdout.splitlines()
    pricing = [line for line in lines if line.split()[1:2] == ["pricing"]]
    assert pricing and pricing[0].startswith("warn") and "genai-prices is not installed" in \
        pricing[0], result.stdout
    assert result.returncode == 0  # a warning: telemetry still arrives
