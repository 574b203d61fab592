"""ACP (Agent Client Protocol) client instrumentation: a Python program driving an ACP agent
through `acp.ClientSideConnection` gets the telemetry of a KIT process, unchanged user code.

Where it hooks in (wrapt, on the `ClientSideConnection` class):
- `__init__`: registers a stream observer on the connection (`Connection.add_observer`, a public
  acp API). Observers see every JSON-RPC message synchronously in the receive loop, in wire
  order, *before* the message is dispatched to the user's `Client.session_update` callback —
  so session updates are translated in order and before `prompt()` returns, whatever the
  user's callback does (and however slow it is). A connection made before instrumentation
  gets its observer at its first instrumented call.
- `prompt()`: one turn. `new_session` / `load_session` / `resume_session` / `fork_session`,
  `close_session`, `close`, `cancel`, `set_config_option`: session lifecycle.

ACP reports no LLM-call boundaries and reports usage per turn (`PromptResponse.usage`) and cost
per session (cumulative `usage_update.cost`), so LLM calls are *inferred*: a chat span opens at
the start of the turn and whenever the agent resumes output after all tools of the previous
call finished (starting when the last of them finished), and its stream ends at its first tool
call. The turn's usage (tokens from `PromptResponse.usage`, cost = the increase of the
cumulative USD cost during the turn) is reported once, on the turn's last chat span.
docs/instrumentation.md has the full mapping table.

Longer than kit-otel's other modules on purpose: it is one instrumentation whose hooks, session
bookkeeping and update translation share one per-connection state (the contrib layout: one
instrumentation, one module); split, the state would only be spread across files.
"""

from __future__ import annotations

import json
import re
import time
import weakref
from typing import Any, Callable

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kit_otel.model import events as ev
from kit_otel.translate.classify import remote_parent, split_model
from ._core import Emitter, Frame, FRAME_KEY, instrumentation_enabled, leave, log
from .baggage import ext_state_context, read_ext_state
from .extractors import normalize_usage

SOURCE = "acp"
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"  # W3C names, keys of the request's _meta
_W3C = TraceContextTextMapPropagator()
WRAPPED_METHODS = ("__init__", "prompt", "new_session", "load_session", "resume_session",
                   "fork_session", "close_session", "cancel", "set_config_option", "close")

# ACP StopReason → the finish reason of the turn's last (inferred) LLM call
FINISH_REASONS = {"end_turn": "stop", "max_tokens": "length", "refusal": "content-filter",
                  "max_turn_requests": "other", "cancelled": "other"}


def acp_session_path(session_id: str, cwd: str) -> str:
    """A stand-in session path for an ACP session (it has no KIT session file), laid out like
    KIT's so the translator derives the project from the cwd: `acp/<cwd with / as -->/<id>`."""
    directory = cwd.strip("/").replace("/", "--") if cwd else "unknown"
    return f"acp/{directory}/{re.sub(r'[^A-Za-z0-9_-]', '_', session_id) or 'session'}"


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _block_text(block: Any) -> str:
    if block is None:
        return ""
    if _get(block, "type") == "text":
        return _get(block, "text") or ""
    resource = _get(block, "resource")
    if resource is not None:
        return _get(resource, "text") or ""
    return ""


def _tool_content(update: dict) -> str:
    """The text a tool produced: its content blocks (text, diff new text) or raw output."""
    parts = []
    for item in update.get("content") or ():
        kind = item.get("type")
        if kind == "content":
            parts.append(_block_text(item.get("content")))
        elif kind == "diff":
            parts.append(item.get("newText") or "")
    if parts:
        return "".join(parts)
    raw = update.get("rawOutput")
    if raw is None:
        return ""
    return raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=repr)


def _tool_name(update: dict, kind: str) -> str:
    """ACP has no tool name (only a human title, too many distinct values for a metric label):
    a `toolName` in `_meta` (as agents like claude-code-acp send it), else the kind."""
    meta = update.get("_meta")
    if isinstance(meta, dict):
        name = meta.get("toolName") or meta.get("tool_name")
        if not name:
            for value in meta.values():
                if isinstance(value, dict) and (value.get("toolName") or value.get("tool_name")):
                    name = value.get("toolName") or value.get("tool_name")
                    break
        if isinstance(name, str) and name:
            return name
    return kind or "other"


def _bind(args: tuple, kwargs: dict, names: tuple[str, ...]) -> list[Any]:
    """Arguments by name whether passed positionally, by keyword, or as one request model
    (acp's deprecated call style)."""
    if len(args) == 1 and not kwargs and hasattr(args[0], "model_fields"):
        return [getattr(args[0], name, None) for name in names]
    if not args and set(kwargs) == {"params"} and hasattr(kwargs["params"], "model_fields"):
        return [getattr(kwargs["params"], name, None) for name in names]
    return [args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names)]


class _Tool:
    __slots__ = ("name", "kind", "input", "started", "done", "blocked")

    def __init__(self, name: str, kind: str, input_: str):
        self.name, self.kind, self.input = name, kind, input_
        self.started = self.done = self.blocked = False


class _Turn:
    __slots__ = ("start_ns", "step", "stream_ended", "pending", "last_tool_end_ns", "response",
                 "thinking", "cost", "cost_reported", "tools", "ctx", "frame")

    def __init__(self, start_ns: int):
        self.start_ns = start_ns
        self.step = 0  # the current (inferred) LLM call's StepNumber
        self.stream_ended = False
        self.pending = 0  # tools not finished
        self.last_tool_end_ns = 0
        self.response: list[str] = []
        self.thinking = False
        self.cost = 0.0
        self.cost_reported = False
        self.tools: dict[str, _Tool] = {}
        self.ctx = None
        self.frame: Frame | None = None


class _Session:
    __slots__ = ("sid", "cwd", "path", "real", "started", "model", "thought_level", "mode",
                 "cost_baseline", "turn")

    def __init__(self, sid: str, cwd: str, path: str, real: bool):
        self.sid, self.cwd, self.path, self.real = sid, cwd, path, real
        self.started = False
        self.model = self.thought_level = self.mode = ""
        self.cost_baseline: float | None = None
        self.turn: _Turn | None = None


class _Connection:
    """The instrumentation's view of one ClientSideConnection."""

    def __init__(self, instr: "AcpInstrumentation"):
        self.instr = instr
        self.sessions: dict[str, _Session] = {}
        self.permissions: dict[Any, tuple[str, str, dict[str, str]]] = {}
        self._token = None

    def session(self, sid: str, cwd: str = "") -> _Session:
        s = self.sessions.get(sid)
        if s is None:
            path, real = self.instr.resolve_path(sid, cwd)
            s = self.sessions[sid] = _Session(sid, cwd, path, real)
        elif cwd and not s.started and s.cwd != cwd:
            s.cwd = cwd
            s.path, s.real = self.instr.resolve_path(sid, cwd)
        return s

    # the stream observer: runs in the receive loop, in wire order
    def observe(self, event: Any) -> None:
        instr = self.instr
        if not instr.active:
            return
        incoming = getattr(event.direction, "value", event.direction) == "incoming"
        ctx = instr.emitter.run(SOURCE, instr.observe, self, incoming, event.message)
        if incoming:
            # The message is dispatched next, in a task that copies this context: the user's
            # callbacks for an update of a running turn run inside the turn's context.
            leave(self._token)
            self._token = None
            if ctx is not None:
                try:
                    self._token = otel_context.attach(ctx)
                except Exception:  # noqa: BLE001
                    self._token = None


class AcpInstrumentation:
    def __init__(self, emitter: Emitter, *,
                 session_path_resolver: Callable[[str, str], str | None] | None = None,
                 ext_state: bool = True, state_policy=None):
        self.emitter = emitter
        self.resolver = session_path_resolver
        self.ext_state = ext_state
        self.state_policy = state_policy
        self.connections: "weakref.WeakKeyDictionary[Any, _Connection]" = weakref.WeakKeyDictionary()
        self.installed: list[tuple[type, str]] = []
        self.active = False

    # ── installing ───────────────────────────────────────────────────────────────────────────

    def install(self) -> bool:
        try:
            from acp.client.connection import ClientSideConnection
        except ImportError:
            log.debug("acp not installed: ACP client instrumentation skipped")
            return False
        wrappers = {"__init__": self._init, "prompt": self._prompt,
                    "new_session": self._new_session, "load_session": self._load_session,
                    "resume_session": self._resume_session, "fork_session": self._fork_session,
                    "close_session": self._close_session, "cancel": self._cancel,
                    "set_config_option": self._set_config_option, "close": self._close}
        for name in WRAPPED_METHODS:
            current = ClientSideConnection.__dict__.get(name)
            if current is None:
                continue  # an acp version without this method
            if isinstance(current, wrapt.FunctionWrapper) and getattr(
                    getattr(current, "_self_wrapper", None), "__self__", None) is self:
                continue  # already wrapped by us
            # what wrapt.wrap_function_wrapper does, plus `enabled`: suppressed calls skip the
            # wrapper entirely
            wrapt.wrap_object(ClientSideConnection, name, wrapt.FunctionWrapper,
                              (wrappers[name], instrumentation_enabled))
            self.installed.append((ClientSideConnection, name))
        self.active = True
        return True

    def uninstall(self) -> None:
        from opentelemetry.instrumentation.utils import unwrap
        self.active = False
        for owner, name in reversed(self.installed):
            try:
                unwrap(owner, name)
            except Exception as exc:  # noqa: BLE001
                self.emitter.failed(exc, SOURCE)
        self.installed.clear()

    def resolve_path(self, sid: str, cwd: str) -> tuple[str, bool]:
        if self.resolver is not None:
            try:
                path = self.resolver(sid, cwd)
            except Exception as exc:  # noqa: BLE001
                self.emitter.failed(exc, SOURCE)
                path = None
            if path:
                return str(path), True
        return acp_session_path(sid, cwd), False

    def _conn(self, instance: Any) -> _Connection | None:
        conn = self.connections.get(instance)
        if conn is None:
            conn = self.connections[instance] = _Connection(self)
            inner = getattr(instance, "_conn", None)
            add = getattr(inner, "add_observer", None)
            if add is not None:
                add(conn.observe)
        return conn

    def _feed(self, s: _Session, type_: str, data: ev.EventData, ts_ns: int = 0,
              state: dict[str, str] | None = None) -> None:
        s.started = True
        self.emitter.feed(type_, data, s.path, s.sid, SOURCE, ts_ns=ts_ns, state=state)

    # ── wrappers ─────────────────────────────────────────────────────────────────────────────

    def _init(self, wrapped, instance, args, kwargs):
        wrapped(*args, **kwargs)
        if self.active:
            self.emitter.run(SOURCE, self._conn, instance)

    async def _prompt(self, wrapped, instance, args, kwargs):
        begun = self.emitter.run(SOURCE, self._begin_turn, instance, args, kwargs)
        if begun is None:
            return await wrapped(*args, **kwargs)
        s, t = begun
        args, kwargs = self.emitter.run(SOURCE, self._with_trace_context, s, args,
                                        kwargs) or (args, kwargs)
        token = None
        if t.ctx is not None:
            try:
                token = otel_context.attach(t.ctx)
            except Exception:  # noqa: BLE001
                token = None
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            leave(token)
            self.emitter.run(SOURCE, self._end_turn, s, t, None, exc)
            raise
        leave(token)
        self.emitter.run(SOURCE, self._end_turn, s, t, response, None)
        return response

    async def _new_session(self, wrapped, instance, args, kwargs):
        response = await wrapped(*args, **kwargs)
        (cwd,) = _bind(args, kwargs, ("cwd",))
        self.emitter.run(SOURCE, self._started, instance, _get(response, "session_id"), cwd,
                         response, 0.0, "")
        return response

    async def _load_session(self, wrapped, instance, args, kwargs):
        response = await wrapped(*args, **kwargs)
        cwd, sid = _bind(args, kwargs, ("cwd", "session_id"))
        self.emitter.run(SOURCE, self._started, instance, sid, cwd, response, None, "")
        return response

    async def _resume_session(self, wrapped, instance, args, kwargs):
        response = await wrapped(*args, **kwargs)
        sid, cwd = _bind(args, kwargs, ("session_id", "cwd"))
        self.emitter.run(SOURCE, self._started, instance, sid, cwd, response, None, "")
        return response

    async def _fork_session(self, wrapped, instance, args, kwargs):
        response = await wrapped(*args, **kwargs)
        source, cwd = _bind(args, kwargs, ("session_id", "cwd"))
        self.emitter.run(SOURCE, self._started, instance, _get(response, "session_id"), cwd,
                         response, None, source or "")
        return response

    async def _close_session(self, wrapped, instance, args, kwargs):
        response = await wrapped(*args, **kwargs)
        (sid,) = _bind(args, kwargs, ("session_id",))
        self.emitter.run(SOURCE, self._shutdown, instance, [sid])
        return response

    async def _close(self, wrapped, instance, args, kwargs):
        try:
            return await wrapped(*args, **kwargs)
        finally:
            self.emitter.run(SOURCE, self._shutdown, instance, None)

    async def _cancel(self, wrapped, instance, args, kwargs):
        (sid,) = _bind(args, kwargs, ("session_id",))
        self.emitter.run(SOURCE, self._cancelled, instance, sid)
        return await wrapped(*args, **kwargs)

    async def _set_config_option(self, wrapped, instance, args, kwargs):
        response = await wrapped(*args, **kwargs)
        _, sid, _ = _bind(args, kwargs, ("config_id", "session_id", "value"))
        options = _get(response, "config_options")
        if sid and options:
            self.emitter.run(SOURCE, self._config_from_call, instance, sid, options)
        return response

    # ── telemetry (run under the emitter's lock) ─────────────────────────────────────────────

    def _begin_turn(self, instance: Any, args: tuple, kwargs: dict):
        sid, blocks = _bind(args, kwargs, ("session_id", "prompt"))
        if not sid:
            return None
        conn = self._conn(instance)
        s = conn.session(sid)
        ts = time.time_ns()
        prompt = "".join(_block_text(b) for b in blocks or ())
        state = read_ext_state(s.path) if s.real and self.ext_state else None
        t = _Turn(ts)
        s.turn = t
        # a traceparent the caller put in the request's _meta: the turn joins that trace
        incoming = kwargs.get(TRACEPARENT)
        parent = remote_parent(incoming, kwargs.get(TRACESTATE) or "") \
            if isinstance(incoming, str) else None
        if parent is not None:
            self.emitter.translator.set_next_turn_parent(self.emitter.pid, s.path, parent)
        self._feed(s, "input", ev.Input(Text=prompt, Source=SOURCE), ts)
        self._feed(s, "agent_start", ev.AgentStart(Prompt=prompt), ts, state)
        self._feed(s, "message_start", ev.MessageStart(), ts)
        self._feed(s, "step_start", ev.StepStart(StepNumber=0), ts)
        t.frame = Frame(s.path, s.sid, SOURCE)
        t.frame.steps = 1
        ctx = ext_state_context(state, self.state_policy) if state else otel_context.get_current()
        span = self.emitter.turn_span(s.path)
        if span is not None:
            ctx = trace.set_span_in_context(span, ctx)
        t.ctx = otel_context.set_value(FRAME_KEY, t.frame, ctx)
        return s, t

    def _with_trace_context(self, s: _Session, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The prompt's arguments with the turn's W3C trace context added to the request's
        `_meta`, as the ACP trace-context proposal carries it, so an agent that traces can
        continue the turn's trace: as keyword arguments (acp puts extra ones in `_meta`), or,
        for a call with one request model (acp's older style, recognised only when it comes
        alone), in a copy of the model's own `field_meta`."""
        span = self.emitter.turn_span(s.path)
        if span is None:
            return args, kwargs
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(span))
        model = args[0] if len(args) == 1 and not kwargs else \
            kwargs.get("params") if not args and set(kwargs) == {"params"} else None
        if model is not None and hasattr(model, "model_fields"):
            if "field_meta" not in model.model_fields:
                return args, kwargs  # nowhere to put it without changing the call
            meta = {**(getattr(model, "field_meta", None) or {}), **carrier}
            model = model.model_copy(update={"field_meta": meta})
            return ((model,), {}) if args else ((), {"params": model})
        return args, {**kwargs, **carrier}

    def _end_turn(self, s: _Session, t: _Turn, response: Any, exc: BaseException | None) -> None:
        if s.turn is not t:
            return  # superseded (the translator closed it as incomplete)
        s.turn = None
        text = "".join(t.response)
        if exc is not None:
            message = str(exc)
            self._feed(s, "error", ev.Error(
                Error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__))
            stop = "error"
        else:
            stop = str(_get(response, "stop_reason") or "end_turn")
            usage = _get(response, "usage")
            if usage is not None or t.cost_reported:
                self._report_usage(s, t, usage, FINISH_REASONS.get(stop, "other"))
            if stop != "cancelled":
                self._feed(s, "message_end", ev.MessageEnd(Content=text))
        state = read_ext_state(s.path) if s.real and self.ext_state else None
        self._feed(s, "agent_end", ev.AgentEnd(Response=text, StopReason=stop), state=state)

    def _report_usage(self, s: _Session, t: _Turn, usage: Any, finish: str) -> None:
        ts = time.time_ns()
        if t.stream_ended and not t.pending:  # the final call produced no visible output
            self._new_step(s, t, ts)
        tokens = [v or 0 for v in normalize_usage(usage)]
        provider, model = split_model(s.model)
        self._feed(s, "llm_usage", ev.LLMUsage(
            InputTokens=tokens[0], OutputTokens=tokens[1], CacheReadTokens=tokens[2],
            CacheWriteTokens=tokens[3], Cost=t.cost, Model=model, Provider=provider,
            StepNumber=t.step, FinishReason=finish), ts)
        self._feed(s, "step_finish", ev.StepFinish(
            StepNumber=t.step, FinishReason=finish, InputTokens=tokens[0],
            OutputTokens=tokens[1], CacheReadTokens=tokens[2], CacheWriteTokens=tokens[3]), ts)

    def _started(self, instance: Any, sid: Any, cwd: Any, response: Any,
                 baseline: float | None, fork_of: str) -> None:
        if not isinstance(sid, str) or not sid:
            return
        conn = self._conn(instance)
        s = conn.session(sid, cwd if isinstance(cwd, str) else "")
        if baseline is not None:
            s.cost_baseline = baseline
        ts = time.time_ns()
        if fork_of:
            source = conn.session(fork_of)
            self._feed(source, "before_fork", ev.BeforeFork(TargetID=sid), ts)
        state = read_ext_state(s.path) if s.real and self.ext_state else None
        self._feed(s, "session_start", ev.SessionStart(SessionID=sid), ts, state)
        modes = _get(response, "modes")
        if modes is not None:
            s.mode = _get(modes, "current_mode_id", "currentModeId") or ""
        self._config(s, _get(response, "config_options", "configOptions") or (), ts, initial=True)

    def _shutdown(self, instance: Any, sids: list[str] | None) -> None:
        conn = self.connections.get(instance)
        if conn is None:
            return
        for sid in list(conn.sessions) if sids is None else sids:
            s = conn.sessions.pop(sid, None)
            if s is not None and s.started:
                self._feed(s, "session_shutdown", ev.SessionShutdown())

    def _cancelled(self, instance: Any, sid: Any) -> None:
        conn = self.connections.get(instance)
        s = conn.sessions.get(sid) if conn is not None else None
        if s is not None and s.turn is not None:
            self._feed(s, "acp_cancel", ev.UnknownData(fields={"SessionID": sid}))

    def _config_from_call(self, instance: Any, sid: str, options: Any) -> None:
        conn = self._conn(instance)
        self._config(conn.session(sid), options, time.time_ns())

    def _config(self, s: _Session, options: Any, ts: int, initial: bool = False) -> None:
        for option in options or ():
            category = _get(option, "category")
            value = _get(option, "current_value", "currentValue")
            if not isinstance(value, str):
                continue
            if category == "model" or (category is None and _get(option, "id") == "model"):
                if value != s.model:
                    previous, s.model = s.model, value
                    self._feed(s, "model_change", ev.ModelChange(
                        NewModel=value, PreviousModel=previous, Source=SOURCE), ts)
            elif category == "thought_level":
                if value != s.thought_level:
                    previous, s.thought_level = s.thought_level, value
                    if not initial:
                        self._feed(s, "thinking_level_change", ev.ThinkingLevelChange(
                            NewLevel=value, PreviousLevel=previous, Source=SOURCE), ts)
            elif category == "mode":
                self._mode(s, value, ts, initial)

    def _mode(self, s: _Session, mode: str, ts: int, initial: bool = False) -> None:
        if mode == s.mode:
            return
        previous, s.mode = s.mode, mode
        if not initial:
            self._feed(s, "acp_mode_change", ev.UnknownData(
                fields={"ModeID": mode, "PreviousModeID": previous}), ts)

    # ── the observer's work ──────────────────────────────────────────────────────────────────

    def observe(self, conn: _Connection, incoming: bool, message: dict) -> Any:
        """Returns the context the message's handler should run in (a running turn's), or None."""
        method = message.get("method")
        if incoming:
            params = message.get("params")
            if not isinstance(params, dict):
                return None
            if method == "session/update":
                return self._update(conn, params)
            if method == "session/request_permission" and "id" in message:
                sid = params.get("sessionId")
                tool = params.get("toolCall") or {}
                kinds = {o.get("optionId"): o.get("kind", "") for o in params.get("options") or ()
                         if isinstance(o, dict)}
                conn.permissions[message["id"]] = (sid, tool.get("toolCallId"), kinds)
                s = conn.sessions.get(sid)
                return s.turn.ctx if s is not None and s.turn is not None else None
            return None
        if method is None and message.get("id") in conn.permissions:  # our answer to a request
            sid, call_id, kinds = conn.permissions.pop(message["id"])
            outcome = (message.get("result") or {}).get("outcome") or {}
            refused = outcome.get("outcome") == "cancelled" or str(
                kinds.get(outcome.get("optionId"), "")).startswith("reject")
            s = conn.sessions.get(sid)
            tool = s.turn.tools.get(call_id) if s is not None and s.turn is not None else None
            if tool is not None and refused:
                tool.blocked = True
        return None

    def _update(self, conn: _Connection, params: dict) -> Any:
        sid = params.get("sessionId")
        update = params.get("update")
        if not isinstance(sid, str) or not isinstance(update, dict):
            return None
        s = conn.session(sid)
        t = s.turn
        kind = update.get("sessionUpdate")
        ts = time.time_ns()
        if kind == "usage_update":
            self._usage(s, t, update, ts)
        elif kind == "config_option_update":
            self._config(s, update.get("configOptions"), ts)
        elif kind == "current_mode_update":
            mode = update.get("currentModeId")
            if isinstance(mode, str):
                self._mode(s, mode, ts)
        elif t is None:
            return None  # history replayed by load_session, or updates after the turn
        elif kind == "agent_message_chunk":
            text = _block_text(update.get("content"))
            self._ensure_step(s, t, ts)
            t.thinking = False
            t.response.append(text)
            self._feed(s, "message_update", ev.MessageUpdate(Chunk=text), ts)
        elif kind == "agent_thought_chunk":
            self._ensure_step(s, t, ts)
            if not t.thinking:
                t.thinking = True
                self._feed(s, "reasoning_start", ev.ReasoningStart(
                    ID=update.get("messageId") or ""), ts)
        elif kind == "tool_call":
            self._tool_call(s, t, update, ts)
        elif kind == "tool_call_update":
            tool = t.tools.get(update.get("toolCallId"))
            if tool is None:
                self._tool_call(s, t, update, ts)
            else:
                if update.get("kind"):
                    tool.kind = update["kind"]
                self._tool_status(s, t, tool, update, ts)
        elif kind == "plan":
            self._feed(s, "acp_plan", ev.UnknownData(
                fields={"Entries": len(update.get("entries") or ())}), ts)
        return t.ctx if t is not None and s.turn is t else None

    def _new_step(self, s: _Session, t: _Turn, ts: int) -> None:
        t.step += 1
        t.stream_ended = False
        start = max(t.last_tool_end_ns, t.start_ns) if t.last_tool_end_ns else ts
        self._feed(s, "step_start", ev.StepStart(StepNumber=t.step), start)

    def _ensure_step(self, s: _Session, t: _Turn, ts: int) -> None:
        """Output after all tools of the previous LLM call finished is a new LLM call."""
        if t.stream_ended and not t.pending:
            self._new_step(s, t, ts)

    def _tool_call(self, s: _Session, t: _Turn, update: dict, ts: int) -> None:
        call_id = update.get("toolCallId")
        if not isinstance(call_id, str):
            return
        self._ensure_step(s, t, ts)
        t.thinking = False
        kind = update.get("kind") or "other"
        name = _tool_name(update, kind)
        raw = update.get("rawInput")
        capture = self.emitter.translator.content.capture
        input_ = (raw if isinstance(raw, str) else json.dumps(raw, default=repr)) \
            if capture and raw is not None else ""
        tool = t.tools[call_id] = _Tool(name, kind, input_)
        self._feed(s, "tool_call", ev.ToolCall(ToolName=name, ToolCallID=call_id, ToolKind=kind,
                                               Input=input_, Source=SOURCE), ts)
        t.stream_ended = True
        t.pending += 1
        self._tool_status(s, t, tool, update, ts)

    def _tool_status(self, s: _Session, t: _Turn, tool: _Tool, update: dict, ts: int) -> None:
        status = update.get("status")
        if tool.done or status not in ("in_progress", "completed", "failed"):
            return
        call_id = update["toolCallId"]
        ids = {"ToolCallID": call_id, "ToolName": tool.name, "ToolKind": tool.kind}
        blocked = tool.blocked and not tool.started
        if not tool.started and not blocked:
            tool.started = True
            self._feed(s, "tool_execution_start", ev.ToolExecutionStart(**ids), ts)
        if status == "in_progress":
            return
        if tool.started:
            self._feed(s, "tool_execution_end", ev.ToolExecutionEnd(**ids), ts)
        self._feed(s, "tool_result", ev.ToolResult(
            **ids, Input=tool.input, Content=_tool_content(update),
            IsError=status == "failed" and not blocked), ts)
        tool.done = True
        t.pending -= 1
        t.last_tool_end_ns = ts

    def _usage(self, s: _Session, t: _Turn | None, update: dict, ts: int) -> None:
        cost = update.get("cost")
        amount = cost.get("amount") if isinstance(cost, dict) else None
        currency = str(cost.get("currency") or "") if isinstance(cost, dict) else ""
        if isinstance(amount, (int, float)) and not isinstance(amount, bool):
            if s.cost_baseline is None:  # a loaded/resumed/forked session: its history's cost
                s.cost_baseline = float(amount)
            elif t is not None:  # increases between turns count in the next turn
                delta = round(float(amount) - s.cost_baseline, 12)  # no 0.0026999999999999993
                s.cost_baseline = float(amount)
                if delta > 0 and currency.upper() in ("USD", ""):
                    t.cost = round(t.cost + delta, 12)
                    t.cost_reported = True
        if t is not None:
            self._feed(s, "acp_usage_update", ev.UnknownData(fields={
                "Used": update.get("used", 0), "Size": update.get("size", 0),
                "CostAmount": amount if amount is not None else 0.0,
                "CostCurrency": currency}), ts)
