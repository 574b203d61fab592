"""What each exporter accepted: a replay's exit code says whether its telemetry arrived.

The SDK's batch processor and periodic reader drop a failed export after logging it; wrapping
the exporter they call is the one place that sees every result. The OTLP exporters log why an
export failed (status code, details) on their own loggers; the last such line is kept so the
one line a user sees can say it.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Sequence

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_OTLP_LOGGER = "opentelemetry.exporter.otlp"


class _LastFailure(logging.Handler):
    """Remembers the newest warning or error an OTLP exporter logged."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:  # noqa: BLE001 - a logging handler must never raise
            self.message = str(record.msg)


_last_failure = _LastFailure()
_install_lock = threading.Lock()


def _listen_to_otlp_logs() -> None:
    with _install_lock:
        logger = logging.getLogger(_OTLP_LOGGER)
        if _last_failure not in logger.handlers:
            logger.addHandler(_last_failure)


def last_exporter_complaint() -> str:
    """The newest warning an OTLP exporter logged ("" if none), shortened to what a user acts
    on: "UNAVAILABLE (Connection refused)" rather than the gRPC error's full text."""
    return short_reason(_last_failure.message)


_STATUS_RE = re.compile(r"error code: (?:StatusCode\.)?(\w+)")


def short_reason(text: str) -> str:
    match = _STATUS_RE.search(text)
    if not match:
        return text
    details = text.split("error details:", 1)[1] if "error details:" in text else ""
    last = details.rsplit(":", 1)[-1].strip() if details.strip() else ""
    return f"{match.group(1)} ({last})" if last else match.group(1)


class Tally:
    """Items offered to and accepted by one exporter, and the last reason it failed."""

    def __init__(self, signal: str, destination: str, setting: str = ""):
        self.signal, self.destination = signal, destination
        self.setting = setting  # the variable that named the destination (OTLP), if any
        self.offered = self.accepted = 0
        self.failure = ""
        self._lock = threading.Lock()

    def record(self, count: int, ok: bool, failure: str = "") -> None:
        with self._lock:
            self.offered += count
            if ok:
                self.accepted += count
            else:
                self.failure = failure or last_exporter_complaint() or "the exporter failed"

    @property
    def complete(self) -> bool:
        return self.accepted == self.offered


class TallyingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, destination: str, setting: str = ""):
        self.inner = inner
        self.tally = Tally("spans", destination, setting)
        _listen_to_otlp_logs()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never raised into the SDK
            self.tally.record(len(spans), False, f"{type(exc).__name__}: {exc}")
            return SpanExportResult.FAILURE
        self.tally.record(len(spans), result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class TallyingLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, destination: str, setting: str = ""):
        self.inner = inner
        self.tally = Tally("log records", destination, setting)
        _listen_to_otlp_logs()

    def export(self, batch) -> LogRecordExportResult:
        try:
            result = self.inner.export(batch)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never raised into the SDK
            self.tally.record(len(batch), False, f"{type(exc).__name__}: {exc}")
            return LogRecordExportResult.FAILURE
        # (by name: an exporter may still return the SDK's older LogExportResult, another enum)
        self.tally.record(len(batch), getattr(result, "name", None) == "SUCCESS")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _data_points(data: MetricsData) -> int:
    return sum(len(metric.data.data_points) for rm in data.resource_metrics
               for sm in rm.scope_metrics for metric in sm.metrics)


class TallyingMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, destination: str, setting: str = ""):
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.tally = Tally("metric points", destination, setting)
        _listen_to_otlp_logs()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs) -> MetricExportResult:
        points = _data_points(metrics_data)
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self.tally.record(points, False, f"{type(exc).__name__}: {exc}")
            return MetricExportResult.FAILURE
        self.tally.record(points, result == MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
