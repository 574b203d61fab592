"""Settings → OTel providers with their exporters → a Translator fed with events.

Exporter names (OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER,
comma-separated): `otlp` (HTTP/protobuf or gRPC by the OTEL_EXPORTER_OTLP_*PROTOCOL variables;
the SDK's exporter reads its other variables itself, see exporters.py), `prometheus` (metrics
only: /metrics on 127.0.0.1 by default), `otlp_json_file` (OTLP-JSON lines under the output
directory), `console`, `none`, and any exporter another package installed (its entry point name).
OTEL_SDK_DISABLED=true: nothing is exported, no file written, no port opened.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from pathlib import Path
from typing import Callable, Iterable

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import (Counter, Histogram, MeterProvider, ObservableCounter,
                                       ObservableGauge, ObservableUpDownCounter, UpDownCounter)
from opentelemetry.sdk.metrics.export import (AggregationTemporality, ConsoleMetricExporter,
                                              MetricReader, PeriodicExportingMetricReader)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.semconv.attributes.service_attributes import SERVICE_INSTANCE_ID

from kit_otel import __version__
from kit_otel.export import exporters
from kit_otel.model import names as n
from kit_otel.config import Settings
from kit_otel.translate.content import ContentPolicy
from kit_otel.model.decoder import DecodeError
from kit_otel.export.delivery import (Tally, TallyingLogExporter, TallyingMetricExporter,
                                      TallyingSpanExporter)
from kit_otel.model.events import Event
from kit_otel.translate.ext_state import StatePolicy
from kit_otel.translate.logs import EventLog
from kit_otel.translate.translator import Translator, TranslatorSettings

log = logging.getLogger("kit_otel")

# Spans buffered between flushes: the SDK's batch processor drops spans beyond its queue size,
# so a fast replay flushes before it could get there.
_SPAN_QUEUE = 1 << 16
_FLUSH_EVERY_SPANS = 1 << 14
_FLUSH_CHECK_EVERY = 4096  # events
_LOGGED_REJECTIONS = 50


def _temporality(settings: Settings) -> dict | None:
    """The temporality a metric exporter of ours asks for (None: cumulative, the default).
    The spec's `lowmemory` is delta for synchronous counters and histograms only: kit-otel's
    counters are observable (ledgers), so there they stay cumulative."""
    choice = settings.metrics_temporality.lower()
    if choice == "cumulative":
        return None
    delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    return {Counter: delta, Histogram: delta,
            ObservableCounter: delta if choice == "delta" else cumulative,
            UpDownCounter: cumulative, ObservableUpDownCounter: cumulative,
            ObservableGauge: cumulative}


def _sdk_temporality(settings: Settings) -> dict | None:
    """For the SDK's OTLP exporter: None when the environment chose (the exporter reads
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE itself), ours when the file did."""
    if settings.sources.get("metrics_temporality", "code").startswith(("env:", "default")):
        return None
    return _temporality(settings)


def resource_for(settings: Settings, instance_id: str | None = None) -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME as the SDK reads them; kit-otel's own
    values fill in only what they leave out (`service.name` from the config file or command
    line wins over the environment, as every setting does). `instance_id` replaces the SDK's
    random service.instance.id (serve passes its stable one, which already honours
    OTEL_RESOURCE_ATTRIBUTES)."""
    explicit: dict[str, str] = {SERVICE_INSTANCE_ID: instance_id} if instance_id else {}
    if not settings.sources.get("service_name", "code").startswith(("env:", "default")):
        explicit["service.name"] = settings.service_name
    detected = Resource.create(explicit)
    defaults = {"service.name": settings.service_name, "service.version": __version__}
    attributes = dict(detected.attributes)
    if str(attributes.get("service.name", "")).startswith("unknown_service"):
        del attributes["service.name"]  # the SDK's placeholder: nobody named the service
    return Resource(defaults).merge(Resource(attributes, detected.schema_url))


class _EndedSpans(SpanProcessor):
    """Counts ended spans, so a fast replay knows when the batch queue needs draining."""

    def __init__(self):
        self.ended = 0

    def on_end(self, span) -> None:
        self.ended += 1


def reachable_from_other_machines(host: str) -> bool:
    """Whether a server bound to `host` listens beyond the loopback interface."""
    if host.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # "" is every interface; a host name is whatever it resolves to
        return True


class PrometheusEndpoint:
    """The OTel Prometheus reader on a registry of its own (not the process-global one, so
    several pipelines can live in one process and /metrics shows only kit-otel's metrics)."""

    def __init__(self, host: str, port: int, serve: bool = True):
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry
        self.registry = CollectorRegistry()
        self.reader = PrometheusMetricReader(registry=self.registry)
        self.server = None
        self.thread: threading.Thread | None = None
        self.url = ""
        if serve:
            from prometheus_client import start_http_server
            if reachable_from_other_machines(host):
                log.warning("prometheus_host=%s: /metrics (project, model and tool names, token "
                            "and cost totals) can be read from other machines; use 127.0.0.1 "
                            "(KIT_OTEL_PROMETHEUS_HOST) unless a scraper elsewhere needs it",
                            host or "0.0.0.0")
            self.server, self.thread = start_http_server(port, addr=host,
                                                         registry=self.registry)
            self.url = f"http://{host}:{self.server.server_port}/metrics"

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest
        return generate_latest(self.registry)

    def close(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        # shutdown() only sets a flag that serve_forever reads between polls, and
        # prometheus_client runs it with the default 0.5 s poll: every replay and demo ended
        # with up to half a second of nothing. A connection wakes the poll at once.
        stopping = threading.Thread(target=server.shutdown, name="kit-otel-metrics-stop",
                                    daemon=True)
        stopping.start()
        address = tuple(server.server_address)  # (IPv6: with its flow info and scope id)
        wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
        address = (wildcard.get(address[0], address[0]),) + address[1:]
        for _ in range(20):
            stopping.join(0.005)  # (lets shutdown() set its flag before the wake-up)
            if not stopping.is_alive():
                break
            try:
                with socket.socket(server.address_family, socket.SOCK_STREAM) as wake:
                    wake.settimeout(0.1)
                    wake.connect(address)
            except OSError:
                break  # not reachable here: the next poll ends the loop
        stopping.join()
        server.server_close()


class Pipeline:
    def __init__(self, settings: Settings, *, span_processors: Iterable[SpanProcessor] = (),
                 metric_readers: Iterable[MetricReader] = (), serve_prometheus: bool = True,
                 span_exporters_processor: Callable[[list], SpanProcessor] | None = None,
                 id_generator: IdGenerator | None = None, instance_id: str | None = None):
        """`span_exporters_processor`, when given, receives the configured span exporters and
        returns the one processor that feeds them all (instead of a BatchSpanProcessor each);
        `kit-otel serve` uses it for exporting with retries and checkpoints. `instance_id`
        replaces the SDK's random service.instance.id (serve passes its stable one)."""
        self.settings = settings
        exporters.check_exporter_names(settings)
        self.disabled = settings.sdk_disabled
        if self.disabled:
            log.info("OTEL_SDK_DISABLED=true: nothing is exported")
        resource = resource_for(settings, instance_id)
        self.tracer_provider = TracerProvider(resource=resource, id_generator=id_generator)
        self.output_dir = Path(settings.output_dir).expanduser()
        self.prometheus: PrometheusEndpoint | None = None
        self.tallies: list[Tally] = []  # what each SDK-driven exporter accepted
        named = [] if self.disabled else [
            (name, self._span_exporter(name)) for name in settings.traces_exporter]
        span_exporters = [e for _, e in named if e is not None]
        if span_exporters_processor is not None:
            self.tracer_provider.add_span_processor(span_exporters_processor(span_exporters))
        else:
            for name, exporter in named:
                if exporter is None:
                    continue
                exporter = TallyingSpanExporter(exporter, *self._destination(name, "traces"))
                self.tallies.append(exporter.tally)
                self.tracer_provider.add_span_processor(BatchSpanProcessor(
                    exporter, max_queue_size=_SPAN_QUEUE,
                    max_export_batch_size=min(2048, _SPAN_QUEUE),
                    schedule_delay_millis=1000))
        for processor in span_processors:
            self.tracer_provider.add_span_processor(processor)
        self._span_counter = _EndedSpans()
        self.tracer_provider.add_span_processor(self._span_counter)
        readers = list(metric_readers)
        for name in () if self.disabled else settings.metrics_exporter:
            reader = self._metric_reader(name, serve_prometheus)
            if reader is not None:
                readers.append(reader)
        self._readers = readers
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        self.logger_provider: LoggerProvider | None = None
        log_exporters = [] if self.disabled else [
            (name, e) for name in settings.logs_exporter
            if (e := self._log_exporter(name)) is not None]
        if log_exporters:
            self.logger_provider = LoggerProvider(resource=resource)
            for name, exporter in log_exporters:
                exporter = TallyingLogExporter(exporter, *self._destination(name, "logs"))
                self.tallies.append(exporter.tally)
                self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(
                    exporter, max_queue_size=_SPAN_QUEUE, schedule_delay_millis=1000))
        event_log = EventLog(self.logger_provider.get_logger("kit_otel", __version__)
                             if self.logger_provider is not None else None)
        self.translator = Translator(self.tracer_provider, self.meter_provider,
                                     translator_settings(settings), event_log)
        self._set_budgets()
        self._gauge_keys = set(settings.state_gauge_keys)
        self.translator.on_state_change.append(self._export_state_gauges)
        self._spans_at_flush = 0

    # ── construction ─────────────────────────────────────────────────────────────────────────

    def _span_exporter(self, name: str):
        if name == "otlp":
            return exporters.otlp_exporter(self.settings, "traces")
        if name == "console":
            return ConsoleSpanExporter()
        if name == "otlp_json_file":
            from kit_otel.export.otlp_json_file import OTLPJsonFileSpanExporter
            return OTLPJsonFileSpanExporter(self.output_dir / "traces.jsonl")
        if name in ("none", ""):
            return None
        return exporters.installed_exporter("traces", name)

    def _log_exporter(self, name: str):
        if name == "otlp":
            return exporters.otlp_exporter(self.settings, "logs")
        if name == "console":
            return ConsoleLogRecordExporter()
        if name == "otlp_json_file":
            from kit_otel.export.otlp_json_file import OTLPJsonFileLogExporter
            return OTLPJsonFileLogExporter(self.output_dir / "logs.jsonl")
        if name in ("none", ""):
            return None
        return exporters.installed_exporter("logs", name)

    def _metric_reader(self, name: str, serve_prometheus: bool) -> MetricReader | None:
        interval = self.settings.metric_export_interval_ms
        if name == "prometheus":
            self.prometheus = PrometheusEndpoint(self.settings.prometheus_host,
                                                 self.settings.prometheus_port, serve_prometheus)
            return self.prometheus.reader
        if name == "otlp":
            exporter = exporters.otlp_exporter(
                self.settings, "metrics", preferred_temporality=_sdk_temporality(self.settings))
        elif name == "otlp_json_file":
            from kit_otel.export.otlp_json_file import OTLPJsonFileMetricExporter
            exporter = OTLPJsonFileMetricExporter(
                self.output_dir / "metrics.jsonl",
                preferred_temporality=_temporality(self.settings))
        elif name == "console":
            exporter = ConsoleMetricExporter()
        else:
            exporter = None
        if exporter is not None:
            exporter = TallyingMetricExporter(exporter, *self._destination(name, "metrics"))
            self.tallies.append(exporter.tally)
            return PeriodicExportingMetricReader(exporter, export_interval_millis=interval)
        if name in ("none", ""):
            return None
        exporter = exporters.installed_exporter("metrics", name)
        return exporter if isinstance(exporter, MetricReader) else \
            PeriodicExportingMetricReader(exporter, export_interval_millis=interval)

    def _destination(self, exporter_name: str, signal: str) -> tuple[str, str]:
        """(where an exporter sends, the variable that says so: OTLP only)."""
        if exporter_name == "otlp":
            return exporters.otlp_destination(self.settings, signal)
        if exporter_name == "otlp_json_file":
            return str(self.output_dir / f"{signal}.jsonl"), ""
        return exporter_name, ""

    def _set_budgets(self) -> None:
        metrics = self.translator.metrics
        budgets = self.settings.all_budgets()
        metrics.project_value.reserve(b.project for b in budgets)
        metrics.model_value.reserve(b.model for b in budgets)
        for budget in budgets:
            labels = {"window": budget.window, "scope": budget.scope}
            if budget.project:
                labels["project"] = budget.project
            if budget.model:
                labels["model"] = budget.model
            self.translator.metrics.budget.set(budget.usd, labels)

    def _export_state_gauges(self, session) -> None:
        for key in self._gauge_keys.intersection(session.state):
            try:
                value = float(session.state[key])
            except ValueError:
                continue
            self.translator.metrics.ext_state_value.set(
                value, {"key": key,
                        n.L_PROJECT: self.translator.metrics.project_value(session.project)})

    # ── running ──────────────────────────────────────────────────────────────────────────────

    def feed(self, item: Event | DecodeError) -> None:
        if isinstance(item, DecodeError):
            rejected = self.translator.rejected
            # a file of garbage must not flood the log: the first ones, then every 1000th
            if rejected < _LOGGED_REJECTIONS or rejected % 1000 == 0:
                log.warning("rejected %s", item)
            self.translator.reject(item)
            return
        try:
            self.translator.process(item)
        except Exception as exc:  # noqa: BLE001 - the last net: one event, not the whole stream
            log.error("event %s (pid %d, seq %d) could not be translated: %s: %s", item.type[:64],
                      item.pid, item.seq, type(exc).__name__, exc)
            self.translator.reject(DecodeError(item.source, item.seq, "", "untranslatable",
                                               "untranslatable"))
        if self.translator.events_seen % _FLUSH_CHECK_EVERY == 0:
            self._maybe_flush_spans()

    def _maybe_flush_spans(self) -> None:
        ended = self._span_counter.ended
        if ended - self._spans_at_flush >= _FLUSH_EVERY_SPANS:
            self.tracer_provider.force_flush()
            self._spans_at_flush = ended

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        if self.logger_provider is not None:
            self.logger_provider.force_flush()
        # Push readers export now; the Prometheus reader is pulled by its scrapes, and a forced
        # collection would be queued in it and served once more with the next scrape.
        for reader in self._readers:
            if self.prometheus is None or reader is not self.prometheus.reader:
                reader.force_flush()

    def shutdown(self, close_turns: bool = True, metrics_timeout_s: float = 30.0) -> None:
        """`metrics_timeout_s` bounds the final metric export (an unreachable collector's
        retries would otherwise hold a stopping daemon past its own shutdown timeout)."""
        if close_turns:
            self.translator.close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown(timeout_millis=max(metrics_timeout_s, 0.0) * 1000)
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        if self.prometheus is not None:
            self.prometheus.close()


def start_failure(settings: Settings, exc: OSError | OverflowError,
                  output_option: str = "") -> str:
    """One line naming the setting to change when a Pipeline could not start: an output file
    it cannot write, or the /metrics address it cannot have."""
    if getattr(exc, "filename", None):
        options = f"{output_option} or KIT_OTEL_OUTPUT_DIR" if output_option else \
            "KIT_OTEL_OUTPUT_DIR"
        return (f"cannot write {exc.filename}: {exc.strerror} (choose another output "
                f"directory: {options})")
    where = f"{settings.prometheus_host}:{settings.prometheus_port}"
    reason = getattr(exc, "strerror", None) or str(exc)
    return (f"cannot serve /metrics on {where}: {reason} (KIT_OTEL_PROMETHEUS_HOST, "
            "KIT_OTEL_PROMETHEUS_PORT)")


def translator_settings(settings: Settings) -> TranslatorSettings:
    return TranslatorSettings(
        content=ContentPolicy(capture=settings.capture_content,
                              max_length=settings.content_max_length,
                              redact=settings.redact_content),
        state=StatePolicy(allow=settings.state_allow, deny=settings.state_deny,
                          max_value_length=settings.state_max_value_length,
                          gauge_keys=settings.state_gauge_keys,
                          value_keys=settings.state_value_keys),
        record_all_deltas=settings.record_all_deltas,
        idle_timeout_s=settings.idle_timeout_s,
        session_forget_s=settings.session_forget_s,
        sessions_root=str(Path(settings.sessions_root).expanduser()),
        session_id_label=settings.session_id_label,
        max_tools=settings.max_tools, max_models=settings.max_models,
        max_projects=settings.max_projects,
        gen_ai_latest=n.gen_ai_latest(settings.semconv_stability_opt_in),
        price_table=settings.price_table, subscription_providers=settings.subscription_providers,
        git_attribution=settings.git_attribution)
