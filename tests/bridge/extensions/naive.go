//go:build ignore

// A reference point for the bridge benchmark: the straightforward bridge,
// which builds the envelope as a map and marshals it inside the handler,
// then hands the bytes to a writer goroutine.
package main

import (
	"encoding/json"
	"os"
	"time"

	"kit/ext"
)

type naiveState struct {
	seq int64
	ch  chan []byte
}

func naiveEmit(s *naiveState, typ string, data interface{}, c ext.Context) {
	s.seq++
	m := map[string]interface{}{
		"v":            1,
		"seq":          s.seq,
		"ts":           time.Now().UTC().Format(time.RFC3339Nano),
		"pid":          os.Getpid(),
		"session_path": c.GetSessionPath(),
		"type":         typ,
		"data":         data,
		"source":       "bridge",
	}
	line, err := json.Marshal(m)
	if err != nil {
		return
	}
	select {
	case s.ch <- append(line, '\n'):
	default:
	}
}

func Init(api ext.API) {
	s := &naiveState{ch: make(chan []byte, 1<<16)}
	go func() {
		f, err := os.CreateTemp("", "kit-otel-naive-*.ndjson")
		if err != nil {
			for range s.ch {
			}
			return
		}
		defer os.Remove(f.Name())
		for line := range s.ch {
			f.Write(line)
		}
	}()
	api.OnMessageUpdate(func(e ext.MessageUpdateEvent, c ext.Context) { naiveEmit(s, "message_update", e, c) })
	api.OnToolCall(func(e ext.ToolCallEvent, c ext.Context) *ext.ToolCallResult {
		naiveEmit(s, "tool_call", e, c)
		return nil
	})
	api.OnToolResult(func(e ext.ToolResultEvent, c ext.Context) *ext.ToolResultResult {
		naiveEmit(s, "tool_result", e, c)
		return nil
	})
	api.OnLLMUsage(func(e ext.LLMUsageEvent, c ext.Context) { naiveEmit(s, "llm_usage", e, c) })
	api.OnStepStart(func(e ext.StepStartEvent, c ext.Context) { naiveEmit(s, "step_start", e, c) })
	api.OnContextPrepare(func(e ext.ContextPrepareEvent, c ext.Context) *ext.ContextPrepareResult {
		naiveEmit(s, "context_prepare", e, c)
		return nil
	})
}
