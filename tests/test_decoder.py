"""The NDJSON contract: every event type decodes; every malformed input is a located error and
never costs the good lines around it."""

import io
import typing

import msgspec
import pytest
import scenarios as sc
from harness import make_harness

from kit_otel.model import events as ev
from kit_otel.model import names as n
from kit_otel.model.decoder import (DecodeError, DecodeFailure, decode_line, encode_event,
                              iter_stream)
from kit_otel.model.timestamps import format_ts, parse_ts


def _sample(value_type, name: str):
    """A non-zero value for a field, so a dropped field cannot go unnoticed."""
    if typing.get_origin(value_type) is typing.Annotated:
        value_type = typing.get_args(value_type)[0]
    origin = getattr(value_type, "__origin__", None)
    text = str(value_type)
    if value_type is bool:
        return True
    if value_type is int:
        return 7 + len(name)
    if value_type is float:
        return 0.25
    if value_type is str:
        return f"{name}-välue"
    if "ContextMessage" in text:
        return [ev.ContextMessage(Index=1, Role="user", Content="hi")]
    if "list[str]" in text or "list[typing.Annotated[str" in text:
        return ["read", "grep"]
    if "dict[str, str]" in text or "dict[typing.Annotated[str" in text:
        return {"k": "v"}
    if "dict" in text or origin is dict:
        return {"path": "a.go", "n": 1}
    raise AssertionError(f"no sample for {name}: {value_type}")


def full_data(cls):
    hints = {f.name: f.type for f in msgspec.structs.fields(cls)}
    return cls(**{name: _sample(t, name) for name, t in hints.items()})


@pytest.mark.parametrize("type_name", sorted(ev.DATA_TYPES))
def test_every_event_type_round_trips_with_every_field(type_name):
    data = full_data(ev.DATA_TYPES[type_name])
    event = ev.make_event(type_name, 1_781_011_092_123_456_789, data=data, seq=42, pid=4242,
                          session_path="/s.jsonl", source="bridge", agent="main",
                          state={"a": "1"}, dropped=3)
    line = encode_event(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = decode_line(line, source="t", lineno=1)
    assert decoded == event
    assert type(decoded.data) is ev.DATA_TYPES[type_name]


def test_contract_example_from_design():
    line = (b'{"v":1,"seq":42,"ts":"2026-06-09T13:18:12.123456789Z","pid":4242,'
            b'"session_path":"/home/alice/.kit/sessions/home--alice--proj/x.jsonl",'
            b'"type":"llm_usage","data":{"InputTokens":1200,"OutputTokens":85,'
            b'"CacheReadTokens":900,"CacheWriteTokens":0,"Cost":0.0051,'
            b'"Model":"claude-sonnet-4-5-20250929","Provider":"anthropic","RequestID":"",'
            b'"StepNumber":0,"FinishReason":"tool-calls"}}')
    event = decode_line(line)
    assert event.data.InputTokens == 1200 and event.data.Cost == 0.0051
    assert event.ts_ns % 1_000_000_000 == 123456789
    assert format_ts(event.ts_ns) == "2026-06-09T13:18:12.123456789Z"


def test_missing_fields_take_go_zero_values_and_unknown_fields_are_ignored():
    event = decode_line(b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"agent_end",'
                        b'"data":{"StopReason":"stop","NewerField":{"x":1}}}')
    assert event.data.StopReason == "stop"
    assert event.data.ToolCallCount == 0 and event.data.ToolNames is None
    assert event.pid == 0 and event.session_path == ""


def test_timestamps_with_offsets_and_short_fractions():
    assert parse_ts("2026-06-09T13:18:12.5Z") == parse_ts("2026-06-09T13:18:12Z") + 500_000_000
    assert parse_ts("2026-06-09T15:18:12+02:00") == parse_ts("2026-06-09T13:18:12Z")


BAD_LINES = [
    # (line, field, words in the reason, reason code)
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"llm_usage","data":{"InputTokens":"many"}}',
     "data.InputTokens", "Expected `int`, got `str`", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"llm_usage","data":{"InputTokens":-5}}',
     "data.InputTokens", "Expected `int` >= 0", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"llm_usage","data":{"Cost":-1.5}}',
     "data.Cost", "Expected `float` >= 0", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"agent_end","data":{"DurationMs":-1}}',
     "data.DurationMs", "Expected `int` >= 0", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input","dropped":-3}',
     "dropped", "Expected `int` >= 0", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"tool_result","data":{"IsError":"yes"}}',
     "data.IsError", "Expected `bool`", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"agent_end","data":{"ToolNames":"read"}}',
     "data.ToolNames", "Expected `array | null`", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"llm_usage","data":[1,2]}',
     "data", "Expected `object`", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"newer_kind","data":"text"}',
     "data", "expected an object", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input","pid":"4242"}',
     "pid", "Expected `int`", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input","state":{"k":1}}',
     "state[...]", "Expected `str`", "invalid_field"),
    (b'{"ts":"2026-06-09T13:18:12Z","type":"input"}', "v", "required field is missing",
     "invalid_field"),
    (b'{"v":1,"type":"input"}', "ts", "required field is missing", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z"}', "type", "required field is missing",
     "invalid_field"),
    (b'{"v":2,"ts":"2026-06-09T13:18:12Z","type":"input"}', "v", "unsupported format version 2",
     "unsupported_version"),
    (b'{"v":1,"ts":"yesterday","type":"input"}', "ts", "not an RFC 3339 timestamp",
     "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12","type":"input"}', "ts", "UTC offset", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input"', "", "malformed JSON",
     "malformed_json"),
    (b'not json at all', "", "malformed JSON", "malformed_json"),
    (b'[1,2,3]', "", "Expected `object`", "invalid_field"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input","data":{"Text":"\xff\xfe"}}', "data",
     "invalid UTF-8", "malformed_json"),
    (b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"input","source":"\xff"}', "",
     "invalid UTF-8", "malformed_json"),
]


@pytest.mark.parametrize("line,field,reason,code", BAD_LINES)
def test_malformed_input_is_a_precise_error(line, field, reason, code):
    with pytest.raises(DecodeFailure) as info:
        decode_line(line, source="spool/kit-1.ndjson", lineno=17)
    error = info.value.error
    assert (error.source, error.lineno, error.field, error.reason_code) == (
        "spool/kit-1.ndjson", 17, field, code)
    assert reason in error.reason
    assert str(error).startswith("spool/kit-1.ndjson:17: " + (f"{field}: " if field else ""))


def test_oversize_line_is_rejected_without_reading_it_whole():
    big = b'{"v":1,"ts":"2026-06-09T13:18:12Z","type":"message_update","data":{"Chunk":"' + \
        b"x" * 5000 + b'"}}\n'
    good = encode_event(sc.simple_turn().events[0])
    stream = io.BytesIO(good + big + good)
    items = list(iter_stream(stream, source="f", max_bytes=1000))
    assert [type(i).__name__ for i in items] == ["Event", "DecodeError", "Event"]
    assert items[1].lineno == 2 and items[1].reason_code == "oversize"
    assert "exceeds the limit of 1000" in items[1].reason


def test_bad_lines_never_cost_the_good_events_around_them():
    script = sc.tools_turn()
    lines = [encode_event(e) for e in script.events]
    bad = [b for b, *_ in BAD_LINES]
    mixed = []
    for i, line in enumerate(lines):  # a bad line after every good one
        mixed += [line, bad[i % len(bad)] + b"\n"]
    items = list(iter_stream(io.BytesIO(b"".join(mixed)), source="mixed.ndjson"))
    errors = [i for i in items if isinstance(i, DecodeError)]
    good = [i for i in items if not isinstance(i, DecodeError)]
    assert len(good) == len(lines) and len(errors) == len(lines)
    assert [e.lineno for e in errors[:3]] == [2, 4, 6]
    h = make_harness()
    for item in items:
        h.translator.reject(item) if isinstance(item, DecodeError) else h.translator.process(item)
    h.close()
    clean = make_harness().feed(script.events).close()
    assert sorted(s.name for s in h.spans) == sorted(s.name for s in clean.spans)
    assert h.total("kit.tokens") == clean.total("kit.tokens") > 0
    assert h.total("kit_otel.events.rejected") == len(errors)
    assert h.total("kit_otel.events.rejected", reason="malformed_json") == sum(
        1 for e in errors if e.reason_code == "malformed_json")
    turn = [s for s in h.spans if s.name == n.SPAN_TURN][0]
    assert turn.attributes[n.KIT_TURN_TOOL_CALL_COUNT] == 2
