package kit

// The few unexported pieces of Kit a test host needs to play KIT's agent loop:
// the event bus emit of generate/runTurn (pkg/kit/kit.go) and the hook runs
// that KIT's runTurn and PrepareStep make. Everything else the host uses is
// KIT's own code (events.go, extensions_bridge.go, hooks.go, internal/extensions).

// Emit publishes an SDK event on the Kit's bus, as m.events.emit in kit.go does.
func (m *Kit) Emit(e Event) { m.events.emit(e) }

// BeforeTurn runs the BeforeTurn hooks (runTurn: extension Input, then BeforeAgentStart).
func (m *Kit) BeforeTurn(prompt string) { m.beforeTurn.run(BeforeTurnHook{Prompt: prompt}) }

// ContextPrepare runs the ContextPrepare hooks (runTurn, after BuildContext).
func (m *Kit) ContextPrepare(msgs []LLMMessage) {
	m.contextPrepare.run(ContextPrepareHook{Messages: msgs})
}

// PrepareStep runs the PrepareStep hooks (agent.go's PrepareStep, before each step).
func (m *Kit) PrepareStep(step int, msgs []LLMMessage) {
	if m.prepareStep.hasHooks() {
		m.prepareStep.run(PrepareStepHook{StepNumber: step, Messages: msgs})
	}
}

// SubagentForwarder is the spawner's OnEvent (kit.go generate): the listener
// set SubscribeSubagent registered for this tool call, or nil.
func (m *Kit) SubagentForwarder(toolCallID string) func(Event) {
	if set := m.getSubagentListenerSet(toolCallID); set != nil {
		return set.emit
	}
	return nil
}

// CleanupSubagent is the spawner's cleanupSubagentListeners.
func (m *Kit) CleanupSubagent(toolCallID string) { m.cleanupSubagentListeners(toolCallID) }
