"""The `kit-otel` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from . import __version__
from .config import describe, load_settings
from .decoder import DecodeError, DecodeFailure, OversizeLine, decode_line, iter_stream
from .pipeline import Pipeline
from .summary import RichestTurnKeeper, Summary
from .tail import FileTailer

log = logging.getLogger("kit_otel")

EPILOG = """examples:
  kit-otel demo                         # a realistic KIT session through the full pipeline
  kit-otel demo --serve                 # ... and keep /metrics up until Ctrl-C
  kit-otel replay spool/*.ndjson        # export recorded events (OTLP by OTEL_* settings)
  OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp kit-otel replay events.ndjson
  kit-otel summary events.ndjson        # tokens, cost, tools per turn and model; no export
  kit-otel config                       # effective settings and where each came from
"""


def _settings(args, **overrides):
    try:
        return load_settings(config_file=getattr(args, "config", None),
                             overrides={k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise SystemExit(f"kit-otel: {exc}")


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
    for line in lines:
        data = line.data
        if isinstance(data, OversizeLine):
            pipeline.feed(DecodeError(source, line.lineno, "",
                                      f"line of {data.length} bytes exceeds the limit of "
                                      f"{max_bytes}", "oversize"))
            continue
        if not data.strip():
            continue
        try:
            pipeline.feed(decode_line(data, source=source, lineno=line.lineno,
                                      max_bytes=max_bytes))
        except DecodeFailure as failure:
            pipeline.feed(failure.error)


def _replay_into(pipeline: Pipeline, files: list[str], follow: bool, progress: bool) -> int:
    max_bytes = pipeline.settings.max_line_bytes
    missing = 0
    tailers: list[FileTailer] = []
    for name in files:
        if name == "-":
            # a pipe cannot be re-read from an offset: read it once, to its end
            for item in iter_stream(sys.stdin.buffer, source="<stdin>", max_bytes=max_bytes):
                pipeline.feed(item)
        elif not os.path.isfile(name):
            print(f"kit-otel: {name}: no such file", file=sys.stderr)
            missing += 1
        else:
            tailers.append(FileTailer(name, max_bytes=max_bytes))
    total = sum(t.size() for t in tailers)
    bar = _Progress(total, progress and total > (8 << 20) and sys.stderr.isatty())
    done_before = 0
    for tailer in tailers:
        source = tailer.path
        while True:
            lines = tailer.read_available(max_lines=20000)
            if not lines:
                break
            feed_lines(pipeline, source, lines, max_bytes)
            bar.update(done_before + tailer.offset)
        done_before += tailer.offset
    bar.finish()
    if follow:
        from .sidecar_follow import SidecarFollower
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


def cmd_replay(args) -> int:
    settings = _settings(args, traces_exporter=None)
    keeper = RichestTurnKeeper()
    pipeline = Pipeline(settings, span_processors=[keeper])
    summary = Summary(pipeline.translator, keeper)
    missing = _replay_into(pipeline, args.files, args.follow, not args.quiet)
    pipeline.shutdown()
    if not args.quiet:
        print(summary.render(max_turns=args.max_turns))
    return 1 if missing else 0


def cmd_summary(args) -> int:
    settings = _settings(args, traces_exporter=("none",), metrics_exporter=("none",))
    keeper = RichestTurnKeeper()
    pipeline = Pipeline(settings, span_processors=[keeper], serve_prometheus=False)
    summary = Summary(pipeline.translator, keeper)
    missing = _replay_into(pipeline, args.files, False, True)
    pipeline.shutdown()
    print(summary.render(max_turns=args.max_turns))
    return 1 if missing else 0


def cmd_demo(args) -> int:
    from .decoder import encode_event
    from .generator import demo_stream
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(args, output_dir=str(out))
    if args.port is not None:
        settings.prometheus_port = args.port
    sessions_root = (out / "sessions").resolve()  # session paths in events are absolute, as KIT writes them
    start = time.time_ns() - 3600 * 1_000_000_000  # the session ran in the last hour
    events = demo_stream(args.seed, sessions=args.sessions, turns=args.turns,
                         sessions_root=sessions_root, start_ns=start)
    settings.sessions_root = str(sessions_root)
    if args.save_events:
        with open(args.save_events, "wb") as fh:
            for event in events:
                fh.write(encode_event(event))
    keeper = RichestTurnKeeper()
    try:
        pipeline = Pipeline(settings, span_processors=[keeper])
    except OSError as exc:  # the /metrics port is taken: any free one will do for a demo
        print(f"kit-otel: port {settings.prometheus_port} unavailable ({exc.strerror}); "
              "using a free one", file=sys.stderr)
        settings.prometheus_port = 0
        pipeline = Pipeline(settings, span_processors=[keeper])
    summary = Summary(pipeline.translator, keeper)
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
    demo.add_argument("--max-turns", type=int, default=40, help="turn rows in the summary")
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
    replay.add_argument("--max-turns", type=int, default=40)
    replay.set_defaults(func=cmd_replay)

    summary = sub.add_parser("summary", help="summary of NDJSON files, without exporting",
                             description="Print tokens, cost, LLM calls, tools and duration per "
                             "turn and per model, and the span tree of one turn.\n\nexample: "
                             "kit-otel summary ~/.local/state/kit-otel/spool/*.ndjson")
    summary.add_argument("files", nargs="+", metavar="FILE")
    summary.add_argument("--max-turns", type=int, default=40)
    summary.set_defaults(func=cmd_summary)

    config = sub.add_parser("config", help="show the effective configuration",
                            description="Every setting, its value and where it came from "
                            "(command line, environment, config file, default).\n\nexample: "
                            "KIT_OTEL_CAPTURE_CONTENT=true kit-otel config")
    config.set_defaults(func=cmd_config)

    for module in ("bridge_cli", "serve"):
        try:
            hook = __import__(f"kit_otel.{module}", fromlist=["add_parser"]).add_parser
        except (ImportError, AttributeError):
            continue
        hook(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="kit-otel: %(levelname)s: %(message)s")
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
