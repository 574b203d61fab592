"""The `kit-otel` command line."""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import logging
import os
import signal
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kit_otel import __version__
from kit_otel.config import describe, load_settings
from kit_otel.model.decoder import DecodeError, DecodeFailure, OversizeLine, decode_line, iter_stream
from kit_otel.export.pipeline import Pipeline, start_failure
from kit_otel.sources.replay_order import group_by_process, merge_by_seq
from kit_otel.cli.summary import RichestTurnKeeper, Summary
from kit_otel.sources.tail import FileTailer

log = logging.getLogger("kit_otel")

# the modules that add their own subcommands (each has `add_parser(subparsers)`)
COMMAND_MODULES = ("kit_otel.cli.bridge_install", "kit_otel.serve.daemon", "kit_otel.cli.doctor")

EPILOG = """examples:
  kit-otel demo                         # a realistic KIT session through the full pipeline
  kit-otel demo --serve                 # ... and keep /metrics up until Ctrl-C
  kit-otel replay spool/*.ndjson        # export recorded events (OTLP by OTEL_* settings)
  OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp kit-otel replay events.ndjson
  kit-otel summary events.ndjson        # tokens, cost, tools per turn and model; no export
  kit-otel config                       # effective settings and where each came from
"""


# Exit codes: each says what went wrong, so a script can tell "fix your input" from "start a
# Collector". 2 is argparse's own code for a bad command line; config errors share it.
EXIT_OK = 0
EXIT_NOT_DELIVERED = 1  # some telemetry did not reach an exporter's destination
EXIT_USAGE = 2  # a bad argument, setting or environment variable
EXIT_INPUT = 3  # an input file could not be read
EXIT_UNUSABLE = 4  # an output directory, file or port could not be used
EXIT_INTERNAL = 70  # a bug (EX_SOFTWARE): one line, the traceback only with -v
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # stdout closed by its reader (128 + SIGPIPE), e.g. `| head`


class UserError(Exception):
    """A mistake the user can fix: one line naming what to change, and its exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _settings(args, **overrides):
    try:
        return load_settings(config_file=getattr(args, "config", None),
                             overrides={k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise UserError(str(exc), EXIT_USAGE) from None


def _is_default(settings, name: str) -> bool:
    return settings.sources.get(name, "default") == "default"


def _pipeline(settings, command: str, **kwargs) -> Pipeline:
    """The Pipeline, or a UserError naming the setting to change.

    `replay` next to a running `kit-otel serve` (the README's own setup) finds the default
    /metrics port taken; a replay's /metrics lives only as long as the replay, so it then goes
    without rather than failing. A port the user chose is theirs: failing to get it is an error."""
    try:
        return Pipeline(settings, **kwargs)
    except ValueError as exc:  # an unknown exporter name and the like
        raise UserError(" ".join(str(exc).split()), EXIT_USAGE) from None
    except (OSError, OverflowError) as exc:
        if command == "replay" and not getattr(exc, "filename", None) and \
                _is_default(settings, "prometheus_port") and \
                getattr(exc, "errno", None) == errno.EADDRINUSE:
            print(f"kit-otel: {settings.prometheus_host}:{settings.prometheus_port} is in use "
                  "(a kit-otel serve?); this replay serves no /metrics (KIT_OTEL_PROMETHEUS_PORT "
                  "picks a port)", file=sys.stderr)
            return Pipeline(settings, **{**kwargs, "serve_prometheus": False})
        raise UserError(start_failure(settings, exc, "--out" if command == "demo" else ""),
                        EXIT_UNUSABLE) from None


class _Progress:
    """A one-line progress bar on stderr, for files large enough to wait for."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled and total > 0
        self._last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.2):
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r  [{bar:<30}] {frac * 100:5.1f}% {done >> 20} / {self.total >> 20} MiB")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.total, force=True)
            sys.stderr.write("\n")


def feed_lines(pipeline: Pipeline, source: str, lines, max_bytes: int) -> None:
    for item in decode_lines(source, lines, max_bytes):
        pipeline.feed(item)


def decode_lines(source: str, lines, max_bytes: int):
    """Each tailed line as an Event, or the DecodeError that says why it is not one."""
    for line in lines:
        data = line.data
        if isinstance(data, OversizeLine):
            yield DecodeError(source, line.lineno, "",
                              f"line of {data.length} bytes exceeds the limit of "
                              f"{max_bytes}", "oversize")
            continue
        if not data or data.isspace():  # (strip() would copy every line to find out)
            continue
        try:
            yield decode_line(data, source=source, lineno=line.lineno, max_bytes=max_bytes)
        except DecodeFailure as failure:
            yield failure.error


def replay_items(tailers: list[FileTailer], max_bytes: int, progress=lambda: None,
                 finished: bool = True) -> Iterator:
    """Events (and DecodeErrors) of the files in replay order: the spool files of one KIT
    process merged by seq, processes one after another (replay_order). `finished`: the files
    are complete, so a last line without its newline counts too."""
    by_path = {t.path: t for t in tailers}
    for group in group_by_process([t.path for t in tailers], max_bytes):
        yield from merge_by_seq([_sequenced(by_path[path], max_bytes, progress)
                                 for path in group.paths])
        if finished:
            for path in group.paths:
                yield from _unterminated_last_line(by_path[path], max_bytes)


def _sequenced(tailer: FileTailer, max_bytes: int, progress) -> Iterator[tuple[int, object]]:
    """(seq, item) of one file to its end; a rejected line keeps the seq before it."""
    seq = 0
    while True:
        lines = tailer.read_available(max_lines=20000)
        if not lines:
            return
        for item in decode_lines(tailer.path, lines, max_bytes):
            seq = getattr(item, "seq", 0) or seq
            yield seq, item
        progress()


def _identity(name: str) -> tuple[int, int] | None:
    """(device, inode) of a file: one named twice (`a` and `./a`, a link) is read once, or its
    events would be counted twice."""
    try:
        st = os.stat(name)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _unreadable(name: str) -> str:
    """Why `name` cannot be replayed ("" if it can): said the way a user fixes it."""
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return "is a directory (name the .ndjson files in it)"
    if not stat.S_ISREG(mode):
        return "not a regular file (pipe it in with '-' instead)"
    try:
        with open(name, "rb"):
            return ""
    except OSError as exc:
        return exc.strerror or str(exc)


def _unterminated_last_line(tailer: FileTailer, max_bytes: int) -> Iterator:
    """A tailer waits for a line's newline; a file that is complete may end without one."""
    try:
        with open(tailer.path, "rb") as fh:
            fh.seek(tailer.offset)
            rest = fh.read(max_bytes + 1)
    except OSError:
        return
    if rest.strip():
        yield from decode_lines(tailer.path, [_Line(tailer.lineno + 1, rest)], max_bytes)


@dataclass
class _Line:
    lineno: int
    data: bytes


def _replay_into(pipeline: Pipeline, files: list[str], follow: bool, progress: bool) -> int:
    max_bytes = pipeline.settings.max_line_bytes
    missing = 0
    tailers: list[FileTailer] = []
    seen: set[tuple[int, int]] = set()
    for name in files:
        if name != "-":
            identity = _identity(name)
            if identity is not None and identity in seen:
                log.warning("%s: named twice (the same file); read once", name)
                continue
            if identity is not None:
                seen.add(identity)
        if name == "-":
            log.debug("reading <stdin>")
            # a pipe cannot be re-read from an offset: read it once, to its end
            for item in iter_stream(sys.stdin.buffer, source="<stdin>", max_bytes=max_bytes):
                pipeline.feed(item)
        else:
            problem = _unreadable(name)
            if problem:
                print(f"kit-otel: {name}: {problem}", file=sys.stderr)
                missing += 1
            else:
                tailers.append(FileTailer(name, max_bytes=max_bytes))
    total = sum(t.size() for t in tailers)
    bar = _Progress(total, progress and total > (8 << 20) and sys.stderr.isatty())
    for item in replay_items(tailers, max_bytes,
                             lambda: bar.update(sum(t.offset for t in tailers)),
                             finished=not follow):
        pipeline.feed(item)
    bar.finish()
    if follow and not tailers:
        print("kit-otel: --follow: no file to follow", file=sys.stderr)
        missing = max(missing, 1)  # nothing was followed: exit 3, not "all delivered"
    elif follow:
        from kit_otel.sources.sidecar_follow import SidecarFollower
        sidecars = SidecarFollower(pipeline.translator, pipeline.settings.sessions_root)
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        try:
            while not stop:
                got = False
                sidecars.poll()
                for tailer in tailers:
                    lines = tailer.read_available(max_lines=20000)
                    if lines:
                        got = True
                        feed_lines(pipeline, tailer.path, lines, max_bytes)
                pipeline.translator.sweep(time.time_ns())
                if not got:
                    sidecars.wait(0.2)
        except KeyboardInterrupt:
            pass
        sidecars.close()
    for tailer in tailers:
        tailer.close()
    return missing


def _undelivered(pipeline: Pipeline) -> list[str]:
    """One line per exporter that did not get everything through."""
    lines = []
    for tally in pipeline.tallies:
        if tally.complete:
            continue
        hint = f" — is a Collector running? ({tally.setting})" if tally.setting else ""
        reason = " ".join(tally.failure.split())[:240]
        lines.append(f"exported {tally.accepted}/{tally.offered} {tally.signal} to "
                     f"{tally.destination}: {reason}{hint}")
    return lines


def cmd_replay(args) -> int:
    settings = _settings(args, traces_exporter=None)
    keeper = RichestTurnKeeper()
    pipeline = _pipeline(settings, "replay", span_processors=[keeper])
    summary = Summary(pipeline.translator, keeper, max_turns=args.max_turns)
    missing = _replay_into(pipeline, args.files, args.follow, not args.quiet)
    pipeline.shutdown()
    if not args.quiet:
        print(summary.render(max_turns=args.max_turns))
    undelivered = _undelivered(pipeline)
    for line in undelivered:
        print(f"kit-otel: {line}", file=sys.stderr)
    if undelivered:
        return EXIT_NOT_DELIVERED
    return EXIT_INPUT if missing else EXIT_OK


def cmd_summary(args) -> int:
    settings = _settings(args, traces_exporter=("none",), metrics_exporter=("none",),
                         logs_exporter=("none",))
    keeper = RichestTurnKeeper()
    pipeline = _pipeline(settings, "summary", span_processors=[keeper], serve_prometheus=False)
    summary = Summary(pipeline.translator, keeper, max_turns=args.max_turns)
    missing = _replay_into(pipeline, args.files, False, True)
    pipeline.shutdown()
    print(summary.render(max_turns=args.max_turns))
    return EXIT_INPUT if missing else EXIT_OK


def cmd_demo(args) -> int:
    from kit_otel.model.decoder import encode_event
    from kit_otel.cli.generator import demo_stream
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror} (choose another --out)",
                        EXIT_UNUSABLE) from None
    settings = _settings(args, output_dir=str(out))
    if args.port is not None:
        settings.prometheus_port = args.port
    sessions_root = (out / "sessions").resolve()  # session paths in events are absolute, as KIT writes them
    start = time.time_ns() - 3600 * 1_000_000_000  # the session ran in the last hour
    # the second session is a Claude subscription (KIT says $0): its notional cost shows
    events = demo_stream(args.seed, sessions=args.sessions, turns=args.turns,
                         sessions_root=sessions_root, start_ns=start, subscription=(1,))
    settings.sessions_root = str(sessions_root)
    if args.save_events:
        try:
            with open(args.save_events, "wb") as fh:
                for event in events:
                    fh.write(encode_event(event))
        except OSError as exc:
            raise UserError(f"cannot write {args.save_events}: {exc.strerror} "
                            "(choose another --save-events)", EXIT_UNUSABLE) from None
    keeper = RichestTurnKeeper()
    try:
        pipeline = _pipeline(settings, "demo", span_processors=[keeper])
    except UserError:
        if args.port is not None:
            raise
        # the default /metrics port is taken: any free one will do for a demo
        print(f"kit-otel: port {settings.prometheus_port} unavailable; using a free one",
              file=sys.stderr)
        settings.prometheus_port = 0
        pipeline = _pipeline(settings, "demo", span_processors=[keeper])
    summary = Summary(pipeline.translator, keeper, max_turns=args.max_turns)
    for event in events:
        pipeline.feed(event)
    pipeline.translator.close()
    pipeline.flush()
    print(summary.render(max_turns=args.max_turns))
    print()
    written = [p for p in (out / "traces.jsonl", out / "metrics.jsonl") if p.exists()]
    for path in written:
        print(f"OTLP-JSON written: {path}")
    if args.save_events:
        print(f"events saved: {args.save_events} (the same spans again: "
              f"KIT_OTEL_SESSIONS_ROOT={sessions_root} kit-otel replay {args.save_events})")
    if pipeline.prometheus and pipeline.prometheus.url:
        if args.serve:
            print(f"Prometheus metrics: {pipeline.prometheus.url} (until Ctrl-C)")
        else:
            print(f"Prometheus metrics were served at {pipeline.prometheus.url} while the demo "
                  "ran; `kit-otel demo --serve` keeps them up")
    if args.serve and pipeline.prometheus:
        try:
            signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    pipeline.shutdown(close_turns=False)
    return 0


def cmd_config(args) -> int:
    settings = _settings(args)
    rows = describe(settings)
    width = max(len(r[0]) for r in rows)
    vwidth = min(max(len(r[1]) for r in rows), 48)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {source}")
    return 0


def _count(text: str) -> int:
    """A whole number >= 0 (argparse says which option when it is not)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_count.__name__ = "whole number >= 0"  # argparse's "invalid <name> value: '-1'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kit-otel", description="OpenTelemetry traces and metrics for KIT coding agents.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kit-otel {__version__}")
    parser.add_argument("--config", help="TOML config file (default ~/.config/kit-otel/config.toml"
                        " or $KIT_OTEL_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a realistic KIT session through the full pipeline",
                          description="Generate a realistic multi-turn KIT session (parallel "
                          "tools, a subagent, an error turn, a retry, a compaction, a model "
                          "change, several providers), translate it, write OTLP-JSON files, "
                          "serve /metrics and print a summary.\n\nexample: kit-otel demo "
                          "--save-events demo.ndjson")
    demo.add_argument("--out", default="kit-otel-demo", help="output directory (default %(default)s)")
    demo.add_argument("--save-events", metavar="FILE", help="also write the NDJSON events")
    demo.add_argument("--serve", action="store_true", help="keep /metrics up until Ctrl-C")
    demo.add_argument("--port", type=int, help="Prometheus port (default 9464; 0 = any)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--sessions", type=int, default=3)
    demo.add_argument("--turns", type=int, default=6)
    demo.add_argument("--max-turns", type=_count, default=40, help="turn rows in the summary")
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser("replay", help="export NDJSON event files",
                            description="Read NDJSON event files ('-' for stdin), export them "
                            "with the configured exporters, flush and print a summary. Bad "
                            "lines are reported and counted, never fatal.\n\nexample: "
                            "OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp kit-otel "
                            "replay events.ndjson")
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--follow", "-f", action="store_true", help="keep tailing the files")
    replay.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")
    replay.add_argument("--max-turns", type=_count, default=40)
    replay.set_defaults(func=cmd_replay)

    summary = sub.add_parser("summary", help="summary of NDJSON files, without exporting",
                             description="Print tokens, cost, LLM calls, tools and duration per "
                             "turn and per model, and the span tree of one turn.\n\nexample: "
                             "kit-otel summary ~/.local/state/kit-otel/spool/*.ndjson")
    summary.add_argument("files", nargs="+", metavar="FILE")
    summary.add_argument("--max-turns", type=_count, default=40)
    summary.set_defaults(func=cmd_summary)

    config = sub.add_parser("config", help="show the effective configuration",
                            description="Every setting, its value and where it came from "
                            "(command line, environment, config file, default).\n\nexample: "
                            "KIT_OTEL_CAPTURE_CONTENT=true kit-otel config")
    config.set_defaults(func=cmd_config)

    # imported here, not at the top, so `replay` and `summary` start without the daemon's
    # modules; never guarded: a module that fails to import must not silently drop its command
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)
    return parser


class _OneLineFormatter(logging.Formatter):
    """Log records as single lines: a library's traceback is for -v, not for every user."""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return super().format(record).replace("\n", " | ")


# The cyclic GC's first generation is collected every 10,000 net allocations instead of 700:
# translating a stream allocates spans that live until they are exported, and at 700 the
# collector traversed them again and again (12-13% of replay's CPU on the demo stream, 5-6% at
# 10,000). Only the CLI's own processes: instrumentation inside a user's program leaves the
# program's GC alone.
GC_THRESHOLDS = (10_000, 10, 10)


def main(argv: list[str] | None = None) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        parser = build_parser()
    except ImportError as exc:
        # a broken installation: say which module, once, instead of a command gone missing
        print(f"kit-otel: internal error: cannot load the commands: {type(exc).__name__}: "
              f"{exc} (the installation is broken; reinstall kit-otel)", file=sys.stderr)
        return EXIT_INTERNAL
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    fmt = "kit-otel: %(levelname)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if args.verbose else _OneLineFormatter(fmt))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        handlers=[handler])
    try:
        code = args.func(args) or EXIT_OK
        sys.stdout.flush()  # a full disk behind stdout fails this command, said below
        return code
    except UserError as exc:
        print(f"kit-otel: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        # nothing more is read or sent; the SDK's exit hooks would wait on exporters
        print("kit-otel: interrupted", file=sys.stderr)
        _flush_quietly()
        os._exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # the reader of stdout has what it wanted; nothing more may be written there
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            return _internal_error(exc)
        # stdout (or a file written without a message of its own) cannot take more: the
        # exit's own flush must not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"kit-otel: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as exc:  # noqa: BLE001 - the last net: a bug is one line, not a traceback
        return _internal_error(exc)


def _internal_error(exc: BaseException) -> int:
    log.debug("internal error", exc_info=True)
    print(f"kit-otel: internal error: {type(exc).__name__}: {exc} (run with -v for "
          "details, and please report it)", file=sys.stderr)
    return EXIT_INTERNAL


def _flush_quietly() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe is not worth a traceback now
            pass


if __name__ == "__main__":
    sys.exit(main())
