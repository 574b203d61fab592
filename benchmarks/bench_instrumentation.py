"""Per-call cost of kit-otel's wrapt instrumentation (docs/design.md#performance; issue 5):

1. overhead per instrumented call *beyond the spans it creates*: an instrumented call inside an
   open turn, against the floor = the bare function + the very OTel SDK calls that call's
   telemetry consists of (recorded from one instrumented call, then compiled into straight-line
   Python and replayed by hand: no dispatch, no logic, constant attribute dicts);
   for a tool call (execute_tool span, 2 span events, tool metrics) and an LLM call (chat span,
   usage attributes, token/cost/duration metrics). Target <= 2 us.
2. the same call with instrumentation suppressed (`suppress_instrumentation()`), against the
   bare function. Target <= 0.2 us. Also shown for a method (wrapt binds a method wrapper on
   every attribute access, which costs more than the suppression check itself).

Times are CPU time (time.process_time_ns) of loops with the garbage collector paused, best of
several runs: other load on a shared machine barely moves them. Spans go to a processor that
drops them; metrics to an in-memory reader.

3. the same calls the ways a user would otherwise get those spans, in the same run on the same
   providers: opentelemetry-util-genai's TelemetryHandler (an inference / tool invocation
   around the call; skipped when that package is absent) and plain hand-written spans with
   the GenAI attributes and the token-usage and duration histograms.

Run: python benchmarks/bench_instrumentation.py [--calls N] [--runs R]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import types

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from kit_otel.instrumentation import EntryPoint, KitInstrumentor
from kit_otel.translate.translator import TranslatorSettings

TARGET_OVERHEAD_US = 2.0
TARGET_SUPPRESSED_US = 0.2
clock = time.process_time_ns


class DropSpans(SpanProcessor):
    def on_end(self, span):
        pass


# ── the "agent" being instrumented ──────────────────────────────────────────────────────────

AGENT = types.ModuleType("bench_agent")
exec(compile('''
class Usage:
    input_tokens, output_tokens = 1200, 80

class Reply:
    usage, stop_reason = Usage(), "end_turn"

REPLY = Reply()

def read_file(path):
    return path

def complete(messages, model="anthropic/claude-sonnet-4-5"):
    return REPLY

def bare(path):
    return path

class Tools:
    def read(self, path):
        return path

def turn(n, fn, arg):
    """An instrumented turn whose body is the timed loop of instrumented calls."""
    t0 = clock()
    for _ in range(n):
        fn(arg)
    return clock() - t0
''', "bench_agent", "exec"), AGENT.__dict__)
AGENT.clock = clock
sys.modules["bench_agent"] = AGENT

ENTRY_POINTS = [
    EntryPoint("bench_agent:turn", "turn", prompt="=benchmark"),
    EntryPoint("bench_agent:read_file", "tool", tool_kind="=read"),
    EntryPoint("bench_agent:complete", "llm_call", model="model", usage="result.usage",
               finish_reason="result.stop_reason"),
    EntryPoint("bench_agent:Tools.read", "tool"),
]


# ── recording one call's SDK calls, and compiling them into a by-hand replay ────────────────

class _RecSpan:
    def __init__(self, log, handle, real):
        self._log, self._h, self._real = log, handle, real

    def __getattr__(self, name):  # get_span_context, is_recording, ...
        return getattr(self._real, name)

    def add_event(self, name, attributes=None, timestamp=None):
        self._log.append(("span", self._h, "add_event", (name, attributes, timestamp)))
        self._real.add_event(name, attributes, timestamp)

    def set_attribute(self, key, value):
        self._log.append(("span", self._h, "set_attribute", (key, value)))
        self._real.set_attribute(key, value)

    def set_attributes(self, attributes):
        self._log.append(("span", self._h, "set_attributes", (dict(attributes),)))
        self._real.set_attributes(attributes)

    def set_status(self, status, description=None):
        self._log.append(("span", self._h, "set_status", (status,)))
        self._real.set_status(status, description)

    def update_name(self, name):
        self._log.append(("span", self._h, "update_name", (name,)))
        self._real.update_name(name)

    def end(self, end_time=None):
        self._log.append(("span", self._h, "end", (end_time,)))
        self._real.end(end_time=end_time)


class _RecTracer:
    def __init__(self, log, real, known):
        self._log, self._real, self._n, self._known = log, real, 0, known

    def start_span(self, name, context=None, kind=None, attributes=None, start_time=None,
                   links=None, **kw):
        parent = trace.get_current_span(context) if context is not None else None
        parent_handle = self._known.get(id(parent), 0) if parent is not None else 0
        self._n += 1
        real = self._real.start_span(name, context=context, kind=kind, attributes=attributes,
                                     start_time=start_time, links=links)
        rec = _RecSpan(self._log, self._n, real)
        self._known[id(rec)] = self._n
        self._log.append(("start", self._n, name, parent_handle, kind, dict(attributes or {}),
                          start_time))
        return rec


class _RecInstrument:
    def __init__(self, log, attr, real, known):
        self._log, self._attr, self._real, self._known = log, attr, real, known

    def __getattr__(self, method):
        real = getattr(self._real, method)

        def record(*args, context=None):
            # a histogram point made inside a span (its exemplar): replayed inside that span
            handle = self._known.get(id(trace.get_current_span(context)), 0) \
                if context is not None else None
            self._log.append(("metric", self._attr, method, args, handle))
            return real(*args) if context is None else real(*args, context=context)
        return record


def record_one_call(translator, call) -> tuple[list[tuple], list]:
    """The SDK calls translating `call()`'s events make (the open turn span is handle -1),
    and the events themselves."""
    log: list[tuple] = []
    events: list = []
    real_tracer, metrics, real_process = translator.tracer, translator.metrics, translator.process
    session = next(s for s in translator.sessions.values() if s.turn is not None)
    known = {id(session.turn.span): -1}
    translator.tracer = _RecTracer(log, real_tracer, known)
    saved = {}
    for attr, value in list(vars(metrics).items()):
        if any(hasattr(value, m) for m in ("add", "add_key", "record", "set")):
            saved[attr] = value
            setattr(metrics, attr, _RecInstrument(log, attr, value, known))

    def process(event):
        events.append(event)
        real_process(event)
    translator.process = process
    try:
        call()
    finally:
        translator.tracer = real_tracer
        del translator.process
        for attr, value in saved.items():
            setattr(metrics, attr, value)
    return log, events


def compile_replay(log: list[tuple]):
    """Straight-line Python making exactly the recorded SDK calls."""
    consts: dict[str, object] = {"set_span_in_context": trace.set_span_in_context}
    body = []
    for i, call in enumerate(log):
        if call[0] == "start":
            _, h, name, parent, kind, attrs, start = call
            consts[f"n{i}"], consts[f"k{i}"], consts[f"a{i}"], consts[f"t{i}"] = \
                name, kind, attrs, start
            ctx = "set_span_in_context(turn)" if parent == -1 else \
                f"set_span_in_context(s{parent})" if parent else "EMPTY"
            body.append(f"s{h} = tracer.start_span(n{i}, context={ctx}, kind=k{i}, "
                        f"attributes=a{i}, start_time=t{i})")
        elif call[0] == "span":
            _, h, method, args = call
            consts[f"p{i}"] = args
            target = "turn" if h == -1 else f"s{h}"
            body.append(f"{target}.{method}(*p{i})")
        elif call[0] == "metric":
            _, attr, method, args, handle = call
            consts[f"p{i}"] = args
            in_span = "" if handle is None else \
                ", context=set_span_in_context(turn)" if handle == -1 else \
                f", context=set_span_in_context(s{handle})" if handle else ""
            body.append(f"inst.{attr}.{method}(*p{i}{in_span})")
    consts["EMPTY"] = Context()
    source = "def replay(tracer, inst, turn):\n" + "".join(f"    {line}\n" for line in body) \
        + "    return None\n"
    namespace = dict(consts)
    exec(compile(source, "<replay>", "exec"), namespace)
    return namespace["replay"], len(body)


# ── what a user would otherwise write ───────────────────────────────────────────────────────

def alternatives(tracer_provider, meter_provider) -> dict[str, dict[str, object]]:
    """{way: {"tool call": loop, "LLM call": loop}}: loops making a tool span / an LLM span
    (with usage) around the same agent functions, by util-genai and by hand."""
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
    from opentelemetry.trace import SpanKind

    A = AGENT
    ways: dict[str, dict[str, object]] = {}
    try:
        from opentelemetry.util.genai.handler import TelemetryHandler
    except ImportError:
        TelemetryHandler = None
    if TelemetryHandler is not None:
        handler = TelemetryHandler(tracer_provider=tracer_provider,
                                   meter_provider=meter_provider,
                                   instrumentation_scope_name="bench")

        def genai_tool(count):
            t0 = clock()
            for _ in range(count):
                invocation = handler.tool("read_file", tool_type="function")
                A.read_file("README.md")
                invocation.stop()
            return clock() - t0

        def genai_llm(count):
            t0 = clock()
            for _ in range(count):
                invocation = handler.inference("anthropic", request_model="claude-sonnet-4-5")
                reply = A.complete(["hello"])
                invocation.input_tokens = reply.usage.input_tokens
                invocation.output_tokens = reply.usage.output_tokens
                invocation.finish_reasons = [reply.stop_reason]
                invocation.stop()
            return clock() - t0
        ways["opentelemetry-util-genai TelemetryHandler"] = {"tool call": genai_tool,
                                                              "LLM call": genai_llm}

    tracer = tracer_provider.get_tracer("by-hand")
    meter = meter_provider.get_meter("by-hand")
    duration = gm.create_gen_ai_client_operation_duration(meter)
    tokens = gm.create_gen_ai_client_token_usage(meter)

    def hand_tool(count):
        t0 = clock()
        for _ in range(count):
            start = time.perf_counter()
            with tracer.start_as_current_span("execute_tool read_file", kind=SpanKind.INTERNAL,
                                              attributes={ga.GEN_AI_OPERATION_NAME: "execute_tool",
                                                          ga.GEN_AI_TOOL_NAME: "read_file"}):
                A.read_file("README.md")
            duration.record(time.perf_counter() - start,
                            {ga.GEN_AI_OPERATION_NAME: "execute_tool"})
        return clock() - t0

    def hand_llm(count):
        t0 = clock()
        for _ in range(count):
            start = time.perf_counter()
            labels = {ga.GEN_AI_OPERATION_NAME: "chat", ga.GEN_AI_PROVIDER_NAME: "anthropic",
                      ga.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-5"}
            with tracer.start_as_current_span("chat claude-sonnet-4-5", kind=SpanKind.CLIENT,
                                              attributes=labels) as span:
                reply = A.complete(["hello"])
                span.set_attributes({
                    ga.GEN_AI_USAGE_INPUT_TOKENS: reply.usage.input_tokens,
                    ga.GEN_AI_USAGE_OUTPUT_TOKENS: reply.usage.output_tokens,
                    ga.GEN_AI_RESPONSE_FINISH_REASONS: (reply.stop_reason,)})
            tokens.record(reply.usage.input_tokens, {**labels, ga.GEN_AI_TOKEN_TYPE: "input"})
            tokens.record(reply.usage.output_tokens, {**labels, ga.GEN_AI_TOKEN_TYPE: "output"})
            duration.record(time.perf_counter() - start, labels)
        return clock() - t0
    ways["hand-written spans + usage/duration histograms"] = {"tool call": hand_tool,
                                                             "LLM call": hand_llm}
    return ways


# ── measuring ───────────────────────────────────────────────────────────────────────────────

def per_call_ns(loop, n: int, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            elapsed = loop(n)
        finally:
            gc.enable()
        best = min(best, elapsed / n)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    n, runs = args.calls, args.runs

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(DropSpans())
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    inst = KitInstrumentor()
    inst.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, acp=False,
                    translator_settings=TranslatorSettings(sessions_root=None,
                                                           idle_timeout_s=1e9),
                    entry_points=ENTRY_POINTS, ext_state_span_processor=False)
    translator = inst.translator
    A = AGENT
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); {n} calls a loop, "
          f"best of {runs}; CPU time per call")

    # 1. overhead beyond the spans: floor = bare function + the recorded SDK calls by hand;
    #    and the translator's share: the same events fed to it directly
    floor_tracer = tracer_provider.get_tracer("floor")
    floor_turn = floor_tracer.start_span("invoke_agent kit")
    results = {}
    bare = A.bare
    for label, fn, arg in (("tool call", A.read_file, "README.md"),
                           ("LLM call", A.complete, ["hello"])):
        recorded: list = []

        def one(_unused, fn=fn, arg=arg):
            recorded.append(record_one_call(translator, lambda: fn(arg)))
        A.turn(1, one, None)  # inside an instrumented turn, like the timed calls
        sdk_log, events = recorded[0]
        replay, sdk_calls = compile_replay(sdk_log)
        floor_inst = type(translator.metrics)(meter_provider.get_meter("floor"))

        def floor_loop(count, replay=replay, floor_inst=floor_inst, arg=arg):
            t0 = clock()
            for _ in range(count):
                bare(arg)
                replay(floor_tracer, floor_inst, floor_turn)
            return clock() - t0

        def translator_loop(count, events=events, arg=arg):
            process = translator.process
            t0 = clock()
            for _ in range(count):
                bare(arg)
                for event in events:
                    process(event)
            return clock() - t0

        instrumented = per_call_ns(lambda count, fn=fn, arg=arg: A.turn(count, fn, arg), n, runs)
        fed = per_call_ns(lambda count: A.turn(1, lambda _: translator_loop(count), None), n,
                          runs)
        floor = per_call_ns(floor_loop, n, runs)
        translator.process = lambda event: None  # the wrapt layer on its own
        alone = per_call_ns(lambda count, fn=fn, arg=arg: A.turn(count, fn, arg), n, runs)
        del translator.process
        results[label] = (instrumented, fed, floor, sdk_calls, len(events), alone)
    floor_turn.end()
    bare_loop_ns = per_call_ns(lambda count: A.turn(count, bare, "x"), n, runs)

    # 2. suppressed: the instrumented function vs the bare one
    def loop_of(fn, arg):
        def loop(count):
            t0 = clock()
            for _ in range(count):
                fn(arg)
            return clock() - t0
        return loop

    tools = A.Tools()
    bare_ns = per_call_ns(loop_of(A.bare, "x"), n * 5, runs)
    with suppress_instrumentation():
        suppressed_ns = per_call_ns(loop_of(A.read_file, "x"), n * 5, runs)

        def method_loop(count):
            t0 = clock()
            for _ in range(count):
                tools.read("x")  # attribute access + call, as user code does
            return clock() - t0
        suppressed_method_ns = per_call_ns(method_loop, n * 5, runs)

        def bare_method_loop(count, obj=type("T", (), {"read": lambda self, p: p})()):
            t0 = clock()
            for _ in range(count):
                obj.read("x")
            return clock() - t0
        bare_method_ns = per_call_ns(bare_method_loop, n * 5, runs)
    # 3. the same calls made the other ways, on the same providers, inside the same open turn
    other_ways = {}
    for way, loops in alternatives(tracer_provider, meter_provider).items():
        other_ways[way] = {label: per_call_ns(
            lambda count, loop=loop: A.turn(1, lambda _: loop(count), None), n, runs)
            for label, loop in loops.items()}
    assert translator.events_seen > 0
    failures = inst.failures
    inst.uninstrument()

    print("1. an instrumented call inside a turn, against the same spans and metrics by hand")
    layer_worst = total_worst = 0.0
    for label, (instrumented, fed, floor, sdk_calls, n_events, alone) in results.items():
        layer, translator_share = (instrumented - fed) / 1000, (fed - floor) / 1000
        total = (instrumented - floor) / 1000
        layer_worst, total_worst = max(layer_worst, layer), max(total_worst, total)
        print(f"   {label}: instrumented {instrumented / 1000:6.2f} us | its {n_events} events "
              f"fed to the translator {fed / 1000:6.2f} us | by hand ({sdk_calls} SDK calls) "
              f"{floor / 1000:6.2f} us")
        print(f"      overhead beyond the spans {total:6.2f} us = wrapt layer {layer:5.2f} us "
              f"+ translator logic {translator_share:5.2f} us   (target <= "
              f"{TARGET_OVERHEAD_US} us)")
        print(f"      the wrapt layer alone (translator stubbed out): "
              f"{(alone - bare_loop_ns) / 1000:5.2f} us")
    print("2. suppressed (suppress_instrumentation) vs the bare function")
    sup = (suppressed_ns - bare_ns) / 1000
    sup_m = (suppressed_method_ns - bare_method_ns) / 1000
    print(f"   function   bare {bare_ns:6.0f} ns   suppressed {suppressed_ns:6.0f} ns   "
          f"overhead {sup:5.3f} us  (target <= {TARGET_SUPPRESSED_US})")
    print(f"   method     bare {bare_method_ns:6.0f} ns   suppressed {suppressed_method_ns:6.0f} "
          f"ns   overhead {sup_m:5.3f} us  (wrapt's per-access method binding)")
    print(f"   telemetry failures during the run: {failures}")
    print("3. per call, against what a user would otherwise use for those spans")
    print(f"   {'':<48} {'tool call':>10} {'LLM call':>10}")
    print(f"   {'kit-otel instrumentation':<48} "
          + " ".join(f"{results[label][0] / 1000:7.2f} us" for label in ("tool call", "LLM call")))
    for way, per_label in other_ways.items():
        print(f"   {way:<48} "
              + " ".join(f"{per_label[label] / 1000:7.2f} us" for label in ("tool call", "LLM call")))
    if not any("util-genai" in way for way in other_ways):
        print("   (opentelemetry-util-genai is not installed: pip install opentelemetry-util-genai)")
    print(f"targets: overhead beyond the spans {total_worst:.2f} us "
          f"({'met' if total_worst <= TARGET_OVERHEAD_US else 'NOT met'}; the wrapt layer alone "
          f"{layer_worst:.2f} us), suppressed {sup:.3f} us "
          f"({'met' if sup <= TARGET_SUPPRESSED_US else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
