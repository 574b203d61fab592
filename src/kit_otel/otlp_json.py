"""OTLP-JSON file exporters: one ExportTrace/MetricsServiceRequest per line, the format the
Collector's `otlpjsonfile` receiver reads (ids as hex, enums as integers, lowerCamelCase).

The OTel project's `opentelemetry-exporter-otlp-json-file` exists only as a beta whose pins
conflict with the OTLP exporter packages of the same release, so this small module does the same
with the protobuf encoders the OTLP exporter already depends on.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Sequence

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (MetricExporter, MetricExportResult,
                                              MetricsData)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def _hex_ids(node):
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids in hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                import base64
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
    return node


def to_otlp_json(message) -> str:
    return json.dumps(_hex_ids(MessageToDict(message, use_integers_for_enums=True)),
                      separators=(",", ":"))


class _LineWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")

    def write(self, line: str) -> None:
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


class OTLPJsonFileSpanExporter(SpanExporter):
    def __init__(self, path: str | Path):
        self._writer = _LineWriter(Path(path))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if spans:
            self._writer.write(to_otlp_json(encode_spans(spans)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OTLPJsonFileMetricExporter(MetricExporter):
    def __init__(self, path: str | Path, preferred_temporality=None):
        super().__init__(preferred_temporality=preferred_temporality)
        self._writer = _LineWriter(Path(path))

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs) -> MetricExportResult:
        self._writer.write(to_otlp_json(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._writer.close()


class OTLPJsonFileLogExporter(LogRecordExporter):
    def __init__(self, path: str | Path):
        self._writer = _LineWriter(Path(path))

    def export(self, batch) -> LogRecordExportResult:
        if batch:
            self._writer.write(to_otlp_json(encode_logs(batch)))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self._writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
