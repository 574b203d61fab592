"""One test per poison input of issue 9 (part A): each is one clear rejection, and the good
events around it are processed as if it were not there."""

from __future__ import annotations

import io

import pytest
import scenarios as sc
from harness import make_harness, names_tree
from ports import free_port

from kit_otel.cli.generator import Step, Usage
from kit_otel.model.decoder import DecodeError, Event, decode_line, encode_event, iter_stream
from kit_otel.translate.translator import TranslatorSettings
from kit_otel.model.events import MAX_COUNT, MAX_NAME_CHARS, MAX_PATH_CHARS, MAX_TOKENS

TS = "2026-06-09T13:18:12Z"


def _line(body: str, *, ts: str = TS, type: str = "input", envelope: str = "") -> bytes:
    return (f'{{"v":1,"ts":"{ts}","type":"{type}","seq":1,"pid":9,"session_path":"/s.jsonl"'
            f'{envelope},"data":{body}}}').encode()


def _around(poison: bytes) -> tuple[list[Event], list[DecodeError]]:
    """A real turn with the poison line in its middle, read as a file would be."""
    good = [encode_event(e) for e in sc.tools_turn().events]
    middle = len(good) // 2
    stream = io.BytesIO(b"".join(good[:middle]) + poison + b"\n" + b"".join(good[middle:]))
    items = list(iter_stream(stream, source="spool/kit-9.ndjson"))
    events = [i for i in items if isinstance(i, Event)]
    errors = [i for i in items if isinstance(i, DecodeError)]
    assert len(events) == len(good), "a good neighbour of the poison line was lost"
    assert len(errors) == 1
    assert errors[0].lineno == middle + 1 and errors[0].source == "spool/kit-9.ndjson"
    clean = make_harness().feed(sc.tools_turn().events).close()
    poisoned = make_harness().feed(events).close()
    assert names_tree(poisoned.spans) == names_tree(clean.spans)
    return events, errors


@pytest.mark.parametrize("poison,field,reason", [
    (_line('{"Text":"ok"}').replace(b'"ok"', b'"\xff\xfe"'), "data", "invalid UTF-8"),
    (_line('{"Text":"ok"}', envelope=',"agent":"?"').replace(b'"?"', b'"\xff"'), "",
     "invalid UTF-8"),
    (_line('{"Text":' + "[" * 1000 + "]" * 1000 + "}"), "", "nested deeper than 64"),
    (_line('{"Text":"ok","X":' + "{\"a\":" * 1000 + "1" + "}" * 1000 + "}"), "",
     "nested deeper than 64"),
    (_line('{"Text":' + "[" * 5000), "", "nested deeper than 64"),  # and never closed
])
def test_invalid_utf8_and_deep_nesting_are_one_rejection(poison, field, reason):
    _events, (error,) = _around(poison)
    assert (error.field, error.reason_code) == (field, "malformed_json")
    assert reason in error.reason


def test_nesting_inside_strings_is_not_nesting():
    event = decode_line(_line('{"Text":"' + "[{" * 3000 + '"}'))
    assert event.data.Text == "[{" * 3000


@pytest.mark.parametrize("ts", ["1969-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                                "2262-04-11T23:47:16.854775808Z", "2554-07-21T23:34:34Z",
                                "9999-12-31T23:59:59.999999999Z"])
def test_timestamps_outside_what_otlp_carries_are_rejected(ts):
    _events, (error,) = _around(_line('{"Text":"hi"}', ts=ts))
    assert error.field == "ts" and "1970" in error.reason


def test_the_encodable_extremes_are_accepted():
    assert decode_line(_line("{}", ts="1970-01-01T00:00:00Z")).ts_ns == 0
    assert decode_line(_line("{}", ts="2262-04-11T23:47:16.854775807Z")).ts_ns == (1 << 63) - 1


def test_agent_end_whose_duration_reaches_before_1970_is_rejected():
    # 1980-01-01 is 315532800000 ms after the epoch
    _events, (error,) = _around(_line('{"DurationMs":315532800001}', type="agent_end",
                                      ts="1980-01-01T00:00:00Z"))
    assert error.field == "data.DurationMs" and "before 1970" in error.reason
    ok = decode_line(_line('{"DurationMs":315532800000}', type="agent_end",
                           ts="1980-01-01T00:00:00Z"))
    assert ok.data.DurationMs == 315532800000


@pytest.mark.parametrize("poison,field", [
    (_line('{"InputTokens":9223372036854775808}', type="llm_usage"), "data.InputTokens"),
    (_line(f'{{"OutputTokensDelta":{MAX_TOKENS + 1}}}', type="agent_end"),
     "data.OutputTokensDelta"),
    (_line(f'{{"MessageBytes":{MAX_COUNT + 1}}}', type="context_prepare"), "data.MessageBytes"),
    (_line('{"Text":"x"}', envelope=',"dropped":9223372036854775807'), "dropped"),
    (_line('{"Text":"x"}').replace(b'"seq":1', b'"seq":18446744073709551616'), "seq"),
    (_line('{"StepNumber":9223372036854775808}', type="step_start"), "data.StepNumber"),
    (_line('{"Cost":1e400}', type="llm_usage"), "data.Cost"),
    (_line('{"Big":9223372036854775808}', type="future_event"), "data.Big"),
    (_line('{"Deep":{"n":[1,2,-9223372036854775809]}}', type="future_event"),
     "data.Deep.n.[2]"),
])
def test_counts_beyond_int64_or_any_real_value_are_rejected(poison, field):
    _events, (error,) = _around(poison)
    assert (error.field, error.reason_code) == (field, "invalid_field"), str(error)


@pytest.mark.parametrize("poison,field", [
    (_line('{"Text":"x"}').replace(b'"/s.jsonl"', b'"/' + b"p" * 900_000 + b'"'), "session_path"),
    (_line('{"Text":"x"}').replace(b'"/s.jsonl"', b'"/' + b"p" * MAX_PATH_CHARS + b'"'),
     "session_path"),
    (_line(f'{{"ToolName":"{"t" * (MAX_NAME_CHARS + 1)}"}}', type="tool_call"), "data.ToolName"),
    (_line(f'{{"ToolCallID":"{"i" * 5000}"}}', type="tool_result"), "data.ToolCallID"),
    (_line(f'{{"Model":"{"m" * 5000}"}}', type="llm_usage"), "data.Model"),
    (_line('{"Text":"x"}', envelope=f',"session_id":"{"s" * 5000}"'), "session_id"),
    (_line('{"Text":"x"}', type="t" * 300), "type"),
    (_line('{"Text":"x"}', envelope=',"state":{' + ",".join(f'"k{i}":"v"' for i in range(300))
           + "}"), "state"),
])
def test_big_fields_are_rejected_at_decode_time(poison, field):
    _events, (error,) = _around(poison)
    assert (error.field, error.reason_code) == (field, "invalid_field"), str(error)
    assert "length" in error.reason


def test_free_text_stays_as_long_as_a_line_allows():
    # prompt and output text are content: capped by the line limit and the content policy,
    # not rejected for being long
    event = decode_line(_line('{"Text":"' + "w" * 500_000 + '"}'))
    assert len(event.data.Text) == 500_000


# ── an export batch no collector can take ────────────────────────────────────────────────────

def test_a_span_no_exporter_can_take_is_set_aside_and_the_stream_goes_on(tmp_path):
    import json

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from otlp_receiver import OTLPReceiver

    from kit_otel.export.reliable_export import DeadLetterFile, ReliableSpanProcessor

    with OTLPReceiver(max_receive_bytes=1 << 20) as receiver:  # a Collector's limit, smaller
        exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=2)
        reasons, committed = [], []
        processor = ReliableSpanProcessor(
            [exporter], on_commit=committed.extend, backoff_initial_s=0.05,
            max_request_bytes=1 << 20, dead_letter=DeadLetterFile(tmp_path / "dead.jsonl"),
            on_dead_letter=reasons.append)
        tracer = TracerProvider().get_tracer("t")

        def span(name, start=None, **attributes):
            s = tracer.start_span(name, attributes=attributes, start_time=start)
            s.end(end_time=None if start is None else start + 1)
            return s

        try:
            units = [[span("good-1"), span("good-2")],
                     [span("good-3"), span("after-2554", start=1 << 64), span("good-4")],
                     [span("huge", blob="x" * (2 << 20)), span("good-5")],
                     [span("good-6")]]
            for i, unit in enumerate(units):
                processor.submit(unit, f"checkpoint-{i}")
            assert processor.wait_idle(timeout=60)
        finally:
            processor.shutdown()
        received = sorted(s.name for s in receiver.spans())
    assert received == [f"good-{i}" for i in range(1, 7)]
    assert committed == [f"checkpoint-{i}" for i in range(4)]  # nothing waits behind them
    assert processor.dead_lettered == 2 and sorted(reasons) == ["too_large", "unencodable"]
    lines = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert sorted(x["span"]["name"] for x in lines) == ["after-2554", "huge"]
    assert all(x["reason"] for x in lines)
    assert (tmp_path / "dead.jsonl").stat().st_mode & 0o777 == 0o600


# ── the last nets: a bug costs one line or one event, never the stream ───────────────────────

def test_a_decoder_bug_is_one_rejected_line(monkeypatch):
    import kit_otel.model.decoder as decoder

    def broken(text):
        raise RuntimeError("a bug")
    monkeypatch.setattr(decoder, "parse_ts", broken)
    with pytest.raises(decoder.DecodeFailure) as info:
        decode_line(_line('{"Text":"x"}'), source="s", lineno=3)
    assert (info.value.error.lineno, info.value.error.reason_code) == (3, "malformed_json")


def test_a_translator_bug_costs_one_event_not_the_stream(monkeypatch):
    from kit_otel.config import load_settings
    from kit_otel.export.pipeline import Pipeline

    pipeline = Pipeline(load_settings(env={"OTEL_TRACES_EXPORTER": "none",
                                           "OTEL_METRICS_EXPORTER": "none"}),
                        serve_prometheus=False)
    original = pipeline.translator._on_tool_result
    calls = []

    def fails_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug")
        return original(*args)
    monkeypatch.setitem(pipeline.translator._run_handlers, "tool_result", fails_once)
    events = sc.tools_turn().events
    for event in events:
        pipeline.feed(event)
    assert pipeline.translator.rejected == 1
    assert pipeline.translator.events_seen == len(events)
    pipeline.shutdown()


# ── the same poison through a real `serve` (TCP) → OTLP receiver ─────────────────────────────

def test_poison_lines_over_tcp_neither_stop_serve_nor_cost_a_span(tmp_path):
    import socket as socketlib
    from collections import Counter

    from otlp_receiver import OTLPReceiver
    from test_serve import InProcess, settings_for
    from test_serve_helpers import kit_process, received_spans, reference_spans

    poison = [
        _line('{"Text":"ok"}').replace(b'"ok"', b'"\xff\xfe"'),
        _line('{"Text":' + "[" * 1000 + "]" * 1000 + "}"),
        _line('{"Text":"x"}', ts="2600-01-01T00:00:00Z"),
        _line('{"InputTokens":9223372036854775808}', type="llm_usage"),
        _line('{"Text":"x"}').replace(b'"/s.jsonl"', b'"/' + b"p" * 900_000 + b'"'),
        _line('{"DurationMs":315532800001}', type="agent_end", ts="1980-01-01T00:00:00Z"),
    ]
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "sessions"
    spool.mkdir()
    port = free_port()
    good = kit_process(93, 40701, root, turns=3, index=0)
    expected = reference_spans([good], root)
    with OTLPReceiver() as receiver:
        run = InProcess(settings_for(receiver, spool, state, root, tcp_port=port))
        conn = socketlib.create_connection(("127.0.0.1", port))
        try:
            lines = [line for _, line in good.lines]
            step = max(1, len(lines) // (len(poison) + 1))
            for i, line in enumerate(lines):
                conn.sendall(line)
                if i % step == 0 and poison:
                    conn.sendall(poison.pop(0) + b"\n")
            assert not poison
            receiver.wait_for(lambda: len(received_spans(receiver)) >= len(expected),
                              timeout=60, message="good spans did not all arrive")
            receiver.wait_for(lambda: run.server.rejected >= 6, timeout=30)
        finally:
            conn.close()
        assert run.thread.is_alive()  # serve is still running
        assert run.stop() == 0
        assert Counter(received_spans(receiver)) == Counter(expected)
        assert run.server.rejected == 6


def test_a_saved_total_beyond_int64_does_not_poison_the_counter_after_a_restart():
    from opentelemetry.sdk.metrics import MeterProvider

    from kit_otel.model import names as n
    from kit_otel.translate.instruments import LedgerCounter

    counter = LedgerCounter(MeterProvider().get_meter("t"), n.TOKENS)
    good, bad, nan = (frozenset({("type", t)}) for t in ("input", "output", "cache_read"))
    counter.restore({good: 1200, bad: float(1 << 64), nan: float("nan")})
    counter.add(5, {"type": "output"})
    assert counter.totals() == {good: 1200, bad: 5}


def test_a_long_replay_forgets_the_sessions_that_ended():
    """Sessions that shut down are forgotten once the stream has moved an idle timeout past
    them, so a replay of many sessions holds only the live ones; a live session stays."""
    h = make_harness(TranslatorSettings(idle_timeout_s=60))
    live = sc.script(path=sc.PATH_B, pid=7, start=sc.T0)
    live.session_start()
    live.turn("still here", [Step(text="yes", usage=Usage(10, 5, 0, 0))])
    events = list(live.events)
    for i in range(3000):  # one-turn sessions, one after the other, each shut down
        s = sc.script(path=f"/home/u/.kit/sessions/p/s{i}.jsonl", pid=100 + i,
                      start=sc.T0 + (i + 1) * 120 * 10**9)
        s.session_start()
        s.turn("hi", [Step(text="ok", usage=Usage(10, 5, 0, 0))])
        s.shutdown()
        events += s.events
    h.feed(events)
    held = h.translator.sessions
    assert len(held) < 50, len(held)  # not 3001
    assert (7, sc.PATH_B) in held  # never shut down: kept
    h.close()
    assert h.total("kit.turns") == 3001


def test_with_thousands_of_sessions_open_a_sweep_runs_once_per_session_held():
    """A sweep walks every session held; with more sessions than _SWEEP_EVERY it runs every
    as many events as there are sessions, so its cost per event stays bounded, and it still
    closes what went idle and forgets what ended."""
    from kit_otel.translate.translator import _SWEEP_EVERY
    h = make_harness(TranslatorSettings(idle_timeout_s=60))
    sweeps = []  # (events seen, sessions held) at each sweep
    real_sweep = h.translator.sweep_by_clocks
    h.translator.sweep_by_clocks = lambda: sweeps.append(
        (h.translator.events_seen, len(h.translator.sessions))) or real_sweep()
    opened = []
    for i in range(3000):  # 3,000 sessions, each with a turn left open
        s = sc.script(path=f"/home/u/.kit/sessions/p/open{i}.jsonl", pid=5000 + i,
                      start=sc.T0 + i * 10**6)
        s.session_start()
        s.turn("hi", [Step(text="ok", usage=Usage(10, 5, 0, 0))])
        opened += [e for e in s.events if e.type != "agent_end"]
    h.feed(opened)
    assert len(h.translator.sessions) == 3000
    gaps = [(b[0] - a[0], a[1]) for a, b in zip(sweeps, sweeps[1:])]
    assert gaps and all(gap >= max(_SWEEP_EVERY, held) for gap, held in gaps)
    assert max(gap for gap, _ in gaps) > _SWEEP_EVERY  # it did stretch
    h.close()
    assert h.total("kit.turns") == 3000
