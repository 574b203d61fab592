"""Cost of the bridge per KIT handler call, against an empty handler measured in the same run
(docs/design.md#performance: at most 5 µs more than the empty handler).

The harness is kithost (tests/bridge/): KIT's side played by compiled Go, the extensions
interpreted by yaegi. In the default `host` mode that is the yaegi library embedded the way KIT
embeds it, with the kit/ext stand-in exported as compiled symbols (so each call crosses from
compiled code into the interpreter, as in KIT); `cli` runs everything under the yaegi command
instead. Three extensions are loaded side by side:

- empty:  handlers that do nothing (the baseline);
- bridge: src/kit_otel/bridge/kit_otel_bridge.go;
- naive:  the straightforward bridge, building the envelope as a map and marshalling it in the
          handler (the "about 11 µs" reference of docs/design.md#performance).

Each sample times 2000 calls of one handler for one event kind, in bursts of 50 separated by a
short pause (KIT's events come in bursts, and the pause lets the bridge's writer goroutine keep
up, as it does in KIT); `--pause-us 0` runs the calls back to back instead. Rounds interleave
the extensions; the figure per kind is the median over rounds. Both wall-clock time and the CPU
time of the calling thread are reported (the latter barely moves with other load on the
machine). Finally the writer's own throughput: events queued while it is stalled, then timed
until session_shutdown has flushed them.

Run: python benchmarks/bench_bridge.py [--mode host|cli] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bridge"))

from kithost import KitHost, unavailable  # noqa: E402

from kit_otel.model.decoder import decode_line  # noqa: E402

TARGET_NS = 5000
KINDS = ("message_update", "tool_call", "tool_result", "llm_usage", "step_start")


def run_bench(mode: str, args, pause_us: int, workdir: Path) -> dict:
    host = KitHost(mode, "head", workdir / "build")
    host.prepare()
    env = {
        "KITHOST_CALLS": str(args.calls), "KITHOST_ROUNDS": str(args.rounds),
        "KITHOST_BURST": str(args.burst), "KITHOST_PAUSE_US": str(pause_us),
        "KITHOST_WRITER_EVENTS": str(args.writer_events),
        # room for every event of the run: the handler must never take the drop path here
        "KIT_OPT_KIT_OTEL_QUEUE_SIZE": str(args.calls * args.rounds * len(KINDS) * 2 + 10_000),
        "KIT_OPT_KIT_OTEL_SHUTDOWN_TIMEOUT_MS": "600000",
    }
    run = host.run("bench", workdir / f"run-{pause_us}", env=env, timeout=3600)
    dropped = sum(decode_line(line).dropped for line in run.lines())
    run.result["dropped"] = dropped
    run.result["lines"] = len(run.lines())
    return run.result


def report(title: str, result: dict) -> bool:
    wall, cpu = result["ns_per_call"], result["cpu_ns_per_call"]
    print(f"  {title}")
    print(f"    {'kind':<16}{'empty':>9}{'bridge':>9}{'naive':>9}{'bridge-empty':>14}{'ratio':>7}"
          f"{'cpu: bridge-empty':>19}")
    for kind in (*KINDS, "mean"):
        e, b, n = wall["empty"][kind], wall["bridge"][kind], wall["naive"][kind]
        ce, cb = cpu["empty"][kind], cpu["bridge"][kind]
        print(f"    {kind:<16}{e:9.0f}{b:9.0f}{n:9.0f}{b - e:14.0f}{b / e:7.2f}{cb - ce:19.0f}")
    over = wall["bridge"]["mean"] - wall["empty"]["mean"]
    over_cpu = cpu["bridge"]["mean"] - cpu["empty"]["mean"]
    naive = wall["naive"]["mean"] - wall["empty"]["mean"]
    ok = over <= TARGET_NS
    print(f"    ns per call over the empty handler: bridge {over:.0f} (cpu {over_cpu:.0f}), "
          f"naive {naive:.0f}; target <= {TARGET_NS}: {'met' if ok else 'NOT met'}")
    if result.get("dropped"):
        print(f"    WARNING: {result['dropped']} events dropped during the run")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("host", "cli"), default=None,
                        help="host: yaegi library embedded like KIT (default when available); "
                             "cli: the yaegi command")
    parser.add_argument("--calls", type=int, default=2000, help="calls per sample")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--pause-us", type=int, default=None,
                        help="pause between bursts; default: report 2000 (paced) and 0 (back to back)")
    parser.add_argument("--writer-events", type=int, default=20000)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)

    mode = args.mode
    if mode is None:
        mode = "host" if unavailable("host") is None else "cli"
    reason = unavailable(mode)
    if reason:
        print(f"bench_bridge: skipped, {mode} harness unavailable: {reason}")
        return 0
    pauses = [args.pause_us] if args.pause_us is not None else [2000, 0]
    print(f"bridge handler cost: {mode} harness ({'yaegi library, compiled API' if mode == 'host' else 'yaegi command'}), "
          f"{os.cpu_count()} cpu(s); {args.rounds} rounds x {args.calls} calls per kind, ns per call")
    results = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp:
        for pause in pauses:
            result = run_bench(mode, args, pause, Path(tmp))
            results[f"pause_us={pause}"] = result
            title = (f"bursts of {args.burst}, {pause} us apart" if pause
                     else "back to back (writer saturated)")
            ok = report(title, result) and ok
        last = results[f"pause_us={pauses[-1]}"]
        print(f"  writer: {last['writer_events']} queued events flushed in {last['writer_ms']:.0f} ms "
              f"= {last['writer_events_per_s']:,.0f} events/s")
    if args.json:
        args.json.write_text(json.dumps({"mode": mode, "results": results}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
