"""End-to-end speed of what a user runs (issue 13): `kit-otel replay` of a file and `kit-otel
serve` catching up on spool files, as real subprocesses with each exporter, against a floor
measured in the same run on the same events.

- floor: `msgspec` decoding every line, plus exactly the OTel SDK calls kit-otel's output
  consists of (recorded, then replayed by hand without logic; bench_pipeline.py), plus the
  SDK's own protobuf encoding of the very spans and metric points (what the OTLP exporters
  send), in batches of the size kit-otel's batch processor uses. CPU time, in a fresh
  interpreter with the GC thresholds of kit-otel's processes (as every in-process figure).
- replay: `kit-otel replay -q FILE` per exporter configuration: wall time (events/s), CPU time
  (user + system) and peak RSS of the process, the interpreter's start included; `startup` is
  the same command on an empty file.
- serve: `kit-otel serve` started on a spool directory already holding every file, exporting
  OTLP gRPC to a local receiver (in this process): the time until the receiver holds every
  span, and serve's CPU and peak RSS.
  Then serve's input layers per line on the long-steps spool files (tail, decode, Items,
  merge by seq).
- idle: `kit-otel serve` holding N spool files of ended processes, all exported: its CPU per
  second of wall while nothing is written, with the spool directory watched by inotify and
  with inotify switched off (every file checked at every poll, as where there is none).
- gc: the share of the cyclic garbage collector in the default path's work.
- scaling: CPU per event of the default path's work (decode, translate, OTLP/JSON encoding of
  spans and metrics) in this process against concurrent sessions, events per turn and distinct
  tools/models; and serve's catch-up against the number of spool files.

The machine may be shared: wall-clock figures move with its load, CPU figures much less, ratios
against the floor least. Medians of --runs. Run: python benchmarks/bench_e2e.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the OTLP receiver and spool writers of the tests

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import SpanProcessor  # noqa: E402

from bench_pipeline import floor_run  # noqa: E402
from kit_otel.model.decoder import decode_line, encode_event  # noqa: E402
from kit_otel.cli.generator import demo_stream  # noqa: E402
from kit_otel.export.otlp_json import OTLPJsonEncoder  # noqa: E402

BATCH = 2048  # spans per export, as pipeline.py's BatchSpanProcessor sends them
TARGET_EVENTS_PER_S = 50_000
TARGET_FLOOR_RATIO = 1.5


# ── the floor ────────────────────────────────────────────────────────────────────────────────

class _EncodeInBatches(SpanProcessor):
    """Ended spans encoded in export-sized batches by `encode` (synchronously: CPU counted)."""

    def __init__(self, encode):
        self.encode, self.pending = encode, []

    def on_end(self, span) -> None:
        self.pending.append(span)
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.encode(self.pending)
            self.pending = []


@contextmanager
def _cli_gc_thresholds():
    """The cyclic GC's thresholds of kit-otel's own processes, for the block."""
    from kit_otel.cli.main import GC_THRESHOLDS
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def floor_cpu(lines: list[bytes], calls) -> float:
    """decode + the same SDK calls + the SDK's protobuf encoding of the same spans/points,
    with the cyclic GC's thresholds of kit-otel's own processes."""
    with _cli_gc_thresholds():
        spans = _EncodeInBatches(lambda batch: encode_spans(batch).SerializeToString())
        reader = InMemoryMetricReader()
        gc.collect()
        cpu = floor_run(lines, calls, spans, reader)
        t0 = time.process_time()
        spans.flush()
        encode_metrics(reader.get_metrics_data()).SerializeToString()
        return cpu + time.process_time() - t0


# In-process figures are taken in a fresh interpreter each: in the benchmark's own process,
# which holds every stream, the cyclic GC's full collections cost what no `kit-otel` process
# pays (the floor moved by 35% between runs with what the benchmark held).
_FRESH = """
import json, sys
sys.path[:0] = sys.argv[3:]
import bench_e2e
from bench_pipeline import record_sdk_calls
lines = open(sys.argv[1], "rb").read().splitlines(keepends=True)
kind = sys.argv[2]
if kind == "floor":
    result = bench_e2e.floor_cpu(lines, record_sdk_calls(lines))
elif kind == "default_path":
    result = bench_e2e.default_path_cpu(lines)
else:
    result = bench_e2e.gc_share(lines)
print(json.dumps(result))
"""


def in_fresh_process(kind: str, lines: list[bytes]):
    """`floor`, `default_path` or `gc_share` of `lines`, measured in a new interpreter."""
    import json
    with tempfile.NamedTemporaryFile(suffix=".ndjson") as data:
        data.write(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
        data.flush()
        done = subprocess.run([sys.executable, "-c", _FRESH, data.name, kind, str(HERE),
                               str(HERE.parent / "tests")], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {kind} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def default_path_cpu(lines: list[bytes], on_start=None) -> float:
    """kit-otel's decode + translate + the direct OTLP/JSON encoding of every span and of the
    metrics, in this process (no files, no threads): the work of the default path, with the
    cyclic GC's thresholds of kit-otel's own processes."""
    with _cli_gc_thresholds():
        return _default_path_cpu(lines, on_start)


def _default_path_cpu(lines: list[bytes], on_start=None) -> float:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from kit_otel.translate.translator import Translator, TranslatorSettings
    encoder = OTLPJsonEncoder()
    spans = _EncodeInBatches(encoder.spans)
    reader = InMemoryMetricReader()
    tp = TracerProvider()
    tp.add_span_processor(spans)
    translator = Translator(tp, MeterProvider(metric_readers=[reader]),
                            TranslatorSettings(sessions_root=None, idle_timeout_s=600))
    gc.collect()
    if on_start is not None:
        on_start()
    t0 = time.process_time()
    process = translator.process
    for line in lines:
        process(decode_line(line))
    translator.close()
    spans.flush()
    encoder.metrics(reader.get_metrics_data())
    return time.process_time() - t0


def gc_share(lines: list[bytes]) -> tuple[float, float, list[int]]:
    """(CPU of the default path's work, CPU inside the cyclic GC's collections, collections
    by generation) on `lines`, in this process."""
    spent, by_generation, started, measuring = [0.0], [0, 0, 0], [0.0], [False]

    def on_gc(phase: str, info: dict) -> None:
        if not measuring[0]:  # (the collection before the measured part is not in it)
            return
        if phase == "start":
            started[0] = time.thread_time()
        else:
            spent[0] += time.thread_time() - started[0]
            by_generation[info["generation"]] += 1

    gc.callbacks.append(on_gc)
    try:
        cpu = default_path_cpu(lines, on_start=lambda: measuring.__setitem__(0, True))
    finally:
        gc.callbacks.remove(on_gc)
    return cpu, spent[0], by_generation


# ── measured subprocesses ────────────────────────────────────────────────────────────────────

# The CLI with its own peak RSS written at exit: a child's ru_maxrss also counts the memory of
# the (large) benchmark process it was forked from, before its exec.
_CLI_REPORTING_PEAK_RSS = """
import atexit, os, sys
def _peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM"))
    with open(os.environ["KIT_OTEL_BENCH_PEAK_FILE"], "w") as out:
        out.write(kib)
atexit.register(_peak)
sys.argv[0] = "kit-otel"
from kit_otel.cli.main import main
sys.exit(main())
"""


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", _CLI_REPORTING_PEAK_RSS, *args]


class Measured:
    def __init__(self, wall: float, cpu: float, rss_mib: float, code: int, stderr: str):
        self.wall, self.cpu, self.rss_mib, self.code, self.stderr = wall, cpu, rss_mib, code, stderr


def _wait_measured(proc: subprocess.Popen, t0: float, stderr_path: Path,
                   peak_path: Path) -> Measured:
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        peak_mib = int(peak_path.read_text()) / 1024
    except (OSError, ValueError):
        peak_mib = float("nan")  # killed before its exit handlers ran
    return Measured(wall, usage.ru_utime + usage.ru_stime, peak_mib,
                    proc.returncode, stderr_path.read_text(errors="replace")[-2000:])


def clean_env(work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KIT_OTEL_"))}
    env.update({"KIT_OTEL_CONFIG": os.devnull, "KIT_OTEL_PROMETHEUS_PORT": "0",
                "KIT_OTEL_BENCH_PEAK_FILE": str(work / "peak-rss-kib"),
                "KIT_OTEL_OUTPUT_DIR": str(work / "out"), "KIT_OTEL_SESSIONS_ROOT": str(work)})
    env.update(extra)
    return env


def run_replay(path: Path, env: dict[str, str], work: Path) -> Measured:
    stderr_path = work / "replay.stderr"
    (work / "peak-rss-kib").unlink(missing_ok=True)
    with open(stderr_path, "w") as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cli_command("replay", "-q", str(path)),
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr)
        return _wait_measured(proc, t0, stderr_path, work / "peak-rss-kib")


def replay_configs(receiver) -> list[tuple[str, dict[str, str]]]:
    return [
        ("none", {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}),
        ("default (OTLP-JSON files + /metrics)", {}),
        ("OTLP-JSON traces only", {"OTEL_TRACES_EXPORTER": "otlp_json_file",
                                   "OTEL_METRICS_EXPORTER": "none"}),
        ("OTLP gRPC", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                       **receiver.env("grpc")}),
        ("OTLP HTTP", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                       **receiver.env("http/protobuf")}),
        ("console", {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"}),
    ]


def _median(runs: list[Measured]) -> Measured:
    return Measured(statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs),
                    statistics.median(r.rss_mib for r in runs), max(r.code for r in runs),
                    runs[-1].stderr)


def bench_replay(name: str, lines: list[bytes], runs: int, receiver, work: Path) -> None:
    path = work / f"{name}.ndjson"
    path.write_bytes(b"".join(lines))
    (work / "empty.ndjson").write_bytes(b"")
    floor = statistics.median(in_fresh_process("floor", lines) for _ in range(runs))
    in_process = statistics.median(in_fresh_process("default_path", lines) for _ in range(runs))
    startup = _median([run_replay(work / "empty.ndjson", clean_env(work), work)
                       for _ in range(runs)])
    n = len(lines)
    print(f"  floor: {floor:.3f} s CPU = {n / floor:,.0f} events/s; the default path's work in "
          f"process: {in_process:.3f} s = {n / in_process:,.0f} events/s "
          f"({in_process / floor:.2f}x floor); replay startup {startup.wall:.2f} s wall, "
          f"{startup.cpu:.2f} s CPU, {startup.rss_mib:.0f} MiB")
    print(f"  {'exporters':<38} {'events/s':>9} {'wall s':>7} {'CPU s':>6} "
          f"{'CPU/floor':>9} {'(-startup)':>10} {'peak RSS':>9}")
    for label, extra in replay_configs(receiver):
        measured = _median([run_replay(path, clean_env(work, **extra), work)
                            for _ in range(runs)])
        if measured.code != 0:
            print(f"  {label:<38} FAILED (exit {measured.code}): {measured.stderr}")
            continue
        net = max(measured.cpu - startup.cpu, 1e-9)
        print(f"  {label:<38} {n / measured.wall:>9,.0f} {measured.wall:>7.2f} "
              f"{measured.cpu:>6.2f} {measured.cpu / floor:>9.2f} {net / floor:>10.2f} "
              f"{measured.rss_mib:>6.0f} MiB  load {os.getloadavg()[0]:.1f}", flush=True)


# ── serve catching up ────────────────────────────────────────────────────────────────────────

def spool_processes(count: int, turns: int, root: Path, words_per_step: int = 0):
    from test_serve_helpers import kit_process
    start = 1_781_000_000 * 10**9
    return [kit_process(1000 + i, 50_000 + i, root, turns=turns, index=i,
                        start_ns=start + i * 7 * 10**9, words_per_step=words_per_step)
            for i in range(count)]


def _spans_in(requests) -> int:
    return sum(len(ss.spans) for request in requests for rs in request.resource_spans
               for ss in rs.scope_spans)


def expected_spans(processes, root: Path) -> int:
    from test_serve_helpers import reference_spans
    return len(reference_spans(processes, root))


def run_serve(processes, receiver, work: Path, timeout_s: float = 600) -> tuple[Measured, float]:
    """(serve's measurement, seconds from its start until every span was received)."""
    import shutil
    import signal
    spool, state = work / "spool", work / "state"
    for d in (spool, state):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    handles: dict[str, object] = {}
    for process in processes:
        for name, line in process.lines:
            fh = handles.get(name) or handles.setdefault(name, open(spool / name, "ab"))
            fh.write(line)
    for fh in handles.values():
        fh.close()
    want = expected_spans(processes, work) if processes else 0
    receiver.trace_requests.clear()
    receiver.metric_requests.clear()
    env = clean_env(work, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
                    KIT_OTEL_SPOOL_DIR=str(spool), KIT_OTEL_STATE_DIR=str(state),
                    KIT_OTEL_SOCKET_PATH="off", KIT_OTEL_IDLE_TIMEOUT_S="86400",
                    **receiver.env("grpc"))
    stderr_path = work / "serve.stderr"
    (work / "peak-rss-kib").unlink(missing_ok=True)
    seen, counted = 0, 0
    with open(stderr_path, "w") as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cli_command("serve"), env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr)
        caught_up = float("nan")
        while time.perf_counter() - t0 < timeout_s and proc.poll() is None:
            requests = receiver.trace_requests
            if len(requests) > counted:
                seen += _spans_in(requests[counted:])
                counted = len(requests)
            if seen >= want and (want or "serving" in stderr_path.read_text(errors="replace")):
                caught_up = time.perf_counter() - t0
                break
            time.sleep(0.02)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        return _wait_measured(proc, t0, stderr_path, work / "peak-rss-kib"), caught_up


def serve_startup(receiver, work: Path, runs: int) -> Measured:
    """`serve` started on an empty spool directory and stopped once it serves: the CPU of its
    start (imports, exporters, price table) and stop, which a catch-up's CPU includes."""
    return _median([run_serve([], receiver, work, timeout_s=60)[0] for _ in range(runs)])


def bench_serve(label: str, processes, runs: int, receiver, work: Path,
                startup: Measured) -> None:
    lines = [line for p in processes for _, line in p.lines]
    by_time = sorted(lines, key=lambda line: decode_line(line).ts_ns)
    floor = statistics.median(in_fresh_process("floor", by_time) for _ in range(runs))
    results = [run_serve(processes, receiver, work) for _ in range(runs)]
    caught = [r[1] for r in results]
    measured = _median([r[0] for r in results])
    files = sum(len(p.files) for p in processes)
    if any(c != c for c in caught):
        print(f"  {label}: serve did NOT catch up (exit {measured.code}): {measured.stderr}")
        return
    wall = statistics.median(caught)
    net = max(measured.cpu - startup.cpu, 1e-9)
    print(f"  {label}: {len(lines):,} lines in {files} spool files: caught up in {wall:.2f} s = "
          f"{len(lines) / wall:,.0f} events/s; CPU {measured.cpu:.2f} s "
          f"({measured.cpu / floor:.2f}x floor {floor:.2f} s; without start-up "
          f"{net:.2f} s = {len(lines) / net:,.0f} events/s, {net / floor:.2f}x), peak RSS "
          f"{measured.rss_mib:.0f} MiB; load average {os.getloadavg()[0]:.1f}", flush=True)


_SERVE_WITHOUT_INOTIFY = """
import errno, sys
import kit_otel.serve.spool_directory as spool_directory
def _no_inotify(*args, **kwargs):
    raise OSError(errno.ENOSYS, "inotify switched off by the benchmark")
spool_directory.DirectoryWatcher = _no_inotify
sys.argv[0] = "kit-otel"
from kit_otel.cli.main import main
sys.exit(main(["serve"]))
"""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle_serve(counts: list[int], receiver, work: Path, window_s: float = 10.0,
                     settle_s: float = 2.0) -> None:
    """`kit-otel serve` with N spool files of ended processes, all read and exported: its CPU
    per second of wall while nothing is written, with the spool directory watched by inotify
    and, in the same run, with inotify switched off (every file checked at every poll)."""
    import shutil
    import signal
    for count in counts:
        processes = spool_processes(count, 1, work / f"idle-{count}")
        want = expected_spans(processes, work)
        for watch in (True, False):
            spool, state = work / "spool", work / "state"
            for d in (spool, state):
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True)
            for process in processes:
                for name, line in process.lines:
                    with open(spool / name, "ab") as fh:
                        fh.write(line)
            receiver.trace_requests.clear()
            env = clean_env(work, OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="otlp",
                            KIT_OTEL_SPOOL_DIR=str(spool), KIT_OTEL_STATE_DIR=str(state),
                            KIT_OTEL_SOCKET_PATH="off", KIT_OTEL_IDLE_TIMEOUT_S="86400",
                            KIT_OTEL_SPOOL_RETENTION_S="86400", **receiver.env("grpc"))
            command = cli_command("serve") if watch else [sys.executable, "-c",
                                                          _SERVE_WITHOUT_INOTIFY]
            with open(work / "idle.stderr", "w") as stderr:
                proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                deadline = time.monotonic() + 300
                while _spans_in(receiver.trace_requests) < want and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(settle_s)  # the last commit and metric export after the catch-up
                cpu0, wall0 = _cpu_seconds(proc.pid), time.perf_counter()
                time.sleep(window_s)
                share = (_cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - wall0)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            how = "watched (inotify)" if watch else "inotify off: every file at every poll"
            print(f"  idle serve, {count:,} spool files, {how}: {share:.2%} of a core; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)


def bench_input_layers(processes, work: Path) -> None:
    """serve's input per line, layer by layer, on the same spool files: reading (tail), our
    decode alone, reading + decoding into Items (SpoolFile), and a process's files merged by
    seq (Stream): what the spool layer adds on top of reading and decoding."""
    import re

    from kit_otel.sources.spool import SpoolFile, Stream
    from kit_otel.sources.tail import FileTailer
    spool = work / "layers"
    spool.mkdir(exist_ok=True)
    by_pid: dict[int, list[str]] = {}
    for process in processes:
        for name, line in process.lines:
            path = spool / name
            with open(path, "ab") as out:
                out.write(line)
            pid = int(re.match(r"kit-(\d+)-", name).group(1))
            if str(path) not in by_pid.setdefault(pid, []):
                by_pid[pid].append(str(path))
    total = sum(len(p.lines) for p in processes)

    def tail():
        for paths in by_pid.values():
            for path in paths:
                tailer = FileTailer(path)
                while tailer.read_available(1024):
                    pass
                tailer.close()

    def decode():
        for paths in by_pid.values():
            for path in paths:
                with open(path, "rb") as lines:
                    for line in lines:
                        decode_line(line)

    def items():
        for paths in by_pid.values():
            for path in paths:
                spool_file = SpoolFile(path)
                while spool_file.fill():
                    spool_file.buffer.clear()
                spool_file.close()

    def merged():
        taken = 0
        for pid, paths in by_pid.items():
            stream = Stream(str(pid), pid)
            for path in paths:
                stream.add_file(SpoolFile(path))
            now = time.monotonic()
            while stream.next_item(now, 5.0) is not None:
                taken += 1
            stream.close()
        assert taken == total, (taken, total)

    def per_line(run) -> float:
        from kit_otel.cli.main import GC_THRESHOLDS
        best, thresholds = float("inf"), gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)  # as in serve's process
        try:
            for _ in range(3):
                gc.collect()
                t0 = time.process_time()
                run()
                best = min(best, time.process_time() - t0)
        finally:
            gc.set_threshold(*thresholds)
        return best / total * 1e6

    print(f"  serve's input layers, {total:,} lines (least of 3, us/line): tail "
          f"{per_line(tail):.2f}, decode alone {per_line(decode):.2f}, tail + decode into Items "
          f"{per_line(items):.2f}, merged by seq {per_line(merged):.2f}; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)


# ── scaling ──────────────────────────────────────────────────────────────────────────────────

def _lines(events) -> list[bytes]:
    return [encode_event(e) for e in events]


def _with_distinct_names(lines: list[bytes], distinct: int) -> list[bytes]:
    """The stream with its models and tools renamed turn by turn to `distinct` names each."""
    import msgspec
    out, turns, count = [], {}, 0
    for line in lines:
        doc = msgspec.json.decode(line)
        session = (doc.get("pid"), doc.get("session_path"))
        if doc.get("type") == "before_agent_start":
            count += 1
            turns[session] = count % distinct
        slot = turns.get(session, 0)
        data = doc.get("data") or {}
        for key in ("Model", "NewModel", "ToolName"):
            if isinstance(data.get(key), str) and data[key]:
                data[key] = f"{data[key]}-{slot}"
        out.append(msgspec.json.encode(doc) + b"\n")
    return out


def concurrent_sessions(seed: int, concurrent: int, total: int) -> list[bytes]:
    """`total` one-turn sessions in rounds of `concurrent` that all start within one second
    (so that many are open at once), rounds an hour apart: every point of the curve has the
    same events, only how many sessions are live together changes."""
    import random

    from kit_otel.cli.generator import MODELS, demo_session, session_file_path
    rng = random.Random(seed)
    start = 1_781_000_000 * 10**9
    root = Path("/home/alice/.kit/sessions")
    events = []
    for r in range(max(1, total // concurrent)):
        for i in range(concurrent):
            begin = start + r * 3600 * 10**9 + i * (10**9 // concurrent)
            provider, model = MODELS[i % len(MODELS)]
            number = r * concurrent + i
            events += demo_session(rng, pid=4000 + number, start_ns=begin, provider=provider,
                                   model=model, turns=1,
                                   session_path=str(session_file_path(root, f"/src/p{i % 7}",
                                                                      begin, rng))).events
    events.sort(key=lambda e: (e.ts_ns, e.pid, e.seq))
    return _lines(events)


def _verdict(costs: list[float]) -> str:
    """Largest size's cost per event against the cheapest point's: fixed costs make small
    sizes dearer, so a curve is worse than linear only where its end rises above its best."""
    ratio = costs[-1] / min(costs)
    return (f"largest / cheapest cost per event = {ratio:.2f} "
            f"({'linear' if ratio < 1.5 else 'WORSE than linear'})")


def _curve(label: str, points: list[tuple[str, list[bytes]]]) -> None:
    costs = []
    for name, lines in points:
        # the least of three on small points: a loaded machine inflates short runs the most
        cpu = min(in_fresh_process("default_path", lines)
                  for _ in range(3 if len(lines) < 50_000 else 1))
        costs.append(cpu / len(lines) * 1e6)
        print(f"    {label} {name:>7}: {len(lines):>9,} events  {costs[-1]:6.2f} us/event  "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        del lines
        gc.collect()
    print(f"    {label}: {_verdict(costs)}")


def bench_scaling(quick: bool, receiver, work: Path, runs: int, largest: int = 10_000,
                  startup: Measured | None = None) -> None:
    sizes = (10, 100) if quick else tuple(s for s in (10, 100, 1000, 10_000) if s <= largest)
    total = 200 if quick else max(sizes)
    print(f"  concurrent sessions ({total:,} one-turn sessions, N open at once; default path's "
          f"work in process):")
    _curve("sessions", [(str(s), concurrent_sessions(3, s, total)) for s in sizes])
    print("  events per turn (LLM steps streaming N text chunks each):")
    points = []
    for words in sizes:
        turns = max(1, 4000 // words) if not quick else 1
        lines = _lines(demo_stream(4, sessions=2, turns=turns, words_per_step=words))
        points.append((str(words), lines))
    _curve("chunks", points)
    print("  distinct models and tools (30 sessions x 4 turns renamed):")
    base = _lines(demo_stream(5, sessions=30 if not quick else 3, turns=4))
    _curve("names", [(str(k), _with_distinct_names(base, k)) for k in
                     ((1, 10) if quick else (1,) + tuple(s for s in sizes if s <= 1000))])
    print("  stream length (kit-otel replay, default exporters): peak RSS")
    rss = []
    for turns in ((2, 4) if quick else (15, 60, 240, 960)):
        lines = _lines(demo_stream(6, sessions=10, turns=turns))
        path = work / "length.ndjson"
        path.write_bytes(b"".join(lines))
        measured = run_replay(path, clean_env(work), work)
        rss.append(measured.rss_mib)
        print(f"    turns {turns:>5}: {len(lines):>9,} events  {len(lines) / measured.wall:8,.0f} "
              f"events/s  peak RSS {measured.rss_mib:6.1f} MiB", flush=True)
        path.unlink()
    print(f"    peak RSS longest / shortest = {rss[-1] / rss[0]:.2f}; the last 4x of length "
          f"adds {rss[-1] / rss[-2] - 1:+.0%}")
    startup = startup or serve_startup(receiver, work, 1)
    total_turns = 4 if quick else 1000
    print(f"  spool files for serve (OTLP gRPC catch-up of {total_turns} turns spread over N KIT "
          f"processes; CPU without serve's start-up of {startup.cpu:.2f} s; 'x in-process' = "
          f"against the default path's work on the same lines, which evens out the mix: fewer "
          f"turns per process means more session starts per line):")
    costs = []
    for count in ((1, 4) if quick else (1,) + tuple(s for s in sizes if s <= 1000)):
        processes = spool_processes(count, max(1, total_turns // count), work / f"s{count}")
        lines = [line for p in processes for _, line in p.lines]
        files = sum(len(p.files) for p in processes)
        in_process = in_fresh_process("default_path",
                                      sorted(lines, key=lambda line: decode_line(line).ts_ns))
        measured, caught = run_serve(processes, receiver, work)
        if caught != caught:
            print(f"    processes {count:>5}: did NOT catch up: {measured.stderr}")
            continue
        net = max(measured.cpu - startup.cpu, 1e-9)
        costs.append(net / in_process)
        print(f"    processes {count:>5}: {files:>5} files {len(lines):>8,} lines  caught up in "
              f"{caught:6.2f} s = {len(lines) / caught:8,.0f} events/s, CPU "
              f"{net / len(lines) * 1e6:6.1f} us/line = {costs[-1]:.2f}x in-process, "
              f"peak RSS {measured.rss_mib:.0f} MiB (load average {os.getloadavg()[0]:.1f})",
              flush=True)
    if costs:
        print(f"    serve: {_verdict(costs)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the entry points run")
    parser.add_argument("--largest", type=int, default=10_000,
                        help="largest size of the scaling curves (10 ... 10000)")
    parser.add_argument("--only", default="replay,serve,idle,gc,scaling",
                        help="comma-separated sections (default %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.turns, args.runs = 2, 2, 1
    sections = set(args.only.split(","))
    from otlp_receiver import OTLPReceiver
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), load average "
          f"{os.getloadavg()[0]:.1f}; medians of {args.runs}")
    with tempfile.TemporaryDirectory(prefix="kit-otel-e2e-") as tmp, \
            OTLPReceiver(http=True) as receiver:
        work = Path(tmp)
        if "replay" in sections:
            streams = [
                ("demo", _lines(demo_stream(1, sessions=args.sessions, turns=args.turns))),
                ("long-steps", _lines(demo_stream(2, sessions=max(1, args.sessions // 3),
                                                  turns=max(1, args.turns // 3),
                                                  words_per_step=60 if args.quick else 600))),
            ]
            for name, lines in streams:
                print(f"== replay, {name} stream: {len(lines):,} events, "
                      f"{sum(map(len, lines)) / 1e6:.1f} MB", flush=True)
                bench_replay(name, lines, args.runs, receiver, work)
                receiver.trace_requests.clear()
                receiver.metric_requests.clear()
        startup = None
        if sections & {"serve", "scaling"}:
            startup = serve_startup(receiver, work, args.runs)
            print(f"serve start-up and stop: {startup.cpu:.2f} s CPU, {startup.wall:.2f} s wall, "
                  f"{startup.rss_mib:.0f} MiB", flush=True)
        if "serve" in sections:
            print("== serve catch-up, OTLP gRPC to a local receiver", flush=True)
            count = max(1, args.sessions // 3)
            bench_serve(f"{count} KIT processes x {args.turns} turns",
                        spool_processes(count, args.turns, work / "serve-demo"), args.runs,
                        receiver, work, startup)
            long_steps = spool_processes(count, max(1, args.turns // 6), work / "serve-long",
                                         words_per_step=60 if args.quick else 600)
            bench_serve(f"{count} KIT processes, long streaming steps", long_steps, args.runs,
                        receiver, work, startup)
            bench_input_layers(long_steps, work)
        if "idle" in sections:
            print("== idle serve", flush=True)
            bench_idle_serve([10] if args.quick else [100, 1000], receiver, work)
        if "gc" in sections:
            lines = _lines(demo_stream(1, sessions=args.sessions, turns=args.turns))
            cpu, in_gc, by_generation = in_fresh_process("gc_share", lines)
            print(f"== cyclic GC in the default path's work (demo stream, {len(lines):,} events, "
                  f"in process, the CLI's thresholds): {in_gc:.2f} s of {cpu:.2f} s CPU "
                  f"({in_gc / cpu:.0%}); "
                  f"collections by generation {by_generation}; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            del lines
        if "scaling" in sections:
            print("== scaling", flush=True)
            bench_scaling(args.quick, receiver, work, args.runs, args.largest, startup)
    print(f"targets: default replay >= {TARGET_EVENTS_PER_S:,} events/s and <= "
          f"{TARGET_FLOOR_RATIO}x floor; serve catch-up >= {TARGET_EVENTS_PER_S:,} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
