"""KitInstrumentor as an `opentelemetry_instrumentor` entry point: `opentelemetry-instrument`
finds it and instruments the program it runs. The entry point is declared in pyproject.toml
(`[project.entry-points.opentelemetry_instrumentor] kit = "kit_otel.instrumentation:KitInstrumentor"`);
an editable install made before that line existed does not have it, so these tests also
provide it through a throwaway *.dist-info on sys.path — exactly what an install writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from kit_otel.instrumentation import KitInstrumentor

ENTRY_POINT = "kit = kit_otel.instrumentation:KitInstrumentor"


def dist_info(directory: Path) -> Path:
    info = directory / "kit_otel_entry_point_probe-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kit-otel-entry-point-probe\n"
                                   "Version: 0.0\n")
    (info / "entry_points.txt").write_text(f"[opentelemetry_instrumentor]\n{ENTRY_POINT}\n")
    return directory


def test_the_class_follows_the_contrib_conventions():
    assert issubclass(KitInstrumentor, BaseInstrumentor)
    assert KitInstrumentor() is KitInstrumentor()  # BaseInstrumentor's singleton
    # acp is optional (custom agents need only the entry points): no hard dependency, so
    # opentelemetry-instrument never skips kit-otel for a missing package
    assert tuple(KitInstrumentor().instrumentation_dependencies()) == ()


def test_entry_point_resolves_to_the_instrumentor(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(dist_info(tmp_path)))
    found = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "kit"]
    assert found and all(ep.value == "kit_otel.instrumentation:KitInstrumentor" for ep in found)
    assert found[0].load() is KitInstrumentor


@pytest.mark.skipif(shutil.which("opentelemetry-instrument",
                                 path=str(Path(sys.executable).parent)) is None,
                    reason="opentelemetry-instrument not installed")
def test_opentelemetry_instrument_runs_it(tmp_path):
    dist_info(tmp_path)
    (tmp_path / "tiny_agent.py").write_text(textwrap.dedent("""
        def read_file(path):
            return "contents of " + path
    """))
    program = textwrap.dedent("""
        import tiny_agent  # imported after instrumentation: wrapped by the import hook
        from kit_otel.instrumentation import KitInstrumentor
        assert tiny_agent.read_file("a") == "contents of a"
        k = KitInstrumentor()
        print(k.is_instrumented_by_opentelemetry, k.translator.events_seen, k.failures)
    """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OTEL_TRACES_EXPORTER": "none",
           "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "KIT_OTEL_ENTRY_POINTS": "tiny_agent:read_file=tool",
           "KIT_OTEL_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / "opentelemetry-instrument"), sys.executable, "-c",
                           program], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # implicit turn: input, agent_start, message_start, tool_call, tool_execution_start,
    # tool_execution_end, tool_result, message_end, agent_end
    assert done.stdout.split() == ["True", "9", "0"]
