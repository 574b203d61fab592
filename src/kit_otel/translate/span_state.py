"""What is open: the records the translator's state machine keeps per session — the session,
its turn (the main agent's run), a subagent's child run, the open chat step, open tools, open
subagents — and the counters of coalesced deltas. Plain records: what a span carries is decided in
the module of its kind (turns, chat, tools, subagents, session_events)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context

from kit_otel.model import events as ev
from kit_otel.translate.aggregate import TurnAggregate
from kit_otel.translate.pricing import RunCost

NS_PER_S = 1e9


EMPTY_CONTEXT = Context()


class Deltas:
    """Coalesced high-frequency deltas: the first is a span event, the rest counts and bytes."""

    __slots__ = ("count", "bytes")

    def __init__(self):
        self.count = 0
        self.bytes = 0


@dataclass(eq=False)
class Step:
    span: trace.Span
    number: int
    start_ns: int
    first_chunk_ns: int = 0
    stream_end_ns: int = 0
    request_model: str = ""  # the model the session named when the call started
    error: str = ""
    usage: ev.LLMUsage | None = None
    finish: ev.StepFinish | None = None
    finish_ns: int = 0
    message: Deltas = field(default_factory=Deltas)
    tool_input: Deltas = field(default_factory=Deltas)
    streamed_calls: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # id → name, kind, ts


@dataclass(eq=False)
class Tool:
    span: trace.Span
    name: str
    kind: str
    start_ns: int
    executed: bool = False
    output: Deltas = field(default_factory=Deltas)
    result_ns: int = 0  # set when the result came but the span waits for its subagent


@dataclass(eq=False)
class ChildCall:
    """A tool call of a subagent's child agent as the child's own bridge saw it: whether KIT's
    tool wrapper let it run. The parent's chunks cannot tell: they come from the SDK's events,
    which show a refused call as started, ended and failed."""

    name: str
    verdict: str = ""  # "" until known, then RAN or REFUSED


RAN, REFUSED = "ran", "blocked"


@dataclass(eq=False)
class HeldResult:
    """A chunk tool_result waiting for its call's verdict from the child's own stream."""

    tool: Tool
    content: str
    is_error: bool
    ts_ns: int
    content_bytes: int = 0  # the full size of a result the bridge cut


@dataclass(eq=False)
class Subagent:
    span: trace.Span
    call_id: str
    start_ns: int
    session: "Session"
    turn: "Turn"
    chunk_tools: dict[str, deque] = field(default_factory=dict)  # tool name → open spans
    text: Deltas = field(default_factory=Deltas)
    child: "Run | None" = None  # the child agent's own events, when its bridge reports them
    # The child's calls of its open step: those not yet seen running, by id, and every id the
    # child's bridge named; all calls by tool name in call order (chunks name no call id); the
    # chunk results still waiting for a verdict, by tool name.
    pending_calls: dict[str, ChildCall] = field(default_factory=dict)
    step_call_ids: set[str] = field(default_factory=set)
    verdicts: dict[str, deque] = field(default_factory=dict)
    held: dict[str, deque] = field(default_factory=dict)
    # chunk results finished before the child's stream began, by tool name: the child's first
    # calls of that name are theirs, so they pair with no later result
    settled_unheard: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class Run:
    """One agent loop: the main agent's turn, or a subagent's child agent."""

    span: trace.Span
    agent: str  # names.AGENT_KIT's metric label: "main" | "subagent"
    aggregate: TurnAggregate = field(default_factory=TurnAggregate)
    cost: RunCost = field(default_factory=RunCost)  # provenance and notional spend
    step: Step | None = None
    last_ns: int = 0


@dataclass(eq=False)
class Turn(Run):
    start_ns: int = 0
    agent_start_ns: int = 0
    agent_started: bool = False
    tools: dict[str, Tool] = field(default_factory=dict)
    finished_calls: set[str] = field(default_factory=set)
    subagents: dict[str, Subagent] = field(default_factory=dict)
    last_error: str = ""
    cancelled: bool = False  # the loop ended on the user's cancel (ESC), not on a failure
    state_at_start: dict[str, str] = field(default_factory=dict)
    # the usage of its subagents' child agents, which KIT's AgentEnd leaves out
    subagent_usage: TurnAggregate = field(default_factory=TurnAggregate)
    subagent_cost: RunCost = field(default_factory=RunCost)
    subagent_count: int = 0


@dataclass(eq=False)
class Session:
    pid: int
    path: str
    session_id: str
    project: str
    base_attributes: dict[str, object]
    cwd: str = ""  # the session's working directory, when known
    provider: str = ""
    model: str = ""
    turn: Turn | None = None
    previous_turn: trace.SpanContext | None = None
    started: bool = False  # a session_start was seen: the next one is a hot reload
    counted: bool = False  # in kit_sessions_total
    shut_down: bool = False  # session_shutdown seen (and no session_start since)
    state: dict[str, str] = field(default_factory=dict)
    state_ts_ns: int = 0  # time of the newest state an envelope carried
    last_ns: int = 0
    clock_ns: int = 0  # newest event time of this session: its own clock (see sweep_by_clocks)
