"""Simulated KIT processes writing spool files the way the bridge does, and readers of what
`kit-otel serve` exported (imported by the test_serve* modules; holds no tests itself).

The bridge writes one spool file per bridge *instance*: the main agent's, one per in-process
subagent's child agent, and a new one after each extension hot reload; every file starts with a
`bridge_start` line and all of them share the process's seq counter. `kit_process` reproduces
that from a generator session (kit_otel.cli.generator) encoded with `encode_event`.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kit_otel.model import events as ev
from kit_otel.model.decoder import encode_event
from kit_otel.cli.generator import MODELS, demo_session, session_file_path, write_session_header
from kit_otel.model.timestamps import format_ts

PROJECTS = ["/home/alice/src/payments", "/home/alice/src/kit-otel", "/srv/ci/webapp"]


@dataclass
class KitProcess:
    pid: int
    lines: list[tuple[str, bytes]]  # (spool file name, NDJSON line), in write order
    events: list[ev.Event]  # the KIT events (no bridge_start lines)
    files: list[str] = field(default_factory=list)

    def usage_totals(self) -> dict[str, float]:
        """Token and cost sums of every llm_usage event (main agent and subagents)."""
        totals = Counter()
        for event in self.events:
            if event.type == "llm_usage":
                d = event.data
                totals["input"] += d.InputTokens
                totals["output"] += d.OutputTokens
                totals["cache_read"] += d.CacheReadTokens
                totals["cache_write"] += d.CacheWriteTokens
                totals["cost"] += d.Cost
        return dict(totals)


def kit_process(seed: int, pid: int, sessions_root: Path, *, turns: int = 6,
                start_ns: int | None = None, index: int = 0,
                words_per_step: int = 0) -> KitProcess:
    """One KIT process's spool lines: a realistic session (parallel tools, a subagent with its
    own child-agent file, retries, an error turn, a compaction, a model change, a hot reload)."""
    rng = random.Random(seed)
    start = start_ns if start_ns is not None else time.time_ns()
    cwd = PROJECTS[index % len(PROJECTS)]
    provider, model = MODELS[index % 3]
    path = session_file_path(sessions_root, cwd, start, rng)
    write_session_header(path, cwd, uuid.UUID(int=rng.getrandbits(128)).hex, start)
    script = demo_session(rng, pid=pid, session_path=str(path), start_ns=start,
                          provider=provider, model=model, turns=turns,
                          words_per_step=words_per_step)
    events = script.events
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start / 1e9))
    instance = 0
    seq = 0
    lines: list[tuple[str, bytes]] = []
    files: list[str] = []

    def new_file(event: ev.Event, child: bool) -> str:
        nonlocal instance, seq
        instance += 1
        name = f"kit-{pid}-{stamp}.{start % 10**9:09d}Z-{instance}.ndjson"
        files.append(name)
        seq += 1
        header = ev.make_event("bridge_start", event.ts_ns, seq=seq, pid=pid,
                               session_path=event.session_path, source="bridge",
                               agent="subagent" if child else "main",
                               parent_tool_call_id=event.parent_tool_call_id,
                               data=ev.BridgeStart(BridgeVersion="test",
                                                   StartedAt=format_ts(event.ts_ns)))
        lines.append((name, encode_event(header)))
        return name

    main_file = None
    child_files: dict[str, str] = {}  # the parent's subagent call → its child's file
    previous_type = ""
    for event in events:
        if event.agent == "subagent":  # a child Kit's own bridge instance, one file each
            target = child_files.get(event.parent_tool_call_id)
            if target is None:
                target = child_files[event.parent_tool_call_id] = new_file(event, True)
        else:
            if event.type == "subagent_end":
                child_files.pop(event.data.ToolCallID, None)
            if main_file is None or (event.type == "session_start"
                                     and previous_type == "session_shutdown"):
                main_file = new_file(event, False)  # a hot reload starts a new instance
            target = main_file
            previous_type = event.type
        seq += 1
        lines.append((target, encode_event(ev.Event(
            type=event.type, data=event.data, ts_ns=event.ts_ns, seq=seq, pid=pid,
            session_path=event.session_path, source=event.source, agent=event.agent,
            parent_tool_call_id=event.parent_tool_call_id, state=event.state))))
    return KitProcess(pid, lines, events, files)


class SpoolWriter(threading.Thread):
    """Appends a KIT process's lines to its spool files, with small sleeps (a live process)."""

    def __init__(self, spool_dir: Path, process: KitProcess, *, every: int = 25,
                 sleep_s: float = 0.002, seed: int = 0):
        super().__init__(daemon=True, name=f"spool-writer-{process.pid}")
        self.spool_dir = spool_dir
        self.process = process
        self.every = every
        self.sleep_s = sleep_s
        self.rng = random.Random(seed)
        self.written = 0

    def run(self) -> None:
        handles = {}
        try:
            for name, line in self.process.lines:
                fh = handles.get(name)
                if fh is None:
                    fh = handles[name] = open(self.spool_dir / name, "ab", buffering=0)
                fh.write(line)
                self.written += 1
                if self.written % self.every == 0:
                    time.sleep(self.sleep_s * self.rng.uniform(0.5, 1.5))
        finally:
            for fh in handles.values():
                fh.close()


def write_all(spool_dir: Path, process: KitProcess) -> None:
    for name, line in process.lines:
        with open(spool_dir / name, "ab") as fh:
            fh.write(line)


def span_key(span) -> tuple:
    """Identity of a span that does not depend on its ids."""
    a = span.attributes
    return (span.name, span.start_ns, span.end_ns, a.get("gen_ai.tool.call.id", ""),
            a.get("kit.step.number", -1), a.get("kit.pid", 0))


def span_content(span) -> tuple:
    """Everything about a span that must be the same in two runs (ids included)."""
    return (span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind,
            span.start_ns, span.end_ns, tuple(sorted((k, repr(v)) for k, v in
                                                     span.attributes.items())),
            span.status_code, tuple((e[0], e[1]) for e in span.events), tuple(span.links))


def serve_env(receiver, spool_dir: Path, state_dir: Path, sessions_root: Path,
              **extra: str) -> dict[str, str]:
    """Environment for a `kit-otel serve` subprocess exporting to `receiver` over gRPC."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update(receiver.env())
    env.update({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "KIT_OTEL_SPOOL_DIR": str(spool_dir), "KIT_OTEL_STATE_DIR": str(state_dir),
        "KIT_OTEL_SESSIONS_ROOT": str(sessions_root), "KIT_OTEL_IDLE_TIMEOUT_S": "86400",
        "KIT_OTEL_CONFIG": os.devnull, "KIT_OTEL_SOCKET_PATH": "off",
    })
    env.update(extra)
    return env


def reference_spans(processes: list[KitProcess], sessions_root: Path) -> list[tuple]:
    """(span_key, attributes) of an in-memory translation of the processes' spool lines, in
    seq order: what `serve` must export."""
    from harness import make_harness

    from kit_otel.config import Settings
    from kit_otel.model.decoder import decode_line
    from kit_otel.export.pipeline import translator_settings

    # the settings as serve maps them (content policy, ext-state keys and all)
    h = make_harness(translator_settings(Settings(sessions_root=str(sessions_root),
                                                  idle_timeout_s=86400)))
    for process in processes:
        events = sorted((decode_line(line) for _, line in process.lines), key=lambda e: e.seq)
        h.feed(events)
    out = []
    for s in h.spans:
        a = dict(s.attributes)
        out.append(((s.name, s.start_time, s.end_time, a.get("gen_ai.tool.call.id", ""),
                     a.get("kit.step.number", -1), a.get("kit.pid", 0)), _norm(a)))
    return out


def _norm(attributes: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v)
                        for k, v in attributes.items()))


def received_spans(receiver) -> list[tuple]:
    """(span_key, attributes) of every span the receiver got, re-deliveries collapsed by id."""
    seen = {}
    for s in receiver.spans():
        seen.setdefault(s.id, s)
    return [(span_key(s), _norm(s.attributes)) for s in seen.values()]


class ServeProcess:
    """`kit-otel serve` as a real subprocess; its stderr is collected in `log`."""

    def __init__(self, env: dict[str, str], *args: str):
        import subprocess
        import sys
        self.proc = subprocess.Popen([sys.executable, "-m", "kit_otel.cli.main", "serve", *args],
                                     env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.log: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            if "serving " in line:
                self.ready.set()

    def wait_ready(self, timeout: float = 30) -> None:
        if not self.ready.wait(timeout):
            self.kill()
            raise AssertionError("serve did not start:\n" + "\n".join(self.log))

    def kill(self) -> None:
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(5)

    def terminate(self, timeout: float = 60) -> int:
        import signal
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def text(self) -> str:
        return "\n".join(self.log)


def assert_each_span_once(receiver) -> int:
    """No span was produced twice: every span key has one single span (ids included). An
    export retried after a timeout can re-deliver a batch; that is an exact copy (same ids), which
    backends store once. Returns how many such re-deliveries the receiver saw."""
    from collections import defaultdict
    by_key = defaultdict(set)
    spans = receiver.spans()
    for span in spans:
        by_key[span_key(span)].add(span_content(span))
    twice = [key for key, contents in by_key.items() if len(contents) > 1]
    assert not twice, f"spans produced twice: {twice[:3]}"
    return len(spans) - len({s.id for s in spans})
