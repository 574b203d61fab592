"""A real OTLP receiver for tests: gRPC and HTTP/protobuf servers on 127.0.0.1 that collect
what exporters send, so a test checks exactly what a Collector would have received.

    from otlp_receiver import OTLPReceiver

    with OTLPReceiver(http=True) as rx:         # gRPC (always) + HTTP on free loopback ports
        env = {**os.environ, **rx.env()}        # OTEL_EXPORTER_OTLP_* pointing at the gRPC port
        env_http = rx.env("http/protobuf")      # ... or at the HTTP port
        ...run an exporter...
        rx.wait_for(lambda: len(rx.spans()) >= 10, timeout=30)
        rx.spans()                              # [ReceivedSpan], every span of every request
        rx.metric_value("kit.tokens", {"provider": "anthropic", ...})  # latest cumulative value
        rx.metric_sum("kit.tokens", type="input")   # sum of the latest values of the matching series
        rx.log_records()                        # [ReceivedLogRecord], every log record received
        rx.headers[-1]["authorization"]         # request headers / gRPC metadata, in order
        rx.fail_with("UNAVAILABLE")             # answer every request with an error (HTTP: 503)
        rx.fail_with(None)                      # ... and accept again
        rx.stop(); rx.start()                   # a real outage: ports closed, then reopened (same ports)

Metric names are the OTLP instrument names (`kit.tokens`, not `kit_tokens_total`). "Latest" is
the data point with the greatest `time_unix_nano` (then the latest received): after an exporter
restarts, its new cumulative series wins, as it would in a backend. Everything is thread-safe.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

__all__ = ["OTLPReceiver", "ReceivedSpan", "MetricPoint", "ReceivedLogRecord", "any_value"]


def any_value(value) -> Any:
    """An OTLP AnyValue as the Python value it holds."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(key_values) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # hex
    span_id: str  # hex
    parent_span_id: str  # hex, "" for a root span
    kind: int  # OTLP SpanKind number (1 internal, 3 client, ...)
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    events: list[tuple[str, int, dict[str, Any]]]  # (name, time, attributes)
    links: list[tuple[str, str]]  # (trace id, span id)
    resource: dict[str, Any]
    scope: str

    @property
    def id(self) -> tuple[str, str]:
        return (self.trace_id, self.span_id)


@dataclass(frozen=True)
class MetricPoint:
    name: str
    kind: str  # sum | gauge | histogram
    attributes: dict[str, Any]
    value: float  # sums and gauges; a histogram's sum
    count: int  # histograms only
    start_ns: int
    time_ns: int
    arrival: int  # order of receipt (ties on time_ns)
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedLogRecord:
    event_name: str
    time_ns: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    trace_id: str  # hex, "" when the record is outside any span
    span_id: str
    resource: dict[str, Any]
    scope: str


def _accept(receiver: "OTLPReceiver", kind: str, request, context, response):
    """One gRPC Export: refused while the receiver is told to fail, else kept."""
    code = receiver._refusal()
    if code is not None:
        context.abort(getattr(grpc.StatusCode, code), f"test receiver refuses: {code}")
    receiver._keep_headers({k: v for k, v in context.invocation_metadata()})
    receiver._keep(kind, request)
    return response


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: "OTLPReceiver"):
        self.receiver = receiver

    def Export(self, request, context):
        return _accept(self.receiver, "traces", request, context,
                       trace_service_pb2.ExportTraceServiceResponse())


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: "OTLPReceiver"):
        self.receiver = receiver

    def Export(self, request, context):
        return _accept(self.receiver, "metrics", request, context,
                       metrics_service_pb2.ExportMetricsServiceResponse())


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: "OTLPReceiver"):
        self.receiver = receiver

    def Export(self, request, context):
        return _accept(self.receiver, "logs", request, context,
                       logs_service_pb2.ExportLogsServiceResponse())


def _http_handler(receiver: "OTLPReceiver"):
    kinds = {"/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest,
                            trace_service_pb2.ExportTraceServiceResponse),
             "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                             metrics_service_pb2.ExportMetricsServiceResponse),
             "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest,
                          logs_service_pb2.ExportLogsServiceResponse)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            kind = kinds.get(self.path.split("?", 1)[0])
            if kind is None:
                self._reply(404, b"unknown path", "text/plain")
                return
            if receiver._refusal() is not None:
                self._reply(503, b"test receiver refuses", "text/plain")
                return
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            name, request_type, response_type = kind
            request = request_type()
            is_json = "json" in (self.headers.get("Content-Type") or "")
            try:
                if is_json:
                    json_format.Parse(body, request)
                else:
                    request.ParseFromString(body)
            except Exception as exc:  # noqa: BLE001 - a malformed request is a 400, not a crash
                self._reply(400, str(exc).encode(), "text/plain")
                return
            receiver._keep_headers({k.lower(): v for k, v in self.headers.items()})
            receiver._keep(name, request)
            response = response_type()
            if is_json:
                self._reply(200, json_format.MessageToJson(response).encode(), "application/json")
            else:
                self._reply(200, response.SerializeToString(), "application/x-protobuf")

    return Handler


class OTLPReceiver:
    """OTLP gRPC receiver (traces, metrics, logs) and, with `http=True`, an OTLP/HTTP one."""

    def __init__(self, *, grpc_enabled: bool = True, http: bool = False,
                 max_receive_bytes: int = 64 << 20):
        """`max_receive_bytes`: the largest gRPC request accepted (the Collector's is 4 MiB)."""
        self._max_receive_bytes = max_receive_bytes
        self._lock = threading.Lock()
        self._grpc_enabled = grpc_enabled
        self._http_enabled = http
        self.grpc_port = 0
        self.http_port = 0
        self._grpc_server = None
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._fail_code: str | None = None
        self.trace_requests: list = []  # ExportTraceServiceRequest, in order of receipt
        self.metric_requests: list = []  # ExportMetricsServiceRequest, in order of receipt
        self.log_requests: list = []  # ExportLogsServiceRequest, in order of receipt
        self.headers: list[dict[str, str]] = []  # each accepted request's headers / metadata
        self.refused = 0  # requests answered with an error by fail_with
        self.running = False

    # ── lifecycle ────────────────────────────────────────────────────────────────────────────

    def start(self) -> "OTLPReceiver":
        """Open the ports (the same ones again after a `stop`)."""
        if self.running:
            return self
        if self._grpc_enabled:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                 options=[("grpc.max_receive_message_length",
                                           self._max_receive_bytes)])
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
                _MetricsService(self), server)
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsService(self), server)
            port = self._bind_retrying(lambda: server.add_insecure_port(
                f"127.0.0.1:{self.grpc_port}"))
            self.grpc_port = port
            server.start()
            self._grpc_server = server
        if self._http_enabled:
            self._http_server = self._bind_retrying(lambda: ThreadingHTTPServer(
                ("127.0.0.1", self.http_port), _http_handler(self)))
            self._http_server.daemon_threads = True
            self.http_port = self._http_server.server_address[1]
            self._http_thread = threading.Thread(target=self._http_server.serve_forever,
                                                 name="otlp-http-receiver", daemon=True)
            self._http_thread.start()
        self.running = True
        return self

    @staticmethod
    def _bind_retrying(bind: Callable[[], Any]) -> Any:
        # Reopening a port just closed can race with the kernel releasing it: retry briefly.
        deadline = time.monotonic() + 10
        while True:
            try:
                result = bind()
                if result == 0:  # grpc reports a failed bind as port 0
                    raise OSError("bind failed")
                return result
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Close the ports: exporters see connection errors until `start`. Data is kept."""
        if not self.running:
            return
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        self.running = False

    def __enter__(self) -> "OTLPReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ── behaviour ────────────────────────────────────────────────────────────────────────────

    def fail_with(self, code: str | None = "UNAVAILABLE") -> None:
        """Answer every request with this gRPC status code (HTTP: 503); None to accept again."""
        if code is not None and not hasattr(grpc.StatusCode, code):
            raise ValueError(f"not a gRPC status code: {code}")
        with self._lock:
            self._fail_code = code

    def _refusal(self) -> str | None:
        with self._lock:
            if self._fail_code is not None:
                self.refused += 1
            return self._fail_code

    def _keep(self, kind: str, request) -> None:
        copy = type(request)()
        copy.CopyFrom(request)
        with self._lock:
            {"traces": self.trace_requests, "metrics": self.metric_requests,
             "logs": self.log_requests}[kind].append(copy)

    def _keep_headers(self, headers: dict[str, str]) -> None:
        with self._lock:
            self.headers.append(headers)

    def clear(self) -> None:
        with self._lock:
            self.trace_requests.clear()
            self.metric_requests.clear()
            self.log_requests.clear()
            self.headers.clear()
            self.refused = 0

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self, protocol: str = "grpc") -> dict[str, str]:
        """OTEL_EXPORTER_OTLP_* variables that point an OTLP exporter at this receiver."""
        endpoint = self.grpc_endpoint if protocol == "grpc" else self.http_endpoint
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}

    # ── what was received ────────────────────────────────────────────────────────────────────

    def spans(self) -> list[ReceivedSpan]:
        """Every span received, in order of receipt (re-deliveries included)."""
        with self._lock:
            requests = list(self.trace_requests)
        out = []
        for request in requests:
            for rs in request.resource_spans:
                resource = _attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(ReceivedSpan(
                            name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(), kind=s.kind,
                            start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                            attributes=_attributes(s.attributes), status_code=s.status.code,
                            status_message=s.status.message,
                            events=[(e.name, e.time_unix_nano, _attributes(e.attributes))
                                    for e in s.events],
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                            resource=resource, scope=ss.scope.name))
        return out

    def log_records(self) -> list[ReceivedLogRecord]:
        """Every log record received, in order of receipt."""
        with self._lock:
            requests = list(self.log_requests)
        out = []
        for request in requests:
            for rl in request.resource_logs:
                resource = _attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        out.append(ReceivedLogRecord(
                            event_name=r.event_name, time_ns=r.time_unix_nano,
                            severity_number=r.severity_number, severity_text=r.severity_text,
                            body=any_value(r.body) if r.HasField("body") else None,
                            attributes=_attributes(r.attributes), trace_id=r.trace_id.hex(),
                            span_id=r.span_id.hex(), resource=resource, scope=sl.scope.name))
        return out

    def metric_points(self, name: str | None = None) -> list[MetricPoint]:
        """Data points of metric `name` (all metrics when None), in order of receipt."""
        with self._lock:
            requests = list(self.metric_requests)
        out: list[MetricPoint] = []
        arrival = 0
        for request in requests:
            for rm in request.resource_metrics:
                resource = _attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if name is not None and metric.name != name:
                            continue
                        kind = metric.WhichOneof("data")
                        for p in getattr(metric, kind).data_points:
                            arrival += 1
                            if kind in ("sum", "gauge"):
                                value = p.as_double if p.WhichOneof("value") == "as_double" \
                                    else p.as_int
                                count = 0
                            elif kind in ("histogram", "exponential_histogram"):
                                value, count = p.sum, p.count
                            else:
                                continue
                            out.append(MetricPoint(metric.name, kind, _attributes(p.attributes),
                                                   value, count, p.start_time_unix_nano,
                                                   p.time_unix_nano, arrival, resource))
        return out

    def metric_series(self, name: str) -> dict[frozenset, MetricPoint]:
        """The latest point of each attribute set of metric `name`."""
        latest: dict[frozenset, MetricPoint] = {}
        for point in self.metric_points(name):
            key = frozenset((k, _hashable(v)) for k, v in point.attributes.items())
            old = latest.get(key)
            if old is None or (point.time_ns, point.arrival) >= (old.time_ns, old.arrival):
                latest[key] = point
        return latest

    def metric_value(self, name: str, attributes: dict[str, Any] | None = None) -> float | None:
        """The latest cumulative value of the series with exactly these attributes (None if
        never received)."""
        key = frozenset((k, _hashable(v)) for k, v in (attributes or {}).items())
        point = self.metric_series(name).get(key)
        return None if point is None else point.value

    def metric_sum(self, name: str, **labels: Any) -> float:
        """Sum of the latest values of every series of `name` whose attributes include `labels`."""
        return sum(p.value for p in self.metric_series(name).values()
                   if all(p.attributes.get(k) == v for k, v in labels.items()))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0,
                 interval: float = 0.05, message: str = "") -> Any:
        """Poll `predicate` until it returns something truthy; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(message or f"condition not met within {timeout}s")
            time.sleep(interval)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
