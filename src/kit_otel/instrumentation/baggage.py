"""KIT extension state in the OTel Context (docs/design.md#extension-state): baggage `kit.ext_state.<key>` during an
instrumented turn, and a span processor that stamps those entries onto every span started inside
it, so spans made by other instrumentations (HTTP clients, databases, LLM SDKs) carry the state.

    from kit_otel.instrumentation import BaggageStateSpanProcessor, ext_state_baggage

    tracer_provider.add_span_processor(BaggageStateSpanProcessor())
    with ext_state_baggage(session_path):      # the instrumented turn does this for you
        requests.get(...)                       # its span has kit.ext_state.* attributes

The entries go through the same `StatePolicy` as the turn span's attributes (allow/deny lists,
secret-looking keys redacted, long values cut, free-text values `[not captured]` unless content
capture is on). Baggage is propagated to other services by the
W3C `baggage` propagator (on by default in `OTEL_PROPAGATORS`): narrow the allow list (or deny
`*`) if the state must not leave the process.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Iterator, Mapping

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from kit_otel.translate.ext_state import StatePolicy
from kit_otel.model.names import KIT_EXT_STATE_PREFIX

__all__ = ["BaggageStateSpanProcessor", "ext_state_baggage", "ext_state_context",
           "read_ext_state", "KIT_EXT_STATE_PREFIX"]


def _sidecar(session_path: str) -> str:
    base = session_path[: -len(".jsonl")] if session_path.endswith(".jsonl") else session_path
    return base + ".ext-state.json"


def read_ext_state(session_path: str) -> dict[str, str] | None:
    """The session's extension state, `{}` when it has none, None when it cannot be read
    (no session path, malformed file: the caller keeps what it had)."""
    if not session_path:
        return None
    try:
        from kit_otel.state.state_store import StateStore
    except ImportError:  # pragma: no cover - state_store is part of kit_otel today
        StateStore = None  # type: ignore[assignment,misc]
    try:
        if StateStore is not None:
            return StateStore(session_path).snapshot()
        try:
            with open(_sidecar(session_path), "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return {}
        state = json.loads(raw) if raw.strip() else {}
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in state.items()):
            return None
        return state
    except Exception:  # noqa: BLE001 - malformed state never breaks the host
        return None


def ext_state_context(state: Mapping[str, str], policy: StatePolicy | None = None,
                      ctx: Context | None = None) -> Context:
    """`ctx` (default: the current context) with the state's exposed keys as baggage."""
    policy = policy or _DEFAULT_POLICY
    if ctx is None:
        ctx = otel_context.get_current()
    for key, value in policy.attributes(dict(state)).items():
        ctx = baggage.set_baggage(key, value, ctx)
    return ctx


@contextmanager
def ext_state_baggage(session_path: str | os.PathLike,
                      policy: StatePolicy | None = None) -> Iterator[dict[str, str]]:
    """For the duration of the block, the session's extension state is baggage
    `kit.ext_state.<key>` in the current context. Yields the state that was read."""
    state = read_ext_state(os.fspath(session_path)) or {}
    token = otel_context.attach(ext_state_context(state, policy))
    try:
        yield state
    finally:
        otel_context.detach(token)


class BaggageStateSpanProcessor(SpanProcessor):
    """Copies baggage entries named `kit.ext_state.*` onto each span when it starts (not onto
    kit-otel's own spans, whose turn span carries the state through the translator's policy).

    The same thing as `opentelemetry-processor-baggage`'s
    `BaggageSpanProcessor(lambda key: key.startswith("kit.ext_state."))`, without the extra
    (pre-release) dependency; either works.
    """

    def __init__(self, prefix: str = KIT_EXT_STATE_PREFIX):
        self.prefix = prefix

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        entries = baggage.get_all(parent_context)
        if not entries:
            return
        scope = getattr(span, "instrumentation_scope", None)
        if scope is not None and scope.name == "kit_otel":
            return  # the translator's own spans: the turn span has the state already
        prefix = self.prefix
        attrs = {k: v for k, v in entries.items() if k.startswith(prefix) and isinstance(v, str)}
        if attrs:
            span.set_attributes(attrs)

    def on_end(self, span) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_DEFAULT_POLICY = StatePolicy()
