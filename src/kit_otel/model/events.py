"""The typed event model: one `Event` envelope (NDJSON contract v1) carrying one KIT event struct.

Field names of the data structs are KIT's Go field names, exactly as Go's `encoding/json` writes
them, so a line from the bridge, a replayed spool file and an event made in Python look the same.
Every field has Go's zero value as its default: KIT versions add and remove fields, and a missing
field must read the way KIT itself would have seen it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

FORMAT_VERSION = 1

# What one field may carry is checked when a line is decoded, so that nothing accepted can
# fail an export later (OTLP carries int64 values and int64 nanosecond times; a collector
# refuses oversized requests). A value outside its type is rejected with its field's name.
INT64_MAX = (1 << 63) - 1
# Counts, sizes, tokens and money are never negative; a negative one would make a monotonic
# counter go down. Upper bounds are far above anything real, and low enough that a counter
# summing millions of maximal values still fits in int64.
MAX_COUNT = 1 << 40  # ~1.1e12: sizes in bytes, message and call counts, milliseconds (35 years)
MAX_TOKENS = 10**9  # per event: 500 times the largest context window
MAX_AMOUNT = 1e9  # USD per event, or a percentage
MAX_NAME_CHARS = 256  # ids, tool/model/provider names, kinds, reasons, versions
MAX_PATH_CHARS = 4096  # PATH_MAX: a session file's path is on every span of its session
MAX_LIST_ITEMS = 4096  # names in one list (an agent_end's ToolNames)
MAX_STATE_KEYS = 256  # extension-state keys in one envelope
MAX_STATE_VALUE_CHARS = 1 << 16

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
Int = Annotated[int, msgspec.Meta(ge=-INT64_MAX - 1, le=INT64_MAX)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]
PathText = Annotated[str, msgspec.Meta(max_length=MAX_PATH_CHARS)]
NameList = Annotated[list[Name], msgspec.Meta(max_length=MAX_LIST_ITEMS)]
StateMap = Annotated[dict[Name, Annotated[str, msgspec.Meta(max_length=MAX_STATE_VALUE_CHARS)]],
                     msgspec.Meta(max_length=MAX_STATE_KEYS)]


class EventData(msgspec.Struct, kw_only=True):
    """Base of every KIT event struct (the `data` object of an envelope)."""


class ContextMessage(msgspec.Struct, kw_only=True):
    Index: Int = 0
    Role: Name = ""
    Content: str = ""


class ToolCall(EventData):
    ToolName: Name = ""
    ToolCallID: Name = ""
    ToolKind: Name = ""
    Input: str = ""
    ParsedArgs: dict[str, Any] | None = None
    Source: Name = ""
    InputBytes: Count = 0  # the bridge's: Input's full size when it cut Input


class ToolCallInputStart(EventData):
    ToolCallID: Name = ""
    ToolName: Name = ""
    ToolKind: Name = ""


class ToolCallInputDelta(EventData):
    ToolCallID: Name = ""
    Delta: str = ""


class ToolCallInputEnd(EventData):
    ToolCallID: Name = ""


class ToolExecutionStart(EventData):
    ToolCallID: Name = ""
    ToolName: Name = ""
    ToolKind: Name = ""


class ToolExecutionEnd(EventData):
    ToolCallID: Name = ""
    ToolName: Name = ""
    ToolKind: Name = ""


class ToolOutput(EventData):
    ToolCallID: Name = ""
    ToolName: Name = ""
    ToolKind: Name = ""
    Chunk: str = ""
    IsStderr: bool = False


class ToolResult(EventData):
    ToolCallID: Name = ""
    ToolName: Name = ""
    ToolKind: Name = ""
    Input: str = ""
    Content: str = ""
    IsError: bool = False
    Metadata: str = ""
    InputBytes: Count = 0  # the bridge's: full sizes of fields it cut
    ContentBytes: Count = 0


class Input(EventData):
    Text: str = ""
    Source: Name = ""
    TextBytes: Count = 0  # the bridge's: the full size of a Text it cut (a line over its bound)


class BeforeAgentStart(EventData):
    Prompt: str = ""
    PromptBytes: Count = 0  # the bridge's: the full size of a Prompt it cut


class AgentStart(EventData):
    Prompt: str = ""
    PromptBytes: Count = 0  # the bridge's: the full size of a Prompt it cut


class AgentEnd(EventData):
    Response: str = ""
    ResponseBytes: Count = 0  # the bridge's: the full size of a Response it cut
    StopReason: Name = ""
    ToolCallCount: Count = 0
    ToolNames: NameList | None = None
    LLMCallCount: Count = 0
    InputTokensDelta: Tokens = 0
    OutputTokensDelta: Tokens = 0
    CacheReadTokensDelta: Tokens = 0
    CacheWriteTokensDelta: Tokens = 0
    CostDelta: Amount = 0.0
    DurationMs: Count = 0


class MessageStart(EventData):
    pass


class MessageUpdate(EventData):
    Chunk: str = ""


class MessageEnd(EventData):
    Content: str = ""


class SessionStart(EventData):
    SessionID: Name = ""


class SessionShutdown(EventData):
    pass


class ModelChange(EventData):
    NewModel: Name = ""
    PreviousModel: Name = ""
    Source: Name = ""


class ContextPrepare(EventData):
    Messages: list[ContextMessage] | None = None
    # A bridge sends sizes instead of bodies unless content capture is on.
    MessageCount: Count = 0
    MessageBytes: Count = 0


class BeforeFork(EventData):
    TargetID: Name = ""
    IsUserMessage: bool = False
    UserText: str = ""


class BeforeSessionSwitch(EventData):
    Reason: Name = ""
    InitialPrompt: str = ""


class BeforeCompact(EventData):
    EstimatedTokens: Tokens = 0
    ContextLimit: Tokens = 0
    UsagePercent: Amount = 0.0
    MessageCount: Count = 0
    IsAutomatic: bool = False


class SubagentStart(EventData):
    ToolCallID: Name = ""
    Task: str = ""
    TaskBytes: Count = 0  # the bridge's: the full size of a Task it cut


class SubagentChunk(EventData):
    ToolCallID: Name = ""
    Task: str = ""
    ChunkType: Name = ""
    Content: str = ""
    ToolName: Name = ""
    ToolArgs: str = ""
    ToolResult: str = ""
    IsError: bool = False
    ToolArgsBytes: Count = 0  # the bridge's: full sizes of fields it cut
    ToolResultBytes: Count = 0


class SubagentEnd(EventData):
    ToolCallID: Name = ""
    Task: str = ""
    Response: str = ""
    ErrorMsg: str = ""
    ResponseBytes: Count = 0  # the bridge's: the full size of a Response it cut


class StepStart(EventData):
    StepNumber: Int = 0


class StepFinish(EventData):
    StepNumber: Int = 0
    HasToolCalls: bool = False
    FinishReason: Name = ""
    InputTokens: Tokens = 0
    OutputTokens: Tokens = 0
    CacheReadTokens: Tokens = 0
    CacheWriteTokens: Tokens = 0


class ReasoningStart(EventData):
    ID: Name = ""


class Warnings(EventData):
    Warnings: list[str] | None = None


class Source(EventData):
    SourceType: Name = ""
    ID: Name = ""
    URL: str = ""
    Title: str = ""


class Error(EventData):
    Error: str = ""


class Retry(EventData):
    Attempt: Int = 0
    Error: str = ""


class PrepareStep(EventData):
    StepNumber: Int = 0
    Messages: list[ContextMessage] | None = None
    MessageCount: Count = 0
    MessageBytes: Count = 0


class LLMUsage(EventData):
    InputTokens: Tokens = 0
    OutputTokens: Tokens = 0
    CacheReadTokens: Tokens = 0
    CacheWriteTokens: Tokens = 0
    Cost: Amount = 0.0
    Model: Name = ""
    Provider: Name = ""
    RequestID: Name = ""
    StepNumber: Int = 0
    FinishReason: Name = ""


class ThinkingLevelChange(EventData):
    NewLevel: Name = ""
    PreviousLevel: Name = ""
    Source: Name = ""


class TerminalResize(EventData):
    Width: Int = 0
    Height: Int = 0


class TurnStateChange(EventData):
    State: Name = ""
    Previous: Name = ""


class BridgeStart(EventData):
    """First line of every bridge spool file (not a KIT event): who wrote the file."""

    BridgeVersion: Name = ""
    StartedAt: Name = ""
    Options: StateMap | None = None
    # W3C trace context KIT was started with (TRACEPARENT / TRACESTATE), where the bridge can
    # read its environment: the process's turns become children of that span
    Traceparent: Name = ""
    Tracestate: PathText = ""  # W3C allows 32 members: longer than a name
    Model: Name = ""  # "provider/model" KIT had selected when the bridge began


class UnknownData(EventData):
    """The data of an event type this version does not know (a newer KIT): kept, not rejected."""

    fields: dict[str, Any] = {}


# KIT's event type string -> the struct its data decodes into.
DATA_TYPES: dict[str, type[EventData]] = {
    "tool_call": ToolCall,
    "tool_call_input_start": ToolCallInputStart,
    "tool_call_input_delta": ToolCallInputDelta,
    "tool_call_input_end": ToolCallInputEnd,
    "tool_execution_start": ToolExecutionStart,
    "tool_execution_end": ToolExecutionEnd,
    "tool_output": ToolOutput,
    "tool_result": ToolResult,
    "input": Input,
    "before_agent_start": BeforeAgentStart,
    "agent_start": AgentStart,
    "agent_end": AgentEnd,
    "message_start": MessageStart,
    "message_update": MessageUpdate,
    "message_end": MessageEnd,
    "session_start": SessionStart,
    "session_shutdown": SessionShutdown,
    "model_change": ModelChange,
    "context_prepare": ContextPrepare,
    "before_fork": BeforeFork,
    "before_session_switch": BeforeSessionSwitch,
    "before_compact": BeforeCompact,
    "subagent_start": SubagentStart,
    "subagent_chunk": SubagentChunk,
    "subagent_end": SubagentEnd,
    "step_start": StepStart,
    "step_finish": StepFinish,
    "reasoning_start": ReasoningStart,
    "warnings": Warnings,
    "source": Source,
    "error": Error,
    "retry": Retry,
    "prepare_step": PrepareStep,
    "llm_usage": LLMUsage,
    "thinking_level_change": ThinkingLevelChange,
    "terminal_resize": TerminalResize,
    "turn_state_change": TurnStateChange,
    "bridge_start": BridgeStart,
}

# Types that are about the transport, not KIT's lifecycle.
META_TYPES = frozenset({"bridge_start"})
KIT_EVENT_TYPES = frozenset(DATA_TYPES) - META_TYPES


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One envelope: where and when a KIT event happened, and the event itself (`data`)."""

    type: str
    data: EventData
    ts_ns: int  # `ts` as integer nanoseconds since the epoch (UTC)
    v: int = FORMAT_VERSION
    seq: int = 0
    pid: int = 0
    session_path: str = ""
    session_id: str = ""
    source: str = ""
    agent: str = ""
    parent_tool_call_id: str = ""  # a subagent's: the parent's subagent tool call
    kit_version: str = ""
    dropped: int = 0
    state: dict[str, str] | None = None

    @property
    def known(self) -> bool:
        return not isinstance(self.data, UnknownData)


def make_event(type: str, ts_ns: int, **envelope: Any) -> Event:
    """Build an Event in Python (instrumentation, generator): `data=` may be a struct or a dict."""
    data = envelope.pop("data", None)
    cls = DATA_TYPES.get(type)
    if data is None:
        data = cls() if cls else UnknownData()
    elif isinstance(data, dict):
        data = msgspec.convert(data, cls) if cls else UnknownData(fields=data)
    return Event(type=type, data=data, ts_ns=ts_ns, **envelope)
