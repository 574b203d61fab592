// Registration surface of the stand-in (see context.go for the variants).

//go:build !kitseed
// +build !kitseed

package ext

// Variant names the KIT API this build of the stand-in mirrors.
const Variant = "head"

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
	onThinkingLevelChange func(func(ThinkingLevelChangeEvent, Context))
	onTerminalResize      func(func(TerminalResizeEvent, Context))
	onTurnStateChange     func(func(TurnStateChangeEvent, Context))
	registerOption        func(OptionDef)
	registerToolFn        func(ToolDef)
	registerCmdFn         func(CommandDef)
	onCustomEvent         func(name string, handler func(string))
}

// OnThinkingLevelChange registers a handler for thinking_level_change events.
func (a *API) OnThinkingLevelChange(handler func(ThinkingLevelChangeEvent, Context)) {
	a.onThinkingLevelChange(handler)
}

// OnTerminalResize registers a handler for terminal_resize events.
func (a *API) OnTerminalResize(handler func(TerminalResizeEvent, Context)) {
	a.onTerminalResize(handler)
}

// OnTurnStateChange registers a handler for turn_state_change events.
func (a *API) OnTurnStateChange(handler func(TurnStateChangeEvent, Context)) {
	a.onTurnStateChange(handler)
}

// BeforeSessionSwitchEvent gained InitialPrompt after the seed commit.
type BeforeSessionSwitchEvent struct {
	Reason        string
	InitialPrompt string
}

type ThinkingLevelChangeEvent struct {
	NewLevel      string
	PreviousLevel string
	Source        string
}

type TerminalResizeEvent struct {
	Width  int
	Height int
}

type TurnStateChangeEvent struct {
	State    string
	Previous string
}

// wireVariant connects the hooks that only this variant has.
func wireVariant(a *API, r *Registry) {
	a.onThinkingLevelChange = func(h func(ThinkingLevelChangeEvent, Context)) {
		r.add("thinking_level_change", func(e any, c Context) any {
			h(e.(ThinkingLevelChangeEvent), c)
			return nil
		})
	}
	a.onTerminalResize = func(h func(TerminalResizeEvent, Context)) {
		r.add("terminal_resize", func(e any, c Context) any {
			h(e.(TerminalResizeEvent), c)
			return nil
		})
	}
	a.onTurnStateChange = func(h func(TurnStateChangeEvent, Context)) {
		r.add("turn_state_change", func(e any, c Context) any {
			h(e.(TurnStateChangeEvent), c)
			return nil
		})
	}
}
