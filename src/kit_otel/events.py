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

# Counts, sizes, tokens and money are never negative; a negative one is bad input (it would
# make a monotonic counter go down), rejected with its field's name.
Count = Annotated[int, msgspec.Meta(ge=0)]
Amount = Annotated[float, msgspec.Meta(ge=0)]


class EventData(msgspec.Struct, kw_only=True):
    """Base of every KIT event struct (the `data` object of an envelope)."""


class ContextMessage(msgspec.Struct, kw_only=True):
    Index: int = 0
    Role: str = ""
    Content: str = ""


class ToolCall(EventData):
    ToolName: str = ""
    ToolCallID: str = ""
    ToolKind: str = ""
    Input: str = ""
    ParsedArgs: dict[str, Any] | None = None
    Source: str = ""


class ToolCallInputStart(EventData):
    ToolCallID: str = ""
    ToolName: str = ""
    ToolKind: str = ""


class ToolCallInputDelta(EventData):
    ToolCallID: str = ""
    Delta: str = ""


class ToolCallInputEnd(EventData):
    ToolCallID: str = ""


class ToolExecutionStart(EventData):
    ToolCallID: str = ""
    ToolName: str = ""
    ToolKind: str = ""


class ToolExecutionEnd(EventData):
    ToolCallID: str = ""
    ToolName: str = ""
    ToolKind: str = ""


class ToolOutput(EventData):
    ToolCallID: str = ""
    ToolName: str = ""
    ToolKind: str = ""
    Chunk: str = ""
    IsStderr: bool = False


class ToolResult(EventData):
    ToolCallID: str = ""
    ToolName: str = ""
    ToolKind: str = ""
    Input: str = ""
    Content: str = ""
    IsError: bool = False
    Metadata: str = ""


class Input(EventData):
    Text: str = ""
    Source: str = ""


class BeforeAgentStart(EventData):
    Prompt: str = ""


class AgentStart(EventData):
    Prompt: str = ""


class AgentEnd(EventData):
    Response: str = ""
    StopReason: str = ""
    ToolCallCount: Count = 0
    ToolNames: list[str] | None = None
    LLMCallCount: Count = 0
    InputTokensDelta: Count = 0
    OutputTokensDelta: Count = 0
    CacheReadTokensDelta: Count = 0
    CacheWriteTokensDelta: Count = 0
    CostDelta: Amount = 0.0
    DurationMs: Count = 0


class MessageStart(EventData):
    pass


class MessageUpdate(EventData):
    Chunk: str = ""


class MessageEnd(EventData):
    Content: str = ""


class SessionStart(EventData):
    SessionID: str = ""


class SessionShutdown(EventData):
    pass


class ModelChange(EventData):
    NewModel: str = ""
    PreviousModel: str = ""
    Source: str = ""


class ContextPrepare(EventData):
    Messages: list[ContextMessage] | None = None
    # A bridge sends sizes instead of bodies unless content capture is on.
    MessageCount: Count = 0
    MessageBytes: Count = 0


class BeforeFork(EventData):
    TargetID: str = ""
    IsUserMessage: bool = False
    UserText: str = ""


class BeforeSessionSwitch(EventData):
    Reason: str = ""
    InitialPrompt: str = ""


class BeforeCompact(EventData):
    EstimatedTokens: Count = 0
    ContextLimit: Count = 0
    UsagePercent: Amount = 0.0
    MessageCount: Count = 0
    IsAutomatic: bool = False


class SubagentStart(EventData):
    ToolCallID: str = ""
    Task: str = ""


class SubagentChunk(EventData):
    ToolCallID: str = ""
    Task: str = ""
    ChunkType: str = ""
    Content: str = ""
    ToolName: str = ""
    ToolArgs: str = ""
    ToolResult: str = ""
    IsError: bool = False


class SubagentEnd(EventData):
    ToolCallID: str = ""
    Task: str = ""
    Response: str = ""
    ErrorMsg: str = ""


class StepStart(EventData):
    StepNumber: int = 0


class StepFinish(EventData):
    StepNumber: int = 0
    HasToolCalls: bool = False
    FinishReason: str = ""
    InputTokens: Count = 0
    OutputTokens: Count = 0
    CacheReadTokens: Count = 0
    CacheWriteTokens: Count = 0


class ReasoningStart(EventData):
    ID: str = ""


class Warnings(EventData):
    Warnings: list[str] | None = None


class Source(EventData):
    SourceType: str = ""
    ID: str = ""
    URL: str = ""
    Title: str = ""


class Error(EventData):
    Error: str = ""


class Retry(EventData):
    Attempt: int = 0
    Error: str = ""


class PrepareStep(EventData):
    StepNumber: int = 0
    Messages: list[ContextMessage] | None = None
    MessageCount: Count = 0
    MessageBytes: Count = 0


class LLMUsage(EventData):
    InputTokens: Count = 0
    OutputTokens: Count = 0
    CacheReadTokens: Count = 0
    CacheWriteTokens: Count = 0
    Cost: Amount = 0.0
    Model: str = ""
    Provider: str = ""
    RequestID: str = ""
    StepNumber: int = 0
    FinishReason: str = ""


class ThinkingLevelChange(EventData):
    NewLevel: str = ""
    PreviousLevel: str = ""
    Source: str = ""


class TerminalResize(EventData):
    Width: int = 0
    Height: int = 0


class TurnStateChange(EventData):
    State: str = ""
    Previous: str = ""


class BridgeStart(EventData):
    """First line of every bridge spool file (not a KIT event): who wrote the file."""

    BridgeVersion: str = ""
    StartedAt: str = ""
    Options: dict[str, str] | None = None


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
