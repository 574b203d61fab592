"""What a KIT event says on a span: one span event per event, its fields as `kit.<field>`
attributes by a plan computed once per event struct (identifiers as they are, free text as its
length, the text itself only when content capture is on, redacted and cut)."""

from __future__ import annotations

import re

from opentelemetry import trace

from kit_otel.model import events as ev, names as n
from kit_otel.translate.classify import error_kind, error_type
from kit_otel.translate.content import identifier_fields

# Free-text fields that are error messages: their kind is recorded whatever the content setting.
_ERROR_FIELDS = frozenset({"Error", "ErrorMsg"})


_snake_cache: dict[str, str] = {}


_field_plans: dict[type, list[tuple[str, str, bool]]] = {}


def _field_plan(cls: type) -> list[tuple[str, str, bool]]:
    """(Go field, attribute key, is free text) for each field of a KIT event struct."""
    plan = _field_plans.get(cls)
    if plan is None:
        identifiers = identifier_fields(cls)
        plan = _field_plans[cls] = [(name, "kit." + _snake(name), name not in identifiers)
                                    for name in cls.__struct_fields__]
    return plan


def _snake(go_name: str) -> str:
    cached = _snake_cache.get(go_name)
    if cached is None:
        cached = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", go_name).lower()
        if len(_snake_cache) < 4096:  # field names of unknown events come from the input
            _snake_cache[go_name] = cached
    return cached


class EventAttributes:
    """The EventAttributes part of the translator (translate/translator.py), which holds the
    state these methods use: `sessions`, `tracer`, `metrics`, `content`, `settings`,
    `prices`, `event_log`."""

    def _event_attributes(self, event: ev.Event) -> dict[str, object]:
        data = event.data
        if isinstance(data, ev.UnknownData):  # what its strings mean is unknown: free text
            fields = [(name, "kit." + _snake(name), True) for name in data.fields]
            values = data.fields.get
        else:
            fields = _field_plan(type(data))
            values = data.__getattribute__
        attrs: dict[str, object] = {}
        capture = self.content.capture
        for name, key, is_text in fields:
            value = values(name)
            if is_text and isinstance(value, str):
                attrs[key + "_length"] = len(value)
                if value and name in _ERROR_FIELDS:
                    attrs[n.ERROR_TYPE] = error_type(value)
                if capture and value:
                    attrs[key] = self.content.text(value)
            elif is_text and isinstance(value, (list, dict)):
                attrs[key + "_count"] = len(value)
                if capture and value and isinstance(value, list) and \
                        all(isinstance(v, str) for v in value):
                    attrs[key] = [self.content.text(v) for v in value]
            elif value == "":
                continue  # Go's zero value: the field says nothing
            elif isinstance(value, (bool, int, float)) or (
                    isinstance(value, str) and not is_text):
                attrs[key] = value
            elif isinstance(value, list) and not is_text and \
                    all(isinstance(v, str) for v in value):
                attrs[key] = list(value)
        if isinstance(data, ev.UnknownData):
            attrs[n.KIT_UNKNOWN_EVENT] = True
        return attrs

    def _error_description(self, message: str) -> str:
        """A span status description for an error message: the message itself (redacted, cut)
        only when content is captured, else its kind — the message is free text."""
        if not message:
            return ""
        return self.content.text(message) or error_kind(message)

    def _span_event(self, span: trace.Span, event: ev.Event) -> None:
        span.add_event(n.KIT_EVENT_PREFIX + event.type, self._event_attributes(event),
                       timestamp=event.ts_ns)
