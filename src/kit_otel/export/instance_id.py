"""The `service.instance.id` of a long-running kit-otel: stable across restarts by default.

The SDK's default is a random UUID per process. For a daemon that makes every restart a new
`instance` label in Prometheus: a new set of series (churn), and alerts that watch an instance
go quiet fire on the one that restarted. kit-otel's identity is the state it continues from, so
the default is derived from the host name and the state directory; OTEL_RESOURCE_ATTRIBUTES
(`service.instance.id=...`) still wins.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from opentelemetry.sdk.resources import OTELResourceDetector
from opentelemetry.semconv.attributes.service_attributes import SERVICE_INSTANCE_ID

# Fixed namespace: the same host and state directory give the same id in every version.
_NAMESPACE = uuid.UUID("6f1c3c9e-2a5b-5d0e-9c41-6b1d7a0e2f55")


def stable_instance_id(state_dir: str | Path, hostname: str | None = None) -> str:
    """UUID v5 of host name and absolute state directory (two kit-otel processes on one host
    have two state directories, hence two ids)."""
    host = hostname if hostname is not None else socket.gethostname()
    path = Path(state_dir).expanduser().absolute()
    return str(uuid.uuid5(_NAMESPACE, f"{host}\0{path}"))


def service_instance_id(state_dir: str | Path) -> str:
    """OTEL_RESOURCE_ATTRIBUTES' service.instance.id when set, else the stable default."""
    explicit = OTELResourceDetector().detect().attributes.get(SERVICE_INSTANCE_ID)
    return str(explicit) if explicit else stable_instance_id(state_dir)
