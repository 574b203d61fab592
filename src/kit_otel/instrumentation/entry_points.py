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
import sys
import types
from collections.abc import Mapping
from typing import Any, Iterable

import wrapt

from ._core import Emitter, Frame, instrumentation_enabled, leave
from .declarations import EntryPoint, SOURCE
from .extractors import Call, compile_extractor, Params
from .invocations import (
    CompactionCall, Invocation, LLMCall, SubagentCall, ToolCall, TurnCall,
)
from .streams import wrap_stream


class WrappedTarget:
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
        self.params = Params(func, drop_first)
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
            return wrap_stream(gen, inv)
        token = inv.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            leave(token)
            inv.fail(exc)
            raise
        leave(token)
        if self.ep.stream and is_stream(result):
            inv.item_mode()
            return wrap_stream(result, inv)
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
        if self.ep.stream and is_stream(result):
            inv.item_mode()
            return wrap_stream(result, inv)
        inv.succeed(result)
        return result


def is_stream(value: Any) -> bool:
    if isinstance(value, (str, bytes, bytearray, Mapping, list, tuple)):
        return False
    return hasattr(value, "__next__") or hasattr(value, "__anext__")


_INVOCATIONS: dict[str, type[Invocation]] = {
    "turn": TurnCall, "llm_call": LLMCall, "tool": ToolCall, "subagent": SubagentCall,
    "compaction": CompactionCall,
}


class EntryPointInstrumentation:
    """Wraps declared entry points (now, or when their module is first imported)."""

    def __init__(self, emitter: Emitter, *, default_session_path: str = "",
                 ext_state: bool = True, state_policy=None):
        self.emitter = emitter
        self.default_session_path = default_session_path
        self.ext_state = ext_state
        self.state_policy = state_policy
        self.open_frames: dict[str, Frame] = {}
        self.installed: list[tuple[Any, str, Any, bool]] = []  # (parent, attribute, wrapper, own)
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
                    getattr(original, "_self_wrapper", None), WrappedTarget):
                return  # already ours (idempotent)
            target = WrappedTarget(ep, original, parent, self)
            # whether the attribute was the parent's own (not inherited): uninstall restores
            # exactly that, instead of leaving a copy of an inherited method behind
            own = attribute in getattr(parent, "__dict__", {})
            wrapper = wrapt.wrap_object(parent, attribute, wrapt.FunctionWrapper,
                                        (target, instrumentation_enabled))
            self.installed.append((parent, attribute, wrapper, own))
        except Exception as exc:  # noqa: BLE001 - a bad declaration must not break the host
            message = f"entry point {ep.target} ({ep.role}) not instrumented: {exc}"
            self.errors.append(message)
            from ._core import log
            log.error(message)

    def uninstall(self) -> None:
        from opentelemetry.instrumentation.utils import unwrap
        self.active = False
        self.pending.clear()
        for parent, attribute, wrapper, own in reversed(self.installed):
            try:
                if not own and getattr(parent, "__dict__", {}).get(attribute) is wrapper:
                    delattr(parent, attribute)  # inherited: the base's (current) one shows again
                elif inspect.isclass(parent):
                    if parent.__dict__.get(attribute) is wrapper:
                        setattr(parent, attribute, wrapper.__wrapped__)
                else:
                    unwrap(parent, attribute)
            except Exception as exc:  # noqa: BLE001
                self.emitter.failed(exc, SOURCE)
        self.installed.clear()
        self.open_frames.clear()
