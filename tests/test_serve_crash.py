"""Crash safety: `kill -9` of `kit-otel serve` at random points while KIT processes stream
events, then restart; what the receiver holds equals an uninterrupted run: no span missing, none
produced twice, counters exact.

About re-delivery: a kill that lands after the collector accepted a batch but before the
checkpoint covering it reached the disk makes the next run send that batch again. Exactly-once
towards a sink without transactions cannot close that window; kit-otel makes such a re-delivery
an exact copy (same trace and span ids, derived from the events), which trace backends store
once. So spans are compared by id and content: any span key must map to one single span (no
re-translation with new ids, which would be a real duplicate), and the set of spans must equal
the uninterrupted run's, ids included.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict

import pytest

from otlp_receiver import OTLPReceiver
from test_serve_helpers import (ServeProcess, SpoolWriter, kit_process, reference_spans,
                                serve_env, span_content, span_key, write_all)

COUNTERS = ("kit.tokens", "kit.cost.usd", "kit.llm.calls", "kit.turns", "kit.tool.calls",
            "kit.errors", "kit.retries", "kit.compactions", "kit.subagents", "kit.sessions",
            "kit_otel.events", "kit_otel.events.rejected", "kit_otel.dropped")


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions")
    start = time.time_ns()
    procs = [kit_process(101, 40101, root, turns=8, index=0, start_ns=start),
             kit_process(102, 40102, root, turns=8, index=1, start_ns=start + 3_000_000)]
    return root, procs


def counter_series(receiver) -> dict:
    out = {}
    for name in COUNTERS:
        for key, point in receiver.metric_series(name).items():
            out[(name, key)] = point.value
    return out


@pytest.fixture(scope="module")
def uninterrupted(workload, tmp_path_factory):
    """One run without interruption: the spans and counters every crashed run must match."""
    root, procs = workload
    base = tmp_path_factory.mktemp("uninterrupted")
    spool, state = base / "spool", base / "state"
    spool.mkdir()
    with OTLPReceiver() as rx:
        serve = ServeProcess(serve_env(rx, spool, state, root))
        serve.wait_ready()
        for p in procs:
            write_all(spool, p)
        expected = len(reference_spans(procs, root))
        rx.wait_for(lambda: len(rx.spans()) >= expected, timeout=60)
        assert serve.terminate() == 0, serve.text()
        spans = rx.spans()
        contents = {span_content(s) for s in spans}
        assert len(contents) == len(spans) == expected
        return contents, counter_series(rx)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_and_restart(seed, workload, uninterrupted, tmp_path):
    root, procs = workload
    want_spans, want_counters = uninterrupted
    rng = random.Random(seed)
    spool, state = tmp_path / "spool", tmp_path / "state"
    spool.mkdir()
    logs = []
    progress = []  # (lines written, spans received) at each kill
    with OTLPReceiver() as rx:
        env = serve_env(rx, spool, state, root)
        writers = [SpoolWriter(spool, p, every=2, sleep_s=0.012, seed=seed * 10 + i)
                   for i, p in enumerate(procs)]
        serve = ServeProcess(env)
        for w in writers:
            w.start()
        for _ in range(4):
            if rng.random() < 0.25:  # sometimes while it is still starting
                time.sleep(rng.uniform(0.0, 0.8))
            else:
                serve.wait_ready()
                time.sleep(rng.uniform(0.0, 0.6))
            serve.kill()
            progress.append((sum(w.written for w in writers), len(rx.spans())))
            logs.append(serve.text())
            time.sleep(rng.uniform(0.0, 0.2))
            serve = ServeProcess(env)
        for w in writers:
            w.join(60)
        serve.wait_ready()
        try:
            rx.wait_for(lambda: len({s.id for s in rx.spans()}) >= len(want_spans), timeout=90,
                        message="spans missing after the restarts")
        finally:
            code = serve.terminate()
            logs.append(serve.text())
        assert code == 0, logs[-1]
        got = rx.spans()
        contents = [span_content(s) for s in got]
        by_key = defaultdict(set)
        for s, content in zip(got, contents):
            by_key[span_key(s)].add(content)
        produced_twice = {k: v for k, v in by_key.items() if len(v) > 1}
        assert not produced_twice, f"spans translated twice: {list(produced_twice)[:3]}"
        assert set(contents) == want_spans, "\n\n".join(logs)
        redelivered = len(contents) - len(set(contents))
        print(f"seed {seed}: {len(got)} spans received, {redelivered} exact re-deliveries; "
              f"(lines written, spans received) at each kill: {progress}")
        assert counter_series(rx).keys() == want_counters.keys()
        for key, value in want_counters.items():
            assert counter_series(rx)[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
