"""Telemetry out: the SDK providers and exporters chosen by name, the direct OTLP/JSON encoder and files, export that loses nothing, delivery accounting."""
