"""Throughput of decode + translate on a realistic KIT stream, against two baselines measured
in the same run on the same stream (docs/design.md#performance):

- floor: the fastest JSON decoder available decoding every line, plus the very OTel SDK calls
  kit-otel's output contains (recorded from a kit-otel run, replayed by hand, no logic);
- naive: a straightforward implementation, one span event per event with its fields.

Spans go to a processor that drops them (exporting is the same cost for everybody), metrics to
an in-memory reader. Times are CPU time of this process (other load on the machine barely
moves them). Prints events/s and the ratios. Run: python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import msgspec
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from kit_otel.model.decoder import decode_line, encode_event
from kit_otel.cli.generator import demo_stream
from kit_otel.translate.translator import Translator, TranslatorSettings


class DropSpans(SpanProcessor):
    def on_end(self, span):
        pass


def providers(span_processor: SpanProcessor | None = None, metric_reader=None):
    tp = TracerProvider()
    tp.add_span_processor(span_processor or DropSpans())
    return tp, MeterProvider(metric_readers=[metric_reader or InMemoryMetricReader()])


# ── recording what kit-otel does with the SDK, to replay it as the floor ─────────────────────

class _RecSpan:
    def __init__(self, log, handle, real):
        self._log, self._h, self._real = log, handle, real

    def add_event(self, name, attributes=None, timestamp=None):
        self._log.append(("event", self._h, name, attributes, timestamp))
        self._real.add_event(name, attributes, timestamp)

    def set_attribute(self, key, value):
        self._log.append(("attrs", self._h, {key: value}))
        self._real.set_attribute(key, value)

    def set_attributes(self, attributes):
        self._log.append(("attrs", self._h, dict(attributes)))
        self._real.set_attributes(attributes)

    def set_status(self, status, description=None):
        self._log.append(("status", self._h, status))
        self._real.set_status(status, description)

    def update_name(self, name):
        self._log.append(("name", self._h, name))
        self._real.update_name(name)

    def end(self, end_time=None):
        self._log.append(("end", self._h, end_time))
        self._real.end(end_time=end_time)

    def get_span_context(self):
        return self._real.get_span_context()

    def is_recording(self):
        return True


class _RecTracer:
    def __init__(self, log, real):
        self._log, self._real, self._n = log, real, 0
        self._handles = {}

    def start_span(self, name, context=None, kind=None, attributes=None, start_time=None,
                   links=None, **kw):
        parent = trace.get_current_span(context) if context is not None else None
        parent_handle = self._handles.get(id(parent)) if parent is not None else None
        self._n += 1
        real = self._real.start_span(name, context=context, kind=kind, attributes=attributes,
                                     start_time=start_time, links=links)
        rec = _RecSpan(self._log, self._n, real)
        self._handles[id(rec)] = self._n
        self._log.append(("start", self._n, name, parent_handle, kind, dict(attributes or {}),
                          start_time, bool(links)))
        return rec


class _RecInstrument:
    def __init__(self, log, real, method, tracer):
        self._log, self._real, self._method, self._tracer = log, real, method, tracer

    def __getattr__(self, name):
        real_method = getattr(self._real, name)

        def record(value, attributes=None, context=None):
            if name == "add_key":  # (label key, amount): replayed with the same frozen key
                self._log.append(("metric", self._method, name, value, attributes, None))
                real_method(value, attributes)
                return
            # a histogram point made inside a span (its exemplar): replayed inside that span
            handle = self._tracer._handles.get(id(trace.get_current_span(context))) \
                if context is not None else None
            self._log.append(("metric", self._method, name, value, dict(attributes or {}),
                              handle))
            if context is not None:
                real_method(value, attributes, context=context)
            else:
                real_method(value, attributes)
        return record


def record_sdk_calls(lines: list[bytes]) -> list[list[tuple]]:
    tp, mp = providers()
    translator = Translator(tp, mp, TranslatorSettings(sessions_root=None))
    log: list[tuple] = []
    translator.tracer = _RecTracer(log, translator.tracer)
    m = translator.metrics
    for attr, value in list(vars(m).items()):
        if hasattr(value, "add") or hasattr(value, "record") or hasattr(value, "set"):
            setattr(m, attr, _RecInstrument(log, value, attr, translator.tracer))
    per_line = []
    for line in lines:
        start = len(log)
        translator.process(decode_line(line))
        per_line.append(log[start:])
    start = len(log)
    translator.close()
    per_line[-1] = per_line[-1] + log[start:]
    return per_line


def floor_run(lines, calls_per_line, span_processor=None, metric_reader=None) -> float:
    from opentelemetry.trace import Link, set_span_in_context
    from opentelemetry.context import Context
    tp, mp = providers(span_processor, metric_reader)
    tracer = tp.get_tracer("floor")
    meter_instruments = Translator(tp, mp, TranslatorSettings(sessions_root=None)).metrics
    decode = msgspec.json.decode
    empty = Context()
    t0 = time.process_time()
    spans = {}
    for line, calls in zip(lines, calls_per_line):
        decode(line)
        for call in calls:
            op = call[0]
            if op == "event":
                spans[call[1]].add_event(call[2], call[3], call[4])
            elif op == "start":
                _, h, name, parent, kind, attrs, start, linked = call
                ctx = set_span_in_context(spans[parent]) if parent else empty
                links = [Link(spans[h - 1].get_span_context())] if linked and h - 1 in spans \
                    else None
                spans[h] = tracer.start_span(name, context=ctx, kind=kind, attributes=attrs,
                                             start_time=start, links=links)
            elif op == "attrs":
                spans[call[1]].set_attributes(call[2])
            elif op == "end":
                spans[call[1]].end(end_time=call[2])  # kept: exemplars may follow the end
            elif op == "metric":
                method = getattr(getattr(meter_instruments, call[1]), call[2])
                if call[5] is not None and call[5] in spans:
                    method(call[3], call[4], context=set_span_in_context(spans[call[5]]))
                else:
                    method(call[3], call[4])
            elif op == "status":
                spans[call[1]].set_status(call[2])
            elif op == "name":
                spans[call[1]].update_name(call[2])
    return time.process_time() - t0


def kit_otel_run(lines) -> float:
    tp, mp = providers()
    translator = Translator(tp, mp, TranslatorSettings(sessions_root=None))
    t0 = time.process_time()
    process = translator.process
    for line in lines:
        process(decode_line(line))
    translator.close()
    return time.process_time() - t0


def naive_run(lines) -> float:
    """One span per session, one span event per event with its scalar fields, json.loads."""
    tp, mp = providers()
    tracer = tp.get_tracer("naive")
    counter = mp.get_meter("naive").create_counter("events")
    sessions = {}
    t0 = time.process_time()
    for line in lines:
        event = json.loads(line)
        key = (event.get("pid"), event.get("session_path"))
        span = sessions.get(key)
        if span is None:
            span = sessions[key] = tracer.start_span("kit session")
        attrs = {k: v for k, v in event.get("data", {}).items()
                 if isinstance(v, (str, int, float, bool))}
        span.add_event(event["type"], attrs)
        counter.add(1, {"type": event["type"]})
    for span in sessions.values():
        span.end()
    return time.process_time() - t0


def best_of(runs, fn, *args) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        best = min(best, fn(*args))
    return best


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_run(total_events: int) -> tuple[int, int, int, float, float]:
    """Resident memory while streaming `total_events` events of many sessions through one
    translator, generated on the fly (so the input itself does not fill memory); runs in a
    fresh process so nothing else measured here has touched the heap."""
    tp, mp = providers()
    translator = Translator(tp, mp, TranslatorSettings(sessions_root=None, idle_timeout_s=600))
    seen, seed, rss = 0, 0, []
    warm = total_events // 10
    start_ns = 1_781_000_000 * 10**9
    while seen < total_events:
        seed += 1
        batch = demo_stream(seed, sessions=10, turns=10, start_ns=start_ns)
        start_ns = batch[-1].ts_ns + 10**12  # the next sessions start a quarter-hour later
        for event in batch:
            translator.process(event)
        seen += len(batch)
        del batch
        if seen >= warm and not rss:
            gc.collect()
            rss.append(_rss_mib())
    translator.close()
    gc.collect()
    rss.append(_rss_mib())
    return seen, translator.turns_closed, seed * 10, rss[0], rss[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--words", type=int, default=120,
                        help="text chunks an LLM step streams, about (KIT sends one event each)")
    parser.add_argument("--memory-events", type=int, default=1_000_000,
                        help="events for the memory check (0 to skip)")
    args = parser.parse_args(argv)
    if args.memory_only:
        seen, turns, sessions, before, after = memory_run(args.memory_events)
        print(f"  memory: {seen:,} events, {turns:,} turns, {sessions:,} sessions; RSS "
              f"{before:.1f} MiB after 10% -> {after:.1f} MiB at the end: growth "
              f"{after - before:+.1f} MiB (target < 20)")
        return 0
    events = demo_stream(1, sessions=args.sessions, turns=args.turns, words_per_step=args.words)
    lines = [encode_event(e) for e in events]
    print(f"stream: {len(lines)} events, {sum(map(len, lines)) / 1e6:.1f} MB, "
          f"{args.sessions} sessions x {args.turns} turns, ~{args.words} chunks a step; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpu(s); best of {args.runs}")
    calls = record_sdk_calls(lines)
    n_calls = sum(map(len, calls))
    kit = best_of(args.runs, kit_otel_run, lines)
    floor = best_of(args.runs, floor_run, lines, calls)
    naive = best_of(args.runs, naive_run, lines)
    eps = len(lines) / kit
    print(f"  kit-otel   {kit:8.3f} s  {eps:10,.0f} events/s  ({n_calls} SDK calls)")
    print(f"  floor      {floor:8.3f} s  {len(lines) / floor:10,.0f} events/s")
    print(f"  naive      {naive:8.3f} s  {len(lines) / naive:10,.0f} events/s")
    print(f"  ratio kit-otel / floor = {kit / floor:.2f}  (target <= 1.30)")
    print(f"  ratio kit-otel / naive = {kit / naive:.2f}")
    print(f"  throughput target >= 100,000 events/s per core: "
          f"{'met' if eps >= 100_000 else 'NOT met'}")
    if args.memory_events:
        import subprocess
        subprocess.run([sys.executable, __file__, "--memory-only",
                        "--memory-events", str(args.memory_events)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
