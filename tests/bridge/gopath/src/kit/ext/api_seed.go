// Registration surface of the stand-in (see context.go for the variants).

//go:build kitseed
// +build kitseed

package ext

// Variant names the KIT API this build of the stand-in mirrors.
const Variant = "seed"

// API is passed to an extension's Init. Its registration hooks are unexported
// and wired by NewTestAPI (KIT wires them in its loader).
type API struct {
	onToolCall            func(func(ToolCallEvent, Context) *ToolCallResult)
	onToolCallInputStart  func(func(ToolCallInputStartEvent, Context))
	onToolCallInputDelta  func(func(ToolCallInputDeltaEvent, Context))
	onToolCallInputEnd    func(func(ToolCallInputEndEvent, Context))
	onToolExecStart       func(func(ToolExecutionStartEvent, Context))
	onToolExecEnd         func(func(ToolExecutionEndEvent, Context))
	onToolOutput          func(func(ToolOutputEvent, Context))
	onToolResult          func(func(ToolResultEvent, Context) *ToolResultResult)
	onInput               func(func(InputEvent, Context) *InputResult)
	onBeforeAgentStart    func(func(BeforeAgentStartEvent, Context) *BeforeAgentStartResult)
	onAgentStart          func(func(AgentStartEvent, Context))
	onAgentEnd            func(func(AgentEndEvent, Context))
	onMessageStart        func(func(MessageStartEvent, Context))
	onMessageUpdate       func(func(MessageUpdateEvent, Context))
	onMessageEnd          func(func(MessageEndEvent, Context))
	onSessionStart        func(func(SessionStartEvent, Context))
	onSessionShutdown     func(func(SessionShutdownEvent, Context))
	onModelChange         func(func(ModelChangeEvent, Context))
	onContextPrepare      func(func(ContextPrepareEvent, Context) *ContextPrepareResult)
	onBeforeFork          func(func(BeforeForkEvent, Context) *BeforeForkResult)
	onBeforeSessionSwitch func(func(BeforeSessionSwitchEvent, Context) *BeforeSessionSwitchResult)
	onBeforeCompact       func(func(BeforeCompactEvent, Context) *BeforeCompactResult)
	onSubagentStart       func(func(SubagentStartEvent, Context))
	onSubagentChunk       func(func(SubagentChunkEvent, Context))
	onSubagentEnd         func(func(SubagentEndEvent, Context))
	onStepStart           func(func(StepStartEvent, Context))
	onStepFinish          func(func(StepFinishEvent, Context))
	onReasoningStart      func(func(ReasoningStartEvent, Context))
	onWarnings            func(func(WarningsEvent, Context))
	onSource              func(func(SourceEvent, Context))
	onError               func(func(ErrorEvent, Context))
	onRetry               func(func(RetryEvent, Context))
	onPrepareStep         func(func(PrepareStepEvent, Context) *PrepareStepResult)
	onLLMUsage            func(func(LLMUsageEvent, Context))
	registerOption        func(OptionDef)
	registerToolFn        func(ToolDef)
	registerCmdFn         func(CommandDef)
	onCustomEvent         func(name string, handler func(string))
}

// BeforeSessionSwitchEvent at the seed commit has no InitialPrompt.
type BeforeSessionSwitchEvent struct {
	Reason string
}

// wireVariant connects the hooks that only this variant has.
func wireVariant(a *API, r *Registry) {
}
