"""Classifications of event values into the conventions' small vocabularies: an error
message's kind and `error.type`, a tool's `gen_ai.tool.type`, KIT's "provider/model" names, the
user's cancel, and a W3C trace context handed in from outside."""

from __future__ import annotations

import re

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kit_otel.model import names as n

_ERROR_KINDS = [
    ("rate_limit", re.compile(r"rate.?limit|\b429\b|too many requests", re.I)),
    ("overloaded", re.compile(r"overloaded|\b529\b|\b503\b|unavailable", re.I)),
    ("timeout", re.compile(r"timeout|timed out|deadline exceeded", re.I)),
    ("cancelled", re.compile(r"cancel", re.I)),
    ("auth", re.compile(r"\b401\b|\b403\b|unauthori[sz]ed|forbidden|api key", re.I)),
    ("context_length", re.compile(r"context (length|window)|too long|maximum context", re.I)),
    ("network", re.compile(r"connection|network|dial tcp|eof\b|reset by peer", re.I)),
]


def error_kind(message: str) -> str:
    """A low-cardinality class of an error message, for metric labels."""
    for kind, pattern in _ERROR_KINDS:
        if pattern.search(message):
            return kind
    return "other"


def error_type(message: str) -> str:
    """`error.type` of an error message: its class, or the conventions' `_OTHER` fallback."""
    kind = error_kind(message) if message else n.OTHER
    return n.ERROR_TYPE_OTHER if kind == n.OTHER else kind


# KIT's built-in tools (its coreToolKinds); MCP tools ("server__tool") and tools an extension
# registers are everything else.
_BUILTIN_TOOLS = frozenset({"bash", "edit", "write", "read", "ls", "grep", "find"})


def tool_type(name: str, kind: str) -> str:
    """`gen_ai.tool.type`: built-in tools run in KIT's process (function), MCP and extension
    tools reach outside it (extension), the subagent tool runs another agent (agent)."""
    if kind == "agent" or name == "subagent":
        return n.TOOL_TYPE_AGENT
    if name in _BUILTIN_TOOLS:
        return n.TOOL_TYPE_FUNCTION
    return n.TOOL_TYPE_EXTENSION


_W3C = TraceContextTextMapPropagator()


def remote_parent(traceparent: str, tracestate: str = "") -> Context | None:
    """A W3C `traceparent` (and `tracestate`) as a context to start spans in; None when it is
    missing or malformed (a bad one is ignored: the turn is a root span as without one)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = _W3C.extract(carrier, context=Context())
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def is_user_cancel(message: str) -> bool:
    """KIT's error text when the agent loop's context was cancelled (ESC, Ctrl-C)."""
    return message.strip().lower().endswith("context canceled")


def split_model(name: str) -> tuple[str, str]:
    """KIT names models "provider/model"; either part may be missing."""
    if "/" in name:
        provider, _, model = name.partition("/")
        return provider, model
    return "", name


def chat_span_name(model: str) -> str:
    """"chat {model}", or just "chat" before any event has named the model."""
    return f"{n.SPAN_CHAT_PREFIX} {model}" if model else n.SPAN_CHAT_PREFIX
