"""NDJSON (contract v1) → `Event`, with errors that name the place: source, line, field, reason.

A bad line never stops a stream: `iter_events` yields a `DecodeError` for it and goes on with
the next line, so the good events around it are processed normally.
"""

from __future__ import annotations

import math
import re
from itertools import accumulate
from dataclasses import dataclass
from typing import IO, Annotated, Any, Iterable, Iterator

import msgspec

from kit_otel.model.events import (DATA_TYPES, FORMAT_VERSION, INT64_MAX, MAX_COUNT, MAX_NAME_CHARS, AgentEnd, Count, Event,
                     EventData, Int, Name, PathText, StateMap, UnknownData)
from kit_otel.model.timestamps import MAX_TS_NS, format_ts, parse_ts

DEFAULT_MAX_LINE_BYTES = 1 << 20
# KIT's deepest real structure is a tool's ParsedArgs (JSON a model wrote); a few levels is
# typical, 64 is generous, and it keeps every recursive walk far below Python's stack limit.
MAX_NESTING_DEPTH = 64


class _Wire(msgspec.Struct, kw_only=True):
    """The envelope as it is on the wire; `data` stays raw until `type` says what it is."""

    v: Int
    ts: Annotated[str, msgspec.Meta(max_length=64)]
    type: Name
    seq: Count = 0
    pid: Int = 0
    session_path: PathText = ""
    data: msgspec.Raw = msgspec.Raw(b"{}")
    session_id: Name = ""
    source: Name = ""
    agent: Name = ""
    parent_tool_call_id: Name = ""
    kit_version: Name = ""
    dropped: Count = 0
    state: StateMap | None = None


@dataclass(frozen=True)
class DecodeError:
    """Why one line was rejected. `reason_code` is the low-cardinality label for self-metrics."""

    source: str
    lineno: int
    field: str
    reason: str
    reason_code: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.lineno}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class DecodeFailure(ValueError):
    """Raised by `decode_line`; carries the `DecodeError`."""

    def __init__(self, error: DecodeError):
        super().__init__(str(error))
        self.error = error


_PATH_RE = re.compile(r" - at `\$\.?([^`]*)`$")
_wire_decoder = msgspec.json.Decoder(_Wire)


class _Position(msgspec.Struct):
    """Only where a line stands in its process's stream (any other field is skipped unread)."""
    pid: int = 0
    seq: int = 0


_position_decoder = msgspec.json.Decoder(_Position)


def line_position(line: bytes, error: "DecodeError") -> tuple[int, int]:
    """(pid, seq) of a rejected line whose envelope still says them, else (0, 0): a line refused
    for one bad field keeps its place in the stream, so the stream need not wait for its seq
    as for a line that never came. Never for a line that is not JSON, too deep or too long."""
    if error.reason_code in ("malformed_json", "oversize") or error.field in ("seq", "pid"):
        return 0, 0  # (a seq or pid refused as out of range is no place to believe)
    try:
        position = _position_decoder.decode(line)
    except Exception:  # noqa: BLE001 - whatever the bytes: no position
        return 0, 0
    if not (0 < position.seq <= MAX_COUNT and 0 <= position.pid <= INT64_MAX):
        return 0, 0
    return position.pid, position.seq
_data_decoders = {name: msgspec.json.Decoder(cls) for name, cls in DATA_TYPES.items()}
_any_decoder = msgspec.json.Decoder()


_MISSING_RE = re.compile(r"Object missing required field `([^`]*)`")


def _unencodable(value: Any) -> tuple[str, str] | None:
    """(path, reason) of the first value in an unknown event's data that no OTLP attribute can
    carry (an integer beyond int64, a float beyond double, an over-long key), else None."""
    if isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_NAME_CHARS:
                return key[:40] + "...", f"field name longer than {MAX_NAME_CHARS} characters"
            problem = _unencodable(item)
            if problem:
                return (f"{key}.{problem[0]}" if problem[0] else key), problem[1]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = _unencodable(item)
            if problem:
                return (f"[{index}].{problem[0]}" if problem[0] else f"[{index}]"), problem[1]
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            return "", "integer outside int64"
    elif isinstance(value, float) and not math.isfinite(value):
        return "", "not a finite number"
    return None


def _msgspec_failure(exc: Exception, where: str, fail) -> DecodeFailure:
    """One DecodeFailure for anything msgspec raised while decoding `where` ("" = the envelope)."""
    if isinstance(exc, msgspec.ValidationError):
        field, reason = _split_msgspec_error(exc)
        field = f"{where}.{field}" if where and field else (field or where)
        return fail(field, reason, "invalid_field")
    if isinstance(exc, UnicodeDecodeError):
        return fail(where, f"invalid UTF-8: {exc.reason} at byte {exc.start}", "malformed_json")
    text = str(exc)
    if "UTF-8" in text:
        return fail(where, f"invalid UTF-8: {text}", "malformed_json")
    if isinstance(exc, msgspec.MsgspecError):
        return fail(where, f"malformed JSON: {text}", "malformed_json")
    return fail(where, f"undecodable ({type(exc).__name__}: {text[:200]})", "malformed_json")


def _split_msgspec_error(exc: Exception) -> tuple[str, str]:
    text = str(exc)
    match = _PATH_RE.search(text)
    path, reason = (match.group(1), text[: match.start()]) if match else ("", text)
    missing = _MISSING_RE.search(reason)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        reason = "required field is missing"
    return path, reason


# A JSON string, escapes included; an unterminated one runs to the end, so the scan stays linear.
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _nesting_depth_over(line: bytes, limit: int) -> bool:
    """True if the JSON in `line` opens arrays/objects deeper than `limit`.

    msgspec recurses per level and raises RecursionError far down, so depth is bounded before
    it parses. Counting brackets is C-speed and settles almost every line; only a line with more
    brackets than the limit is measured (strings removed, then the running open-minus-close)."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    steps = _STRING_RE.sub(b"", line).translate(None, _NOT_BRACKETS).translate(_OPEN_CLOSE)
    return max(accumulate(memoryview(steps).cast("b")), default=0) > limit


def decode_line(line: bytes | str, *, source: str = "<input>", lineno: int = 0,
                max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Event:
    """Decode one NDJSON line; raises DecodeFailure naming source, line, field and reason, and
    nothing else, whatever the bytes (every source relies on that to keep going)."""
    try:
        return _decode_line(line, source, lineno, max_bytes)
    except DecodeFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the last net: a decoder bug costs one line only
        raise DecodeFailure(DecodeError(source, lineno, "", f"undecodable ({type(exc).__name__})",
                                        "malformed_json")) from None


def _decode_line(line: bytes | str, source: str, lineno: int, max_bytes: int) -> Event:
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")

    def fail(field: str, reason: str, code: str) -> DecodeFailure:
        return DecodeFailure(DecodeError(source, lineno, field, reason, code))

    if len(line) > max_bytes:
        raise fail("", f"line of {len(line)} bytes exceeds the limit of {max_bytes}", "oversize")
    if _nesting_depth_over(line, MAX_NESTING_DEPTH):
        raise fail("", f"JSON nested deeper than {MAX_NESTING_DEPTH} levels", "malformed_json")
    try:
        wire = _wire_decoder.decode(line)
    except Exception as exc:  # msgspec's whole family, and whatever a future release adds
        raise _msgspec_failure(exc, "", fail) from None
    if wire.v != FORMAT_VERSION:
        raise fail("v", f"unsupported format version {wire.v} (expected {FORMAT_VERSION})",
                   "unsupported_version")
    try:
        ts_ns = parse_ts(wire.ts)
    except ValueError as exc:
        raise fail("ts", str(exc), "invalid_field") from None
    if not 0 <= ts_ns <= MAX_TS_NS:
        raise fail("ts", "outside 1970-01-01 .. 2262-04-11 (what OTLP's int64 nanoseconds carry)",
                   "invalid_field")
    decoder = _data_decoders.get(wire.type)
    data: EventData
    try:
        if decoder is not None:
            data = decoder.decode(wire.data)
        else:
            fields = _any_decoder.decode(wire.data)
            if not isinstance(fields, dict):
                raise fail("data", f"expected an object, got {type(fields).__name__}",
                           "invalid_field")
            problem = _unencodable(fields)
            if problem:
                raise fail(f"data.{problem[0]}" if problem[0] else "data", problem[1],
                           "invalid_field")
            data = UnknownData(fields=fields)
    except DecodeFailure:
        raise
    except Exception as exc:
        raise _msgspec_failure(exc, "data", fail) from None
    if isinstance(data, AgentEnd) and data.DurationMs * 1_000_000 > ts_ns:
        raise fail("data.DurationMs", "the turn would have started before 1970", "invalid_field")
    return Event(type=wire.type, data=data, ts_ns=ts_ns, v=wire.v, seq=wire.seq, pid=wire.pid,
                 session_path=wire.session_path, session_id=wire.session_id, source=wire.source,
                 agent=wire.agent, parent_tool_call_id=wire.parent_tool_call_id,
                 kit_version=wire.kit_version, dropped=wire.dropped, state=wire.state)


def iter_events(lines: Iterable[tuple[int, bytes]], *, source: str,
                max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Event | DecodeError]:
    """(line number, line) pairs → Events, or a DecodeError for each bad line. Blank lines skip."""
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            yield decode_line(line, source=source, lineno=lineno, max_bytes=max_bytes)
        except DecodeFailure as failure:
            yield failure.error


class OversizeLine(bytes):
    """Placeholder for a line that was longer than the limit; only its length is kept."""

    def __new__(cls, length: int):
        obj = super().__new__(cls, b"")
        obj.length = length
        return obj


def read_lines(stream: IO[bytes], max_bytes: int = DEFAULT_MAX_LINE_BYTES,
               first_lineno: int = 1) -> Iterator[tuple[int, bytes]]:
    """Numbered lines of a binary stream, never holding more than `max_bytes` of one line in
    memory: a longer line is skipped to its end and yielded as an `OversizeLine`."""
    lineno = first_lineno
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            length = len(line)
            while True:
                chunk = stream.readline(1 << 20)
                length += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield lineno, OversizeLine(length)
        else:
            yield lineno, line
        lineno += 1


def iter_stream(stream: IO[bytes], *, source: str,
                max_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Event | DecodeError]:
    for lineno, line in read_lines(stream, max_bytes):
        if isinstance(line, OversizeLine):
            yield DecodeError(source, lineno, "",
                              f"line of {line.length} bytes exceeds the limit of {max_bytes}",
                              "oversize")
            continue
        if not line.strip():
            continue
        try:
            yield decode_line(line, source=source, lineno=lineno, max_bytes=max_bytes)
        except DecodeFailure as failure:
            yield failure.error


_encoder = msgspec.json.Encoder()


class _WireOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    v: int
    seq: int
    ts: str
    pid: int
    session_path: str
    type: str
    data: EventData
    session_id: str = ""
    source: str = ""
    agent: str = ""
    parent_tool_call_id: str = ""
    kit_version: str = ""
    dropped: int = 0
    state: dict[str, str] | None = None


def encode_event(event: Event) -> bytes:
    """One NDJSON line (with its newline) in the contract's key order."""
    data = event.data
    payload: object = data.fields if isinstance(data, UnknownData) else data
    wire = _WireOut(v=event.v, seq=event.seq, ts=format_ts(event.ts_ns), pid=event.pid,
                    session_path=event.session_path, type=event.type, data=payload,
                    session_id=event.session_id, source=event.source, agent=event.agent,
                    parent_tool_call_id=event.parent_tool_call_id,
                    kit_version=event.kit_version, dropped=event.dropped, state=event.state)
    return _encoder.encode(wire) + b"\n"
