"""OTLP-JSON file exporters: one ExportTrace/MetricsServiceRequest per line, the format the
Collector's `otlpjsonfile` receiver reads (and ExportLogsServiceRequest lines for logs).

The OTel project's `opentelemetry-exporter-otlp-json-file` exists only as a beta whose pins
conflict with the OTLP exporter packages of the same release; the encoding is otlp_json.py's.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (MetricExporter, MetricExportResult,
                                              MetricsData)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from kit_otel.export.otlp_json import OTLPJsonEncoder, reference_json

log = logging.getLogger("kit_otel")


class _LineWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "ab")

    def write(self, line: bytes) -> bool:
        with self._lock:
            if self._file.closed:
                return False
            try:
                self._file.write(line + b"\n")
                self._file.flush()
            except OSError as exc:
                log.warning("%s: not written: %s", self.path, exc.strerror or exc)
                return False
        return True

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


class OTLPJsonFileSpanExporter(SpanExporter):
    def __init__(self, path: str | Path):
        self._writer = _LineWriter(Path(path))
        self._encoder = OTLPJsonEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            line = self._encoder.spans(spans)
        except Exception as exc:  # neither encoder could write this batch: say so, once
            log.warning("%s: %d spans not written: %s", self._writer.path, len(spans),
                        str(exc).replace("\n", " ")[:500])
            return SpanExportResult.FAILURE
        ok = self._writer.write(line)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OTLPJsonFileMetricExporter(MetricExporter):
    def __init__(self, path: str | Path, preferred_temporality=None):
        super().__init__(preferred_temporality=preferred_temporality)
        self._writer = _LineWriter(Path(path))
        self._encoder = OTLPJsonEncoder()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs) -> MetricExportResult:
        try:
            line = self._encoder.metrics(metrics_data)
        except Exception as exc:  # the SDK's own encoder refused a point: say which, once
            log.warning("%s: metrics not written: %s", self._writer.path,
                        str(exc).replace("\n", " ")[:500])
            return MetricExportResult.FAILURE
        ok = self._writer.write(line)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._writer.close()


class OTLPJsonFileLogExporter(LogRecordExporter):
    # GenAI events are few per turn, so logs go through the SDK's protobuf encoder and
    # protobuf's JSON mapping rather than a hand-written encoder
    def __init__(self, path: str | Path):
        self._writer = _LineWriter(Path(path))

    def export(self, batch) -> LogRecordExportResult:
        if not batch:
            return LogRecordExportResult.SUCCESS
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
        try:
            line = reference_json(encode_logs(batch))
        except Exception as exc:  # the SDK's encoder refused a record: say so, once
            log.warning("%s: %d log records not written: %s", self._writer.path, len(batch),
                        str(exc).replace("\n", " ")[:500])
            return LogRecordExportResult.FAILURE
        ok = self._writer.write(line)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self._writer.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
