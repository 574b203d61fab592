"""Realistic KIT event streams: the `demo` command's input and the tests' data.

Events follow KIT's order within a turn exactly (docs/design.md#event-contract), quirks included:
`agent_start`/`message_start` once per turn, `step_finish` after the step's tools ran with
`llm_usage` before or after it, parallel tools interleaved, subagent chunks without child tool
ids, `error` then `agent_end{StopReason:"error"}` on failure, `retry.Attempt` always 0,
`RequestID` empty, cost 0 for unpriced models, `session_start` again on a hot reload, and the
enriched `agent_end` computed the way KIT's turn aggregator does.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kit_otel.model import events as ev
from kit_otel.model.events import Event

# $ per million tokens: input, output, cache read, cache write. Unlisted models are unpriced (0).
PRICES = {
    "claude-sonnet-4-5-20250929": (3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5-20251001": (1.0, 5.0, 0.10, 1.25),
    "gpt-5-mini": (0.25, 2.0, 0.025, 0.0),
    "gemini-2.5-pro": (1.25, 10.0, 0.31, 0.0),
}
MODELS = [("anthropic", "claude-sonnet-4-5-20250929"), ("anthropic", "claude-haiku-4-5-20251001"),
          ("openai", "gpt-5-mini"), ("google", "gemini-2.5-pro"), ("ollama", "qwen3-coder:30b")]

MS = 1_000_000


def price(model: str, usage: "Usage") -> float:
    p = PRICES.get(model)
    if p is None:
        return 0.0
    return round((usage.input * p[0] + usage.output * p[1] + usage.cache_read * p[2]
                  + usage.cache_write * p[3]) / 1e6, 10)


@dataclass
class Usage:
    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0


@dataclass
class Tool:
    name: str
    kind: str = "read"
    args: dict = field(default_factory=dict)
    output: str = "ok"
    is_error: bool = False
    blocked: bool = False
    duration_ms: int = 40
    output_chunks: int = 0
    subagent: "Subagent | None" = None
    call_id: str = ""


@dataclass
class Subagent:
    task: str
    tools: list[Tool] = field(default_factory=list)
    response: str = "done"
    error: str = ""
    child_usage: list[Usage] = field(default_factory=list)  # the child agent's own LLM calls
    child_model: tuple[str, str] = ("anthropic", "claude-haiku-4-5-20251001")


@dataclass
class Step:
    text: str = ""
    tools: list[Tool] = field(default_factory=list)
    parallel: bool = False
    usage: Usage = field(default_factory=lambda: Usage(1200, 80, 900, 0))
    usage_first: bool = False  # llm_usage before step_finish
    reasoning: bool = False
    retries: list[str] = field(default_factory=list)
    error: str = ""  # the call fails: error + agent_end{error}, no step_finish
    finish_reason: str = ""


class KitScript:
    """Builds the event stream of one KIT process with one session."""

    def __init__(self, *, pid: int, session_path: str, start_ns: int, provider: str,
                 model: str, rng: random.Random | None = None, source: str = "bridge",
                 state: dict[str, str] | None = None, budget_extension: bool = True,
                 words_per_step: int = 0, oauth: bool = False):
        self.pid, self.session_path = pid, session_path
        self.now = start_ns
        self.provider, self.model = provider, model
        self.rng = rng or random.Random(0)
        self.source = source
        self.events: list[Event] = []
        self.seq = 0
        self.state = dict(state or {})
        self.budget_extension = budget_extension
        self.words_per_step = words_per_step  # > 0: steps stream about this many text chunks
        # an Anthropic OAuth (subscription) credential: KIT's llmUsageMeta reports Cost 0
        self.oauth = oauth
        self.total_cost = 0.0
        if budget_extension:
            self.state.setdefault("usage-budget:warn-at-usd", "5.00")
            self.state.setdefault("usage-budget:total-cost", "0.0000")

    def kit_price(self, provider: str, model: str, usage: Usage) -> float:
        """What KIT reports as Cost (llmUsageMeta): 0 for an Anthropic OAuth credential."""
        return 0.0 if self.oauth and provider == "anthropic" else price(model, usage)

    # ── primitives ───────────────────────────────────────────────────────────────────────────

    def advance(self, lo_ms: float, hi_ms: float | None = None) -> None:
        ms = lo_ms if hi_ms is None else self.rng.uniform(lo_ms, hi_ms)
        self.now += int(ms * MS)

    def emit(self, type: str, data: ev.EventData | None = None, *, child: str = "",
             with_state: bool = False) -> Event:
        """One event; `child` is the parent's subagent call of a child agent's event (what a
        child's bridge writes: agent subagent, that call, the parent's session path)."""
        self.seq += 1
        event = ev.make_event(type, self.now, data=data, seq=self.seq, pid=self.pid,
                              session_path=self.session_path, source=self.source,
                              agent="subagent" if child else "main", parent_tool_call_id=child,
                              state=dict(self.state) if with_state and not child else None)
        self.events.append(event)
        self.advance(0.05, 0.4)
        return event

    # ── out-of-turn ──────────────────────────────────────────────────────────────────────────

    def session_start(self) -> None:
        self.emit("session_start", ev.SessionStart(SessionID=""), with_state=True)

    def hot_reload(self) -> None:
        self.emit("session_shutdown", ev.SessionShutdown())
        self.advance(50, 200)
        self.emit("session_start", ev.SessionStart(SessionID=""), with_state=True)

    def shutdown(self) -> None:
        self.emit("session_shutdown", ev.SessionShutdown())

    def model_change(self, provider: str, model: str, source: str = "user") -> None:
        self.emit("model_change", ev.ModelChange(NewModel=f"{provider}/{model}",
                                                 PreviousModel=f"{self.provider}/{self.model}",
                                                 Source=source))
        self.provider, self.model = provider, model

    # ── a turn ───────────────────────────────────────────────────────────────────────────────

    def turn(self, prompt: str, steps: list[Step], *, compaction: tuple[float, int] | None = None,
             complete: bool = True) -> None:
        """One user turn. `complete=False` stops mid-turn (agent crashed, bridge died)."""
        self.emit("input", ev.Input(Text=prompt))  # KIT never sets Source
        self.emit("before_agent_start", ev.BeforeAgentStart(Prompt=prompt))
        if compaction is not None:
            ratio, limit = compaction
            self.emit("before_compact", ev.BeforeCompact(
                EstimatedTokens=int(ratio * limit), ContextLimit=limit, UsagePercent=ratio,
                MessageCount=self.rng.randint(40, 200), IsAutomatic=True))
            self.advance(800, 3000)
        self.emit("context_prepare", ev.ContextPrepare(MessageCount=self.rng.randint(2, 60),
                                                       MessageBytes=self.rng.randint(500, 90000)))
        agent_start = self.emit("agent_start", ev.AgentStart(Prompt=prompt), with_state=True)
        self.emit("message_start", ev.MessageStart())
        tool_names: list[str] = []
        llm_calls, cost = 0, 0.0
        tokens = [0, 0, 0, 0]
        response = ""
        for number, step in enumerate(steps):
            self.emit("prepare_step", ev.PrepareStep(StepNumber=number,
                                                     MessageCount=2 + 2 * number,
                                                     MessageBytes=1200 + 900 * number))
            self.emit("step_start", ev.StepStart(StepNumber=number))
            for message in step.retries:
                self.advance(300, 1200)
                self.emit("retry", ev.Retry(Attempt=0, Error=message))
            if step.error:
                self.advance(500, 2000)
                self.emit("error", ev.Error(Error=step.error))
                self._agent_end(agent_start, "", "error", tool_names, llm_calls, tokens, cost)
                return
            self.advance(250, 1400)  # time to first chunk
            if step.reasoning:
                self.emit("reasoning_start", ev.ReasoningStart(ID=f"rs_{self.rng.getrandbits(32):08x}"))
                self.advance(200, 900)
            words = step.text.split(" ") if step.text else []
            if words and self.words_per_step:  # a real answer streams many chunks
                words += ["lorem"] * self.rng.randint(self.words_per_step // 2,
                                                      self.words_per_step)
            for i, word in enumerate(words):
                self.emit("message_update", ev.MessageUpdate(Chunk=word + (" " if i < len(words) - 1 else "")))
                self.advance(5, 40)
            response += step.text
            for tool in step.tools:
                call_id = f"toolu_{self.rng.getrandbits(48):012x}"
                tool.call_id = call_id
                args = json.dumps(tool.args)
                self.emit("tool_call_input_start", ev.ToolCallInputStart(
                    ToolCallID=call_id, ToolName=tool.name, ToolKind=tool.kind))
                for i in range(0, len(args), 12):
                    self.emit("tool_call_input_delta", ev.ToolCallInputDelta(
                        ToolCallID=call_id, Delta=args[i:i + 12]))
                self.emit("tool_call_input_end", ev.ToolCallInputEnd(ToolCallID=call_id))
                if tool.subagent is not None:
                    # KIT: the SDK's ToolExecutionStart, still in the stream (kit.go generate)
                    self.emit("subagent_start", ev.SubagentStart(ToolCallID=call_id,
                                                                 Task=tool.subagent.task))
            if step.tools:
                self._run_tools(step.tools, step.parallel, tool_names)
            if not complete and number == len(steps) - 1:
                return  # the process dies here: no step_finish, no agent_end
            finish_reason = step.finish_reason or ("tool-calls" if step.tools else "stop")
            u = step.usage
            step_cost = self.kit_price(self.provider, self.model, u)
            finish = ev.StepFinish(StepNumber=number, HasToolCalls=bool(step.tools),
                                   FinishReason=finish_reason, InputTokens=u.input,
                                   OutputTokens=u.output, CacheReadTokens=u.cache_read,
                                   CacheWriteTokens=u.cache_write)
            usage = ev.LLMUsage(InputTokens=u.input, OutputTokens=u.output,
                                CacheReadTokens=u.cache_read, CacheWriteTokens=u.cache_write,
                                Cost=step_cost, Model=self.model, Provider=self.provider,
                                RequestID="", StepNumber=number, FinishReason=finish_reason)
            for type, data in ((("llm_usage", usage), ("step_finish", finish)) if step.usage_first
                               else (("step_finish", finish), ("llm_usage", usage))):
                self.emit(type, data)
            llm_calls += 1
            cost += step_cost
            for i, v in enumerate((u.input, u.output, u.cache_read, u.cache_write)):
                tokens[i] += v
        self.emit("message_end", ev.MessageEnd(Content=response))
        self.total_cost += cost
        if self.budget_extension:
            self.state["usage-budget:total-cost"] = f"{self.total_cost:.4f}"
        stop_reason = (steps[-1].finish_reason or "stop") if steps else "completed"
        self._agent_end(agent_start, response, stop_reason, tool_names, llm_calls, tokens, cost)

    def _agent_end(self, agent_start: Event, response: str, stop_reason: str,
                   tool_names: list[str], llm_calls: int, tokens: list[int], cost: float) -> None:
        self.emit("agent_end", ev.AgentEnd(
            Response=response, StopReason=stop_reason, ToolCallCount=len(tool_names),
            ToolNames=list(tool_names) or None, LLMCallCount=llm_calls,
            InputTokensDelta=tokens[0], OutputTokensDelta=tokens[1],
            CacheReadTokensDelta=tokens[2], CacheWriteTokensDelta=tokens[3], CostDelta=cost,
            DurationMs=(self.now - agent_start.ts_ns) // MS), with_state=True)

    def _run_tools(self, tools: list[Tool], parallel: bool, tool_names: list[str]) -> None:
        if not parallel:
            for tool in tools:
                self._tool_call(tool)
                self._tool_body(tool)
                self._tool_finish(tool, tool_names)
            return
        for tool in tools:
            self._tool_call(tool)
        started = [t for t in tools if not t.blocked]
        for tool in started:
            self.emit("tool_execution_start", ev.ToolExecutionStart(
                ToolCallID=tool.call_id, ToolName=tool.name, ToolKind=tool.kind))
        # outputs interleave; results arrive in order of duration
        for i in range(max((t.output_chunks for t in started), default=0)):
            for tool in reversed(started):
                if i < tool.output_chunks:
                    self.emit("tool_output", ev.ToolOutput(ToolCallID=tool.call_id,
                                                           ToolName=tool.name,
                                                           Chunk=f"line {i}\n"))
        for tool in sorted(tools, key=lambda t: t.duration_ms):
            self.advance(tool.duration_ms / 4)
            if not tool.blocked:
                self.emit("tool_execution_end", ev.ToolExecutionEnd(
                    ToolCallID=tool.call_id, ToolName=tool.name, ToolKind=tool.kind))
            self._tool_finish(tool, tool_names)

    def _tool_call(self, tool: Tool) -> None:
        self.emit("tool_call", ev.ToolCall(ToolName=tool.name, ToolCallID=tool.call_id,
                                           ToolKind=tool.kind, Input=json.dumps(tool.args),
                                           ParsedArgs=dict(tool.args) or None, Source="llm"))

    def _tool_body(self, tool: Tool) -> None:
        if tool.blocked:
            return
        self.emit("tool_execution_start", ev.ToolExecutionStart(
            ToolCallID=tool.call_id, ToolName=tool.name, ToolKind=tool.kind))
        if tool.subagent is not None:
            self._subagent(tool)
        for i in range(tool.output_chunks):
            self.advance(tool.duration_ms / max(tool.output_chunks, 1) / 2)
            self.emit("tool_output", ev.ToolOutput(ToolCallID=tool.call_id, ToolName=tool.name,
                                                   Chunk=f"out {i}\n", IsStderr=False))
        self.advance(tool.duration_ms / 2)
        self.emit("tool_execution_end", ev.ToolExecutionEnd(
            ToolCallID=tool.call_id, ToolName=tool.name, ToolKind=tool.kind))

    def _tool_finish(self, tool: Tool, tool_names: list[str]) -> None:
        # KIT's wrapper emits no tool_result for a blocked call; KIT's own count has it
        if not tool.blocked:
            self.emit("tool_result", ev.ToolResult(
                ToolCallID=tool.call_id, ToolName=tool.name, ToolKind=tool.kind,
                Input=json.dumps(tool.args), Content=tool.output, IsError=tool.is_error,
                Metadata=""))
        tool_names.append(tool.name)
        if tool.subagent is not None:
            sub = tool.subagent
            error = "Error: tool call blocked by extension" if tool.blocked else sub.error
            self.emit("subagent_end", ev.SubagentEnd(ToolCallID=tool.call_id, Task=sub.task,
                                                     Response="" if error else sub.response,
                                                     ErrorMsg=error))

    def _subagent(self, tool: Tool) -> None:
        sub = tool.subagent
        call_id = tool.call_id

        def chunk(kind: str, **fields) -> None:
            self.emit("subagent_chunk", ev.SubagentChunk(ToolCallID=call_id, Task=sub.task,
                                                         ChunkType=kind, **fields))

        chunk("turn_start")
        child_provider, child_model = sub.child_model
        if sub.child_usage:
            self.emit("agent_start", ev.AgentStart(Prompt=sub.task), child=call_id)
        for number, usage in enumerate(sub.child_usage or [None]):
            if usage is not None:
                self.emit("step_start", ev.StepStart(StepNumber=number), child=call_id)
                self.advance(200, 600)
            for word in ("Looking", " into", " it."):
                chunk("text", Content=word)
                if usage is not None:
                    self.emit("message_update", ev.MessageUpdate(Chunk=word), child=call_id)
                self.advance(5, 30)
            child_tools = sub.tools if number == 0 else []
            for ct in child_tools:
                # KIT's order: the SDK's events become the parent's chunks; between the SDK's
                # execution start and end, the child's tool wrapper fires its extension events
                chunk("tool_call", ToolName=ct.name, ToolArgs=json.dumps(ct.args))
                chunk("tool_execution_start", ToolName=ct.name)
                if usage is not None:
                    child_call = f"toolu_{self.rng.getrandbits(48):012x}"
                    self.emit("tool_call", ev.ToolCall(
                        ToolName=ct.name, ToolCallID=child_call, ToolKind=ct.kind,
                        Input=json.dumps(ct.args), Source="llm"), child=call_id)
                    self.emit("tool_execution_start", ev.ToolExecutionStart(
                        ToolCallID=child_call, ToolName=ct.name, ToolKind=ct.kind), child=call_id)
                self.advance(ct.duration_ms)
                if usage is not None:
                    self.emit("tool_execution_end", ev.ToolExecutionEnd(
                        ToolCallID=child_call, ToolName=ct.name, ToolKind=ct.kind), child=call_id)
                    self.emit("tool_result", ev.ToolResult(
                        ToolCallID=child_call, ToolName=ct.name, ToolKind=ct.kind,
                        Input=json.dumps(ct.args), Content=ct.output, IsError=ct.is_error),
                        child=call_id)
                chunk("tool_execution_end", ToolName=ct.name)
                chunk("tool_result", ToolName=ct.name, ToolResult=ct.output, IsError=ct.is_error)
            if usage is not None:
                reason = "tool-calls" if child_tools else "stop"
                self.emit("step_finish", ev.StepFinish(
                    StepNumber=number, HasToolCalls=bool(child_tools), FinishReason=reason,
                    InputTokens=usage.input, OutputTokens=usage.output,
                    CacheReadTokens=usage.cache_read, CacheWriteTokens=usage.cache_write),
                    child=call_id)
                self.emit("llm_usage", ev.LLMUsage(
                    InputTokens=usage.input, OutputTokens=usage.output,
                    CacheReadTokens=usage.cache_read, CacheWriteTokens=usage.cache_write,
                    Cost=self.kit_price(child_provider, child_model, usage), Model=child_model,
                    Provider=child_provider,
                    StepNumber=number, FinishReason=reason), child=call_id)
        if sub.child_usage:
            self.emit("agent_end", ev.AgentEnd(Response=sub.response,
                                               StopReason="error" if sub.error else "stop"),
                      child=call_id)
        chunk("turn_end")


# ── session files and whole streams ─────────────────────────────────────────────────────────

def session_file_path(sessions_root: Path, cwd: str, start_ns: int, rng: random.Random) -> Path:
    from datetime import datetime, timezone
    stamp = datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc)
    # KIT's Go layout "2006-01-02T15-04-05-000Z": "-000" is no fraction there, so it is literal
    name = stamp.strftime("%Y-%m-%dT%H-%M-%S") + "-000Z"
    folder = cwd.replace("/", "--").lstrip("-")
    return sessions_root / folder / f"{name}_{rng.getrandbits(48):012x}.jsonl"


def write_session_header(path: Path, cwd: str, session_id: str, start_ns: int) -> None:
    from kit_otel.model.timestamps import format_ts
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"type": "session", "version": 3, "id": session_id,
              "timestamp": format_ts(start_ns), "cwd": cwd}
    path.write_text(json.dumps(header) + "\n")


def _tool(rng: random.Random, name: str, kind: str, **kw) -> Tool:
    args = {"read": {"path": "src/main.go"}, "grep": {"pattern": "TODO", "path": "."},
            "bash": {"command": "go test ./..."}, "edit": {"path": "src/main.go", "old": "a",
                                                            "new": "b"},
            "ls": {"path": "."}, "find": {"pattern": "*.go"}}.get(name, {"q": name})
    return Tool(name=name, kind=kind, args=args, duration_ms=rng.randint(5, 900), **kw)


def demo_session(rng: random.Random, *, pid: int, session_path: str, start_ns: int,
                 provider: str, model: str, turns: int = 6, rich: bool = True,
                 words_per_step: int = 0, oauth: bool = False) -> KitScript:
    """A realistic multi-turn session. With `rich`, it includes every feature the demo shows:
    parallel tools, a subagent, a retry, an error turn, an automatic compaction, a model change
    and a hot reload."""
    s = KitScript(pid=pid, session_path=session_path, start_ns=start_ns, provider=provider,
                  model=model, rng=rng, words_per_step=words_per_step, oauth=oauth)
    s.session_start()
    for t in range(turns):
        s.advance(2000, 20000)  # the user thinks
        kind = t % 6 if rich else rng.choice([0, 1, 2])
        usage = lambda: Usage(rng.randint(800, 30000), rng.randint(40, 1500),  # noqa: E731
                              rng.randint(0, 20000), rng.choice([0, 0, rng.randint(100, 4000)]))
        if kind == 0:
            steps = [Step(text="Here is what the code does.", usage=usage(),
                          usage_first=rng.random() < 0.5)]
            s.turn("explain main.go", steps)
        elif kind == 1:
            steps = [Step(text="Let me look.", reasoning=True, parallel=True, usage=usage(),
                          tools=[_tool(rng, "read", "read", output_chunks=2),
                                 _tool(rng, "grep", "search", output_chunks=3),
                                 _tool(rng, "ls", "read")]),
                     Step(text="Now I will fix it.", usage=usage(), usage_first=True,
                          tools=[_tool(rng, "edit", "edit"),
                                 _tool(rng, "bash", "execute", output_chunks=4,
                                       is_error=rng.random() < 0.3)]),
                     Step(text="Fixed and tested.", usage=usage())]
            s.turn("fix the failing test", steps)
        elif kind == 2:
            sub = Subagent(task="find every caller of ParseConfig",
                           tools=[_tool(rng, "grep", "search"), _tool(rng, "read", "read")],
                           child_usage=[Usage(2100, 120, 0, 0), Usage(3200, 260, 1800, 0)])
            steps = [Step(text="I'll delegate the search.", usage=usage(),
                          tools=[_tool(rng, "subagent", "agent", subagent=sub)]),
                     Step(text="The subagent found 3 callers.", usage=usage())]
            s.turn("who calls ParseConfig?", steps)
        elif kind == 3:
            steps = [Step(retries=["429 Too Many Requests: rate limit exceeded"], usage=usage(),
                          text="Sure, after a retry.", usage_first=rng.random() < 0.5)]
            s.turn("summarise the README", steps)
        elif kind == 4:
            s.turn("refactor everything", [Step(retries=["529 overloaded_error"],
                                                error="provider error: 529 overloaded_error: Overloaded")])
        else:
            s.model_change(*rng.choice([m for m in MODELS if m[1] != s.model]))
            s.turn("continue", [Step(text="Continuing with the new model.", usage=usage())],
                   compaction=(round(rng.uniform(0.8, 0.97), 3), 200000))
            s.hot_reload()
    s.advance(1000, 5000)
    s.shutdown()
    return s


def demo_stream(seed: int = 7, *, sessions: int = 3, turns: int = 6,
                sessions_root: Path | None = None, start_ns: int | None = None,
                words_per_step: int = 0, subscription: tuple[int, ...] = ()) -> list[Event]:
    """Several KIT processes (each its own session, project and model) interleaved by time, as
    a spool directory or a replay would deliver them. With `sessions_root`, session files with a
    header line are written there so session ids resolve the way they do on a KIT machine.
    Sessions numbered in `subscription` use an Anthropic OAuth credential (KIT reports Cost 0)."""
    rng = random.Random(seed)
    start = start_ns if start_ns is not None else 1_781_000_000 * 1_000_000_000
    projects = ["/home/alice/src/payments", "/home/alice/src/kit-otel", "/srv/ci/webapp",
                "/home/bob/infra"]
    root = sessions_root or Path("/home/alice/.kit/sessions")
    streams = []
    for i in range(sessions):
        cwd = projects[i % len(projects)]
        provider, model = MODELS[i % 3]
        begin = start + i * rng.randint(1, 30) * 1_000_000_000
        path = session_file_path(root, cwd, begin, rng)
        if sessions_root is not None:
            write_session_header(path, cwd, uuid.UUID(int=rng.getrandbits(128)).hex, begin)
        script = demo_session(rng, pid=4000 + i, session_path=str(path), start_ns=begin,
                              provider=provider, model=model, turns=turns,
                              words_per_step=words_per_step, oauth=i in subscription)
        streams.append(script.events)
    merged = [e for stream in streams for e in stream]
    merged.sort(key=lambda e: (e.ts_ns, e.pid, e.seq))
    return merged
