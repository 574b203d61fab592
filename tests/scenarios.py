"""Named KIT streams for the golden tests, built with the package's generator."""

from __future__ import annotations

import random

from kit_otel.cli.generator import KitScript, Step, Subagent, Tool, Usage

T0 = 1_781_000_000_000_000_000
PATH_A = "/home/alice/.kit/sessions/home--alice--proj/2026-06-09T13-18-10-000Z_3f9a1c2b7d4e.jsonl"
PATH_B = "/home/bob/.kit/sessions/srv--api/2026-06-09T13-18-11-000Z_aaaaaaaaaaaa.jsonl"


def script(path: str = PATH_A, pid: int = 4242, seed: int = 1, start: int = T0,
           provider: str = "anthropic", model: str = "claude-sonnet-4-5-20250929") -> KitScript:
    return KitScript(pid=pid, session_path=path, start_ns=start, provider=provider, model=model,
                     rng=random.Random(seed))


def simple_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("hello", [Step(text="Hi there, how can I help?", usage=Usage(1200, 85, 900, 0))])
    return s


def tools_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("run the tests", [
        Step(text="Running.", usage=Usage(1500, 60, 1000, 0),
             tools=[Tool("bash", "execute", {"command": "go test"}, output="FAIL", is_error=True,
                         output_chunks=3),
                    Tool("edit", "edit", {"path": "a.go"}, blocked=True)]),
        Step(text="The tests fail.", usage=Usage(2000, 40, 1500, 100))])
    return s


def parallel_tools_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("look around", [
        Step(text="Looking.", parallel=True, usage=Usage(1000, 50),
             tools=[Tool("read", "read", {"path": "a"}, duration_ms=300, output_chunks=2),
                    Tool("grep", "search", {"pattern": "x"}, duration_ms=100, output_chunks=2),
                    Tool("ls", "read", {"path": "."}, duration_ms=200)]),
        Step(text="Done.", usage=Usage(1800, 30))])
    return s


def subagent_turn(child_events: bool = True) -> KitScript:
    s = script()
    s.session_start()
    sub = Subagent(task="find callers",
                   tools=[Tool("grep", "search", {"pattern": "Parse"}),
                          Tool("read", "read", {"path": "x.go"}, is_error=True)],
                   child_usage=[Usage(2000, 100), Usage(2500, 200, 1000, 0)] if child_events else [])
    s.turn("who calls Parse?", [
        Step(text="Delegating.", usage=Usage(1000, 40),
             tools=[Tool("subagent", "agent", {"task": "find callers"}, subagent=sub)]),
        Step(text="Three callers.", usage=Usage(1500, 60))])
    return s


def error_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("do it", [Step(retries=["529 overloaded_error"],
                          error="provider error: 529 overloaded_error: Overloaded")])
    return s


def retry_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("summarise", [Step(retries=["429 Too Many Requests"], text="Summary.",
                              usage=Usage(900, 50))])
    return s


def compaction_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("continue", [Step(text="Continuing.", usage=Usage(150000, 300, 120000, 0))],
           compaction=(0.92, 200000))
    return s


def model_change_session() -> KitScript:
    s = script()
    s.session_start()
    s.turn("first", [Step(text="One.", usage=Usage(1000, 10))])
    s.model_change("openai", "gpt-5-mini")
    s.turn("second", [Step(text="Two.", usage=Usage(2000, 20))])
    return s


def usage_before_finish_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("q", [Step(text="Tool first.", usage=Usage(1000, 20), usage_first=True,
                      tools=[Tool("read", "read", {"path": "a"})]),
                 Step(text="Answer.", usage=Usage(1100, 30), usage_first=True)])
    return s


def two_sessions_interleaved():
    a = script(PATH_A, pid=100, seed=2)
    b = script(PATH_B, pid=200, seed=3, provider="openai", model="gpt-5-mini", start=T0 + 5_000_000)
    for s in (a, b):
        s.session_start()
        s.turn("hello", [Step(text="Hi from " + s.model, usage=Usage(1000 + s.pid, 10),
                              tools=[Tool("read", "read", {"path": "a"})]),
                         Step(text="Done.", usage=Usage(500, 5))])
    merged = sorted(a.events + b.events, key=lambda e: (e.ts_ns, e.pid))
    return a, b, merged


def abandoned_turn() -> KitScript:
    s = script()
    s.session_start()
    s.turn("this will crash", [Step(text="Starting.", usage=Usage(1000, 10),
                                    tools=[Tool("bash", "execute", {"command": "make"})])],
           complete=False)
    return s
