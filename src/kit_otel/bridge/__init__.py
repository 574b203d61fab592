"""The kit-otel bridge: a Go extension that KIT loads with Yaegi and that writes every KIT
lifecycle event as an NDJSON line (contract v1) to a spool file and, optionally, a Unix socket.

The Go source ships as package data; `BRIDGE_PATH` is where it is on disk (for `kit -e`), and
`bridge_source()` its bytes. See docs/bridge.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BRIDGE_FILENAME = "kit_otel_bridge.go"
BRIDGE_PATH: Path = Path(__file__).resolve().with_name(BRIDGE_FILENAME)
# the opt-in budget extension: spend against budgets inside KIT (docs/cost.md)
BUDGET_PATH: Path = Path(__file__).resolve().with_name("kit_otel_budget.go")

# Extension options the bridge registers (env: KIT_OPT_<NAME upper-cased, "-" -> "_">).
OPTIONS: dict[str, str] = {
    "kit-otel-enabled": "true",
    "kit-otel-spool-dir": "",  # "" = $XDG_STATE_HOME/kit-otel/spool or ~/.local/state/kit-otel/spool
    "kit-otel-socket": "auto",  # a path, "auto" or "off"
    "kit-otel-queue-size": "4096",
    "kit-otel-capture-content": "false",
    "kit-otel-shutdown-timeout-ms": "2000",
    "kit-otel-flush-ms": "50",
}


def bridge_source() -> bytes:
    """The shipped bridge source."""
    return BRIDGE_PATH.read_bytes()


def bridge_sha256() -> str:
    return hashlib.sha256(bridge_source()).hexdigest()


def option_env_name(option: str) -> str:
    """KIT's environment variable for an extension option: KIT_OPT_<NAME>."""
    return "KIT_OPT_" + option.upper().replace("-", "_")


__all__ = ["BRIDGE_FILENAME", "BRIDGE_PATH", "BUDGET_PATH", "OPTIONS", "bridge_source", "bridge_sha256",
           "option_env_name"]
