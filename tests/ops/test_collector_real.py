"""Every shipped Collector config on a real Collector (issue 12): `otelcol validate` decodes each
file exactly as start-up does (strict keys, no weak typing), with the defaults and with the
environment an operator would set."""

from __future__ import annotations

import os
import subprocess

import pytest

from ._common import COLLECTOR_DIR, require_otelcol

CONFIGS = ("single-node.yaml", "agent.yaml", "gateway.yaml")
# Settings that change the shape of the decoded config (not just a string inside it).
OPERATOR_ENV = {
    "agent.yaml": {"KIT_GATEWAY_INSECURE": "false", "KIT_AGENT_TELEMETRY_PORT": "9888"},
    "gateway.yaml": {"KIT_GATEWAY_LISTEN_HOST": "127.0.0.1", "KIT_TAIL_SAMPLE_PERCENT": "2.5",
                     "KIT_TAIL_LATENCY_MS": "60000", "KIT_TAIL_DECISION_WAIT": "90s"},
    "single-node.yaml": {"KIT_COLLECTOR_DEBUG_VERBOSITY": "detailed",
                         "KIT_TRACES_OTLP_INSECURE": "false"},
}


def _validate(config: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update(extra_env)
    return subprocess.run([require_otelcol(), "validate", f"--config={COLLECTOR_DIR / config}"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_validates_with_its_defaults(config):
    result = _validate(config, {})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", CONFIGS)
def test_config_validates_with_operator_settings(config):
    result = _validate(config, OPERATOR_ENV[config])
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_refuses_an_int_resolver_port(tmp_path):
    """The check is real: the C1 mistake (`port: 4317` unquoted) is refused by this Collector."""
    broken = tmp_path / "agent.yaml"
    broken.write_text((COLLECTOR_DIR / "agent.yaml").read_text().replace('port: "4317"', "port: 4317"))
    result = subprocess.run([require_otelcol(), "validate", f"--config={broken}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "'port' expected type 'string'" in result.stdout + result.stderr
