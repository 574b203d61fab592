// Registration surface of the stand-in (see context.go for the variants).

package ext

// OnToolCall registers a handler for tool_call events.
func (a *API) OnToolCall(handler func(ToolCallEvent, Context) *ToolCallResult) {
	a.onToolCall(handler)
}

// OnToolCallInputStart registers a handler for tool_call_input_start events.
func (a *API) OnToolCallInputStart(handler func(ToolCallInputStartEvent, Context)) {
	a.onToolCallInputStart(handler)
}

// OnToolCallInputDelta registers a handler for tool_call_input_delta events.
func (a *API) OnToolCallInputDelta(handler func(ToolCallInputDeltaEvent, Context)) {
	a.onToolCallInputDelta(handler)
}

// OnToolCallInputEnd registers a handler for tool_call_input_end events.
func (a *API) OnToolCallInputEnd(handler func(ToolCallInputEndEvent, Context)) {
	a.onToolCallInputEnd(handler)
}

// OnToolExecutionStart registers a handler for tool_execution_start events.
func (a *API) OnToolExecutionStart(handler func(ToolExecutionStartEvent, Context)) {
	a.onToolExecStart(handler)
}

// OnToolExecutionEnd registers a handler for tool_execution_end events.
func (a *API) OnToolExecutionEnd(handler func(ToolExecutionEndEvent, Context)) {
	a.onToolExecEnd(handler)
}

// OnToolOutput registers a handler for tool_output events.
func (a *API) OnToolOutput(handler func(ToolOutputEvent, Context)) {
	a.onToolOutput(handler)
}

// OnToolResult registers a handler for tool_result events.
func (a *API) OnToolResult(handler func(ToolResultEvent, Context) *ToolResultResult) {
	a.onToolResult(handler)
}

// OnInput registers a handler for input events.
func (a *API) OnInput(handler func(InputEvent, Context) *InputResult) {
	a.onInput(handler)
}

// OnBeforeAgentStart registers a handler for before_agent_start events.
func (a *API) OnBeforeAgentStart(handler func(BeforeAgentStartEvent, Context) *BeforeAgentStartResult) {
	a.onBeforeAgentStart(handler)
}

// OnAgentStart registers a handler for agent_start events.
func (a *API) OnAgentStart(handler func(AgentStartEvent, Context)) {
	a.onAgentStart(handler)
}

// OnAgentEnd registers a handler for agent_end events.
func (a *API) OnAgentEnd(handler func(AgentEndEvent, Context)) {
	a.onAgentEnd(handler)
}

// OnMessageStart registers a handler for message_start events.
func (a *API) OnMessageStart(handler func(MessageStartEvent, Context)) {
	a.onMessageStart(handler)
}

// OnMessageUpdate registers a handler for message_update events.
func (a *API) OnMessageUpdate(handler func(MessageUpdateEvent, Context)) {
	a.onMessageUpdate(handler)
}

// OnMessageEnd registers a handler for message_end events.
func (a *API) OnMessageEnd(handler func(MessageEndEvent, Context)) {
	a.onMessageEnd(handler)
}

// OnSessionStart registers a handler for session_start events.
func (a *API) OnSessionStart(handler func(SessionStartEvent, Context)) {
	a.onSessionStart(handler)
}

// OnSessionShutdown registers a handler for session_shutdown events.
func (a *API) OnSessionShutdown(handler func(SessionShutdownEvent, Context)) {
	a.onSessionShutdown(handler)
}

// OnModelChange registers a handler for model_change events.
func (a *API) OnModelChange(handler func(ModelChangeEvent, Context)) {
	a.onModelChange(handler)
}

// OnContextPrepare registers a handler for context_prepare events.
func (a *API) OnContextPrepare(handler func(ContextPrepareEvent, Context) *ContextPrepareResult) {
	a.onContextPrepare(handler)
}

// OnBeforeFork registers a handler for before_fork events.
func (a *API) OnBeforeFork(handler func(BeforeForkEvent, Context) *BeforeForkResult) {
	a.onBeforeFork(handler)
}

// OnBeforeSessionSwitch registers a handler for before_session_switch events.
func (a *API) OnBeforeSessionSwitch(handler func(BeforeSessionSwitchEvent, Context) *BeforeSessionSwitchResult) {
	a.onBeforeSessionSwitch(handler)
}

// OnBeforeCompact registers a handler for before_compact events.
func (a *API) OnBeforeCompact(handler func(BeforeCompactEvent, Context) *BeforeCompactResult) {
	a.onBeforeCompact(handler)
}

// OnSubagentStart registers a handler for subagent_start events.
func (a *API) OnSubagentStart(handler func(SubagentStartEvent, Context)) {
	a.onSubagentStart(handler)
}

// OnSubagentChunk registers a handler for subagent_chunk events.
func (a *API) OnSubagentChunk(handler func(SubagentChunkEvent, Context)) {
	a.onSubagentChunk(handler)
}

// OnSubagentEnd registers a handler for subagent_end events.
func (a *API) OnSubagentEnd(handler func(SubagentEndEvent, Context)) {
	a.onSubagentEnd(handler)
}

// OnStepStart registers a handler for step_start events.
func (a *API) OnStepStart(handler func(StepStartEvent, Context)) {
	a.onStepStart(handler)
}

// OnStepFinish registers a handler for step_finish events.
func (a *API) OnStepFinish(handler func(StepFinishEvent, Context)) {
	a.onStepFinish(handler)
}

// OnReasoningStart registers a handler for reasoning_start events.
func (a *API) OnReasoningStart(handler func(ReasoningStartEvent, Context)) {
	a.onReasoningStart(handler)
}

// OnWarnings registers a handler for warnings events.
func (a *API) OnWarnings(handler func(WarningsEvent, Context)) {
	a.onWarnings(handler)
}

// OnSource registers a handler for source events.
func (a *API) OnSource(handler func(SourceEvent, Context)) {
	a.onSource(handler)
}

// OnError registers a handler for error events.
func (a *API) OnError(handler func(ErrorEvent, Context)) {
	a.onError(handler)
}

// OnRetry registers a handler for retry events.
func (a *API) OnRetry(handler func(RetryEvent, Context)) {
	a.onRetry(handler)
}

// OnPrepareStep registers a handler for prepare_step events.
func (a *API) OnPrepareStep(handler func(PrepareStepEvent, Context) *PrepareStepResult) {
	a.onPrepareStep(handler)
}

// OnLLMUsage registers a handler for llm_usage events.
func (a *API) OnLLMUsage(handler func(LLMUsageEvent, Context)) {
	a.onLLMUsage(handler)
}

// RegisterOption declares a named option (KIT_OPT_<NAME>, options.<name>).
func (a *API) RegisterOption(opt OptionDef) {
	a.registerOption(opt)
}

// RegisterTool adds a tool the LLM can call.
func (a *API) RegisterTool(tool ToolDef) {
	a.registerToolFn(tool)
}

// RegisterCommand adds a slash command.
func (a *API) RegisterCommand(cmd CommandDef) {
	a.registerCmdFn(cmd)
}

// OnCustomEvent subscribes to an inter-extension event.
func (a *API) OnCustomEvent(name string, handler func(string)) {
	a.onCustomEvent(name, handler)
}

// wireCommon connects the hooks both variants have.
func wireCommon(a *API, r *Registry) {
	a.onToolCall = func(h func(ToolCallEvent, Context) *ToolCallResult) {
		r.add("tool_call", func(e any, c Context) any {
			return h(e.(ToolCallEvent), c)
		})
	}
	a.onToolCallInputStart = func(h func(ToolCallInputStartEvent, Context)) {
		r.add("tool_call_input_start", func(e any, c Context) any {
			h(e.(ToolCallInputStartEvent), c)
			return nil
		})
	}
	a.onToolCallInputDelta = func(h func(ToolCallInputDeltaEvent, Context)) {
		r.add("tool_call_input_delta", func(e any, c Context) any {
			h(e.(ToolCallInputDeltaEvent), c)
			return nil
		})
	}
	a.onToolCallInputEnd = func(h func(ToolCallInputEndEvent, Context)) {
		r.add("tool_call_input_end", func(e any, c Context) any {
			h(e.(ToolCallInputEndEvent), c)
			return nil
		})
	}
	a.onToolExecStart = func(h func(ToolExecutionStartEvent, Context)) {
		r.add("tool_execution_start", func(e any, c Context) any {
			h(e.(ToolExecutionStartEvent), c)
			return nil
		})
	}
	a.onToolExecEnd = func(h func(ToolExecutionEndEvent, Context)) {
		r.add("tool_execution_end", func(e any, c Context) any {
			h(e.(ToolExecutionEndEvent), c)
			return nil
		})
	}
	a.onToolOutput = func(h func(ToolOutputEvent, Context)) {
		r.add("tool_output", func(e any, c Context) any {
			h(e.(ToolOutputEvent), c)
			return nil
		})
	}
	a.onToolResult = func(h func(ToolResultEvent, Context) *ToolResultResult) {
		r.add("tool_result", func(e any, c Context) any {
			return h(e.(ToolResultEvent), c)
		})
	}
	a.onInput = func(h func(InputEvent, Context) *InputResult) {
		r.add("input", func(e any, c Context) any {
			return h(e.(InputEvent), c)
		})
	}
	a.onBeforeAgentStart = func(h func(BeforeAgentStartEvent, Context) *BeforeAgentStartResult) {
		r.add("before_agent_start", func(e any, c Context) any {
			return h(e.(BeforeAgentStartEvent), c)
		})
	}
	a.onAgentStart = func(h func(AgentStartEvent, Context)) {
		r.add("agent_start", func(e any, c Context) any {
			h(e.(AgentStartEvent), c)
			return nil
		})
	}
	a.onAgentEnd = func(h func(AgentEndEvent, Context)) {
		r.add("agent_end", func(e any, c Context) any {
			h(e.(AgentEndEvent), c)
			return nil
		})
	}
	a.onMessageStart = func(h func(MessageStartEvent, Context)) {
		r.add("message_start", func(e any, c Context) any {
			h(e.(MessageStartEvent), c)
			return nil
		})
	}
	a.onMessageUpdate = func(h func(MessageUpdateEvent, Context)) {
		r.add("message_update", func(e any, c Context) any {
			h(e.(MessageUpdateEvent), c)
			return nil
		})
	}
	a.onMessageEnd = func(h func(MessageEndEvent, Context)) {
		r.add("message_end", func(e any, c Context) any {
			h(e.(MessageEndEvent), c)
			return nil
		})
	}
	a.onSessionStart = func(h func(SessionStartEvent, Context)) {
		r.add("session_start", func(e any, c Context) any {
			h(e.(SessionStartEvent), c)
			return nil
		})
	}
	a.onSessionShutdown = func(h func(SessionShutdownEvent, Context)) {
		r.add("session_shutdown", func(e any, c Context) any {
			h(e.(SessionShutdownEvent), c)
			return nil
		})
	}
	a.onModelChange = func(h func(ModelChangeEvent, Context)) {
		r.add("model_change", func(e any, c Context) any {
			h(e.(ModelChangeEvent), c)
			return nil
		})
	}
	a.onContextPrepare = func(h func(ContextPrepareEvent, Context) *ContextPrepareResult) {
		r.add("context_prepare", func(e any, c Context) any {
			return h(e.(ContextPrepareEvent), c)
		})
	}
	a.onBeforeFork = func(h func(BeforeForkEvent, Context) *BeforeForkResult) {
		r.add("before_fork", func(e any, c Context) any {
			return h(e.(BeforeForkEvent), c)
		})
	}
	a.onBeforeSessionSwitch = func(h func(BeforeSessionSwitchEvent, Context) *BeforeSessionSwitchResult) {
		r.add("before_session_switch", func(e any, c Context) any {
			return h(e.(BeforeSessionSwitchEvent), c)
		})
	}
	a.onBeforeCompact = func(h func(BeforeCompactEvent, Context) *BeforeCompactResult) {
		r.add("before_compact", func(e any, c Context) any {
			return h(e.(BeforeCompactEvent), c)
		})
	}
	a.onSubagentStart = func(h func(SubagentStartEvent, Context)) {
		r.add("subagent_start", func(e any, c Context) any {
			h(e.(SubagentStartEvent), c)
			return nil
		})
	}
	a.onSubagentChunk = func(h func(SubagentChunkEvent, Context)) {
		r.add("subagent_chunk", func(e any, c Context) any {
			h(e.(SubagentChunkEvent), c)
			return nil
		})
	}
	a.onSubagentEnd = func(h func(SubagentEndEvent, Context)) {
		r.add("subagent_end", func(e any, c Context) any {
			h(e.(SubagentEndEvent), c)
			return nil
		})
	}
	a.onStepStart = func(h func(StepStartEvent, Context)) {
		r.add("step_start", func(e any, c Context) any {
			h(e.(StepStartEvent), c)
			return nil
		})
	}
	a.onStepFinish = func(h func(StepFinishEvent, Context)) {
		r.add("step_finish", func(e any, c Context) any {
			h(e.(StepFinishEvent), c)
			return nil
		})
	}
	a.onReasoningStart = func(h func(ReasoningStartEvent, Context)) {
		r.add("reasoning_start", func(e any, c Context) any {
			h(e.(ReasoningStartEvent), c)
			return nil
		})
	}
	a.onWarnings = func(h func(WarningsEvent, Context)) {
		r.add("warnings", func(e any, c Context) any {
			h(e.(WarningsEvent), c)
			return nil
		})
	}
	a.onSource = func(h func(SourceEvent, Context)) {
		r.add("source", func(e any, c Context) any {
			h(e.(SourceEvent), c)
			return nil
		})
	}
	a.onError = func(h func(ErrorEvent, Context)) {
		r.add("error", func(e any, c Context) any {
			h(e.(ErrorEvent), c)
			return nil
		})
	}
	a.onRetry = func(h func(RetryEvent, Context)) {
		r.add("retry", func(e any, c Context) any {
			h(e.(RetryEvent), c)
			return nil
		})
	}
	a.onPrepareStep = func(h func(PrepareStepEvent, Context) *PrepareStepResult) {
		r.add("prepare_step", func(e any, c Context) any {
			return h(e.(PrepareStepEvent), c)
		})
	}
	a.onLLMUsage = func(h func(LLMUsageEvent, Context)) {
		r.add("llm_usage", func(e any, c Context) any {
			h(e.(LLMUsageEvent), c)
			return nil
		})
	}
	a.registerOption = func(opt OptionDef) { r.Options = append(r.Options, opt) }
	a.registerToolFn = func(tool ToolDef) { r.Tools = append(r.Tools, tool) }
	a.registerCmdFn = func(cmd CommandDef) { r.Commands = append(r.Commands, cmd) }
	a.onCustomEvent = func(name string, handler func(string)) {}
}
