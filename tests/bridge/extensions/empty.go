//go:build ignore

// The baseline of the bridge benchmark: a KIT extension whose handlers do
// nothing, loaded the same way as the bridge.
package main

import "kit/ext"

func Init(api ext.API) {
	api.OnMessageUpdate(func(e ext.MessageUpdateEvent, c ext.Context) {})
	api.OnToolCall(func(e ext.ToolCallEvent, c ext.Context) *ext.ToolCallResult { return nil })
	api.OnToolResult(func(e ext.ToolResultEvent, c ext.Context) *ext.ToolResultResult { return nil })
	api.OnLLMUsage(func(e ext.LLMUsageEvent, c ext.Context) {})
	api.OnStepStart(func(e ext.StepStartEvent, c ext.Context) {})
	api.OnContextPrepare(func(e ext.ContextPrepareEvent, c ext.Context) *ext.ContextPrepareResult { return nil })
}
