//go:build ignore

// A KIT extension that blocks destructive bash commands, as a user's
// guard-rail extension would: the call never runs and KIT's wrapper emits
// no tool_execution_start and no tool_result for it.
package main

import (
	"strings"

	"kit/ext"
)

func Init(api ext.API) {
	api.OnToolCall(func(e ext.ToolCallEvent, c ext.Context) *ext.ToolCallResult {
		if e.ToolName == "bash" && strings.Contains(e.Input, "rm -rf") {
			return &ext.ToolCallResult{Block: true, Reason: "destructive command"}
		}
		return nil
	})
}
