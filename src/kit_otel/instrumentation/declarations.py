"""Declared entry points: `EntryPoint` (a target `module:qualname`, its role, its
extractors), parsed from code or from a TOML/JSON file, with one clear error per mistake."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SOURCE = "python"


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


TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class EntryPointError(ValueError):
    pass


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
        if not isinstance(target, str) or not TARGET_PATTERN.match(target):
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
