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

The state machine is here; what each span kind carries is in its own module (turns, chat,
tools, subagents, session_events, event_attributes), mixed into `Translator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Container, Iterable, KeysView

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from kit_otel import __version__
from kit_otel.model import events as ev, names as n
from kit_otel.model.decoder import DecodeError
from kit_otel.model.sessions import DEFAULT_SESSIONS_ROOT, identify_session
from kit_otel.translate.classify import remote_parent, split_model
from kit_otel.translate.content import ContentPolicy
from kit_otel.translate.ext_state import StatePolicy
from kit_otel.translate.instruments import KitInstruments
from kit_otel.translate.logs import EventLog
from kit_otel.translate.pricing import PriceTable
from kit_otel.translate.records import LlmCallRecord, TurnRecord
from kit_otel.translate.snapshot import SessionSnapshot
from kit_otel.translate.span_state import NS_PER_S, Run, Session, Subagent, Turn
from kit_otel.translate.turns import TurnSpans
from kit_otel.translate.session_events import SessionEvents
from kit_otel.translate.chat import ChatSpans
from kit_otel.translate.tools import ToolSpans
from kit_otel.translate.subagents import SubagentSpans
from kit_otel.translate.event_attributes import EventAttributes

_SWEEP_EVERY = 1024


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


class Translator(TurnSpans, ChatSpans, ToolSpans, SubagentSpans, SessionEvents,
                 EventAttributes):
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
        self.sessions: dict[tuple[int, str], Session] = {}
        self.open_subagents: dict[int, list[Subagent]] = {}  # pid → open subagents, oldest first
        # trace context turns start in: a KIT process's TRACEPARENT (every turn of the pid),
        # or one handed in for a session's next turn (ACP `_meta`)
        self.process_parents: dict[int, Context] = {}
        self.process_traceparents: dict[int, tuple[str, str]] = {}  # as given, for checkpoints
        self.next_turn_parents: dict[tuple[int, str], Context] = {}
        # "provider/model" a KIT process had selected (bridge header, later model changes):
        # a new session knows its model before its first LLM call reports it
        self.process_models: dict[int, str] = {}
        self.clock_ns = 0
        self.events_seen = 0
        self.rejected = 0
        self.turns_closed = 0
        self.on_turn_end: list[Callable[[TurnRecord], None]] = []  # summary hooks
        self.on_llm_call: list[Callable[[LlmCallRecord], None]] = []
        self.on_state_change: list[Callable[[Session], None]] = []  # numeric-state gauges
        self._idle_ns = int(self.settings.idle_timeout_s * NS_PER_S)
        self._forget_ns = int(max(self.settings.session_forget_s,
                                  self.settings.idle_timeout_s) * NS_PER_S)
        self.auto_sweep = True  # sweep by the sessions' clocks every _SWEEP_EVERY events (serve
        # turns this off: it sweeps by wall clock, one KIT process at a time)
        # A sweep walks every session held, so it runs every _SWEEP_EVERY events or every as
        # many events as there are sessions, whichever is more: its cost per event stays
        # bounded (10,000 sessions open at once: 15 µs an event when every 1,024 events).
        self._events_until_sweep = _SWEEP_EVERY
        self._event_type_keys: dict[str, frozenset] = {}
        self._handlers: dict[str, Callable[[Session, ev.Event], None]] = {
            "input": self._on_turn_opening, "before_agent_start": self._on_turn_opening,
            "agent_start": self._on_turn_opening, "agent_end": self._on_agent_end,
            "session_start": self._on_session_start, "session_shutdown": self._on_session_shutdown,
            "before_fork": self._out_of_turn, "before_session_switch": self._out_of_turn,
            "thinking_level_change": self._out_of_turn, "model_change": self._on_model_change,
            "before_compact": self._on_before_compact, "terminal_resize": self._on_ambient,
            "turn_state_change": self._on_ambient, "error": self._on_error,
            "retry": self._on_retry,
        }
        self._run_handlers: dict[str, Callable[[Session, Run, ev.Event], None]] = {
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
                if event.seq == 1:  # a process's first line: a pid's earlier process is gone
                    self.forget_process(event.pid)
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
        if self.auto_sweep:
            self._events_until_sweep -= 1
            if self._events_until_sweep <= 0:
                self.sweep_by_clocks()
                self._events_until_sweep = max(_SWEEP_EVERY, len(self.sessions))

    def set_process_parent(self, pid: int, traceparent: str, tracestate: str = "") -> bool:
        """Every later turn of KIT process `pid` is a child of this W3C trace context."""
        context = remote_parent(traceparent, tracestate)
        if context is not None:
            self.process_parents[pid] = context
            self.process_traceparents[pid] = (traceparent, tracestate)
        return context is not None

    def forget_process(self, pid: int) -> None:
        """Nothing of an earlier KIT process with this pid holds for the next one: not its
        trace parent, not its model (a new process's first line, or its spool retired)."""
        self.process_parents.pop(pid, None)
        self.process_traceparents.pop(pid, None)
        self.process_models.pop(pid, None)

    def process_snapshot(self, pid: int) -> dict[str, str]:
        """What a checkpoint keeps of a KIT process: its bridge header is not read again after
        a restart, and its later turns still belong to its TRACEPARENT and know its model."""
        snapshot = {}
        given = self.process_traceparents.get(pid)
        if given is not None:
            snapshot["traceparent"], snapshot["tracestate"] = given
        model = self.process_models.get(pid)
        if model:
            snapshot["model"] = model
        return snapshot

    def restore_process(self, pid: int, snapshot: dict[str, str]) -> None:
        self.forget_process(pid)
        if snapshot.get("traceparent"):
            self.set_process_parent(pid, snapshot["traceparent"], snapshot.get("tracestate", ""))
        if snapshot.get("model"):
            self.process_models[pid] = snapshot["model"]

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
        turns alone; what stays open is closed at `close`.

        A session that shut down and has been quiet for the idle timeout, by the newest event
        seen, is forgotten, as `sweep` forgets it in serve: a long replay holds the sessions
        still going, not every session it ever saw (memory, and the cost of each sweep, stay
        flat in the stream's length). One that comes back starts afresh."""
        closed = 0
        for key, session in list(self.sessions.items()):
            turn = session.turn
            if turn is not None:
                if session.clock_ns - turn.last_ns > self._idle_ns:
                    self._close_incomplete(session, turn)
                    closed += 1
            elif session.shut_down and self.clock_ns - session.last_ns > self._idle_ns:
                del self.sessions[key]
        return closed

    def close(self) -> None:
        """End of a replay or shutdown: nothing stays open."""
        for session in list(self.sessions.values()):
            if session.turn is not None:
                self._close_incomplete(session, session.turn)

    # ── open spans, for in-process sources that make other spans their children ─────────────

    def _current_turn(self, pid: int, session_path: str) -> "Turn | None":
        session = self.sessions.get((pid, session_path))
        return session.turn if session is not None else None

    def turn_span(self, pid: int, session_path: str) -> trace.Span | None:
        turn = self._current_turn(pid, session_path)
        return turn.span if turn is not None else None

    def step_span(self, pid: int, session_path: str, subagent_call_id: str = "") -> trace.Span | None:
        """The open chat span of the turn, or of a subagent's child agent."""
        run: Run | None = self._current_turn(pid, session_path)
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

    # ── checkpoints (serve): quiescent points, snapshots, forgetting ─────────────────────────

    def is_quiescent(self, pids: set[int], keys: Iterable[tuple[int, str]] | None = None) -> bool:
        """No open turn (hence no open span) in any session of these processes. `keys`, when
        given, are all the session keys those processes can have (faster than a full scan)."""
        for pid in pids:
            if self.open_subagents.get(pid):
                return False
        sessions = self.sessions
        if keys is not None:
            for key in keys:
                session = sessions.get(key)
                if session is not None and session.turn is not None:
                    return False
            return True
        return not any(session.turn is not None and key[0] in pids
                       for key, session in sessions.items())

    def snapshot_sessions(self, keys: Iterable[tuple[int, str]]) -> list[SessionSnapshot]:
        """The checkpoint state of the sessions with these (pid, session path) keys; taken at
        a quiescent point, so no turn is open in them."""
        sessions = self.sessions
        return [SessionSnapshot.of(sessions[key]) for key in keys if key in sessions]

    def restore_sessions(self, snapshots: Iterable[SessionSnapshot]) -> None:
        """Sessions as a checkpoint saved them (a restart continues where it stopped)."""
        for snap in snapshots:
            session = snap.session(self._base_attributes(snap.pid, snap.path, snap.project,
                                                         snap.cwd))
            self._set_session_id(session, snap.session_id)
            self.sessions[(snap.pid, snap.path)] = session
            self.state_changed(session)  # numeric state gauges come back too

    def forget_sessions(self, keys: Iterable[tuple[int, str]]) -> None:
        """Drop these sessions (their KIT process is gone and its spool files removed)."""
        for key in keys:
            self.sessions.pop(key, None)

    def session_keys(self) -> KeysView[tuple[int, str]]:
        return self.sessions.keys()

    # ── sessions ─────────────────────────────────────────────────────────────────────────────

    def _session(self, event: ev.Event) -> Session:
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

    def _new_session(self, event: ev.Event) -> Session:
        if event.session_path:
            ident = identify_session(event.session_path, self.settings.sessions_root)
            session_id, project, cwd = ident.session_id, ident.project, ident.cwd
        else:
            session_id, project, cwd = f"no-session-{event.pid}", "unknown", ""
        if event.session_id:
            session_id = event.session_id
        session = Session(event.pid, event.session_path, session_id, project,
                          self._base_attributes(event.pid, event.session_path, project, cwd),
                          cwd)
        known = self.process_models.get(event.pid)
        if known:
            session.provider, session.model = split_model(known)
        self._set_session_id(session, session_id)
        return session

    def _base_attributes(self, pid: int, path: str, project: str, cwd: str) -> dict[str, object]:
        """What every span of a session carries (the session id is set with it)."""
        attrs: dict[str, object] = {n.KIT_PROJECT: project, n.KIT_PID: pid}
        if path:
            attrs[n.KIT_SESSION_PATH] = path
        if cwd and self.content.capture:
            attrs["kit.cwd"] = cwd
        return attrs

    @staticmethod
    def _set_session_id(session: Session, session_id: str) -> None:
        session.session_id = session_id
        session.base_attributes[n.SESSION_ID] = session_id
        session.base_attributes[n.GEN_AI_CONVERSATION_ID] = session_id

    def _labels_project(self, session: Session, labels: dict) -> dict:
        labels[n.L_PROJECT] = self.metrics.project_value(session.project)
        if self.settings.session_id_label:
            labels[n.L_SESSION_ID] = session.session_id
        return labels

    @staticmethod
    def _model_attributes(session: Session, attrs: dict) -> dict:
        """gen_ai.provider.name (the conventions' value) and gen_ai.request.model, when known."""
        if session.provider:
            attrs[n.GEN_AI_PROVIDER_NAME] = n.provider_name(session.provider)
        if session.model:
            attrs[n.GEN_AI_REQUEST_MODEL] = session.model
        return attrs

    def _log_attributes(self, session: Session) -> dict[str, object]:
        """What every log record of a session carries."""
        attrs = {n.SESSION_ID: session.session_id, n.GEN_AI_CONVERSATION_ID: session.session_id,
                 n.KIT_PROJECT: session.project}
        return self._model_attributes(session, attrs)

    # ── extension state ──────────────────────────────────────────────────────────────────────

    def _apply_state(self, session: Session, event: ev.Event) -> None:
        session.state_ts_ns = max(session.state_ts_ns, event.ts_ns)
        self._set_state(session, event.state or {}, event.ts_ns)

    def _set_state(self, session: Session, new: dict[str, str], ts_ns: int) -> None:
        if new == session.state:
            return
        turn = session.turn
        if turn is not None:
            for attrs in self.settings.state.changes(session.state, new):
                turn.span.add_event(n.KIT_EXT_STATE_CHANGE, attrs, timestamp=ts_ns)
        session.state = dict(new)
        self.state_changed(session)

    def state_changed(self, session: Session) -> None:
        """A session's extension state changed: the hooks (the pipeline's numeric-state gauges)
        are told."""
        for hook in self.on_state_change:
            hook(session)

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
