"""OTLP/JSON straight from the SDK's spans and metric points: the ExportTraceServiceRequest /
ExportMetricsServiceRequest that the SDK's protobuf encoders build, in the protobuf JSON
mapping the OTLP spec prescribes (lowerCamelCase, enums as integers, 64-bit integers as
strings, trace and span ids as hex, fields at their default value left out).

Going through protobuf and `json_format` costs ~100× the binary encoding per span; this
builds plain dicts and lists (msgspec writes them in C) and mirrors the SDK encoders field by
field, including their quirks, so the output parses back into the very message the SDK's
encoder builds (tests/test_otlp_json.py proves it). A batch this module cannot mirror exactly
(a string that is not valid Unicode, say) goes the reference way instead
(`reference_json`), so the output is never wrong, only slower.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Mapping, Sequence

import msgspec
from opentelemetry.sdk.metrics.export import (ExponentialHistogram, Gauge, Histogram,
                                              MetricsData, Sum)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

log = logging.getLogger("kit_otel")

# OTLP's Span.SpanKind numbers, as the SDK's trace encoder maps them (both direct encoders)
SPAN_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3,
             SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
# SpanFlags: the SDK's encoder always says whether the parent was remote
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def span_flags(parent) -> int:
    """The SpanFlags the SDK's encoder writes for a span (or link) with this parent context."""
    return _HAS_IS_REMOTE | _IS_REMOTE if parent and parent.is_remote else _HAS_IS_REMOTE

_encode_json = msgspec.json.Encoder().encode
_Raw = msgspec.Raw


class Unencodable(ValueError):
    """A value protobuf itself would refuse (the SDK's encoder then drops the attribute)."""


def _double(value: float):
    # the protobuf JSON mapping spells the non-finite doubles as strings
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


def _any_value(value) -> dict:
    # the same order of type checks as the SDK's _encode_value (bool before int, str before
    # Sequence), so every value lands in the same AnyValue case
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise Unencodable(f"integer {value} is outside int64")
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": _double(value)}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Sequence):
        values = [_any_value(v) for v in value]
        return {"arrayValue": {"values": values} if values else {}}
    if isinstance(value, Mapping):
        pairs = [{"key": str(k), "value": _any_value(v)} for k, v in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise Unencodable(f"invalid type {type(value).__name__}")


class AttributeCache:
    """Encoded key-value pairs by (key, type, value): a stream repeats the same few model, tool
    and provider names on thousands of spans. Bounded; only ints, bools and short strings are
    kept (a float's -0.0 equals 0.0 as a key). `encode_pair(key, value)` is the encoding (a
    dict here, bytes for protobuf) and raises Unencodable for a value the SDK drops."""

    _LIMIT = 8192
    _LONGEST = 256  # longer strings are content or paths, rarely repeated

    def __init__(self, encode_pair):
        self._encode_pair = encode_pair
        self._pairs: dict = {}

    def encode(self, attributes) -> list:
        if not attributes:
            return []
        # an ended span's BoundedAttributes are immutable: read the dict beneath, not
        # through the Mapping protocol key by key
        attributes = getattr(attributes, "_dict", attributes)
        pairs = self._pairs
        out = []
        for key, value in attributes.items():
            kind = type(value)
            cacheable = kind is int or kind is bool or (
                kind is str and len(value) <= self._LONGEST)
            if cacheable:
                cache_key = (key, kind, value)
                pair = pairs.get(cache_key)
                if pair is not None:
                    out.append(pair)
                    continue
            try:
                pair = self._encode_pair(key, value)
            except Unencodable as exc:
                log.warning("attribute %s not exported: %s", key, exc)
                continue
            if cacheable:
                if len(pairs) >= self._LIMIT:
                    pairs.clear()
                pairs[cache_key] = pair
            out.append(pair)
        return out


class OTLPJsonEncoder:
    """Encodes batches of SDK spans and MetricsData to one OTLP/JSON request each (bytes).
    Resources and scopes are encoded once and reused, as are repeated attribute pairs."""

    def __init__(self):
        self._attributes = AttributeCache(lambda key, value: {"key": key,
                                                              "value": _any_value(value)})
        self._resources: dict = {}
        self._scopes: dict = {}

    # ── shared parts ─────────────────────────────────────────────────────────────────────────

    def _resource(self, resource) -> dict:
        encoded = self._resources.get(id(resource))
        if encoded is None or encoded[0] is not resource:
            attributes = self._attributes.encode(resource.attributes)
            encoded = (resource, {"attributes": attributes} if attributes else {})
            if len(self._resources) > 64:
                self._resources.clear()
            self._resources[id(resource)] = encoded
        return encoded[1]

    def _scope(self, scope) -> dict:
        if scope is None:
            return {}
        encoded = self._scopes.get(id(scope))
        if encoded is None or encoded[0] is not scope:
            body = {}
            if scope.name:
                body["name"] = scope.name
            if scope.version:
                body["version"] = scope.version
            attributes = self._attributes.encode(scope.attributes)
            if attributes:
                body["attributes"] = attributes
            encoded = (scope, body)
            if len(self._scopes) > 256:
                self._scopes.clear()
            self._scopes[id(scope)] = encoded
        return encoded[1]

    # ── traces ───────────────────────────────────────────────────────────────────────────────

    def spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The ExportTraceServiceRequest of `spans`, grouped by resource then scope in the
        order first seen (as the SDK's encoder groups them)."""
        try:
            return _encode_json(self._trace_request(spans))
        except (Unencodable, UnicodeError, TypeError, ValueError, OverflowError):
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
            return reference_json(encode_spans(spans))

    def _trace_request(self, spans) -> dict:
        # written out at once: a batch's tree of dicts would otherwise live until the end, and
        # the cyclic GC traverse it again at every collection it triggers
        grouped = group_spans(spans, lambda span: _Raw(_encode_json(self._span(span))))
        resource_spans = []
        for resource, scopes in grouped:
            scope_spans = []
            for scope, encoded in scopes:
                entry = {"scope": self._scope(scope), "spans": encoded}
                if scope is not None and scope.schema_url:
                    entry["schemaUrl"] = scope.schema_url
                scope_spans.append(entry)
            entry = {"resource": self._resource(resource), "scopeSpans": scope_spans}
            if resource.schema_url:
                entry["schemaUrl"] = resource.schema_url
            resource_spans.append(entry)
        return {"resourceSpans": resource_spans} if resource_spans else {}

    def _span(self, span: ReadableSpan) -> dict:
        context = span._context
        out = {"traceId": format(context.trace_id, "032x"),
               "spanId": format(context.span_id, "016x")}
        trace_state = context.trace_state
        if trace_state:
            out["traceState"] = ",".join(f"{k}={v}" for k, v in trace_state.items())
        parent = span._parent
        if parent:
            out["parentSpanId"] = format(parent.span_id, "016x")
        if span._name:
            out["name"] = span._name
        out["kind"] = SPAN_KIND[span._kind]
        if span._start_time:
            out["startTimeUnixNano"] = str(span._start_time)
        if span._end_time:
            out["endTimeUnixNano"] = str(span._end_time)
        attributes = self._attributes.encode(span._attributes)
        if attributes:
            out["attributes"] = attributes
        dropped = span.dropped_attributes
        if dropped:
            out["droppedAttributesCount"] = dropped
        events = span._events
        if events:
            out["events"] = [self._event(e) for e in events]
        dropped = span.dropped_events
        if dropped:
            out["droppedEventsCount"] = dropped
        links = span._links
        if links:
            out["links"] = [self._link(link) for link in links]
        dropped = span.dropped_links
        if dropped:
            out["droppedLinksCount"] = dropped
        status = span._status
        if status is not None:
            body = {}
            if status.description:
                body["message"] = status.description
            if status.status_code.value:
                body["code"] = status.status_code.value
            out["status"] = body
        out["flags"] = span_flags(parent)
        return out

    def _event(self, event) -> dict:
        out = {}
        if event.timestamp:
            out["timeUnixNano"] = str(event.timestamp)
        if event.name:
            out["name"] = event.name
        attributes = self._attributes.encode(event.attributes)
        if attributes:
            out["attributes"] = attributes
        if event.dropped_attributes:
            out["droppedAttributesCount"] = event.dropped_attributes
        return out

    def _link(self, link) -> dict:
        context = link.context
        out = {"traceId": format(context.trace_id, "032x"),
               "spanId": format(context.span_id, "016x")}
        attributes = self._attributes.encode(link.attributes)
        if attributes:
            out["attributes"] = attributes
        if link.dropped_attributes:
            out["droppedAttributesCount"] = link.dropped_attributes
        out["flags"] = span_flags(context)
        return out

    # ── metrics ──────────────────────────────────────────────────────────────────────────────

    def metrics(self, data: MetricsData) -> bytes:
        """The ExportMetricsServiceRequest of `data`."""
        try:
            return _encode_json(self._metrics_request(data))
        except (Unencodable, UnicodeError, TypeError, ValueError, OverflowError):
            from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
            return reference_json(encode_metrics(data))

    def _metrics_request(self, data: MetricsData) -> dict:
        # the SDK's encoder keys resources in a dict: a resource seen twice keeps its first
        # place and the scopes of its last appearance
        by_resource: dict = {}
        for resource_metrics in data.resource_metrics:
            scopes: dict = {}
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope
                entry = {"scope": self._scope(scope)}
                metrics = [self._metric(m) for m in scope_metrics.metrics]
                if metrics:
                    entry["metrics"] = metrics
                if scope.schema_url:
                    entry["schemaUrl"] = scope.schema_url
                scopes[scope] = entry
            by_resource[resource_metrics.resource] = scopes
        out = []
        for resource, scopes in by_resource.items():
            entry = {"resource": self._resource(resource)}
            if scopes:
                entry["scopeMetrics"] = list(scopes.values())
            if resource.schema_url:
                entry["schemaUrl"] = resource.schema_url
            out.append(entry)
        return {"resourceMetrics": out} if out else {}

    def _metric(self, metric) -> dict:
        out = {}
        if metric.name:
            out["name"] = metric.name
        if metric.description:
            out["description"] = metric.description
        if metric.unit:
            out["unit"] = metric.unit
        data = metric.data
        points = data.data_points
        if not points:
            return out  # the SDK's encoder sets the data case only while adding a point
        if isinstance(data, Gauge):
            out["gauge"] = {"dataPoints": [self._number_point(p, False) for p in points]}
        elif isinstance(data, Histogram):
            body = {"dataPoints": [self._histogram_point(p) for p in points]}
            if data.aggregation_temporality:
                body["aggregationTemporality"] = int(data.aggregation_temporality)
            out["histogram"] = body
        elif isinstance(data, Sum):
            body = {"dataPoints": [self._number_point(p, True) for p in points]}
            if data.aggregation_temporality:
                body["aggregationTemporality"] = int(data.aggregation_temporality)
            if data.is_monotonic:
                body["isMonotonic"] = True
            out["sum"] = body
        elif isinstance(data, ExponentialHistogram):
            body = {"dataPoints": [self._exponential_point(p) for p in points]}
            if data.aggregation_temporality:
                body["aggregationTemporality"] = int(data.aggregation_temporality)
            out["exponentialHistogram"] = body
        else:
            log.warning("metric %s: unsupported data type %s", metric.name,
                        type(data).__name__)
        return out

    def _point_common(self, point, out: dict, with_start: bool) -> None:
        attributes = self._attributes.encode(point.attributes)
        if attributes:
            out["attributes"] = attributes
        if with_start and point.start_time_unix_nano:
            out["startTimeUnixNano"] = str(point.start_time_unix_nano)
        if point.time_unix_nano:
            out["timeUnixNano"] = str(point.time_unix_nano)

    def _number_point(self, point, with_start: bool) -> dict:
        out: dict = {}
        self._point_common(point, out, with_start)
        value = point.value
        if isinstance(value, int):
            out["asInt"] = str(_int64(int(value)))
        else:
            out["asDouble"] = _double(value)
        exemplars = point.exemplars
        if exemplars:
            out["exemplars"] = [self._exemplar(e) for e in exemplars]
        return out

    def _histogram_point(self, point) -> dict:
        out: dict = {}
        self._point_common(point, out, True)
        if point.count:
            out["count"] = str(point.count)
        if point.sum is not None:
            out["sum"] = _double(point.sum)
        if point.bucket_counts:
            out["bucketCounts"] = [str(c) for c in point.bucket_counts]
        if point.explicit_bounds:
            out["explicitBounds"] = [_double(b) for b in point.explicit_bounds]
        exemplars = point.exemplars
        if exemplars:
            out["exemplars"] = [self._exemplar(e) for e in exemplars]
        if point.min is not None:
            out["min"] = _double(point.min)
        if point.max is not None:
            out["max"] = _double(point.max)
        return out

    def _exponential_point(self, point) -> dict:
        out: dict = {}
        self._point_common(point, out, True)
        if point.count:
            out["count"] = str(point.count)
        if point.sum is not None:
            out["sum"] = _double(point.sum)
        if point.scale:
            out["scale"] = point.scale
        if point.zero_count:
            out["zeroCount"] = str(point.zero_count)
        for name, buckets in (("positive", point.positive), ("negative", point.negative)):
            if buckets.bucket_counts:
                body = {"bucketCounts": [str(c) for c in buckets.bucket_counts]}
                if buckets.offset:
                    body = {"offset": buckets.offset, **body}
                out[name] = body
        if point.flags:
            out["flags"] = point.flags
        exemplars = point.exemplars
        if exemplars:
            out["exemplars"] = [self._exemplar(e) for e in exemplars]
        if point.min is not None:
            out["min"] = _double(point.min)
        if point.max is not None:
            out["max"] = _double(point.max)
        return out

    def _exemplar(self, exemplar) -> dict:
        out: dict = {}
        if exemplar.time_unix_nano:
            out["timeUnixNano"] = str(exemplar.time_unix_nano)
        value = exemplar.value
        if isinstance(value, float):
            out["asDouble"] = _double(value)
        elif isinstance(value, int):
            out["asInt"] = str(_int64(int(value)))
        else:
            raise Unencodable("exemplar value must be an int or float")
        if exemplar.span_id is not None and exemplar.trace_id is not None:
            out["spanId"] = format(exemplar.span_id, "016x")
            out["traceId"] = format(exemplar.trace_id, "032x")
        attributes = self._attributes.encode(exemplar.filtered_attributes)
        if attributes:
            out["filteredAttributes"] = attributes
        return out


def group_spans(spans, encode_span) -> list:
    """[(resource, [(scope, [encode_span(span), ...]), ...]), ...]: spans grouped by resource
    then scope in the order first seen, as the SDK's trace encoder groups them (both direct
    encoders use it).

    The SDK groups with resources and scopes as dict keys, i.e. by hash and equality; a
    Resource hashes by serialising its attributes, too dear per span. Each distinct object is
    matched to its first equal one once per batch, then grouped by identity."""
    canonical: dict = {}
    by_resource: dict = {}
    for span in spans:
        resource, scope = span._resource, span._instrumentation_scope or None
        resource = canonical.get(id(resource)) or _first_equal(canonical, resource)
        if scope is not None:
            scope = canonical.get(id(scope)) or _first_equal(canonical, scope)
        group = by_resource.get(id(resource))
        if group is None:
            group = by_resource[id(resource)] = (resource, {})
        encoded = group[1].get(id(scope))
        if encoded is None:
            encoded = group[1][id(scope)] = (scope, [])
        encoded[1].append(encode_span(span))
    return [(resource, list(scopes.values())) for resource, scopes in by_resource.values()]


def _first_equal(canonical: dict, item):
    """The first item of this batch equal to `item` (a resource or scope) as a dict key is
    equal — same hash and `==` (a Resource's `==` takes {"x": 1} and {"x": True} for one, its
    hash does not) — remembered by id."""
    for seen in canonical.values():
        if type(seen) is type(item) and hash(seen) == hash(item) and seen == item:
            canonical[id(item)] = seen
            return seen
    canonical[id(item)] = item
    return item


def _int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise Unencodable(f"integer {value} is outside int64")
    return value


_ID_KEYS = frozenset(("traceId", "spanId", "parentSpanId"))


def _hex_ids(node):
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants ids in hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
    return node


def reference_json(message) -> bytes:
    """OTLP/JSON of a protobuf request by protobuf's own `json_format` (ids turned into hex):
    what this module's output must equal, and its way out for what it cannot mirror."""
    from google.protobuf.json_format import MessageToDict
    return _encode_json(_hex_ids(MessageToDict(message, use_integers_for_enums=True)))
