"""A custom Python agent loop, instrumented by declaring its entry points — its code is not
touched. The "LLM" is a script (no network), so this runs anywhere:

    python examples/custom_agent.py                       # entry points declared in Python
    python examples/custom_agent.py --config examples/entry_points.toml   # ... in a file

Prints the span tree of each turn and the main metrics. In a real deployment the providers are
your OTLP/Prometheus ones (or `opentelemetry-instrument` with KIT_OTEL_ENTRY_POINTS_FILE).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _show import print_metrics, print_spans, providers  # noqa: E402

from kit_otel.instrumentation import EntryPoint, KitInstrumentor  # noqa: E402
from kit_otel.translate.translator import TranslatorSettings  # noqa: E402


# ── the agent (what a user already has) ─────────────────────────────────────────────────────

@dataclass
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0


@dataclass
class Reply:
    text: str = ""
    tool: str | None = None
    args: dict | None = None
    usage: Usage | None = None
    stop_reason: str = "end_turn"


SCRIPT = [
    Reply(tool="read_file", args={"path": "README.md"}, stop_reason="tool_use",
          usage=Usage(1800, 60, 1200)),
    Reply(tool="run", args={"command": "pytest -q"}, stop_reason="tool_use",
          usage=Usage(2400, 45, 1800)),
    Reply(text="The README is fine; one test fails.", usage=Usage(2900, 120, 2400)),
]


class ScriptedLLM:
    def __init__(self, script):
        self.script = list(script)

    def complete(self, messages, model="anthropic/claude-sonnet-4-5"):
        time.sleep(0.02)  # "network"
        return self.script.pop(0)


def read_file(path):
    time.sleep(0.005)
    return f"# {path}\n..."


def run(command):
    time.sleep(0.01)
    raise RuntimeError(f"{command}: 1 failed, 12 passed")


TOOLS = {"read_file": read_file, "run": run}


class Agent:
    def __init__(self, llm):
        self.llm = llm

    def turn(self, prompt):
        messages = [prompt]
        while True:
            reply = self.llm.complete(messages)
            if reply.tool is None:
                return reply.text
            try:
                messages.append(TOOLS[reply.tool](**reply.args))
            except Exception as exc:  # the agent shows tool errors to the model
                messages.append(str(exc))


def price(call):  # USD per token of the model, an extractor
    usage = call.result.usage
    return usage.input_tokens * 3e-6 + usage.output_tokens * 15e-6


ENTRY_POINTS = [
    EntryPoint("__main__:Agent.turn", "turn"),
    EntryPoint("__main__:ScriptedLLM.complete", "llm_call", model="model",
               usage="result.usage", finish_reason="result.stop_reason", cost=price),
    EntryPoint("__main__:read_file", "tool", tool_kind="=read"),
    EntryPoint("__main__:run", "tool", tool_kind="=execute"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", help="entry points from a TOML file instead")
    args = parser.parse_args()
    tracer_provider, meter_provider, exporter, reader = providers()
    declared = {"entry_points_file": args.config} if args.config else {
        "entry_points": ENTRY_POINTS}
    KitInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider,
                                 translator_settings=TranslatorSettings(sessions_root=None),
                                 **declared)
    TOOLS.update(read_file=read_file, run=run)  # the dict was built before wrapping

    answer = Agent(ScriptedLLM(SCRIPT)).turn("check the README and run the tests")
    print("agent:", answer, "\n")
    KitInstrumentor().uninstrument()
    print_spans(exporter)
    print()
    print_metrics(reader)


if __name__ == "__main__":
    main()
