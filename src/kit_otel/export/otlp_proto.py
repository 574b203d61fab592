"""OTLP protobuf straight from the SDK's spans: the bytes of the ExportTraceServiceRequest that
the SDK's trace encoder (`encode_spans`) builds, written field by field in Python.

Why: the SDK's encoder builds one protobuf object per span, event, attribute and value
through protobuf's Python API, ~200 µs per span of a KIT stream (3.7 span events and 14
attributes each) — a third of what `serve` spends on a demo stream's catch-up. The wire format
is simple to write, and a stream repeats the same model, tool and provider names on thousands
of spans, so each (key, value) pair is encoded once and its bytes reused.

It mirrors `opentelemetry.exporter.otlp.proto.common.trace_encoder` exactly: the same grouping
by resource and scope, the same fields set (an empty `Resource` and `InstrumentationScope`
always present, `Status` whenever the span has one, the remote-parent flags), the same value
cases, fields in field-number order as protobuf writes them. tests/test_otlp_proto.py proves
that the bytes equal the SDK's serialisation on the demo stream and on every value kind. A
batch with something this module does not write the SDK's way (a string that is not valid
Unicode) is encoded by the SDK instead, so the output is never wrong, only slower.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from kit_otel.export.otlp_json import canonical_equal

log = logging.getLogger("kit_otel")

# OTLP's Span.SpanKind numbers, as the SDK's trace encoder maps them
_SPAN_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3,
              SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags: the SDK always says which
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64 = 1 << 64

_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack
_SMALL = [bytes((n,)) for n in range(128)]

# tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32)
_SPAN_TRACE_ID, _SPAN_SPAN_ID = b"\x0a\x10", b"\x12\x08"  # with their fixed lengths
_SPAN_TRACE_STATE, _SPAN_PARENT_ID, _SPAN_NAME = b"\x1a", b"\x22\x08", b"\x2a"
_SPAN_KIND_TAG, _SPAN_START, _SPAN_END = b"\x30", b"\x39", b"\x41"
_SPAN_ATTRIBUTE, _SPAN_DROPPED_ATTRIBUTES, _SPAN_EVENT = b"\x4a", b"\x50", b"\x5a"
_SPAN_DROPPED_EVENTS, _SPAN_LINK, _SPAN_DROPPED_LINKS = b"\x60", b"\x6a", b"\x70"
_SPAN_STATUS, _SPAN_FLAGS = b"\x7a", b"\x85\x01"
_EVENT_TIME, _EVENT_NAME, _EVENT_ATTRIBUTE, _EVENT_DROPPED = b"\x09", b"\x12", b"\x1a", b"\x20"
_LINK_TRACE_ID, _LINK_SPAN_ID = b"\x0a\x10", b"\x12\x08"
_LINK_ATTRIBUTE, _LINK_DROPPED, _LINK_FLAGS = b"\x22", b"\x28", b"\x35"
_STATUS_MESSAGE, _STATUS_CODE = b"\x12", b"\x18"
_FIRST, _SECOND, _THIRD = b"\x0a", b"\x12", b"\x1a"  # fields 1-3, length-delimited


class _Unencodable(ValueError):
    """A value protobuf itself refuses (the SDK's encoder then drops the attribute)."""


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _any_value(value) -> bytes:
    # the order of type checks of the SDK's _encode_value (bool before int, str before
    # Sequence), so every value lands in the same AnyValue case; a set case is written even at
    # its default (a oneof is present once set)
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _delimited(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Unencodable(f"integer {value} is outside int64")
        return b"\x18" + _varint(value if value >= 0 else value + _UINT64)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _delimited(b"\x3a", value)
    if isinstance(value, Sequence):
        return _delimited(b"\x2a", b"".join(_delimited(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _delimited(b"\x32", b"".join(
            _delimited(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise _Unencodable(f"invalid type {type(value).__name__}")


def _key_value(key: str, value) -> bytes:
    encoded_key = key.encode("utf-8")  # (an empty key is a field at its default: left out)
    return (_delimited(b"\x0a", encoded_key) if encoded_key else b"") + \
        _delimited(b"\x12", _any_value(value))


class _AttributeCache:
    """Each key-value pair's bytes with their length prefix, by (key, type, value); a
    container adds its own field tag. Bounded; only hashable scalar values are kept."""

    _LIMIT = 8192
    _LONGEST = 256  # longer strings are content or paths, rarely repeated

    def __init__(self):
        self._pairs: dict = {}

    def encode(self, tag: bytes, attributes) -> bytes:
        if not attributes:
            return b""
        # an ended span's BoundedAttributes are immutable: read the dict beneath
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
                encoded = _key_value(key, value)
            except _Unencodable as exc:
                log.warning("attribute %s not exported: %s", key, exc)
                continue
            pair = _varint(len(encoded)) + encoded
            if cacheable:
                if len(pairs) >= self._LIMIT:
                    pairs.clear()
                pairs[cache_key] = pair
            out.append(pair)
        return tag + tag.join(out) if out else b""


class OTLPProtoEncoder:
    """Encodes batches of SDK spans to the bytes of one ExportTraceServiceRequest each.
    Resources and scopes are encoded once and reused, as are repeated attribute pairs."""

    def __init__(self):
        self._attributes = _AttributeCache()
        self._resources: dict = {}
        self._scopes: dict = {}

    def spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The ExportTraceServiceRequest of `spans`, grouped by resource then scope in the
        order first seen (as the SDK's encoder groups them)."""
        try:
            return self._trace_request(spans)
        except (_Unencodable, UnicodeError, TypeError, ValueError, OverflowError,
                struct.error):
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
            return encode_spans(spans).SerializeToString()

    def _trace_request(self, spans) -> bytes:
        canonical: dict = {}
        by_resource: dict = {}
        encode_span = self._span
        for span in spans:
            resource, scope = span._resource, span._instrumentation_scope or None
            resource = canonical.get(id(resource)) or canonical_equal(canonical, resource)
            if scope is not None:
                scope = canonical.get(id(scope)) or canonical_equal(canonical, scope)
            group = by_resource.get(id(resource))
            if group is None:
                group = by_resource[id(resource)] = (resource, {})
            scopes = group[1]
            encoded = scopes.get(id(scope))
            if encoded is None:
                encoded = scopes[id(scope)] = (scope, [])
            encoded[1].append(encode_span(span))
        out = []
        for resource, scopes in by_resource.values():
            body = [_delimited(_FIRST, self._resource(resource))]
            for scope, encoded in scopes.values():
                scope_spans = [_delimited(_FIRST, self._scope(scope))]
                scope_spans.extend(_delimited(_SECOND, span) for span in encoded)
                if scope is not None and scope.schema_url:
                    scope_spans.append(_delimited(_THIRD, scope.schema_url.encode("utf-8")))
                body.append(_delimited(_SECOND, b"".join(scope_spans)))
            if resource.schema_url:
                body.append(_delimited(_THIRD, resource.schema_url.encode("utf-8")))
            out.append(_delimited(_FIRST, b"".join(body)))
        return b"".join(out)

    def _resource(self, resource) -> bytes:
        encoded = self._resources.get(id(resource))
        if encoded is None or encoded[0] is not resource:
            encoded = (resource, self._attributes.encode(_FIRST, resource.attributes))
            if len(self._resources) > 64:
                self._resources.clear()
            self._resources[id(resource)] = encoded
        return encoded[1]

    def _scope(self, scope) -> bytes:
        if scope is None:
            return b""
        encoded = self._scopes.get(id(scope))
        if encoded is None or encoded[0] is not scope:
            body = b""
            if scope.name:
                body += _delimited(_FIRST, scope.name.encode("utf-8"))
            if scope.version:
                body += _delimited(_SECOND, scope.version.encode("utf-8"))
            body += self._attributes.encode(_THIRD, scope.attributes)
            encoded = (scope, body)
            if len(self._scopes) > 256:
                self._scopes.clear()
            self._scopes[id(scope)] = encoded
        return encoded[1]

    def _span(self, span: ReadableSpan) -> bytes:
        context = span._context
        out = [_SPAN_TRACE_ID, context.trace_id.to_bytes(16, "big"),
               _SPAN_SPAN_ID, context.span_id.to_bytes(8, "big")]
        trace_state = context.trace_state
        if trace_state:
            out.append(_delimited(_SPAN_TRACE_STATE, ",".join(
                f"{k}={v}" for k, v in trace_state.items()).encode("utf-8")))
        parent = span._parent
        if parent:
            out += (_SPAN_PARENT_ID, parent.span_id.to_bytes(8, "big"))
        if span._name:
            out.append(_delimited(_SPAN_NAME, span._name.encode("utf-8")))
        out += (_SPAN_KIND_TAG, _SMALL[_SPAN_KIND[span._kind]])
        if span._start_time:
            out += (_SPAN_START, _fixed64(span._start_time))
        if span._end_time:
            out += (_SPAN_END, _fixed64(span._end_time))
        out.append(self._attributes.encode(_SPAN_ATTRIBUTE, span._attributes))
        dropped = span.dropped_attributes
        if dropped:
            out += (_SPAN_DROPPED_ATTRIBUTES, _varint(dropped))
        for event in span._events:
            out.append(_delimited(_SPAN_EVENT, self._event(event)))
        dropped = span.dropped_events
        if dropped:
            out += (_SPAN_DROPPED_EVENTS, _varint(dropped))
        for link in span._links:
            out.append(_delimited(_SPAN_LINK, self._link(link)))
        dropped = span.dropped_links
        if dropped:
            out += (_SPAN_DROPPED_LINKS, _varint(dropped))
        status = span._status
        if status is not None:
            body = b""
            if status.description:
                body = _delimited(_STATUS_MESSAGE, status.description.encode("utf-8"))
            if status.status_code.value:
                body += _STATUS_CODE + _varint(status.status_code.value)
            out.append(_delimited(_SPAN_STATUS, body))
        flags = _HAS_IS_REMOTE | _IS_REMOTE if parent and parent.is_remote else _HAS_IS_REMOTE
        out += (_SPAN_FLAGS, _fixed32(flags))
        return b"".join(out)

    def _event(self, event) -> bytes:
        out = b""
        if event.timestamp:
            out = _EVENT_TIME + _fixed64(event.timestamp)
        if event.name:
            out += _delimited(_EVENT_NAME, event.name.encode("utf-8"))
        out += self._attributes.encode(_EVENT_ATTRIBUTE, event.attributes)
        if event.dropped_attributes:
            out += _EVENT_DROPPED + _varint(event.dropped_attributes)
        return out

    def _link(self, link) -> bytes:
        context = link.context
        out = (_LINK_TRACE_ID + context.trace_id.to_bytes(16, "big") +
               _LINK_SPAN_ID + context.span_id.to_bytes(8, "big"))
        out += self._attributes.encode(_LINK_ATTRIBUTE, link.attributes)
        if link.dropped_attributes:
            out += _LINK_DROPPED + _varint(link.dropped_attributes)
        flags = _HAS_IS_REMOTE | _IS_REMOTE if context.is_remote else _HAS_IS_REMOTE
        return out + _LINK_FLAGS + _fixed32(flags)


def with_direct_encoding(exporter_class: type) -> type:
    """The SDK's OTLP gRPC span exporter class with its request built by `OTLPProtoEncoder`
    (same bytes, ~4× less CPU); any other class as it is.

    The hook is `_translate_data`, the method the SDK's gRPC exporter mixin leaves to each
    signal's exporter: everything else — channel, retries, timeouts, compression, headers,
    its own metrics — stays the SDK's. The request is parsed back from our bytes (C code,
    ~5 µs a span) because the gRPC stub serialises a message object itself. The HTTP
    exporter encodes inside `export()` with no such hook, so it keeps the SDK's encoder."""
    if "_translate_data" not in vars(exporter_class) or not exporter_class.__module__.startswith(
            "opentelemetry.exporter.otlp.proto.grpc"):
        return exporter_class
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import \
        ExportTraceServiceRequest

    class DirectlyEncodedOTLPSpanExporter(exporter_class):
        _direct_encoder: OTLPProtoEncoder | None = None

        def _translate_data(self, data):
            encoder = self._direct_encoder
            if encoder is None:
                encoder = self._direct_encoder = OTLPProtoEncoder()
            try:
                return ExportTraceServiceRequest.FromString(encoder.spans(data))
            except Exception:  # noqa: BLE001 - e.g. values nested deeper than protobuf parses
                return super()._translate_data(data)  # the SDK's own request, as before

    DirectlyEncodedOTLPSpanExporter.__qualname__ = DirectlyEncodedOTLPSpanExporter.__name__ = \
        exporter_class.__name__  # log lines name the exporter as the SDK's
    return DirectlyEncodedOTLPSpanExporter
