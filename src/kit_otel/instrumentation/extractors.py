"""Extractors: what an entry point reads from a call — callables, `"module:function"`
strings, `"=literal"` constants or dotted paths rooted at a parameter, `result`, `self`, `args`
or `kwargs` — compiled once, and the usage shapes of the common LLM SDKs normalized to KIT's
four token counts. A path that finds nothing gives None, never an error."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from importlib import import_module
from typing import Any, Callable, Iterable

from .declarations import EntryPointError, TARGET_PATTERN

MISSING = object()


class Call:
    """What an extractor sees of one instrumented call."""

    __slots__ = ("args", "kwargs", "instance", "result", "exception", "_params")

    def __init__(self, args: tuple, kwargs: dict, instance: Any, params: "Params"):
        self.args, self.kwargs, self.instance = args, kwargs, instance
        self.result: Any = None
        self.exception: BaseException | None = None
        self._params = params

    def arg(self, name: str, default: Any = None) -> Any:
        return self._params.get(self, name, default)


class Params:
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
        value = call.kwargs.get(name, MISSING)
        if value is not MISSING:
            return value
        return self.defaults.get(name, default)


_SEGMENT = re.compile(r"\.([A-Za-z_]\w*)|\[\s*(-?\d+|'[^']*'|\"[^\"]*\")\s*\]")


_ROOTS = {"result": lambda c: c.result, "return": lambda c: c.result,
          "self": lambda c: c.instance, "instance": lambda c: c.instance,
          "args": lambda c: c.args, "kwargs": lambda c: c.kwargs,
          "exception": lambda c: c.exception}


def compile_extractor(spec: Any, params: Params, where: str) -> Callable[[Call], Any] | None:
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
    if TARGET_PATTERN.match(spec):  # "module:function"
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


def as_int(value: Any) -> int | None:
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
        vals = [as_int(v) for v in usage[:4]] + [None] * 4
        return vals[0], vals[1], vals[2], vals[3]
    cache_read = as_int(_field(usage, _CACHE_READ))
    if cache_read is None:  # OpenAI: usage.prompt_tokens_details.cached_tokens
        details = _field(usage, ("prompt_tokens_details", "input_tokens_details"))
        if details is not None:
            cache_read = as_int(_field(details, ("cached_tokens",)))
    return (as_int(_field(usage, _IN)), as_int(_field(usage, _OUT)), cache_read,
            as_int(_field(usage, _CACHE_WRITE)))


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return ""


def dump(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except Exception:  # noqa: BLE001
        return repr(value)


def error_text(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
