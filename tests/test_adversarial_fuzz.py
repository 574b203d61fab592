"""A seeded fuzzer: mutated NDJSON lines through decode → translate → both OTLP encoders.

Every mutated line must end as an Event or a DecodeError (never an exception); whatever the
translator makes of the accepted ones must encode to protobuf and to OTLP-JSON; no span may be
garbage; and a well-formed session interleaved with the mutants must come out exactly as it does
alone.
"""

from __future__ import annotations

import json
import random
import re
import signal

import pytest
import scenarios as sc
from harness import make_harness, names_tree
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from kit_otel.model import names as n
from kit_otel.model.decoder import DecodeError, DecodeFailure, decode_line, encode_event
from kit_otel.model.events import DATA_TYPES, Event
from kit_otel.cli.generator import demo_stream
from kit_otel.export.otlp_json import OTLPJsonEncoder, reference_json
from kit_otel.model.timestamps import MAX_TS_NS

SEED = 20261201
MUTANTS = 12_000
WATCHDOG_S = 120  # liveness, not speed: a stalled decode or translate fails instead of hanging

_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_TS = re.compile(rb'"ts":"[^"]*"')
_HOSTILE_NUMBERS = [b"9223372036854775807", b"9223372036854775808", b"18446744073709551616",
                    b"-1", b"-9223372036854775809", b"1e400", b"-0", b"0.5", b"1e18",
                    b"99999999999999999999999999", b"1099511627777", b"true", b"null", b'"7"']
_HOSTILE_TS = [b"0001-01-01T00:00:00Z", b"1969-12-31T23:59:59.999999999Z",
               b"2262-04-11T23:47:16.854775808Z", b"2554-07-21T23:34:33Z",
               b"9999-12-31T23:59:59Z", b"2026-13-01T00:00:00Z", b"2026-06-09T13:18:12+99:99",
               b"2026-06-09T13:18:12.1234567890Z", b"", b"\xff\xfe", b"2026-06-09"]
_HOSTILE_STRINGS = [b'"' + b"x" * 5000 + b'"', b'"\\ud800"', b'"\\u0000"', b'"\xff"',
                    b'"' + b"/" * 5000 + b'"', b"[]", b"{}", b'"' + "é".encode() * 300 + b'"']


def _mutate(line: bytes, rng: random.Random) -> bytes:
    body = line.rstrip(b"\n")
    kind = rng.randrange(12)
    if kind == 0:  # flip one byte
        i = rng.randrange(len(body))
        return body[:i] + bytes([rng.randrange(256)]) + body[i + 1:]
    if kind == 1:  # insert a few random bytes (invalid UTF-8 likely)
        i = rng.randrange(len(body))
        return body[:i] + rng.randbytes(rng.randint(1, 4)) + body[i:]
    if kind == 2:  # cut short: a final line without its end, a torn write
        return body[:rng.randrange(len(body))]
    if kind in (3, 4):  # a number becomes hostile
        spots = list(_NUMBER.finditer(body))
        if spots:
            m = rng.choice(spots)
            return body[:m.start()] + rng.choice(_HOSTILE_NUMBERS) + body[m.end():]
    if kind == 5:  # a timestamp outside what OTLP carries, or no timestamp at all
        return _TS.sub(b'"ts":"' + rng.choice(_HOSTILE_TS) + b'"', body, count=1)
    if kind == 6:  # a string becomes huge, unpaired, or of another type
        spots = list(_STRING.finditer(body))
        if spots:
            m = rng.choice(spots)
            return body[:m.start()] + rng.choice(_HOSTILE_STRINGS) + body[m.end():]
    if kind == 7:  # deep nesting inside data
        depth = rng.choice([63, 64, 65, 200, 1000, 5000])
        return body.replace(b'"data":{', b'"data":{"Deep":' + b"[" * depth + b"]" * depth + b",",
                            1)
    if kind == 8:  # the data of one type under another type's name
        return re.sub(rb'"type":"[a-z_]*"',
                      b'"type":"' + rng.choice(sorted(DATA_TYPES)).encode() + b'"', body,
                      count=1)
    if kind == 9:  # an unknown type whose fields carry hostile values
        return re.sub(rb'"type":"[a-z_]*"', b'"type":"future_event"', body, count=1).replace(
            b'"data":{', b'"data":{"Big":' + rng.choice(_HOSTILE_NUMBERS) + b",", 1)
    if kind == 10:  # duplicate a random slice
        i, j = sorted(rng.randrange(len(body)) for _ in range(2))
        return body[:j] + body[i:j] + body[j:]
    # an agent_end whose duration reaches before 1970
    return re.sub(rb'"DurationMs":\d+', b'"DurationMs":1099511627776', body, count=1)


def _assert_sane(span) -> None:
    """What a backend would reject or misdraw: a span outside time, nameless, id-less."""
    assert span.name and len(span.name) < 600, span.name[:80]
    assert span.context.trace_id and span.context.span_id
    assert 0 < span.start_time <= span.end_time <= MAX_TS_NS, (span.name, span.start_time,
                                                               span.end_time)
    known = (n.SPAN_TURN, n.SPAN_SUBAGENT)
    assert span.name in known or span.name.startswith(
        (n.SPAN_CHAT_PREFIX, n.SPAN_TOOL_PREFIX, n.SPAN_OUT_OF_TURN_PREFIX)), span.name
    for value in span.attributes.values():
        if isinstance(value, int) and not isinstance(value, bool):
            assert -(1 << 63) <= value < (1 << 63)


def _good_neighbour() -> list[Event]:
    script = sc.script(path=sc.PATH_B, pid=777_001, seed=3)
    script.session_start()
    script.turn("run the tests", [sc.Step(text="Running.", usage=sc.Usage(1500, 60, 1000, 0),
                                          tools=[sc.Tool("bash", "execute", {"command": "ls"},
                                                         output="ok")]),
                                  sc.Step(text="Done.", usage=sc.Usage(2000, 40, 1500, 100))])
    script.shutdown()
    return script.events


def _neighbour_view(spans) -> list[str]:
    mine = [s for s in spans if s.attributes.get(n.KIT_SESSION_PATH) == sc.PATH_B]
    return sorted(names_tree(mine))


@pytest.fixture
def watchdog():
    def expired(*_):
        raise TimeoutError(f"fuzz run stalled for {WATCHDOG_S}s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(WATCHDOG_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_mutated_lines_never_escape_decode_translate_or_encode(watchdog):
    rng = random.Random(SEED)
    corpus = [encode_event(e) for e in demo_stream(SEED, sessions=2, turns=4)]
    neighbour = _good_neighbour()

    alone = make_harness()
    alone.feed(neighbour).close()
    expected = _neighbour_view(alone.spans)
    assert expected, "the neighbour session produced no spans to compare"

    h = make_harness()
    accepted = rejected = 0
    good = iter(neighbour)
    for i in range(MUTANTS):
        line = _mutate(rng.choice(corpus), rng)
        try:
            event = decode_line(line, source="fuzz", lineno=i + 1)
        except DecodeFailure as failure:
            assert isinstance(failure.error, DecodeError)
            assert str(failure.error).startswith(f"fuzz:{i + 1}:")
            rejected += 1
        else:
            # a mutant that happens to claim the neighbour's stream is not a neighbour's fault
            if (event.pid, event.session_path) != (777_001, sc.PATH_B):
                h.translator.process(event)
                accepted += 1
        if i % (MUTANTS // len(neighbour)) == 0:
            nxt = next(good, None)
            if nxt is not None:
                h.translator.process(decode_line(encode_event(nxt)))
        if i % 2000 == 1999:  # encode as an exporter would, batch by batch
            _encode_both(h)
    for rest in good:
        h.translator.process(rest)
    h.translator.close()
    spans = _encode_both(h)

    assert accepted > MUTANTS // 10 and rejected > MUTANTS // 10, (accepted, rejected)
    for span in spans:
        _assert_sane(span)
    assert _neighbour_view(spans) == expected


_encoded_upto = {}


def _encode_both(h) -> list:
    spans = h.spans
    done = _encoded_upto.get(id(h), 0)
    batch = spans[done:]
    _encoded_upto[id(h)] = len(spans)
    if batch:
        request = encode_spans(batch)
        assert request.SerializeToString()
        # the OTLP-JSON file exporter's encoding is the same document as json_format's
        assert json.loads(OTLPJsonEncoder().spans(batch)) == json.loads(reference_json(request))
    metrics = h.reader.get_metrics_data()
    if metrics is not None:
        request = encode_metrics(metrics)
        assert request.SerializeToString()
        assert json.loads(OTLPJsonEncoder().metrics(metrics)) == json.loads(reference_json(request))
    return spans
