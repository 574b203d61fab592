"""The lifecycle translator: an ordered stream of `Event`s → spans, span events and metrics.

One state machine per session, keyed by (pid, session_path). Span and event times are the
events' own timestamps, so replaying yesterday's stream yields yesterday's trace.

KIT behaviours absorbed here (docs/design.md#kit-behaviours-the-translator-absorbs):
- `step_finish` and `llm_usage` arrive in either order: a chat span is finished, and its tokens
  counted, once both are in (or, lacking `llm_usage`, at the next step or the end of the turn,
  from `step_finish`) — so tokens are never counted twice.
- the LLM call ends before the first `tool_call` of its step (or at `step_finish` when the step
  called no tool): that is the chat span's end time.
- parallel tools interleave: everything about a tool is keyed by `ToolCallID`.
- subagent chunks carry no child tool-call id: chunk tool calls pair with chunk results by tool
  name, first in first out. Events of a subagent's own child agent (`session_path` "", same pid)
  nest under the subagent and count as `agent="subagent"` spend.
- a turn left open is closed as incomplete when its session starts another one, after an idle
  timeout (by its session's own clock while replaying - so one far-future timestamp cannot
  close the turns of other sessions -, or the wall clock in `sweep`), and at `close`.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Callable, Container

from dataclasses import dataclass, field
from typing import Callable, Container, Iterable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kit_otel import __version__
from kit_otel.model import events as ev
from kit_otel.translate import messages
from kit_otel.model import names as n
from kit_otel.translate.aggregate import TurnAggregate, has_enriched_fields
from kit_otel.translate.content import ContentPolicy, identifier_fields
from kit_otel.model.decoder import DecodeError
from kit_otel.translate.ext_state import StatePolicy
from kit_otel.translate.instruments import KitInstruments, WindowSpend
from kit_otel.translate.logs import (ERROR, INFO, EVENT_COMPACTION, EVENT_INFERENCE_DETAILS, EVENT_MODEL_CHANGE,
                   EVENT_OPERATION_EXCEPTION, EVENT_RETRY, EVENT_SUBAGENT_END, EVENT_TOOL_RESULT,
                   EVENT_TURN_END, WARN, EventLog)
from kit_otel.translate.pricing import (PriceTable, RunCost, call_cost_attributes, cost_metric_labels,
                      run_cost_attributes)
from kit_otel.model.sessions import DEFAULT_SESSIONS_ROOT, identify_session
from kit_otel.translate.vcs import read_checkout

_NS_PER_S = 1e9
_W3C = TraceContextTextMapPropagator()
_SWEEP_EVERY = 1024
_EMPTY_CONTEXT = Context()

_ERROR_KINDS = [
    ("rate_limit", re.compile(r"rate.?limit|\b429\b|too many requests", re.I)),
    ("overloaded", re.compile(r"overloaded|\b529\b|\b503\b|unavailable", re.I)),
    ("timeout", re.compile(r"timeout|timed out|deadline exceeded", re.I)),
    ("cancelled", re.compile(r"cancel", re.I)),
    ("auth", re.compile(r"\b401\b|\b403\b|unauthori[sz]ed|forbidden|api key", re.I)),
    ("context_length", re.compile(r"context (length|window)|too long|maximum context", re.I)),
    ("network", re.compile(r"connection|network|dial tcp|eof\b|reset by peer", re.I)),
]


# Free-text fields that are error messages: their kind is recorded whatever the content setting.
_ERROR_FIELDS = frozenset({"Error", "ErrorMsg"})


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


# kit-otel's own reason for a subagent's ERROR status (not text from an event).
_TURN_ENDED_FIRST = "turn ended first"

# what a tool's log record repeats of its span
_TOOL_LOG_KEYS = (n.GEN_AI_OPERATION_NAME, n.GEN_AI_TOOL_NAME, n.GEN_AI_TOOL_CALL_ID,
                  n.GEN_AI_TOOL_TYPE, n.GEN_AI_CONVERSATION_ID, n.GEN_AI_AGENT_NAME, n.KIT_TOOL_KIND,
                  n.ERROR_TYPE, n.GEN_AI_TOOL_CALL_ARGUMENTS, n.GEN_AI_TOOL_CALL_RESULT)

# Events that only happen inside a turn: one arriving with no turn open opens one.
_IN_TURN_ONLY = frozenset({"context_prepare", "prepare_step", "message_start", "message_end"})

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


@dataclass
class TranslatorSettings:
    content: ContentPolicy = field(default_factory=ContentPolicy)
    state: StatePolicy = field(default_factory=StatePolicy)
    record_all_deltas: bool = False
    idle_timeout_s: float = 900.0
    session_forget_s: float = 86400.0  # a session without events this long is forgotten
    sessions_root: str | None = str(DEFAULT_SESSIONS_ROOT.expanduser())
    session_id_label: bool = False
    max_tools: int = 100
    max_models: int = 100
    max_projects: int = 100
    gen_ai_latest: bool = False  # OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental
    git_attribution: bool = True  # repository, branch, commit of the session's cwd on turns
    price_table: bool = True  # notional cost from genai-prices where KIT reported 0
    subscription_providers: tuple[str, ...] = ("anthropic",)

    def __post_init__(self) -> None:
        if self.state.content is None:  # ext-state values follow the content setting
            self.state = replace(self.state, content=self.content)


# ── per-span state ──────────────────────────────────────────────────────────────────────────

class _Deltas:
    """Coalesced high-frequency deltas: the first is a span event, the rest counts and bytes."""

    __slots__ = ("count", "bytes")

    def __init__(self):
        self.count = 0
        self.bytes = 0


@dataclass(eq=False)
class _Step:
    span: trace.Span
    number: int
    start_ns: int
    first_chunk_ns: int = 0
    stream_end_ns: int = 0
    request_model: str = ""  # the model the session named when the call started
    error: str = ""
    usage: ev.LLMUsage | None = None
    finish: ev.StepFinish | None = None
    finish_ns: int = 0
    message: _Deltas = field(default_factory=_Deltas)
    tool_input: _Deltas = field(default_factory=_Deltas)
    streamed_calls: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # id → name, kind, ts


@dataclass(eq=False)
class _Tool:
    span: trace.Span
    name: str
    kind: str
    start_ns: int
    executed: bool = False
    output: _Deltas = field(default_factory=_Deltas)
    result_ns: int = 0  # set when the result came but the span waits for its subagent


@dataclass(eq=False)
class _Subagent:
    span: trace.Span
    call_id: str
    start_ns: int
    session: "_Session"
    turn: "_Turn"
    chunk_tools: dict[str, deque] = field(default_factory=dict)  # tool name → open spans
    text: _Deltas = field(default_factory=_Deltas)
    child: "_Run | None" = None  # the child agent's own events, when its bridge reports them


@dataclass(eq=False)
class _Run:
    """One agent loop: the main agent's turn, or a subagent's child agent."""

    span: trace.Span
    agent: str  # names.AGENT_KIT's metric label: "main" | "subagent"
    aggregate: TurnAggregate = field(default_factory=TurnAggregate)
    cost: RunCost = field(default_factory=RunCost)  # provenance and notional spend
    step: _Step | None = None
    last_ns: int = 0


@dataclass(eq=False)
class _Turn(_Run):
    start_ns: int = 0
    agent_start_ns: int = 0
    agent_started: bool = False
    tools: dict[str, _Tool] = field(default_factory=dict)
    finished_calls: set[str] = field(default_factory=set)
    subagents: dict[str, _Subagent] = field(default_factory=dict)
    last_error: str = ""
    cancelled: bool = False  # the loop ended on the user's cancel (ESC), not on a failure
    state_at_start: dict[str, str] = field(default_factory=dict)
    # the usage of its subagents' child agents, which KIT's AgentEnd leaves out
    subagent_usage: TurnAggregate = field(default_factory=TurnAggregate)
    subagent_cost: RunCost = field(default_factory=RunCost)
    subagent_count: int = 0


@dataclass(eq=False)
class _Session:
    pid: int
    path: str
    session_id: str
    project: str
    base_attributes: dict[str, object]
    cwd: str = ""  # the session's working directory, when known
    provider: str = ""
    model: str = ""
    turn: _Turn | None = None
    previous_turn: trace.SpanContext | None = None
    started: bool = False  # a session_start was seen: the next one is a hot reload
    counted: bool = False  # in kit_sessions_total
    shut_down: bool = False  # session_shutdown seen (and no session_start since)
    state: dict[str, str] = field(default_factory=dict)
    state_ts_ns: int = 0  # time of the newest state an envelope carried
    last_ns: int = 0
    clock_ns: int = 0  # newest event time of this session: its own clock (see sweep_by_clocks)


class Translator:
    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider,
                 settings: TranslatorSettings | None = None, event_log: EventLog | None = None):
        self.settings = settings or TranslatorSettings()
        self.event_log = event_log or EventLog()  # the logs signal (off: no logger)
        self.tracer = tracer_provider.get_tracer("kit_otel", __version__)
        self.metrics = KitInstruments(meter_provider.get_meter("kit_otel", __version__),
                                      max_tools=self.settings.max_tools,
                                      max_models=self.settings.max_models,
                                      max_projects=self.settings.max_projects,
                                      gen_ai_latest=self.settings.gen_ai_latest)
        self._cache_write_key = (n.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS
                                 if self.settings.gen_ai_latest
                                 else n.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)
        self.content = self.settings.content
        self.prices = PriceTable(self.settings.price_table, self.settings.subscription_providers)
        self.sessions: dict[tuple[int, str], _Session] = {}
        self.open_subagents: dict[int, list[_Subagent]] = {}  # pid → open subagents, oldest first
        # trace context turns start in: a KIT process's TRACEPARENT (every turn of the pid),
        # or one handed in for a session's next turn (ACP `_meta`)
        self.process_parents: dict[int, Context] = {}
        self.next_turn_parents: dict[tuple[int, str], Context] = {}
        # "provider/model" a KIT process had selected (bridge header, later model changes):
        # a new session knows its model before its first LLM call reports it
        self.process_models: dict[int, str] = {}
        self.clock_ns = 0
        self.events_seen = 0
        self.rejected = 0
        self.turns_closed = 0
        self.on_turn_end: list[Callable[[dict], None]] = []  # summary hooks
        self.on_llm_call: list[Callable[[dict], None]] = []
        self._idle_ns = int(self.settings.idle_timeout_s * _NS_PER_S)
        self._forget_ns = int(max(self.settings.session_forget_s,
                                  self.settings.idle_timeout_s) * _NS_PER_S)
        self.auto_sweep = True  # sweep by the sessions' clocks every _SWEEP_EVERY events (serve
        # turns this off: it sweeps by wall clock, one KIT process at a time)
        self._event_type_keys: dict[str, frozenset] = {}
        self._handlers: dict[str, Callable[[_Session, ev.Event], None]] = {
            "input": self._on_turn_opening, "before_agent_start": self._on_turn_opening,
            "agent_start": self._on_turn_opening, "agent_end": self._on_agent_end,
            "session_start": self._on_session_start, "session_shutdown": self._on_session_shutdown,
            "before_fork": self._out_of_turn, "before_session_switch": self._out_of_turn,
            "thinking_level_change": self._out_of_turn, "model_change": self._on_model_change,
            "before_compact": self._on_before_compact, "terminal_resize": self._on_ambient,
            "turn_state_change": self._on_ambient, "error": self._on_error,
            "retry": self._on_retry,
        }
        self._run_handlers: dict[str, Callable[[_Session, _Run, ev.Event], None]] = {
            "step_start": self._on_step_start, "step_finish": self._on_step_finish,
            "llm_usage": self._on_llm_usage, "message_update": self._on_message_update,
            "reasoning_start": self._on_stream_marker,
            "tool_call_input_start": self._on_stream_marker,
            "tool_call_input_delta": self._on_tool_input_delta,
            "tool_call_input_end": self._on_stream_marker,
            "warnings": self._on_stream_marker, "source": self._on_stream_marker,
            "tool_call": self._on_tool_call, "tool_execution_start": self._on_tool_execution,
            "tool_execution_end": self._on_tool_execution, "tool_output": self._on_tool_output,
            "tool_result": self._on_tool_result, "subagent_start": self._on_subagent_start,
            "subagent_chunk": self._on_subagent_chunk, "subagent_end": self._on_subagent_end,
        }

    def _usage_attributes(self, input_tokens: int, output_tokens: int, cache_read: int,
                          cache_write: int) -> dict[str, int]:
        """GenAI usage attributes. KIT's InputTokens are the uncached input only (its own
        definition, for every provider); the conventions' input_tokens include cached ones."""
        return {n.GEN_AI_USAGE_INPUT_TOKENS: input_tokens + cache_read + cache_write,
                n.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
                n.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cache_read,
                self._cache_write_key: cache_write}

    # ── entry points ─────────────────────────────────────────────────────────────────────────

    def process(self, event: ev.Event) -> None:
        # the hot path of every source: locals and early exits matter here
        self.events_seen += 1
        etype = event.type
        key = self._event_type_keys.get(etype)
        if key is None:
            key = self._event_type_keys[etype] = frozenset(
                {n.L_TYPE: self.metrics.event_type_value(etype)}.items())
        self.metrics.events.add_key(key, 1)
        if event.dropped:
            self.metrics.dropped.add(event.dropped, {n.L_SOURCE: event.source or "unknown"})
        ts = event.ts_ns
        if ts > self.clock_ns:
            self.clock_ns = ts
        if etype in ev.META_TYPES:
            if etype == "bridge_start":
                if event.data.Traceparent:
                    self.set_process_parent(event.pid, event.data.Traceparent,
                                            event.data.Tracestate)
                if event.data.Model:
                    self.process_models[event.pid] = event.data.Model
            return
        if event.parent_tool_call_id and event.agent == "subagent":
            self._on_child_event(self._linked_subagent(event), event)
        elif not event.session_path and event.agent != "main" and \
                self.open_subagents.get(event.pid):
            self._on_child_event(self._child_target(event), event)
        else:
            session = self.sessions.get((event.pid, event.session_path))
            if session is None or event.session_id:
                session = self._session(event)
            session.last_ns = ts
            if ts > session.clock_ns:
                session.clock_ns = ts
            if event.state is not None:
                self._apply_state(session, event)
            run_handler = self._run_handlers.get(etype)
            if run_handler is not None:  # most events belong to a turn
                turn = session.turn
                if turn is None:
                    turn = self._open_turn(session, event)
                if ts > turn.last_ns:
                    turn.last_ns = ts
                run_handler(session, turn, event)
            else:
                handler = self._handlers.get(etype)
                if handler is not None:
                    handler(session, event)
                else:
                    self._on_generic(session, event)
        if self.auto_sweep and self.events_seen % _SWEEP_EVERY == 0:
            self.sweep_by_clocks()

    def set_process_parent(self, pid: int, traceparent: str, tracestate: str = "") -> bool:
        """Every later turn of KIT process `pid` is a child of this W3C trace context."""
        context = remote_parent(traceparent, tracestate)
        if context is not None:
            self.process_parents[pid] = context
        return context is not None

    def set_next_turn_parent(self, pid: int, session_path: str, context: Context) -> None:
        """The session's next turn is a child of the span in `context` (once)."""
        self.next_turn_parents[(pid, session_path)] = context

    def reject(self, error: DecodeError) -> None:
        self.rejected += 1
        self.metrics.rejected.add(1, {n.L_REASON: error.reason_code})

    def sweep(self, now_ns: int, pids: Container[int] | None = None,
              keys: Iterable[tuple[int, str]] | None = None) -> int:
        """Close turns idle for longer than the idle timeout as of `now_ns`; returns how many.
        With `pids`, only the sessions of those KIT processes; `keys`, when given, are all the
        session keys they can have (so a sweep per process costs its sessions, not all)."""
        closed = 0
        sessions = self.sessions
        candidates = list(sessions.items()) if keys is None else \
            [(key, sessions[key]) for key in keys if key in sessions]
        for key, session in candidates:
            if pids is not None and key[0] not in pids:
                continue
            turn = session.turn
            if turn is not None and now_ns - turn.last_ns > self._idle_ns:
                self._close_incomplete(session, turn)
                closed += 1
            elif turn is None and now_ns - session.last_ns > (
                    self._idle_ns if session.shut_down else self._forget_ns):
                # sessions that ended, or stayed quiet for a day, are forgotten (memory stays
                # flat over days of sessions); one that comes back starts afresh
                del self.sessions[key]
        owners = self.open_subagents if pids is None or keys is None else \
            [pid for pid in pids if pid in self.open_subagents]
        for pid in [pid for pid in owners if not self.open_subagents[pid]]:
            del self.open_subagents[pid]
        return closed

    def sweep_by_clocks(self) -> int:
        """Close turns idle for longer than the idle timeout by their own session's clock
        (replay): a turn its session has moved on from. Sessions never judge each other, so a
        far-future timestamp in one (or a clock skewed between KIT processes) leaves the others'
        turns alone; what stays open is closed at `close`."""
        closed = 0
        for session in list(self.sessions.values()):
            turn = session.turn
            if turn is not None and session.clock_ns - turn.last_ns > self._idle_ns:
                self._close_incomplete(session, turn)
                closed += 1
        return closed

    def close(self) -> None:
        """End of a replay or shutdown: nothing stays open."""
        for session in list(self.sessions.values()):
            if session.turn is not None:
                self._close_incomplete(session, session.turn)

    # ── open spans, for in-process sources that make other spans their children ─────────────

    def _current_turn(self, pid: int, session_path: str) -> "_Turn | None":
        session = self.sessions.get((pid, session_path))
        return session.turn if session is not None else None

    def turn_span(self, pid: int, session_path: str) -> trace.Span | None:
        turn = self._current_turn(pid, session_path)
        return turn.span if turn is not None else None

    def step_span(self, pid: int, session_path: str, subagent_call_id: str = "") -> trace.Span | None:
        """The open chat span of the turn, or of a subagent's child agent."""
        run: _Run | None = self._current_turn(pid, session_path)
        if run is not None and subagent_call_id:
            subagent = run.subagents.get(subagent_call_id)
            run = subagent.child if subagent is not None else None
        step = run.step if run is not None else None
        return step.span if step is not None else None

    def tool_span(self, pid: int, session_path: str, call_id: str) -> trace.Span | None:
        turn = self._current_turn(pid, session_path)
        tool = turn.tools.get(call_id) if turn is not None else None
        return tool.span if tool is not None else None

    def subagent_span(self, pid: int, session_path: str, call_id: str) -> trace.Span | None:
        turn = self._current_turn(pid, session_path)
        subagent = turn.subagents.get(call_id) if turn is not None else None
        return subagent.span if subagent is not None else None

    def chunk_tool_span(self, pid: int, session_path: str, subagent_call_id: str,
                        tool_name: str) -> trace.Span | None:
        """The newest open tool span a subagent's chunks started under that tool name."""
        turn = self._current_turn(pid, session_path)
        subagent = turn.subagents.get(subagent_call_id) if turn is not None else None
        queue = subagent.chunk_tools.get(tool_name) if subagent is not None else None
        return queue[-1].span if queue else None

    def open_turn_count(self) -> int:
        return sum(1 for s in self.sessions.values() if s.turn is not None)

    # ── sessions ─────────────────────────────────────────────────────────────────────────────

    def _session(self, event: ev.Event) -> _Session:
        key = (event.pid, event.session_path)
        session = self.sessions.get(key)
        if session is None:
            session = self._new_session(event)
            self.sessions[key] = session
            if event.session_path:
                # Counted at first sight: KIT's /new switches to a new session file without a
                # session_start, and a session_start seen later is then a hot reload.
                self._count_session(session)
        elif event.session_id and event.session_id != session.session_id:
            self._set_session_id(session, event.session_id)
        return session

    def _new_session(self, event: ev.Event) -> _Session:
        if event.session_path:
            ident = identify_session(event.session_path, self.settings.sessions_root)
            session_id, project, cwd = ident.session_id, ident.project, ident.cwd
        else:
            session_id, project, cwd = f"no-session-{event.pid}", "unknown", ""
        if event.session_id:
            session_id = event.session_id
        attrs: dict[str, object] = {n.KIT_PROJECT: project, n.KIT_PID: event.pid}
        if event.session_path:
            attrs[n.KIT_SESSION_PATH] = event.session_path
        if cwd and self.content.capture:
            attrs["kit.cwd"] = cwd
        session = _Session(event.pid, event.session_path, session_id, project, attrs, cwd)
        known = self.process_models.get(event.pid)
        if known:
            session.provider, session.model = split_model(known)
        self._set_session_id(session, session_id)
        return session

    @staticmethod
    def _set_session_id(session: _Session, session_id: str) -> None:
        session.session_id = session_id
        session.base_attributes[n.SESSION_ID] = session_id
        session.base_attributes[n.GEN_AI_CONVERSATION_ID] = session_id

    def _labels_project(self, session: _Session, labels: dict) -> dict:
        labels[n.L_PROJECT] = self.metrics.project_value(session.project)
        if self.settings.session_id_label:
            labels[n.L_SESSION_ID] = session.session_id
        return labels

    # ── turns ────────────────────────────────────────────────────────────────────────────────

    def _open_turn(self, session: _Session, event: ev.Event) -> _Turn:
        attrs = dict(session.base_attributes)
        attrs[n.GEN_AI_OPERATION_NAME] = n.OP_INVOKE_AGENT
        attrs[n.GEN_AI_AGENT_NAME] = n.AGENT_KIT
        self._model_attributes(session, attrs)
        if event.source:
            attrs[n.KIT_SOURCE] = event.source
        checkout = read_checkout(session.cwd) if self.settings.git_attribution else None
        if checkout is not None:
            attrs.update(checkout.span_attributes())
        links = [Link(session.previous_turn)] if session.previous_turn else None
        parent = self.next_turn_parents.pop((session.pid, session.path), None) or \
            self.process_parents.get(session.pid, _EMPTY_CONTEXT)
        span = self.tracer.start_span(n.SPAN_TURN, context=parent,
                                      kind=SpanKind.INTERNAL, attributes=attrs,
                                      start_time=event.ts_ns, links=links)
        turn = _Turn(span=span, agent="main", start_ns=event.ts_ns, last_ns=event.ts_ns,
                     state_at_start=dict(session.state))
        session.turn = turn
        return turn

    @staticmethod
    def _model_attributes(session: _Session, attrs: dict) -> dict:
        """gen_ai.provider.name (the conventions' value) and gen_ai.request.model, when known."""
        if session.provider:
            attrs[n.GEN_AI_PROVIDER_NAME] = n.provider_name(session.provider)
        if session.model:
            attrs[n.GEN_AI_REQUEST_MODEL] = session.model
        return attrs

    def _turn(self, session: _Session, event: ev.Event) -> _Turn:
        """The open turn, or one opened by an in-turn event (a stream that starts mid-turn)."""
        turn = session.turn
        if turn is None:
            turn = self._open_turn(session, event)
        turn.last_ns = max(turn.last_ns, event.ts_ns)
        return turn

    def _on_turn_opening(self, session: _Session, event: ev.Event) -> None:
        turn = session.turn
        begins_loop = event.type != "input"
        if turn is not None and begins_loop and turn.agent_started:
            # a new agent loop while one is open: the old one never ended
            self._close_incomplete(session, turn)
            turn = None
        if turn is None:
            turn = self._open_turn(session, event)
        turn.last_ns = max(turn.last_ns, event.ts_ns)
        if event.type == "agent_start":
            turn.agent_started = True
            turn.agent_start_ns = event.ts_ns
        self._span_event(turn.span, event)
        prompt = getattr(event.data, "Prompt", None) or getattr(event.data, "Text", None)
        if prompt is not None and event.type != "before_agent_start":
            turn.span.set_attribute(n.KIT_TURN_PROMPT_LENGTH, len(prompt))
            captured = messages.input_messages(self.content, prompt)
            if captured is not None:
                turn.span.set_attribute(n.GEN_AI_INPUT_MESSAGES, captured)

    def _on_agent_end(self, session: _Session, event: ev.Event) -> None:
        data: ev.AgentEnd = event.data
        turn = session.turn
        seen_from_start = turn is not None and turn.agent_started
        if turn is None:  # agent_end alone: rebuild the turn from its own duration
            start = event.ts_ns - data.DurationMs * 1_000_000
            turn = self._open_turn(session, ev.Event(type="agent_start", data=ev.AgentStart(),
                                                     ts_ns=start, pid=event.pid,
                                                     session_path=event.session_path))
            turn.agent_started, turn.agent_start_ns = True, start
        self._span_event(turn.span, event)
        stop_reason = data.StopReason or "completed"
        if stop_reason == "error" and turn.cancelled:
            stop_reason = "cancelled"
        if seen_from_start:  # what a turn seen from its start missed was blocked
            self._count_unseen_blocked(turn, data)
        self._finish_turn(session, turn, event.ts_ns, stop_reason, data)

    def _count_unseen_blocked(self, turn: _Turn, end: ev.AgentEnd) -> None:
        """Tool calls KIT counted that the bridge never saw (a blocking extension loaded before
        it, and no streamed input): counted as blocked from KIT's own ToolNames."""
        missing = Counter(end.ToolNames or ()) - Counter(turn.aggregate.tool_names)
        unnamed = end.ToolCallCount - turn.aggregate.tool_call_count - sum(missing.values())
        m = self.metrics
        for name, count in missing.items():
            m.tool_calls.add(count, {n.L_TOOL: m.tool_value(name), n.L_KIND: "unknown",
                                     n.L_OUTCOME: "blocked"})
        if unnamed > 0:
            m.tool_calls.add(unnamed, {n.L_TOOL: m.tool_value("unknown"), n.L_KIND: "unknown",
                                       n.L_OUTCOME: "blocked"})

    def _close_incomplete(self, session: _Session, turn: _Turn) -> None:
        turn.span.set_attribute(n.KIT_TURN_INCOMPLETE, True)
        self._finish_turn(session, turn, turn.last_ns, "incomplete", None)

    def _finish_turn(self, session: _Session, turn: _Turn, end_ns: int, stop_reason: str,
                     agent_end: ev.AgentEnd | None) -> None:
        self._end_step(session, turn, end_ns)
        for subagent in list(turn.subagents.values()):
            self._end_subagent(session, turn, subagent, end_ns, _TURN_ENDED_FIRST)
        for call_id, tool in list(turn.tools.items()):
            tool.span.set_attribute(n.KIT_TURN_INCOMPLETE, True)
            self._end_tool_span(tool, tool.result_ns or end_ns, unfinished=not tool.result_ns)
            del turn.tools[call_id]
        computed = turn.aggregate
        computed.duration_ms = max(end_ns - (turn.agent_start_ns or turn.start_ns), 0) // 1_000_000
        span = turn.span
        if agent_end is not None and has_enriched_fields(agent_end):
            reported = TurnAggregate.from_agent_end(agent_end)
            span.set_attribute(n.KIT_TURN_AGGREGATE_SOURCE, "agent_end")
            if not reported.agrees_with(computed):
                span.set_attribute(n.KIT_TURN_AGGREGATE_MISMATCH, True)
            final = reported
        else:
            span.set_attribute(n.KIT_TURN_AGGREGATE_SOURCE, "computed")
            final = computed
        if agent_end is not None:
            span.set_attribute(n.KIT_TURN_RESPONSE_LENGTH, len(agent_end.Response))
            captured = messages.output_messages(self.content, agent_end.Response, stop_reason)
            if captured is not None:
                span.set_attribute(n.GEN_AI_OUTPUT_MESSAGES, captured)
        attrs = {
            n.KIT_TURN_STOP_REASON: stop_reason,
            n.KIT_TURN_TOOL_CALL_COUNT: final.tool_call_count,
            n.KIT_TURN_TOOL_NAMES: list(final.tool_names),
            n.KIT_TURN_LLM_CALL_COUNT: final.llm_call_count,
            **self._usage_attributes(final.input_tokens, final.output_tokens,
                                     final.cache_read_tokens, final.cache_write_tokens),
            n.KIT_TURN_COST_USD: final.cost_usd,
            n.KIT_TURN_DURATION_MS: final.duration_ms,
        }
        self._model_attributes(session, attrs)
        attrs.update(run_cost_attributes(turn.cost, self.prices.version))
        attrs.update(self._inclusive_attributes(turn, final))
        attrs.update(self.settings.state.turn_attributes(turn.state_at_start, session.state))
        span.set_attributes(attrs)
        if stop_reason in ("error", "incomplete"):
            span.set_status(Status(StatusCode.ERROR, self._error_description(turn.last_error) or
                                   ("turn never ended" if stop_reason == "incomplete" else "error")))
            if turn.last_error or stop_reason == "error":
                span.set_attribute(n.ERROR_TYPE, error_type(turn.last_error))
        span.end(end_time=max(end_ns, turn.start_ns))
        m = self.metrics
        m.turns.add(1, self._labels_project(session, {n.L_STOP_REASON: stop_reason}))
        in_turn = trace.set_span_in_context(span)  # exemplars: the points name their trace
        m.turn_duration.record(final.duration_ms / 1000.0, {n.L_STOP_REASON: stop_reason},
                               context=in_turn)
        m.turn_cost.record(final.cost_usd + turn.cost.notional_usd,
                           self._labels_project(session, {n.L_COST_SOURCE: turn.cost.source}),
                           context=in_turn)
        if self.event_log.logger is not None:
            record = {**self._log_attributes(session), n.GEN_AI_OPERATION_NAME: n.OP_INVOKE_AGENT,
                      n.GEN_AI_AGENT_NAME: n.AGENT_KIT, **attrs}
            for key in (n.GEN_AI_INPUT_MESSAGES, n.GEN_AI_OUTPUT_MESSAGES, n.ERROR_TYPE):
                if key in span.attributes:
                    record[key] = span.attributes[key]
            self.event_log.emit(EVENT_TURN_END, end_ns, span, record,
                                WARN if stop_reason in ("error", "incomplete") else INFO)
        session.previous_turn = span.get_span_context()
        session.turn = None
        self.turns_closed += 1
        if self.on_turn_end:
            record = {"session_id": session.session_id, "project": session.project,
                      "stop_reason": stop_reason, "provider": session.provider,
                      "model": session.model, "aggregate": final, "cost": turn.cost,
                      "subagent_usage": turn.subagent_usage,
                      "subagent_cost": turn.subagent_cost,
                      "start_ns": turn.start_ns,
                      "end_ns": end_ns, "span": span}
            for hook in self.on_turn_end:
                hook(record)

    @staticmethod
    def _inclusive_attributes(turn: _Turn, own: TurnAggregate) -> dict[str, object]:
        """The turn's usage with its subagents': KIT's own numbers plus each child agent's.
        Input tokens include cached ones, like the turn's gen_ai.usage.input_tokens beside it."""
        total = TurnAggregate()
        total.add_usage_of(own)
        total.add_usage_of(turn.subagent_usage)
        attrs: dict[str, object] = {
            n.KIT_TURN_SUBAGENT_COUNT: turn.subagent_count,
            n.KIT_TURN_INCLUSIVE_LLM_CALL_COUNT: total.llm_call_count,
            n.KIT_TURN_INCLUSIVE_INPUT_TOKENS: (total.input_tokens + total.cache_read_tokens
                                                + total.cache_write_tokens),
            n.KIT_TURN_INCLUSIVE_OUTPUT_TOKENS: total.output_tokens,
            n.KIT_TURN_INCLUSIVE_CACHE_READ_TOKENS: total.cache_read_tokens,
            n.KIT_TURN_INCLUSIVE_CACHE_WRITE_TOKENS: total.cache_write_tokens,
            n.KIT_TURN_INCLUSIVE_COST_USD: total.cost_usd,
        }
        notional = turn.cost.notional_usd + turn.subagent_cost.notional_usd
        if notional:
            attrs[n.KIT_TURN_INCLUSIVE_NOTIONAL_USD] = notional
        return attrs

    # ── out-of-turn events ───────────────────────────────────────────────────────────────────

    def _out_of_turn(self, session: _Session, event: ev.Event, extra: dict | None = None) -> None:
        attrs = dict(session.base_attributes)
        attrs.update(self._event_attributes(event))
        if extra:
            attrs.update(extra)
        span = self.tracer.start_span(n.SPAN_OUT_OF_TURN_PREFIX + event.type,
                                      context=_EMPTY_CONTEXT, kind=SpanKind.INTERNAL,
                                      attributes=attrs, start_time=event.ts_ns)
        span.end(end_time=event.ts_ns)

    def _on_session_start(self, session: _Session, event: ev.Event) -> None:
        data: ev.SessionStart = event.data
        if data.SessionID and data.SessionID != session.session_id:
            self._set_session_id(session, data.SessionID)
        reload = session.started  # hot reloads fire session_start again
        session.started = True
        session.shut_down = False
        self._count_session(session)  # a session without a file counts from its start
        self._out_of_turn(session, event, {n.KIT_SESSION_RELOAD: reload})

    def _count_session(self, session: _Session) -> None:
        if not session.counted:
            session.counted = True
            self.metrics.sessions.add(1, self._labels_project(session, {}))

    def _on_session_shutdown(self, session: _Session, event: ev.Event) -> None:
        session.shut_down = True  # forgotten after the idle timeout, unless it starts again
        self._out_of_turn(session, event)

    def _on_model_change(self, session: _Session, event: ev.Event) -> None:
        data: ev.ModelChange = event.data
        provider, model = split_model(data.NewModel)
        if data.NewModel and session.pid in self.process_models:
            self.process_models[session.pid] = data.NewModel
        if model:
            session.model = model
        if provider:
            session.provider = provider
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_MODEL_CHANGE, event.ts_ns,
                                session.turn.span if session.turn else None,
                                {**self._log_attributes(session), **self._event_attributes(event)})
        self._in_turn_or_alone(session, event)

    def _on_before_compact(self, session: _Session, event: ev.Event) -> None:
        data: ev.BeforeCompact = event.data
        self.metrics.compactions.add(1, {n.L_AUTOMATIC: "true" if data.IsAutomatic else "false"})
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_COMPACTION, event.ts_ns,
                                session.turn.span if session.turn else None,
                                {**self._log_attributes(session), **self._event_attributes(event)})
        if data.UsagePercent:
            self.metrics.context_usage.record(
                data.UsagePercent, {n.L_MODEL: self.metrics.model_value(session.model or "unknown")})
        self._in_turn_or_alone(session, event)

    def _on_ambient(self, session: _Session, event: ev.Event) -> None:
        self._in_turn_or_alone(session, event)

    def _on_generic(self, session: _Session, event: ev.Event) -> None:
        """In-turn events without a handler of their own, and unknown types (a newer KIT)."""
        if event.type in _IN_TURN_ONLY:
            self._turn(session, event)  # a stream that starts mid-turn still gets its turn
        self._in_turn_or_alone(session, event)

    def _in_turn_or_alone(self, session: _Session, event: ev.Event) -> None:
        turn = session.turn
        if turn is None:
            self._out_of_turn(session, event)
            return
        turn.last_ns = max(turn.last_ns, event.ts_ns)
        target = turn.step.span if turn.step and not turn.step.stream_end_ns and \
            event.type not in ("message_end", "model_change", "before_compact") else turn.span
        self._span_event(target, event)

    def _log_attributes(self, session: _Session) -> dict[str, object]:
        """What every log record of a session carries."""
        attrs = {n.SESSION_ID: session.session_id, n.GEN_AI_CONVERSATION_ID: session.session_id,
                 n.KIT_PROJECT: session.project}
        return self._model_attributes(session, attrs)

    def _log_error(self, session: _Session, span: trace.Span | None, event: ev.Event) -> None:
        message = event.data.Error
        # the message is free text: only with content capture (redacted, cut)
        self.event_log.emit(EVENT_OPERATION_EXCEPTION, event.ts_ns, span, {
            **self._log_attributes(session), n.ERROR_TYPE: error_type(message),
            n.EXCEPTION_MESSAGE: self.content.text(message)}, WARN)

    def _current_span(self, session: _Session) -> trace.Span | None:
        turn = session.turn
        if turn is None:
            return None
        return turn.step.span if turn.step is not None and not turn.step.stream_end_ns \
            else turn.span

    def _on_error(self, session: _Session, event: ev.Event) -> None:
        message = event.data.Error
        kind = error_kind(message)
        turn = session.turn
        if is_user_cancel(message):
            # KIT reports the user's ESC as an error ("context canceled") and ends the turn with
            # StopReason "error": that turn is "cancelled", and not an error anybody is paged for.
            if turn is not None:
                turn.cancelled = True
            self._in_turn_or_alone(session, event)
            return
        self.metrics.errors.add(1, {n.L_KIND: kind})
        if self.event_log.logger is not None:
            self._log_error(session, self._current_span(session), event)
        if turn is not None:
            turn.last_error = message
            if turn.step is not None and not turn.step.stream_end_ns:
                turn.step.error = turn.last_error
        self._in_turn_or_alone(session, event)

    def _on_retry(self, session: _Session, event: ev.Event) -> None:
        self.metrics.retries.add(1, {n.L_KIND: error_kind(event.data.Error)})
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_RETRY, event.ts_ns, self._current_span(session), {
                **self._log_attributes(session), **self._event_attributes(event),
                n.ERROR_TYPE: error_type(event.data.Error)}, WARN)
        self._in_turn_or_alone(session, event)

    # ── extension state ──────────────────────────────────────────────────────────────────────

    def _apply_state(self, session: _Session, event: ev.Event) -> None:
        session.state_ts_ns = max(session.state_ts_ns, event.ts_ns)
        self._set_state(session, event.state or {}, event.ts_ns)

    def _set_state(self, session: _Session, new: dict[str, str], ts_ns: int) -> None:
        if new == session.state:
            return
        turn = session.turn
        if turn is not None:
            for attrs in self.settings.state.changes(session.state, new):
                turn.span.add_event(n.KIT_EXT_STATE_CHANGE, attrs, timestamp=ts_ns)
        session.state = dict(new)
        self.state_changed(session)

    def state_changed(self, session: _Session) -> None:
        """Hook for gauges of numeric state (set by the exporter pipeline)."""

    def session_paths(self) -> set[str]:
        return {path for (_, path) in self.sessions if path}

    def apply_external_state(self, session_path: str, state: dict[str, str]) -> int:
        """State read from a session's sidecar file, merged into the session's timeline.

        A session whose envelopes carry `state` (the bridge) takes its state from them only:
        they are exactly ordered with the events and replay the same way, whereas a sidecar is
        read whenever the reader gets to it, possibly long after the events it belongs with.
        For other sessions the change is placed at the session's latest event, so it lands
        inside the turn being processed, however far behind processing runs. Returns the number
        of sessions it changed."""
        changed = 0
        for (_, path), session in list(self.sessions.items()):
            if path == session_path and not session.state_ts_ns and state != session.state:
                self._set_state(session, state, session.last_ns)
                changed += 1
        return changed

    # ── LLM steps ────────────────────────────────────────────────────────────────────────────

    def _start_step(self, session: _Session, run: _Run, number: int, ts_ns: int) -> _Step:
        model = session.model
        attrs = {n.GEN_AI_OPERATION_NAME: n.OP_CHAT, n.KIT_STEP_NUMBER: number,
                 n.GEN_AI_CONVERSATION_ID: session.session_id}
        self._model_attributes(session, attrs)
        if run.agent != "main":
            attrs[n.GEN_AI_AGENT_NAME] = n.AGENT_SUBAGENT
        span = self.tracer.start_span(chat_span_name(model),
                                      context=trace.set_span_in_context(run.span),
                                      kind=SpanKind.CLIENT, attributes=attrs, start_time=ts_ns)
        step = _Step(span=span, number=number, start_ns=ts_ns, request_model=model)
        run.step = step
        return step

    def _on_step_start(self, session: _Session, run: _Run, event: ev.Event) -> None:
        self._end_step(session, run, event.ts_ns)
        self._start_step(session, run, event.data.StepNumber, event.ts_ns)

    def _step_for(self, session: _Session, run: _Run, event: ev.Event) -> _Step:
        step = run.step
        if step is None:  # usage/finish without step_start (stream began mid-step)
            step = self._start_step(session, run, getattr(event.data, "StepNumber", 0),
                                    event.ts_ns)
        return step

    def _on_step_finish(self, session: _Session, run: _Run, event: ev.Event) -> None:
        step = self._step_for(session, run, event)
        if isinstance(run, _Turn):
            self._end_blocked_tools(session, run, step, event.ts_ns)
        step.finish = event.data
        step.finish_ns = event.ts_ns
        if not step.stream_end_ns:
            step.stream_end_ns = event.ts_ns
        if step.usage is not None:
            self._end_step(session, run, event.ts_ns)

    def _on_llm_usage(self, session: _Session, run: _Run, event: ev.Event) -> None:
        step = self._step_for(session, run, event)
        step.usage = event.data
        if not step.stream_end_ns:
            step.stream_end_ns = event.ts_ns
        if step.finish is not None:
            self._end_step(session, run, event.ts_ns)

    def _end_step(self, session: _Session, run: _Run, now_ns: int) -> None:
        """Finish the open chat span: attributes, end time, and its metrics, exactly once."""
        step = run.step
        if step is None:
            return
        run.step = None
        usage, finish = step.usage, step.finish
        if usage is not None:
            tokens = (usage.InputTokens, usage.OutputTokens, usage.CacheReadTokens,
                      usage.CacheWriteTokens)
            cost = usage.Cost
            finish_reason = usage.FinishReason or (finish.FinishReason if finish else "")
            provider_model = (usage.Provider, usage.Model)
            usage_source = "llm_usage"
        elif finish is not None:
            tokens = (finish.InputTokens, finish.OutputTokens, finish.CacheReadTokens,
                      finish.CacheWriteTokens)
            cost, finish_reason, provider_model = 0.0, finish.FinishReason, ("", "")
            usage_source = "step_finish"
        else:
            tokens, cost, finish_reason, provider_model, usage_source = None, 0.0, "", ("", ""), ""
        if provider_model[0]:
            session.provider = provider_model[0]
        if provider_model[1]:
            session.model = provider_model[1]
        provider = session.provider or "unknown"
        model = session.model or "unknown"
        span = step.span
        end_ns = step.stream_end_ns or now_ns
        attrs: dict[str, object] = {}
        if session.model:
            span.update_name(chat_span_name(session.model))
            # the model asked for when the call started, else the one that answered
            attrs[n.GEN_AI_REQUEST_MODEL] = step.request_model or session.model
        if provider_model[1]:
            attrs[n.GEN_AI_RESPONSE_MODEL] = provider_model[1]
        if session.provider:
            attrs[n.GEN_AI_PROVIDER_NAME] = n.provider_name(session.provider)
        if usage is not None and usage.RequestID:
            attrs[n.GEN_AI_RESPONSE_ID] = usage.RequestID
        if step.error:
            span.set_status(Status(StatusCode.ERROR, self._error_description(step.error)))
            attrs[n.ERROR_TYPE] = error_type(step.error)
        if step.first_chunk_ns:
            attrs[n.GEN_AI_REQUEST_STREAM] = True  # chunks arrived: the call was streamed
            attrs[n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = \
                max(step.first_chunk_ns - step.start_ns, 0) / _NS_PER_S
        self._delta_attributes(attrs, n.KIT_DELTAS_MESSAGE, step.message)
        self._delta_attributes(attrs, n.KIT_DELTAS_TOOL_INPUT, step.tool_input)
        if tokens is not None:
            attrs.update(self._usage_attributes(*tokens))
            attrs[n.KIT_COST_USD] = cost
            attrs[n.KIT_LLM_USAGE_SOURCE] = usage_source
            if finish_reason:
                attrs[n.GEN_AI_RESPONSE_FINISH_REASONS] = [finish_reason]
        call_cost = None
        if tokens is not None:
            call_cost = self.prices.cost_of(cost, session.provider, session.model, tokens, end_ns)
            attrs.update(call_cost_attributes(call_cost, self.prices.version))
        span.set_attributes(attrs)
        span.end(end_time=max(end_ns, step.start_ns))
        if self.event_log.logger is not None and (tokens is not None or step.error):
            self.event_log.emit(EVENT_INFERENCE_DETAILS, end_ns, span, {
                **self._log_attributes(session), n.GEN_AI_OPERATION_NAME: n.OP_CHAT,
                n.KIT_STEP_NUMBER: step.number, **attrs},
                WARN if step.error else INFO)
        m = self.metrics
        bounded_model = m.model_value(model)
        semconv = {n.GEN_AI_OPERATION_NAME: n.OP_CHAT,
                   n.GEN_AI_PROVIDER_NAME: n.provider_name(provider),
                   n.GEN_AI_REQUEST_MODEL: bounded_model}
        in_call = trace.set_span_in_context(span)
        duration_s = max(end_ns - step.start_ns, 0) / _NS_PER_S
        if tokens is None:
            if step.error:  # a failed call: its duration counts, with its error.type
                m.operation_duration.record(duration_s, {**semconv, n.ERROR_TYPE: attrs[n.ERROR_TYPE]},
                                            context=in_call)
            return  # an LLM call that never reported back (abandoned turn): no usage to count
        run.aggregate.add_llm_call(tokens[0], tokens[1], tokens[2], tokens[3], cost)
        run.cost.add(call_cost)
        for hook in self.on_llm_call:
            hook({"provider": provider, "model": model, "agent": run.agent, "tokens": tokens,
                  "cost": cost, "cost_source": call_cost.source,
                  "notional_cost": call_cost.notional_usd,
                  "duration_ns": max(end_ns - step.start_ns, 0), "ts_ns": end_ns,
                  "project": session.project})
        labels = self._labels_project(session, {n.L_PROVIDER: provider, n.L_MODEL: bounded_model,
                                                n.L_AGENT: run.agent})
        for token_type, value in zip(("input", "output", "cache_read", "cache_write"), tokens):
            m.tokens.add(value, {**labels, n.L_TYPE: token_type})
        m.cost.add(cost + call_cost.notional_usd,
                   {**labels, **cost_metric_labels(call_cost, self.prices.version)})
        for key in WindowSpend.keys(end_ns, labels):  # KIT's plus notional, as the counter
            m.spend_to_date.add_key(key, cost + call_cost.notional_usd)
        m.llm_calls.add(1, {n.L_PROVIDER: provider, n.L_MODEL: bounded_model,
                            n.L_FINISH_REASON: finish_reason or "unknown"})
        input_tokens = tokens[0] + tokens[2] + tokens[3]  # cached included, as on the span
        if m.token_usage is not None:
            m.token_usage.record(input_tokens, {**semconv, n.GEN_AI_TOKEN_TYPE: n.TOKEN_TYPE_INPUT})
            m.token_usage.record(tokens[1], {**semconv, n.GEN_AI_TOKEN_TYPE: n.TOKEN_TYPE_OUTPUT})
        else:
            m.inference_input_tokens.record(input_tokens, semconv)
            m.inference_output_tokens.record(tokens[1], semconv)
        duration_labels = {**semconv, n.ERROR_TYPE: attrs[n.ERROR_TYPE]} if step.error else semconv
        m.operation_duration.record(duration_s, duration_labels, context=in_call)
        if step.first_chunk_ns:
            m.time_to_first_chunk.record(max(step.first_chunk_ns - step.start_ns, 0) / _NS_PER_S,
                                         semconv, context=in_call)

    def _stream_target(self, run: _Run) -> tuple[trace.Span, _Step | None]:
        step = run.step
        if step is not None and not step.stream_end_ns:
            return step.span, step
        return run.span, None

    def _mark_first_chunk(self, step: _Step | None, ts_ns: int) -> None:
        if step is not None and not step.first_chunk_ns:
            step.first_chunk_ns = ts_ns

    def _on_stream_marker(self, session: _Session, run: _Run, event: ev.Event) -> None:
        span, step = self._stream_target(run)
        if event.type in ("reasoning_start", "tool_call_input_start"):
            self._mark_first_chunk(step, event.ts_ns)
            if event.type == "tool_call_input_start" and run.step is not None:
                data = event.data
                run.step.streamed_calls[data.ToolCallID] = (data.ToolName, data.ToolKind,
                                                            event.ts_ns)
        self._span_event(span, event)

    def _on_message_update(self, session: _Session, run: _Run, event: ev.Event) -> None:
        step = run.step
        if step is not None and not step.stream_end_ns:  # the common case, kept short
            if not step.first_chunk_ns:
                step.first_chunk_ns = event.ts_ns
            deltas = step.message
            chunk = event.data.Chunk
            deltas.count += 1
            deltas.bytes += len(chunk) if chunk.isascii() else len(chunk.encode())
            if deltas.count == 1 or self.settings.record_all_deltas:
                self._span_event(step.span, event)
            return
        span, step = self._stream_target(run)
        self._mark_first_chunk(step, event.ts_ns)
        deltas = step.message if step is not None else _Deltas()
        self._coalesce(span, deltas, event, event.data.Chunk)

    def _on_tool_input_delta(self, session: _Session, run: _Run, event: ev.Event) -> None:
        span, step = self._stream_target(run)
        deltas = step.tool_input if step is not None else _Deltas()
        self._coalesce(span, deltas, event, event.data.Delta)

    def _coalesce(self, span: trace.Span, deltas: _Deltas, event: ev.Event, text: str) -> None:
        deltas.count += 1
        deltas.bytes += len(text.encode()) if not text.isascii() else len(text)
        if deltas.count == 1 or self.settings.record_all_deltas:
            self._span_event(span, event)

    @staticmethod
    def _delta_attributes(attrs: dict, prefix: str, deltas: _Deltas) -> None:
        if deltas.count:
            attrs[prefix + ".count"] = deltas.count
            attrs[prefix + ".bytes"] = deltas.bytes

    # ── tools ────────────────────────────────────────────────────────────────────────────────

    def _on_tool_call(self, session: _Session, run: _Run, event: ev.Event) -> None:
        data: ev.ToolCall = event.data
        step = run.step
        if step is not None and not step.stream_end_ns:
            step.stream_end_ns = event.ts_ns  # the LLM call ended before its first tool call
        if not isinstance(run, _Turn):
            return  # a child agent's tools are spanned from the subagent's chunks
        extra = {n.GEN_AI_TOOL_CALL_ID: data.ToolCallID}
        if data.Source:
            extra[n.KIT_TOOL_SOURCE] = data.Source
        existing = run.tools.get(data.ToolCallID)
        if existing is not None:  # opened by its subagent_start, which KIT fires first
            extra[n.KIT_TOOL_INPUT_BYTES] = max(len(data.Input), data.InputBytes)
            captured = messages.tool_arguments(self.content, data.Input)
            if captured is not None:
                extra[n.GEN_AI_TOOL_CALL_ARGUMENTS] = captured
            existing.span.set_attributes(extra)
            return
        run.tools[data.ToolCallID] = self._start_tool(session, run.span, data.ToolName,
                                                      data.ToolKind, data.Input, event.ts_ns,
                                                      extra, data.InputBytes)

    def _start_tool(self, session: _Session, parent: trace.Span, name: str, kind: str,
                    arguments: str, ts_ns: int, extra: dict, arguments_bytes: int = 0) -> _Tool:
        attrs = {n.GEN_AI_OPERATION_NAME: n.OP_EXECUTE_TOOL, n.GEN_AI_TOOL_NAME: name,
                 n.GEN_AI_TOOL_TYPE: tool_type(name, kind),
                 n.KIT_TOOL_INPUT_BYTES: max(len(arguments), arguments_bytes),
                 n.GEN_AI_CONVERSATION_ID: session.session_id, **extra}
        if kind:
            attrs[n.KIT_TOOL_KIND] = kind
        captured = messages.tool_arguments(self.content, arguments)
        if captured is not None:
            attrs[n.GEN_AI_TOOL_CALL_ARGUMENTS] = captured
        span = self.tracer.start_span(f"{n.SPAN_TOOL_PREFIX} {name}",
                                      context=trace.set_span_in_context(parent),
                                      kind=SpanKind.INTERNAL, attributes=attrs, start_time=ts_ns)
        return _Tool(span=span, name=name, kind=kind, start_ns=ts_ns)

    def _finish_tool(self, tool: _Tool, kind: str, content: str, is_error: bool,
                     ts_ns: int, content_bytes: int = 0) -> None:
        """Outcome, status and metrics of a tool whose result arrived (the span ends apart)."""
        outcome = ("error" if is_error else "ok") if tool.executed else "blocked"
        span = tool.span
        if outcome == "blocked":
            span.set_attribute(n.KIT_TOOL_BLOCKED, True)
        captured = self.content.text(content)
        if is_error:
            span.set_attribute(n.ERROR_TYPE, "tool_error")
            span.set_status(Status(StatusCode.ERROR, captured or "tool error"))
        if captured is not None:
            span.set_attribute(n.GEN_AI_TOOL_CALL_RESULT, captured)
        span.set_attribute(n.KIT_TOOL_OUTPUT_BYTES, max(len(content.encode()), content_bytes))
        self._delta_attributes_on(span, n.KIT_DELTAS_TOOL_OUTPUT, tool.output)
        m = self.metrics
        labels = {n.L_TOOL: m.tool_value(tool.name), n.L_KIND: kind or "unknown"}
        m.tool_calls.add(1, {**labels, n.L_OUTCOME: outcome})
        if self.event_log.logger is not None:
            record = {key: span.attributes[key] for key in _TOOL_LOG_KEYS if key in span.attributes}
            record[n.KIT_TOOL_OUTCOME] = outcome
            record[n.KIT_TOOL_DURATION_S] = max(ts_ns - tool.start_ns, 0) / _NS_PER_S
            self.event_log.emit(EVENT_TOOL_RESULT, ts_ns, span, record,
                                WARN if outcome != "ok" else INFO)
        m.tool_duration.record(max(ts_ns - tool.start_ns, 0) / _NS_PER_S, labels,
                               context=trace.set_span_in_context(span))

    def _on_tool_execution(self, session: _Session, run: _Run, event: ev.Event) -> None:
        tool = run.tools.get(event.data.ToolCallID) if isinstance(run, _Turn) else None
        if tool is None:
            self._span_event(run.span, event)
            return
        if event.type == "tool_execution_start":
            tool.executed = True
        self._span_event(tool.span, event)

    def _on_tool_output(self, session: _Session, run: _Run, event: ev.Event) -> None:
        tool = run.tools.get(event.data.ToolCallID) if isinstance(run, _Turn) else None
        if tool is None:
            return
        self._coalesce(tool.span, tool.output, event, event.data.Chunk)

    def _on_tool_result(self, session: _Session, run: _Run, event: ev.Event) -> None:
        data: ev.ToolResult = event.data
        if not isinstance(run, _Turn):
            return
        run.aggregate.add_tool(data.ToolName)
        tool = run.tools.get(data.ToolCallID)
        if tool is None:  # result without its call (stream began mid-tool): a zero-length span
            self._on_tool_call(session, run, ev.Event(
                type="tool_call", ts_ns=event.ts_ns, data=ev.ToolCall(
                    ToolName=data.ToolName, ToolCallID=data.ToolCallID, ToolKind=data.ToolKind,
                    Input=data.Input)))
            tool = run.tools[data.ToolCallID]
            tool.executed = True
        self._finish_tool(tool, data.ToolKind or tool.kind, data.Content, data.IsError,
                          event.ts_ns, data.ContentBytes)
        if data.ToolCallID in run.subagents:
            tool.result_ns = event.ts_ns  # the subagent span ends first; this span waits
            return
        del run.tools[data.ToolCallID]
        run.finished_calls.add(data.ToolCallID)
        tool.span.end(end_time=max(event.ts_ns, tool.start_ns))

    def _end_blocked_tools(self, session: _Session, turn: _Turn, step: _Step,
                           ts_ns: int) -> None:
        """At step_finish every tool of the step has run: one that never started was blocked.

        KIT's wrapper returns before tool_execution_start for a blocked call and emits no
        tool_result (internal/extensions/wrapper.go); if the blocking extension loads before the
        bridge, the call is known only from the stream (tool_call_input_start)."""
        for call_id, tool in list(turn.tools.items()):
            if not tool.executed and not tool.result_ns and call_id not in turn.subagents:
                self._block_tool(turn, call_id, tool, ts_ns)
        for call_id, (name, kind, start_ns) in step.streamed_calls.items():
            if call_id in turn.tools or call_id in turn.finished_calls:
                continue
            tool = self._start_tool(session, turn.span, name, kind, "", start_ns,
                                    {n.GEN_AI_TOOL_CALL_ID: call_id})
            turn.tools[call_id] = tool
            self._block_tool(turn, call_id, tool, ts_ns)

    def _block_tool(self, turn: _Turn, call_id: str, tool: _Tool, ts_ns: int) -> None:
        turn.aggregate.add_tool(tool.name)  # KIT's aggregate counts blocked calls too
        self._finish_tool(tool, tool.kind, "", True, ts_ns)
        tool.span.set_status(Status(StatusCode.ERROR, "blocked by an extension"))
        del turn.tools[call_id]
        turn.finished_calls.add(call_id)
        tool.span.end(end_time=max(ts_ns, tool.start_ns))

    def _delta_attributes_on(self, span: trace.Span, prefix: str, deltas: _Deltas) -> None:
        attrs: dict = {}
        self._delta_attributes(attrs, prefix, deltas)
        if attrs:
            span.set_attributes(attrs)

    def _end_tool_span(self, tool: _Tool, end_ns: int, unfinished: bool = False) -> None:
        if unfinished:
            tool.span.set_status(Status(StatusCode.ERROR, "tool never finished"))
        tool.span.end(end_time=max(end_ns, tool.start_ns))

    # ── subagents ────────────────────────────────────────────────────────────────────────────

    def _on_subagent_start(self, session: _Session, run: _Run, event: ev.Event) -> None:
        if not isinstance(run, _Turn):
            return
        data: ev.SubagentStart = event.data
        tool = run.tools.get(data.ToolCallID)
        if tool is None:
            # KIT fires subagent_start on the SDK's ToolExecutionStart, still inside the LLM
            # stream, before the extension-side tool_call of the same call (kit.go generate,
            # fantasy's dispatch after the stream): the tool span starts here.
            tool = run.tools[data.ToolCallID] = self._start_tool(
                session, run.span, "subagent", "agent", "", event.ts_ns,
                {n.GEN_AI_TOOL_CALL_ID: data.ToolCallID})
        parent = tool.span
        attrs = {n.GEN_AI_OPERATION_NAME: n.OP_INVOKE_AGENT,
                 n.GEN_AI_AGENT_NAME: n.AGENT_SUBAGENT, n.GEN_AI_TOOL_CALL_ID: data.ToolCallID,
                 n.KIT_SUBAGENT_TASK_LENGTH: len(data.Task), **session.base_attributes}
        self._model_attributes(session, attrs)
        captured = messages.input_messages(self.content, data.Task)
        if captured is not None:
            attrs[n.GEN_AI_INPUT_MESSAGES] = captured
        span = self.tracer.start_span(n.SPAN_SUBAGENT, context=trace.set_span_in_context(parent),
                                      kind=SpanKind.INTERNAL, attributes=attrs,
                                      start_time=event.ts_ns)
        subagent = _Subagent(span=span, call_id=data.ToolCallID, start_ns=event.ts_ns,
                             session=session, turn=run)
        run.subagents[data.ToolCallID] = subagent
        self.open_subagents.setdefault(session.pid, []).append(subagent)

    def _on_subagent_chunk(self, session: _Session, run: _Run, event: ev.Event) -> None:
        data: ev.SubagentChunk = event.data
        subagent = run.subagents.get(data.ToolCallID) if isinstance(run, _Turn) else None
        if subagent is None:
            self._span_event(run.span, event)
            return
        kind = data.ChunkType
        if kind in ("text", "reasoning"):
            self._coalesce(subagent.span, subagent.text, event, data.Content)
        elif kind == "tool_call":
            tool = self._start_tool(session, subagent.span, data.ToolName, "subagent", data.ToolArgs,
                                    event.ts_ns, {n.GEN_AI_AGENT_NAME: n.AGENT_SUBAGENT})
            subagent.chunk_tools.setdefault(data.ToolName, deque()).append(tool)
        elif kind in ("tool_execution_start", "tool_execution_end", "tool_result"):
            queue = subagent.chunk_tools.get(data.ToolName)
            tool = queue[0] if queue else None
            if tool is None:
                self._span_event(subagent.span, event)
                return
            if kind == "tool_execution_start":
                tool.executed = True
                self._span_event(tool.span, event)
            elif kind == "tool_execution_end":
                self._span_event(tool.span, event)
            else:
                queue.popleft()
                self._finish_tool(tool, "subagent", data.ToolResult, data.IsError, event.ts_ns)
                tool.span.end(end_time=max(event.ts_ns, tool.start_ns))
        else:  # turn_start, turn_end and kinds a newer KIT adds
            self._span_event(subagent.span, event)

    def _on_subagent_end(self, session: _Session, run: _Run, event: ev.Event) -> None:
        data: ev.SubagentEnd = event.data
        subagent = run.subagents.get(data.ToolCallID) if isinstance(run, _Turn) else None
        if subagent is None:
            self._span_event(run.span, event)
            return
        subagent.span.set_attribute(n.KIT_SUBAGENT_RESPONSE_LENGTH, len(data.Response))
        captured = messages.output_messages(self.content, data.Response,
                                            "error" if data.ErrorMsg else "stop")
        if captured is not None:
            subagent.span.set_attribute(n.GEN_AI_OUTPUT_MESSAGES, captured)
        self._end_subagent(session, run, subagent, event.ts_ns, data.ErrorMsg)

    def _end_subagent(self, session: _Session, turn: _Turn, subagent: _Subagent, end_ns: int,
                      error: str) -> None:
        turn.subagents.pop(subagent.call_id, None)
        open_list = self.open_subagents.get(session.pid, [])
        if subagent in open_list:
            open_list.remove(subagent)
        turn.subagent_count += 1
        if subagent.child is not None:
            self._end_step(session, subagent.child, end_ns)
            child = subagent.child.aggregate
            turn.subagent_usage.add_usage_of(child)
            turn.subagent_cost.add_run(subagent.child.cost)
            subagent.span.set_attributes({
                n.KIT_TURN_LLM_CALL_COUNT: child.llm_call_count,
                **self._usage_attributes(child.input_tokens, child.output_tokens,
                                         child.cache_read_tokens, child.cache_write_tokens),
                n.KIT_COST_USD: child.cost_usd, n.KIT_COST_SOURCE: subagent.child.cost.source})
            if subagent.child.cost.notional_usd:
                subagent.span.set_attribute(n.KIT_COST_NOTIONAL_USD,
                                            subagent.child.cost.notional_usd)
        for queue in subagent.chunk_tools.values():
            for tool in queue:
                self._end_tool_span(tool, end_ns, unfinished=True)
        self._delta_attributes_on(subagent.span, n.KIT_DELTAS_SUBAGENT_TEXT, subagent.text)
        # required by the conventions: known by now if the start came before any usage
        subagent.span.set_attributes(self._model_attributes(session, {}))
        if error:
            subagent.span.set_status(Status(StatusCode.ERROR, error if error == _TURN_ENDED_FIRST
                                            else self._error_description(error)))
            subagent.span.set_attribute(n.ERROR_TYPE, error_type(error))
        subagent.span.end(end_time=max(end_ns, subagent.start_ns))
        self.metrics.subagents.add(1, {n.L_OUTCOME: "error" if error else "ok"})
        if self.event_log.logger is not None:
            self.event_log.emit(EVENT_SUBAGENT_END, end_ns, subagent.span, {
                **self._log_attributes(session), **subagent.span.attributes,
                n.KIT_OUTCOME: "error" if error else "ok"}, WARN if error else INFO)
        tool = turn.tools.get(subagent.call_id)
        if tool is not None and tool.result_ns:
            del turn.tools[subagent.call_id]
            turn.finished_calls.add(subagent.call_id)
            tool.span.end(end_time=max(tool.result_ns, end_ns, tool.start_ns))

    def _linked_subagent(self, event: ev.Event) -> _Subagent:
        """The subagent a child agent's event belongs to, by the parent's tool call that runs it.

        The bridge of a child Kit names that call (`parent_tool_call_id`) and writes the parent's
        session path, so parallel subagents stay apart and no session is made up for a child.
        A child seen before its subagent_start (or without one) opens the subagent itself."""
        session = self._session(event)
        session.last_ns = max(session.last_ns, event.ts_ns)
        turn = self._turn(session, event)
        call_id = event.parent_tool_call_id
        subagent = turn.subagents.get(call_id)
        if subagent is None:
            self._on_subagent_start(session, turn, ev.Event(
                type="subagent_start", data=ev.SubagentStart(ToolCallID=call_id),
                ts_ns=event.ts_ns, pid=event.pid, session_path=event.session_path))
            subagent = turn.subagents[call_id]
        return subagent

    def _child_target(self, event: ev.Event) -> _Subagent | None:
        """The open subagent a child agent's event belongs to, if it is one."""
        if event.session_path or event.agent == "main":
            return None
        candidates = self.open_subagents.get(event.pid)
        if not candidates:
            return None
        # Parallel subagents of one process cannot be told apart: the newest takes the event.
        return candidates[-1]

    def _on_child_event(self, subagent: _Subagent, event: ev.Event) -> None:
        child = subagent.child
        if child is None:
            child = subagent.child = _Run(span=subagent.span, agent="subagent")
        child.last_ns = event.ts_ns
        subagent.turn.last_ns = max(subagent.turn.last_ns, event.ts_ns)
        session = subagent.session
        if event.type in ("step_start", "step_finish", "llm_usage", "message_update",
                          "reasoning_start", "tool_call_input_start", "tool_call_input_delta",
                          "tool_call_input_end", "tool_call"):
            self._run_handlers[event.type](session, child, event)
        elif event.type in ("tool_execution_start", "tool_execution_end", "tool_output",
                            "tool_result", "message_start", "context_prepare", "prepare_step"):
            return  # the chunks already describe these; counted in kit_otel_events_total
        elif event.type == "error":
            self.metrics.errors.add(1, {n.L_KIND: error_kind(event.data.Error)})
            if self.event_log.logger is not None:
                self._log_error(session, subagent.span, event)
            self._span_event(subagent.span, event)
        elif event.type == "retry":
            self.metrics.retries.add(1, {n.L_KIND: error_kind(event.data.Error)})
            self._span_event(subagent.span, event)
        else:
            self._span_event(subagent.span, event)

    # ── span events ──────────────────────────────────────────────────────────────────────────

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
