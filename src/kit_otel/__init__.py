"""kit-otel: OpenTelemetry traces and metrics for the lifecycle of KIT coding agents."""

__version__ = "0.1.0"
