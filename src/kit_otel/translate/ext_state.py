"""Which extension-state keys become span attributes, and how (docs/design.md#extension-state).

Keys are matched by glob against allow and deny lists, and at most `max_keys` keys are exposed
per span. Keys are identifiers; values are free text an extension wrote (a plan, a path, a
note), so with content capture off a value leaves only for the keys declared to hold
identifiers or numbers (`value_keys`, `gauge_keys`), and otherwise as `[not captured]`. Values
that leave are redacted like any captured text and cut to `max_value_length`; values of
secret-looking keys are always `[REDACTED]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from kit_otel.translate.content import REDACTED, ContentPolicy
from kit_otel.model.names import KIT_EXT_STATE_PREFIX, KIT_EXT_STATE_START_PREFIX

DEFAULT_SECRET_GLOBS = ("*token*", "*secret*", "*key*", "*password*", "*passwd*", "*credential*")
NOT_CAPTURED = "[not captured]"


@dataclass
class StatePolicy:
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    secret_globs: tuple[str, ...] = DEFAULT_SECRET_GLOBS
    max_value_length: int = 256
    max_keys: int = 64
    gauge_keys: tuple[str, ...] = ()  # numeric keys exported as kit_ext_state_value gauges
    value_keys: tuple[str, ...] = ()  # key globs whose values leave with content capture off
    # None: the translator's content policy (TranslatorSettings sets it); alone, capture off
    content: ContentPolicy | None = None
    _decisions: dict[str, bool] = field(default_factory=dict, repr=False)
    _plain: dict[str, bool] = field(default_factory=dict, repr=False)

    def exposed(self, key: str) -> bool:
        decided = self._decisions.get(key)
        if decided is None:
            decided = (any(fnmatchcase(key, g) for g in self.allow)
                       and not any(fnmatchcase(key, g) for g in self.deny))
            self._decisions[key] = decided
        return decided

    def value(self, key: str, value: str) -> str:
        lowered = key.lower()
        if any(fnmatchcase(lowered, g) for g in self.secret_globs):
            return REDACTED
        content = self.content or _CONTENT_OFF
        if not (content.capture or self._is_plain(key)):
            return NOT_CAPTURED
        kept, cut = content.redact_cut(value, self.max_value_length)
        return kept + "…" if cut else kept

    def _is_plain(self, key: str) -> bool:
        """A key declared to hold an identifier or a number, not free text."""
        decided = self._plain.get(key)
        if decided is None:
            decided = any(fnmatchcase(key, g) for g in (*self.value_keys, *self.gauge_keys))
            if len(self._plain) < 4096:  # keys come from the input
                self._plain[key] = decided
        return decided

    def attributes(self, state: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in sorted(state):
            if len(out) >= self.max_keys:
                break
            if self.exposed(key):
                out[KIT_EXT_STATE_PREFIX + key] = self.value(key, state[key])
        return out

    def turn_attributes(self, start: dict[str, str], end: dict[str, str]) -> dict[str, str]:
        """A turn span's state: `kit.ext_state.<key>` as the turn left it, and
        `kit.ext_state.start.<key>` for each key that was different (or present only) when it
        began — span attributes cannot be removed, so a deleted key must not be set early."""
        attrs = self.attributes(end)
        before = self.attributes({k: v for k, v in start.items() if end.get(k) != v})
        attrs.update({KIT_EXT_STATE_START_PREFIX + k[len(KIT_EXT_STATE_PREFIX):]: v
                      for k, v in before.items()})
        return attrs

    def changes(self, old: dict[str, str], new: dict[str, str]) -> list[dict[str, object]]:
        """Span-event attributes for each exposed key that changed (deleted keys included)."""
        events = []
        for key in sorted(old.keys() | new.keys()):
            before, after = old.get(key), new.get(key)
            if before == after or not self.exposed(key):
                continue
            attrs: dict[str, object] = {"kit.ext_state.key": key}
            if before is not None:
                attrs["kit.ext_state.old"] = self.value(key, before)
            if after is None:
                attrs["kit.ext_state.deleted"] = True
            else:
                attrs["kit.ext_state.new"] = self.value(key, after)
            events.append(attrs)
        return events


_CONTENT_OFF = ContentPolicy()
