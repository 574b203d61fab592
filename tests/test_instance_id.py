"""service.instance.id: stable for a kit-otel serve across restarts (host + state directory),
overridable with OTEL_RESOURCE_ATTRIBUTES."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from ops._common import free_port

from kit_otel.export.instance_id import service_instance_id, stable_instance_id


def test_same_host_and_state_dir_give_the_same_id(tmp_path):
    a = stable_instance_id(tmp_path / "state", hostname="build-7")
    assert a == stable_instance_id(tmp_path / "state", hostname="build-7")
    assert a != stable_instance_id(tmp_path / "other-state", hostname="build-7")
    assert a != stable_instance_id(tmp_path / "state", hostname="build-8")
    assert re.fullmatch(r"[0-9a-f-]{36}", a)


def test_resource_attributes_override_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=ci-runner-3,team=x")
    assert service_instance_id(tmp_path) == "ci-runner-3"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=x")
    assert service_instance_id(tmp_path) == stable_instance_id(tmp_path)


def _serve_instance_id(tmp_path, port: int) -> str:
    """Start `kit-otel serve`, read service_instance_id from its /metrics target_info, stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "prometheus",
                "KIT_OTEL_PROMETHEUS_PORT": str(port), "KIT_OTEL_STATE_DIR": str(tmp_path / "state"),
                "KIT_OTEL_SPOOL_DIR": str(tmp_path / "spool"),
                "KIT_OTEL_SESSIONS_ROOT": str(tmp_path / "sessions")})
    proc = subprocess.Popen([sys.executable, "-m", "kit_otel.cli.main", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                found = re.search(r'^target_info\{[^}]*service_instance_id="([^"]+)"', text, re.M)
                if found:
                    return found.group(1)
                # /metrics can answer before the meter provider has its reader (a loaded
                # machine widens that moment): an empty page is "not yet", not an answer
                assert time.time() + 0.5 < deadline, text[:2000]
                time.sleep(0.2)
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(proc.stderr.read().decode()[-2000:])
                time.sleep(0.2)
        pytest.fail("kit-otel serve did not answer on /metrics")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_keeps_its_instance_id_across_a_restart(tmp_path):
    first = _serve_instance_id(tmp_path, free_port())
    assert first == _serve_instance_id(tmp_path, free_port())
    assert first == stable_instance_id(tmp_path / "state")
