"""Declared entry points: the functions of a custom Python agent that are its turns, LLM calls,
tools, subagents and compactions, wrapped (wrapt) to produce the KIT lifecycle events of a KIT
process — so the same spans and metrics come out of the one translator.

    EntryPoint("my_agent.loop:Agent.run_turn", "turn", prompt="prompt")
    EntryPoint("my_agent.llm:complete", "llm_call", model="model", provider="=anthropic",
               usage="result.usage", cost="my_agent.pricing:cost_of")
    EntryPoint("my_agent.tools:run_tool", "tool", tool_name="name", tool_kind="=execute")

Extractors (all optional) are callables `f(call) -> value` (`call.args`, `call.kwargs`,
`call.instance`, `call.result`, `call.exception`, `call.arg(name)`), `"module:function"`
strings naming such a callable, `"=literal"` constants, or dotted paths rooted at a parameter
name, `result`, `self`, `args` or `kwargs`: `"request.model"`, `"result.usage.input_tokens"`,
`"args[0]"`, `"kwargs['model']"`, `"result.choices[0].finish_reason"`. A path that finds nothing
gives None (never an error). For streams, `result` is each item in turn and the last non-None
value wins (usage usually comes in the last chunk).

Roles and the events they produce (docs/instrumentation.md has the full table):
- turn:       input, agent_start, message_start … message_end, agent_end (StopReason
              `completed`, the stop_reason extractor, `error`, or `cancelled` for a stream
              closed early); nested calls report to it through the OTel Context.
- llm_call:   step_start … llm_usage + step_finish (tokens, cost, model, provider, finish
              reason); stream items are message_update.
- tool:       tool_call, tool_execution_start, [tool_output per stream item], tool_execution_end,
              tool_result (IsError on exception or when the is_error extractor says so).
- subagent:   tool_call(subagent) … subagent_start … subagent_end … tool_result; LLM calls
              and tools inside it are the subagent's (agent="subagent").
- compaction: before_compact (extractors see the arguments only).
An llm_call, tool or subagent called outside any turn joins the open turn of its session, or
gets an implicit turn of its own.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable, Iterable

import wrapt

from kit_otel.model import events as ev
from kit_otel.translate.classify import split_model
from ._core import (Emitter, Frame, current_frame, current_role, enter,
                    instrumentation_enabled, leave)
from .baggage import ext_state_context, read_ext_state

ROLES = ("turn", "llm_call", "tool", "subagent", "compaction")
_COMMON = ("session_path", "session_id")
_USAGE = ("model", "provider", "usage", "input_tokens", "output_tokens", "cache_read_tokens",
          "cache_write_tokens", "cost", "finish_reason")
EXTRACTORS: dict[str, tuple[str, ...]] = {
    "turn": _COMMON + ("prompt", "response", "stop_reason", "chunk_text"),
    "llm_call": _COMMON + _USAGE + ("chunk_text",),
    "tool": _COMMON + ("tool_name", "tool_kind", "tool_call_id", "tool_input", "tool_output",
                       "is_error", "chunk_text"),
    "subagent": _COMMON + ("task", "response", "chunk_text"),
    "compaction": _COMMON + ("estimated_tokens", "context_limit", "usage_percent",
                             "message_count", "automatic"),
}
SOURCE = "python"
_MISSING = object()
_Event = ev.Event
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class EntryPointError(ValueError):
    pass


# ── configuration ───────────────────────────────────────────────────────────────────────────

@dataclass
class EntryPoint:
    """`target` ("module:Qualified.name") plays `role`; `extract` maps extractor names to specs.

    `stream=True` also wraps iterators/async iterators the target *returns* (generator functions
    and returned generator objects are always followed)."""

    target: str
    role: str
    stream: bool = False
    extract: dict[str, Any] = field(default_factory=dict)

    def __init__(self, target: str, role: str, *, stream: bool = False, **extract: Any):
        if not isinstance(target, str) or not _TARGET.match(target):
            raise EntryPointError(f"entry point target {target!r} is not 'module:Qualified.name'")
        if role not in ROLES:
            raise EntryPointError(f"entry point {target}: role {role!r} is not one of {ROLES}")
        unknown = set(extract) - set(EXTRACTORS[role])
        if unknown:
            raise EntryPointError(f"entry point {target}: extractor(s) {sorted(unknown)} do not "
                                  f"apply to role {role!r} (known: {EXTRACTORS[role]})")
        self.target, self.role, self.stream = target, role, bool(stream)
        self.extract = {k: v for k, v in extract.items() if v is not None}

    @property
    def module(self) -> str:
        return self.target.split(":", 1)[0]

    @property
    def qualname(self) -> str:
        return self.target.split(":", 1)[1]

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any]) -> "EntryPoint":
        data = dict(item)
        try:
            target, role = data.pop("target"), data.pop("role")
        except KeyError as exc:
            raise EntryPointError(f"entry point {item!r} lacks {exc.args[0]!r}") from None
        extract = data.pop("extract", {}) or {}
        return cls(target, role, stream=data.pop("stream", False), **data, **extract)


def parse_entry_points(value: Any) -> list[EntryPoint]:
    """EntryPoint objects from what users write: EntryPoints, mappings, or a
    "module:Qual=role,module:f=tool" string (the KIT_OTEL_ENTRY_POINTS form)."""
    if value is None:
        return []
    if isinstance(value, str):
        out = []
        for item in filter(None, (p.strip() for p in re.split(r"[,;\s]+", value))):
            target, sep, role = item.rpartition("=")
            if not sep:
                raise EntryPointError(f"entry point {item!r} is not 'module:Qualified.name=role'")
            out.append(EntryPoint(target, role))
        return out
    if isinstance(value, (EntryPoint, Mapping)):
        value = [value]
    return [v if isinstance(v, EntryPoint) else EntryPoint.from_mapping(v) for v in value]


def load_entry_points(path: str | os.PathLike) -> tuple[list[EntryPoint], dict[str, Any]]:
    """Entry points from a TOML (or .json) file: `[[entry_point]]` tables with `target`, `role`,
    optional `stream` and extractor keys. Top-level `session_path` is returned as an option."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if path.endswith(".json"):
        data = json.loads(raw)
    else:
        import tomllib
        data = tomllib.loads(raw.decode())
    items = data.get("entry_point", data.get("entry_points", []))
    try:
        points = parse_entry_points(items)
    except EntryPointError as exc:
        raise EntryPointError(f"{path}: {exc}") from None
    options = {k: data[k] for k in ("session_path",) if k in data}
    return points, options


# ── extractors ──────────────────────────────────────────────────────────────────────────────

class Call:
    """What an extractor sees of one instrumented call."""

    __slots__ = ("args", "kwargs", "instance", "result", "exception", "_params")

    def __init__(self, args: tuple, kwargs: dict, instance: Any, params: "_Params"):
        self.args, self.kwargs, self.instance = args, kwargs, instance
        self.result: Any = None
        self.exception: BaseException | None = None
        self._params = params

    def arg(self, name: str, default: Any = None) -> Any:
        return self._params.get(self, name, default)


class _Params:
    """Positions and defaults of the target's parameters (self/cls dropped for methods)."""

    def __init__(self, func: Any, drop_first: bool):
        self.index: dict[str, int] = {}
        self.defaults: dict[str, Any] = {}
        self.names: set[str] = set()
        self.open = True  # unknown signature or **kwargs: any name may be a keyword
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            return
        if drop_first and params and params[0].kind in (
                inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            params = params[1:]
        self.open = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        for i, p in enumerate(params):
            self.names.add(p.name)
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                          inspect.Parameter.POSITIONAL_OR_KEYWORD):
                self.index[p.name] = i
            if p.default is not inspect.Parameter.empty:
                self.defaults[p.name] = p.default

    def get(self, call: Call, name: str, default: Any = None) -> Any:
        i = self.index.get(name)
        if i is not None and i < len(call.args):
            return call.args[i]
        value = call.kwargs.get(name, _MISSING)
        if value is not _MISSING:
            return value
        return self.defaults.get(name, default)


_SEGMENT = re.compile(r"\.([A-Za-z_]\w*)|\[\s*(-?\d+|'[^']*'|\"[^\"]*\")\s*\]")
_ROOTS = {"result": lambda c: c.result, "return": lambda c: c.result,
          "self": lambda c: c.instance, "instance": lambda c: c.instance,
          "args": lambda c: c.args, "kwargs": lambda c: c.kwargs,
          "exception": lambda c: c.exception}


def compile_extractor(spec: Any, params: _Params, where: str) -> Callable[[Call], Any] | None:
    if spec is None:
        return None
    if callable(spec):
        return spec
    if isinstance(spec, (bool, int, float)):
        return lambda call, _v=spec: _v
    if not isinstance(spec, str):
        raise EntryPointError(f"{where}: extractor {spec!r} is not a callable, path or '=value'")
    if spec.startswith("="):
        return lambda call, _v=spec[1:]: _v
    if _TARGET.match(spec):  # "module:function"
        module, _, name = spec.partition(":")
        obj: Any = import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise EntryPointError(f"{where}: {spec} is not callable")
        return obj
    m = re.match(r"\s*([A-Za-z_]\w*)", spec)
    if not m:
        raise EntryPointError(f"{where}: cannot parse extractor path {spec!r}")
    root_name, pos, steps = m.group(1), m.end(), []
    while pos < len(spec):
        seg = _SEGMENT.match(spec, pos)
        if not seg:
            raise EntryPointError(f"{where}: cannot parse extractor path {spec!r} at {pos}")
        if seg.group(1) is not None:
            steps.append((True, seg.group(1)))
        else:
            key = seg.group(2)
            steps.append((False, int(key) if key[0] not in "'\"" else key[1:-1]))
        pos = seg.end()
    root = _ROOTS.get(root_name)
    if root is None:
        if params.names and root_name not in params.names and not params.open:
            raise EntryPointError(f"{where}: {root_name!r} is not a parameter of the target "
                                  f"(parameters: {sorted(params.names)}; or use result, self, "
                                  f"args, kwargs)")
        root = lambda c, _n=root_name: params.get(c, _n)  # noqa: E731
    if not steps:
        return root

    def path(call: Call) -> Any:
        obj = root(call)
        for is_attr, key in steps:
            if obj is None:
                return None
            if is_attr:
                obj = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
            else:
                try:
                    obj = obj[key]
                except (LookupError, TypeError):
                    return None
        return obj
    return path


def _field(obj: Any, names: Iterable[str]) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


_IN = ("input_tokens", "prompt_tokens", "inputTokens", "promptTokens", "prompt_token_count")
_OUT = ("output_tokens", "completion_tokens", "outputTokens", "completionTokens",
        "candidates_token_count")
_CACHE_READ = ("cache_read_input_tokens", "cache_read_tokens", "cached_read_tokens",
               "cacheReadTokens", "cachedReadTokens", "cacheReadInputTokens", "cached_tokens",
               "cached_content_token_count")
_CACHE_WRITE = ("cache_creation_input_tokens", "cache_write_tokens", "cached_write_tokens",
                "cacheWriteTokens", "cachedWriteTokens", "cacheCreationInputTokens")


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return None


def normalize_usage(usage: Any) -> tuple[int | None, int | None, int | None, int | None]:
    """(input, output, cache_read, cache_write) tokens from the usage objects of common SDKs
    (Anthropic, OpenAI chat/responses, Gemini, plain dicts) or an (in, out[, cr, cw]) tuple."""
    if usage is None:
        return None, None, None, None
    if isinstance(usage, (tuple, list)):
        vals = [_int(v) for v in usage[:4]] + [None] * 4
        return vals[0], vals[1], vals[2], vals[3]
    cache_read = _int(_field(usage, _CACHE_READ))
    if cache_read is None:  # OpenAI: usage.prompt_tokens_details.cached_tokens
        details = _field(usage, ("prompt_tokens_details", "input_tokens_details"))
        if details is not None:
            cache_read = _int(_field(details, ("cached_tokens",)))
    return (_int(_field(usage, _IN)), _int(_field(usage, _OUT)), cache_read,
            _int(_field(usage, _CACHE_WRITE)))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return ""


def _dump(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except Exception:  # noqa: BLE001
        return repr(value)


def _error_text(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# ── one wrapped target ──────────────────────────────────────────────────────────────────────

class _Target:
    """A declared entry point bound to its function: compiled extractors and the wrapper."""

    def __init__(self, ep: EntryPoint, original: Any, owner: Any, instr: "EntryPointInstrumentation"):
        self.ep, self.instr, self.role = ep, instr, ep.role
        func = original
        drop_first = False
        if isinstance(original, staticmethod):
            func = original.__func__
        elif isinstance(original, classmethod):
            func, drop_first = original.__func__, True
        elif inspect.isclass(owner):
            drop_first = True  # a plain function on a class: called with self
        self.func = func
        self.name = getattr(func, "__name__", ep.qualname.rsplit(".", 1)[-1])
        self.is_coroutine = inspect.iscoroutinefunction(func)
        self.is_generator = inspect.isgeneratorfunction(func)
        self.is_async_generator = inspect.isasyncgenfunction(func)
        self.params = _Params(func, drop_first)
        self.x = {name: compile_extractor(spec, self.params, f"entry point {ep.target}")
                  for name, spec in ep.extract.items()}

    def get(self, name: str, call: Call, default: Any = None) -> Any:
        fn = self.x.get(name)
        if fn is None:
            return default
        try:
            value = fn(call)
        except Exception:  # noqa: BLE001 - an extractor failing gives "unknown", not a crash
            self.instr.extractor_failures += 1
            return default
        return default if value is None else value

    # the wrapt wrapper
    def __call__(self, wrapped, instance, args, kwargs):
        instr = self.instr
        if not instr.emitter.active:
            return wrapped(*args, **kwargs)
        if self.is_coroutine:
            return self._run_async(wrapped, instance, args, kwargs)
        inv = instr.emitter.run(SOURCE, _INVOCATIONS[self.role], self, Call(args, kwargs, instance,
                                                                            self.params))
        if inv is None:
            return wrapped(*args, **kwargs)
        if self.is_generator or self.is_async_generator:
            try:
                gen = wrapped(*args, **kwargs)
            except BaseException as exc:
                inv.fail(exc)
                raise
            return _stream(gen, inv)
        token = inv.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            leave(token)
            inv.fail(exc)
            raise
        leave(token)
        if self.ep.stream and _is_stream(result):
            inv.item_mode()
            return _stream(result, inv)
        inv.succeed(result)
        return result

    async def _run_async(self, wrapped, instance, args, kwargs):
        inv = self.instr.emitter.run(SOURCE, _INVOCATIONS[self.role], self,
                                     Call(args, kwargs, instance, self.params))
        if inv is None:
            return await wrapped(*args, **kwargs)
        token = inv.enter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            leave(token)
            inv.fail(exc)
            raise
        leave(token)
        if self.ep.stream and _is_stream(result):
            inv.item_mode()
            return _stream(result, inv)
        inv.succeed(result)
        return result


def _is_stream(value: Any) -> bool:
    if isinstance(value, (str, bytes, bytearray, Mapping, list, tuple)):
        return False
    return hasattr(value, "__next__") or hasattr(value, "__anext__")


# ── invocations: one instrumented call of one role ──────────────────────────────────────────
# begin/item/finish run under the emitter's lock (via Emitter.run) and never raise out of it.

class _Invocation:
    __slots__ = ("t", "em", "call", "frame", "path", "sid", "span", "done", "implicit",
                 "ts_start", "streaming", "last", "chunks", "_baggage")

    def __init__(self, target: _Target, call: Call):
        self.t, self.em, self.call = target, target.instr.emitter, call
        self.done = False
        self.implicit = None  # the implicit turn's Frame, when this call made one
        self.span = None
        self.streaming = False
        self.last: dict[str, Any] = {}
        self.chunks: list[str] | None = None
        self._baggage = None
        self.ts_start = time.time_ns()
        if self.NESTS_AS_ONE and current_role() == target.role:
            # e.g. a declared SDK method calling another declared one: one LLM call, not two
            self.done, self.frame = True, None
            return
        self.frame = self._frame()
        self.path, self.sid = self.frame.path, self.frame.session_id
        self.begin()

    # where this call reports to
    def _frame(self) -> Frame:
        frame = current_frame()
        if frame is not None:
            return frame
        t, call = self.t, self.call
        path = _text(t.get("session_path", call)) or t.instr.default_session_path
        sid = _text(t.get("session_id", call))
        frame = t.instr.open_frames.get(path)  # joins the open turn of its session (threads)
        if frame is not None:
            return frame
        frame = Frame(path, sid, SOURCE)
        self.implicit = frame
        _begin_turn(self, frame, "")
        return frame

    NESTS_AS_ONE = False  # a call of this role inside one of the same role is part of it

    def begin(self) -> None:
        pass

    def enter(self) -> object:
        if self.frame is None:
            return None
        try:
            return enter(self.span, self.frame, self._baggage, self.t.role)
        except Exception:  # noqa: BLE001
            return None

    def item_mode(self) -> None:
        self.streaming = True

    # public entry points from the wrapper: each runs under the emitter's lock
    def succeed(self, result: Any) -> None:
        self.em.run(SOURCE, self._finish, result, None, "")

    def fail(self, exc: BaseException) -> None:
        self.em.run(SOURCE, self._finish, None, exc, "")

    def item(self, item: Any) -> None:
        self.em.run(SOURCE, self._item, item)

    def end_stream(self, how: str) -> None:
        """`exhausted`, `closed` (early) or `abandoned` (garbage-collected unfinished)."""
        if how == "abandoned":  # from __del__: the collector may run inside the translator
            self.em.run_later(SOURCE, self._finish, None, None, how)
        else:
            self.em.run(SOURCE, self._finish, None, None, how)

    def _finish(self, result: Any, exc: BaseException | None, how: str) -> None:
        if self.done:
            return
        self.done = True
        call = self.call
        if how:
            call.result = None
        else:
            call.result = result
        call.exception = exc
        try:
            self.finish(result, exc, how)
        finally:
            if self.implicit is not None:
                stop = "error" if exc is not None else (
                    "cancelled" if how in ("closed", "abandoned") else self.implicit_stop())
                _end_turn(self, self.implicit, stop, "", exc)  # `exc` once, if not reported

    def _item(self, item: Any) -> None:
        if self.done:
            return
        call = self.call
        call.result = item
        for name in ("model", "provider", "usage", "input_tokens", "output_tokens",
                     "cache_read_tokens", "cache_write_tokens", "cost", "finish_reason"):
            if name in self.t.x:
                value = self.t.get(name, call)
                if value is not None:
                    self.last[name] = value
        text = _text(self.t.get("chunk_text", call, item if isinstance(item, str) else None))
        self.on_item(text)

    def on_item(self, text: str) -> None:
        pass

    def finish(self, result: Any, exc: BaseException | None, how: str) -> None:
        pass

    def implicit_stop(self) -> str:
        return "completed"

    def value(self, name: str, default: Any = None) -> Any:
        """An extractor's value: from the stream's items (last wins) or the call/result."""
        if name not in self.t.x:
            return default
        if name in self.last:
            return self.last[name]
        return self.t.get(name, self.call, default)

    def error_event(self, exc: BaseException, child: bool = False) -> None:
        """The `error` event of an exception — once, however many instrumented calls it
        propagates through (as KIT reports one error for one failure)."""
        frame = self.frame
        if frame.already_reported(exc):
            return
        self.feed("error", ev.Error(Error=_error_text(exc)), child)
        frame.mark_reported(exc)

    def feed(self, type_: str, data: ev.EventData, child: bool = False, ts_ns: int = 0,
             state: dict[str, str] | None = None) -> None:
        em = self.em
        if child:  # an event of the subagent's own agent loop
            event = _Event(type=type_, data=data, ts_ns=ts_ns or time.time_ns(), pid=em.pid,
                           source=SOURCE, agent="subagent")
        else:
            event = _Event(type=type_, data=data, ts_ns=ts_ns or time.time_ns(), pid=em.pid,
                           session_path=self.path, session_id=self.sid, source=SOURCE,
                           agent="main", state=state)
        em.translator.process(event)


def _begin_turn(inv: _Invocation, frame: Frame, prompt: str) -> Any:
    """input, agent_start (with the session's ext-state), message_start; returns the baggage
    context to run the turn in, if the session has state."""
    em, path, sid = inv.em, frame.path, frame.session_id
    instr = inv.t.instr
    state = read_ext_state(path) if path and instr.ext_state else None
    ts = inv.ts_start
    em.feed("input", ev.Input(Text=prompt, Source=SOURCE), path, sid, SOURCE, ts_ns=ts)
    em.feed("agent_start", ev.AgentStart(Prompt=prompt), path, sid, SOURCE, ts_ns=ts, state=state)
    em.feed("message_start", ev.MessageStart(), path, sid, SOURCE, ts_ns=ts)
    instr.open_frames[path] = frame
    inv.span = em.turn_span(path)
    if state:
        inv._baggage = ext_state_context(state, instr.state_policy)
    return state


def _end_turn(inv: _Invocation, frame: Frame, stop: str, response: str,
              exc: BaseException | None) -> None:
    em, path, sid = inv.em, frame.path, frame.session_id
    instr = inv.t.instr
    if instr.open_frames.get(path) is frame:
        del instr.open_frames[path]
    state = read_ext_state(path) if path and instr.ext_state else None
    if exc is not None:
        if not frame.already_reported(exc):
            em.feed("error", ev.Error(Error=_error_text(exc)), path, sid, SOURCE)
    elif stop not in ("error", "cancelled"):
        em.feed("message_end", ev.MessageEnd(Content=response), path, sid, SOURCE)
    em.feed("agent_end", ev.AgentEnd(Response=response, StopReason=stop), path, sid, SOURCE,
            state=state)


class _TurnCall(_Invocation):
    __slots__ = ()

    def _frame(self) -> Frame:
        t, call = self.t, self.call
        outer = current_frame()
        path = _text(t.get("session_path", call)) or (
            outer.path if outer is not None else t.instr.default_session_path)
        sid = _text(t.get("session_id", call)) or (outer.session_id if outer is not None else "")
        return Frame(path, sid, SOURCE)

    def begin(self) -> None:
        t, call = self.t, self.call
        if self.em.in_turn(self.path):  # a turn inside a turn of the same session: not a new one
            self.done = True
            self.frame = current_frame() or self.frame
            return
        prompt = t.get("prompt", call)
        if prompt is None and call.args and isinstance(call.args[0], str):
            prompt = call.args[0]
        self.chunks = []
        _begin_turn(self, self.frame, _text(prompt))

    def enter(self) -> object:
        if self.done and self.span is None:
            return None
        return super().enter()

    def on_item(self, text: str) -> None:
        if text:
            self.chunks.append(text)

    def finish(self, result, exc, how) -> None:
        call = self.call
        if how:
            response = "".join(self.chunks or ())
            stop = "cancelled" if how != "exhausted" else _text(self.value("stop_reason")) or "completed"
        else:
            response = _text(self.t.get("response", call, result if isinstance(result, str) else None))
            stop = "error" if exc is not None else (_text(self.t.get("stop_reason", call)) or "completed")
        _end_turn(self, self.frame, stop, response, exc)


_TOKEN_EXTRACTORS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


class _LLMCall(_Invocation):
    __slots__ = ("number", "child")
    NESTS_AS_ONE = True

    def begin(self) -> None:
        frame = self.frame
        self.child = bool(frame.sub)
        self.number = frame.next_step()
        self.feed("step_start", ev.StepStart(StepNumber=self.number), self.child, self.ts_start)
        self.span = self.em.step_span(self.path, frame.sub)

    def on_item(self, text: str) -> None:
        self.feed("message_update", ev.MessageUpdate(Chunk=text), self.child)

    def implicit_stop(self) -> str:
        return _text(self.value("finish_reason")) or "completed"

    def finish(self, result, exc, how) -> None:
        x = self.t.x
        tokens = list(normalize_usage(self.value("usage")))
        for i, name in enumerate(_TOKEN_EXTRACTORS):
            if name in x:
                explicit = _int(self.value(name))
                if explicit is not None:
                    tokens[i] = explicit
        tokens = [v or 0 for v in tokens]
        cost = self.value("cost")
        try:
            cost = float(cost) if cost is not None else 0.0
        except (TypeError, ValueError):
            cost = 0.0
        provider, model = split_model(_text(self.value("model")))
        if "provider" in x:
            provider = _text(self.value("provider")) or provider
        if exc is not None:
            finish = "error"  # the error event, in the open stream, makes the chat span ERROR
            self.error_event(exc, self.child)
        elif how in ("closed", "abandoned"):
            finish = _text(self.value("finish_reason")) or "cancelled"
        else:
            finish = _text(self.value("finish_reason")) or "stop"
        self.feed("llm_usage", ev.LLMUsage(
            InputTokens=tokens[0], OutputTokens=tokens[1], CacheReadTokens=tokens[2],
            CacheWriteTokens=tokens[3], Cost=cost, Model=model, Provider=provider,
            StepNumber=self.number, FinishReason=finish), self.child)
        self.feed("step_finish", ev.StepFinish(
            StepNumber=self.number, FinishReason=finish, InputTokens=tokens[0],
            OutputTokens=tokens[1], CacheReadTokens=tokens[2], CacheWriteTokens=tokens[3]),
            self.child)


class _ToolCall(_Invocation):
    __slots__ = ("name", "call_id", "sub", "input", "kind")
    NESTS_AS_ONE = True

    def begin(self) -> None:
        t, call, frame = self.t, self.call, self.frame
        x = t.x
        self.name = (_text(t.get("tool_name", call)) or t.name) if "tool_name" in x else t.name
        self.sub = frame.sub
        capture = self.em.translator.content.capture
        self.input = _dump(t.get("tool_input", call, call.kwargs or call.args or None)) \
            if capture else ""
        self.chunks = []
        if self.sub:
            self.call_id = self.sub
            self._chunk("tool_call", ToolArgs=self.input, ts_ns=self.ts_start)
            self._chunk("tool_execution_start", ts_ns=self.ts_start)
            self.span = self.em.chunk_tool_span(self.path, self.sub, self.name)
            return
        self.call_id = (_text(t.get("tool_call_id", call)) if "tool_call_id" in x else "") \
            or self.em.new_id("call")
        kind = self.kind = (_text(t.get("tool_kind", call)) if "tool_kind" in x else "") \
            or "function"
        ts = self.ts_start
        self.feed("tool_call", ev.ToolCall(ToolName=self.name, ToolCallID=self.call_id,
                                           ToolKind=kind, Input=self.input, Source=SOURCE),
                  ts_ns=ts)
        self.feed("tool_execution_start", ev.ToolExecutionStart(
            ToolCallID=self.call_id, ToolName=self.name, ToolKind=kind), ts_ns=ts)
        self.span = self.em.tool_span(self.path, self.call_id)

    def _chunk(self, chunk_type: str, ts_ns: int = 0, **fields) -> None:
        self.em.feed("subagent_chunk", ev.SubagentChunk(
            ToolCallID=self.sub, ChunkType=chunk_type, ToolName=self.name, **fields),
            self.path, self.sid, SOURCE, ts_ns=ts_ns)

    def on_item(self, text: str) -> None:
        if self.sub:
            return
        self.chunks.append(text)
        self.feed("tool_output", ev.ToolOutput(ToolCallID=self.call_id, ToolName=self.name,
                                               Chunk=text))

    def finish(self, result, exc, how) -> None:
        t, call = self.t, self.call
        if exc is not None:
            is_error, content = True, _error_text(exc)
            if self.span is not None:
                self.span.set_attribute("exception.type", type(exc).__qualname__)
            self.error_event(exc, bool(self.sub))
        else:
            x = t.x
            is_error = bool(t.get("is_error", call, False)) if "is_error" in x else False
            out = t.get("tool_output", call) if "tool_output" in x else None
            if out is None:
                out = "".join(self.chunks) if how else result
            content = _text(out) if isinstance(out, (str, bytes)) else (
                _dump(out) if self.em.translator.content.capture else "")
        ts = time.time_ns()
        if self.sub:
            self._chunk("tool_execution_end", ts_ns=ts)
            self._chunk("tool_result", ts_ns=ts, ToolResult=content, IsError=is_error)
            return
        self.feed("tool_execution_end", ev.ToolExecutionEnd(
            ToolCallID=self.call_id, ToolName=self.name, ToolKind=self.kind), ts_ns=ts)
        self.feed("tool_result", ev.ToolResult(
            ToolCallID=self.call_id, ToolName=self.name, ToolKind=self.kind, Input=self.input,
            Content=content, IsError=is_error), ts_ns=ts)


class _SubagentCall(_Invocation):
    __slots__ = ("call_id", "task", "nested")

    def begin(self) -> None:
        t, call, frame = self.t, self.call, self.frame
        task = t.get("task", call)
        if task is None and call.args and isinstance(call.args[0], str):
            task = call.args[0]
        self.task = _text(task)
        self.chunks = []
        self.nested = bool(frame.sub)
        if self.nested:  # a subagent of a subagent: one of the outer subagent's tool calls
            self.call_id = frame.sub
            self.em.feed("subagent_chunk", ev.SubagentChunk(
                ToolCallID=frame.sub, ChunkType="tool_call", ToolName="subagent"),
                self.path, self.sid, SOURCE, ts_ns=self.ts_start)
            self.span = self.em.chunk_tool_span(self.path, frame.sub, "subagent")
            return
        self.call_id = self.em.new_id("subagent")
        ts = self.ts_start
        self.feed("tool_call", ev.ToolCall(ToolName="subagent", ToolCallID=self.call_id,
                                           ToolKind="agent", Source=SOURCE), ts_ns=ts)
        self.feed("tool_execution_start", ev.ToolExecutionStart(
            ToolCallID=self.call_id, ToolName="subagent", ToolKind="agent"), ts_ns=ts)
        self.feed("subagent_start", ev.SubagentStart(ToolCallID=self.call_id, Task=self.task),
                  ts_ns=ts)
        self.span = self.em.subagent_span(self.path, self.call_id)
        self.frame = Frame(self.path, self.sid, SOURCE, sub=self.call_id, parent=frame)

    def on_item(self, text: str) -> None:
        self.chunks.append(text)
        if not self.nested:
            self.feed("subagent_chunk", ev.SubagentChunk(
                ToolCallID=self.call_id, Task="", ChunkType="text", Content=text))

    def finish(self, result, exc, how) -> None:
        call = self.call
        error = _error_text(exc) if exc is not None else ""
        if how:
            response = "".join(self.chunks)
        else:
            response = _text(self.t.get("response", call, result if isinstance(result, str) else None))
        if exc is not None:
            self.error_event(exc, child=True)  # the subagent's own error
        if self.nested:
            self.em.feed("subagent_chunk", ev.SubagentChunk(
                ToolCallID=self.call_id, ChunkType="tool_result", ToolName="subagent",
                ToolResult=error or response, IsError=exc is not None),
                self.path, self.sid, SOURCE)
            return
        self.feed("subagent_end", ev.SubagentEnd(ToolCallID=self.call_id, Task="",
                                                 Response=response, ErrorMsg=error))
        self.feed("tool_execution_end", ev.ToolExecutionEnd(
            ToolCallID=self.call_id, ToolName="subagent", ToolKind="agent"))
        self.feed("tool_result", ev.ToolResult(
            ToolCallID=self.call_id, ToolName="subagent", ToolKind="agent",
            Content=error or response, IsError=exc is not None))


class _CompactionCall(_Invocation):
    __slots__ = ()

    def _frame(self) -> Frame:
        frame = current_frame()
        if frame is not None:
            return frame
        t, call = self.t, self.call
        path = _text(t.get("session_path", call)) or t.instr.default_session_path
        return t.instr.open_frames.get(path) or Frame(path, _text(t.get("session_id", call)), SOURCE)

    def begin(self) -> None:
        t, call = self.t, self.call

        def num(name, conv):
            try:
                value = t.get(name, call)
                return conv(value) if value is not None else conv()
            except (TypeError, ValueError):
                return conv()
        self.feed("before_compact", ev.BeforeCompact(
            EstimatedTokens=num("estimated_tokens", int), ContextLimit=num("context_limit", int),
            UsagePercent=num("usage_percent", float), MessageCount=num("message_count", int),
            IsAutomatic=bool(t.get("automatic", call, False))), bool(self.frame.sub), self.ts_start)

    def enter(self) -> object:
        return None

    def finish(self, result, exc, how) -> None:
        if exc is not None:
            self.error_event(exc, bool(self.frame.sub))


_INVOCATIONS: dict[str, type[_Invocation]] = {
    "turn": _TurnCall, "llm_call": _LLMCall, "tool": _ToolCall, "subagent": _SubagentCall,
    "compaction": _CompactionCall,
}


# ── streams ─────────────────────────────────────────────────────────────────────────────────

def _stream(obj: Any, inv: _Invocation) -> Any:
    inv.streaming = True
    if hasattr(obj, "__anext__"):
        return _AsyncStream(obj, inv)
    return _SyncStream(obj, inv)


class _SyncStream(wrapt.ObjectProxy):
    """A generator/iterator whose instrumented call ends when it is exhausted, closed, fails or
    is garbage-collected — exactly once. Each step runs with the call's span current."""

    def __init__(self, wrapped: Any, inv: _Invocation):
        super().__init__(wrapped)
        self._self_inv = inv

    def __iter__(self):
        return self

    def _step(self, method: str, *args: Any) -> Any:
        inv = self._self_inv
        if inv.done:
            return getattr(self.__wrapped__, method)(*args)
        token = inv.enter()
        try:
            item = getattr(self.__wrapped__, method)(*args)
        except StopIteration:
            leave(token)
            inv.end_stream("exhausted")
            raise
        except BaseException as exc:
            leave(token)
            if isinstance(exc, GeneratorExit):
                inv.end_stream("closed")
            else:
                inv.fail(exc)
            raise
        leave(token)
        inv.item(item)
        return item

    def __next__(self):
        return self._step("__next__")

    def send(self, value):
        return self._step("send", value)

    def throw(self, *args):
        return self._step("throw", *args)

    def close(self):
        inv = self._self_inv
        try:
            close = getattr(self.__wrapped__, "close", None)
            if close is not None:
                close()
        finally:
            if not inv.done:
                inv.end_stream("closed")

    def __enter__(self):
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, *exc_info):
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            if not self._self_inv.done:
                self._self_inv.end_stream("closed")

    def __del__(self):
        inv = getattr(self, "_self_inv", None)
        if inv is not None and not inv.done:
            inv.end_stream("abandoned")


class _AsyncStream(wrapt.ObjectProxy):
    """The async twin of `_SyncStream`."""

    def __init__(self, wrapped: Any, inv: _Invocation):
        super().__init__(wrapped)
        self._self_inv = inv

    def __aiter__(self):
        return self

    async def _step(self, method: str, *args: Any) -> Any:
        inv = self._self_inv
        if inv.done:
            return await getattr(self.__wrapped__, method)(*args)
        token = inv.enter()
        try:
            item = await getattr(self.__wrapped__, method)(*args)
        except StopAsyncIteration:
            leave(token)
            inv.end_stream("exhausted")
            raise
        except BaseException as exc:
            leave(token)
            if isinstance(exc, GeneratorExit):
                inv.end_stream("closed")
            else:
                inv.fail(exc)
            raise
        leave(token)
        inv.item(item)
        return item

    def __anext__(self):
        return self._step("__anext__")

    def asend(self, value):
        return self._step("asend", value)

    def athrow(self, *args):
        return self._step("athrow", *args)

    async def aclose(self):
        inv = self._self_inv
        try:
            aclose = getattr(self.__wrapped__, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if not inv.done:
                inv.end_stream("closed")

    async def __aenter__(self):
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, *exc_info):
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            if not self._self_inv.done:
                self._self_inv.end_stream("closed")

    def __del__(self):
        inv = getattr(self, "_self_inv", None)
        if inv is not None and not inv.done:
            inv.end_stream("abandoned")


# ── installing and removing ─────────────────────────────────────────────────────────────────

class EntryPointInstrumentation:
    """Wraps declared entry points (now, or when their module is first imported)."""

    def __init__(self, emitter: Emitter, *, default_session_path: str = "",
                 ext_state: bool = True, state_policy=None):
        self.emitter = emitter
        self.default_session_path = default_session_path
        self.ext_state = ext_state
        self.state_policy = state_policy
        self.open_frames: dict[str, Frame] = {}
        self.installed: list[tuple[Any, str, Any]] = []  # (parent, attribute, wrapper)
        self.pending: set[str] = set()  # targets waiting for their module's import
        self.errors: list[str] = []
        self.extractor_failures = 0
        self.active = True

    def install(self, points: Iterable[EntryPoint]) -> None:
        seen = set()
        for ep in points:
            if ep.target in seen:
                continue
            seen.add(ep.target)
            module = sys.modules.get(ep.module)
            if module is not None:
                self._wrap(ep, module)
            else:
                self.pending.add(ep.target)
                wrapt.register_post_import_hook(
                    lambda mod, _ep=ep: self._on_import(_ep, mod), ep.module)

    def _on_import(self, ep: EntryPoint, module: types.ModuleType) -> None:
        if self.active and ep.target in self.pending:
            self.pending.discard(ep.target)
            self._wrap(ep, module)

    def _wrap(self, ep: EntryPoint, module: types.ModuleType) -> None:
        try:
            parent, attribute, original = wrapt.resolve_path(module, ep.qualname)
            if isinstance(original, wrapt.FunctionWrapper) and isinstance(
                    getattr(original, "_self_wrapper", None), _Target):
                return  # already ours (idempotent)
            target = _Target(ep, original, parent, self)
            wrapper = wrapt.wrap_object(parent, attribute, wrapt.FunctionWrapper,
                                        (target, instrumentation_enabled))
            self.installed.append((parent, attribute, wrapper))
        except Exception as exc:  # noqa: BLE001 - a bad declaration must not break the host
            message = f"entry point {ep.target} ({ep.role}) not instrumented: {exc}"
            self.errors.append(message)
            from ._core import log
            log.error(message)

    def uninstall(self) -> None:
        from opentelemetry.instrumentation.utils import unwrap
        self.active = False
        self.pending.clear()
        for parent, attribute, wrapper in reversed(self.installed):
            try:
                if inspect.isclass(parent):
                    if parent.__dict__.get(attribute) is wrapper:
                        setattr(parent, attribute, wrapper.__wrapped__)
                else:
                    unwrap(parent, attribute)
            except Exception as exc:  # noqa: BLE001
                self.emitter.failed(exc, SOURCE)
        self.installed.clear()
        self.open_frames.clear()

