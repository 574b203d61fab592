//go:build ignore

// kit-otel bridge: a KIT extension that writes every lifecycle event of the
// KIT process it runs in as one NDJSON line (kit-otel event contract v1) to a
// spool file, and optionally streams the same lines to a Unix socket.
//
// Install with `kit-otel bridge install`, or load it once with
// `kit -e "$(kit-otel bridge path)"`. Documentation: docs/bridge.md.
//
// Design rules (the reasons for the shape of this file):
//   - A KIT handler never waits: it stamps the time, reads the session path
//     and hands the event to a bounded channel. When the channel is full the
//     event is dropped and counted; the count travels in the `dropped` key
//     of the next line written.
//   - All encoding happens on one writer goroutine per bridge instance, and
//     in one call per line to encoding/json, which runs compiled rather than
//     interpreted. The writer wakes on a timer while events flow, so a send
//     never has to wake it. Extension state is read there too, except on turn
//     boundaries (session_start, agent_start, agent_end), where the handler
//     takes it so it is exact.
//   - Hot path code is plain functions, not methods: Yaegi calls interpreted
//     methods several times slower than functions.
//   - Event kinds that an older KIT does not have (OnThinkingLevelChange,
//     OnTerminalResize, OnTurnStateChange, and any later On* method) are
//     never named in this file: they are found by reflection on the API value
//     and their handlers are built with reflect.MakeFunc, so the file loads on
//     every KIT version that has the On* methods named below.
//   - Nothing is opened before the first event, so `kit extensions list` and
//     friends, which load extensions without running a session, leave no
//     files behind.

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"expvar"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"kit/ext"
)

// BridgeVersion is written in the bridge_start header of every spool file.
const BridgeVersion = "0.1.0"

// Extension options (KIT_OPT_<NAME> environment variables, or options.<name>
// in .kit.yml).
const (
	optEnabled  = "kit-otel-enabled"
	optSpoolDir = "kit-otel-spool-dir"
	optSocket   = "kit-otel-socket"
	optQueue    = "kit-otel-queue-size"
	optContent  = "kit-otel-capture-content"
	optShutdown = "kit-otel-shutdown-timeout-ms"
	optFlush    = "kit-otel-flush-ms"
)

const (
	defaultQueueSize  = 4096
	defaultShutdownMs = 2000
	defaultFlushMs    = 50
	idleTicks         = 20 // empty flush intervals before the writer parks
	maxBatch          = 4096
	socketWriteWait   = 50 * time.Millisecond
	maxArgBytes       = 64 << 10  // tool arguments and output kept without content capture
	maxLineBytes      = 512 << 10 // a line longer than this has its long strings cut (kit-otel reads up to 1 MiB)
	socketDialWait    = 100 * time.Millisecond
	minRetry          = time.Second
	maxRetry          = 30 * time.Second
	// sharedName is the process-wide registry entry (package expvar) through
	// which every bridge instance of one process - the main agent, each
	// in-process subagent, each hot reload - shares one seq counter and the
	// count of live instances. Separate Yaegi interpreters share no Go
	// variables, but they share the compiled standard library.
	sharedName = "kit-otel.bridge.v1"
)

// record is one event on its way from a handler to the writer.
type record struct {
	typ   string
	ts    time.Time
	path  string
	ev    interface{}
	state map[string]string // taken in the handler (turn boundaries, tool and step ends), else nil
	// ifChanged: send state only when it differs from the last sent (else always)
	ifChanged bool
	delta     bool // path left to the writer
}

// bridge is the state of one loaded instance (one Init).
type bridge struct {
	w          *writer // running writer; nil before the first event and after session_shutdown
	off        bool    // disabled by option
	registered int
	reflected  []string
}

// writer owns the queue and everything behind it.
type writer struct {
	dropped int64 // events lost since the last line (atomic; first for alignment)
	q       chan record
	quit    chan struct{}
	done    chan struct{}
	final   record // the session_shutdown event, written after the queue is drained
	stopped bool

	shared      []int64 // [0] seq, [1] live instances, [2] instances started
	sessionPath func() string
	listState   func() []string
	getState    func(string) (string, bool)

	agent        string
	parentCall   string // a subagent's: the parent's subagent tool call
	content      bool
	spoolDir     string
	sockPath     string
	flushWait    time.Duration
	shutdownWait time.Duration
	options      map[string]string
	started      time.Time
	pid          int
	traceparent  string // TRACEPARENT / TRACESTATE KIT was started with
	tracestate   string
	model        string // the Context's model when the bridge began
	header       []byte

	line         envelope // reused for every line
	out          *bytes.Buffer
	enc          *json.Encoder
	lines        int64
	batchDropped int64  // the losses the lines in out report (their "dropped"): lost with them
	lastPath     string // path of the last event that carried one
	lastState    map[string]string
	file         *os.File
	fileName     string
	nextOpen     time.Time
	openWait     time.Duration
	conn         net.Conn
	nextDial     time.Time
	dialWait     time.Duration
}

// headerData is the data of the bridge_start line that opens every spool file
// and every socket connection.
type headerData struct {
	BridgeVersion string
	StartedAt     string
	Options       map[string]string
	// The W3C trace context KIT was started with (a CI job's TRACEPARENT):
	// the exporter makes this process's turns children of it. Read from the
	// process environment like every variable here (processEnv), so it also
	// arrives from KIT versions whose interpreter has no environment.
	Traceparent string `json:",omitempty"`
	Tracestate  string `json:",omitempty"`
	// The model KIT had selected when the bridge began ("provider/model"),
	// so the first turn's span names it before any LLM call reports it.
	Model string `json:",omitempty"`
}

// Init is called by KIT when it loads the extension.
func Init(api ext.API) {
	b := &bridge{}
	registerOptions(&api)
	known := map[string]bool{}
	on := func(method string) { known[method] = true; b.registered++ }

	// Each handler does the same few things, written out rather than called
	// (a call is a good part of the cost under Yaegi): the first event starts
	// the writer; then a time stamp, the session path and the event go to
	// the queue, or the drop count goes up. The queue has one sender at a
	// time (KIT calls one extension's handlers one at a time), so a queue
	// with room keeps it until the send; a select with a default case would
	// do the same at twice the cost. Deltas (message_update,
	// tool_call_input_delta, tool_output, subagent_chunk) leave the path to
	// the writer: it is the one of the event before them, as the path never
	// changes inside a turn.
	on("OnSessionStart")
	api.OnSessionStart(func(e ext.SessionStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if c.GetSessionPath != nil {
			w.sessionPath = c.GetSessionPath
		}
		enqueueWithState(w, "session_start", e)
	})
	on("OnSessionShutdown")
	api.OnSessionShutdown(func(e ext.SessionShutdownEvent, c ext.Context) {
		w := b.w
		if w == nil {
			return
		}
		b.w = nil
		stop(w, record{typ: "session_shutdown", ts: time.Now(), path: w.sessionPath(), ev: e})
	})
	on("OnInput")
	api.OnInput(func(e ext.InputEvent, c ext.Context) *ext.InputResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "input", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnBeforeAgentStart")
	api.OnBeforeAgentStart(func(e ext.BeforeAgentStartEvent, c ext.Context) *ext.BeforeAgentStartResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "before_agent_start", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnAgentStart")
	api.OnAgentStart(func(e ext.AgentStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		enqueueWithState(w, "agent_start", e)
	})
	on("OnAgentEnd")
	api.OnAgentEnd(func(e ext.AgentEndEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		enqueueWithState(w, "agent_end", e)
	})
	on("OnMessageStart")
	api.OnMessageStart(func(e ext.MessageStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "message_start", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnMessageUpdate")
	api.OnMessageUpdate(func(e ext.MessageUpdateEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "message_update", ts: time.Now(), ev: e, delta: true}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnMessageEnd")
	api.OnMessageEnd(func(e ext.MessageEndEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "message_end", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnToolCall")
	api.OnToolCall(func(e ext.ToolCallEvent, c ext.Context) *ext.ToolCallResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		// KIT hands the same ParsedArgs map to every extension after this one, which may
		// write to it while the writer goroutine encodes it: a concurrent map read and
		// write is a fatal error no recover() stops, and it would take KIT down. The
		// writer parses Input (the same JSON) again when it needs the arguments.
		e.ParsedArgs = nil
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "tool_call", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnToolCallInputStart")
	api.OnToolCallInputStart(func(e ext.ToolCallInputStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "tool_call_input_start", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnToolCallInputDelta")
	api.OnToolCallInputDelta(func(e ext.ToolCallInputDeltaEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "tool_call_input_delta", ts: time.Now(), ev: e, delta: true}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnToolCallInputEnd")
	api.OnToolCallInputEnd(func(e ext.ToolCallInputEndEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "tool_call_input_end", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnToolExecutionStart")
	api.OnToolExecutionStart(func(e ext.ToolExecutionStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		enqueueWithStateChange(w, "tool_execution_start", e)
		if e.ToolName == "subagent" {
			expectChild(w, e.ToolCallID)
		}
	})
	on("OnToolExecutionEnd")
	api.OnToolExecutionEnd(func(e ext.ToolExecutionEndEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		enqueueWithStateChange(w, "tool_execution_end", e)
	})
	on("OnToolOutput")
	api.OnToolOutput(func(e ext.ToolOutputEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "tool_output", ts: time.Now(), ev: e, delta: true}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnToolResult")
	api.OnToolResult(func(e ext.ToolResultEvent, c ext.Context) *ext.ToolResultResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		enqueueWithStateChange(w, "tool_result", e)
		if e.ToolName == "subagent" {
			forgetChild()
		}
		return nil
	})
	on("OnModelChange")
	api.OnModelChange(func(e ext.ModelChangeEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "model_change", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnContextPrepare")
	api.OnContextPrepare(func(e ext.ContextPrepareEvent, c ext.Context) *ext.ContextPrepareResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "context_prepare", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnBeforeFork")
	api.OnBeforeFork(func(e ext.BeforeForkEvent, c ext.Context) *ext.BeforeForkResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "before_fork", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnBeforeSessionSwitch")
	api.OnBeforeSessionSwitch(func(e ext.BeforeSessionSwitchEvent, c ext.Context) *ext.BeforeSessionSwitchResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "before_session_switch", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnBeforeCompact")
	api.OnBeforeCompact(func(e ext.BeforeCompactEvent, c ext.Context) *ext.BeforeCompactResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "before_compact", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnSubagentStart")
	api.OnSubagentStart(func(e ext.SubagentStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "subagent_start", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnSubagentChunk")
	api.OnSubagentChunk(func(e ext.SubagentChunkEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "subagent_chunk", ts: time.Now(), ev: e, delta: true}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnSubagentEnd")
	api.OnSubagentEnd(func(e ext.SubagentEndEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "subagent_end", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnStepStart")
	api.OnStepStart(func(e ext.StepStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "step_start", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnStepFinish")
	api.OnStepFinish(func(e ext.StepFinishEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		enqueueWithStateChange(w, "step_finish", e)
	})
	on("OnReasoningStart")
	api.OnReasoningStart(func(e ext.ReasoningStartEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "reasoning_start", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnWarnings")
	api.OnWarnings(func(e ext.WarningsEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "warnings", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnSource")
	api.OnSource(func(e ext.SourceEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "source", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnError")
	api.OnError(func(e ext.ErrorEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "error", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnRetry")
	api.OnRetry(func(e ext.RetryEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "retry", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})
	on("OnPrepareStep")
	api.OnPrepareStep(func(e ext.PrepareStepEvent, c ext.Context) *ext.PrepareStepResult {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return nil
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "prepare_step", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
		return nil
	})
	on("OnLLMUsage")
	api.OnLLMUsage(func(e ext.LLMUsageEvent, c ext.Context) {
		w := b.w
		if w == nil {
			if w = begin(b, c); w == nil {
				return
			}
		}
		if len(w.q) < cap(w.q) {
			w.q <- record{typ: "llm_usage", ts: time.Now(), path: w.sessionPath(), ev: e}
		} else {
			atomic.AddInt64(&w.dropped, 1)
		}
	})

	// Everything else KIT offers as On<Name>(func(<Name>Event, Context)),
	// found by reflection: thinking_level_change, terminal_resize and
	// turn_state_change on KIT versions that have them, and event kinds added
	// after this file was written.
	registerReflected(&api, b, known)
}

// enqueue is the handler body of the event kinds found by reflection.
func enqueue(w *writer, typ string, ev interface{}) {
	if len(w.q) < cap(w.q) {
		w.q <- record{typ: typ, ts: time.Now(), path: w.sessionPath(), ev: ev}
	} else {
		atomic.AddInt64(&w.dropped, 1)
	}
}

// enqueueWithState is enqueue plus a snapshot of the extension state, for
// the events that always carry it (session_start, agent_start, agent_end:
// once per turn, so the few calls it takes do not matter). Taken here, the
// state is exactly the one at the event.
func enqueueWithState(w *writer, typ string, ev interface{}) {
	p := w.sessionPath()
	var state map[string]string
	if w.listState != nil {
		state = currentState(w)
	}
	if len(w.q) < cap(w.q) {
		w.q <- record{typ: typ, ts: time.Now(), path: p, ev: ev, state: state}
	} else {
		atomic.AddInt64(&w.dropped, 1)
	}
}

// enqueueWithStateChange is enqueueWithState for the events where tools and
// steps end (tool_execution_start/end, tool_result, step_finish): the state
// read here is the one right after the event, so a change a tool made lands
// on that tool's events; it is sent only when it differs from the last sent.
func enqueueWithStateChange(w *writer, typ string, ev interface{}) {
	p := w.sessionPath()
	var state map[string]string
	if w.listState != nil {
		state = currentState(w)
	}
	if len(w.q) < cap(w.q) {
		w.q <- record{typ: typ, ts: time.Now(), path: p, ev: ev, state: state, ifChanged: true}
	} else {
		atomic.AddInt64(&w.dropped, 1)
	}
}

// currentState reads the whole extension state map (never nil).
func currentState(w *writer) map[string]string {
	keys := w.listState()
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		if v, ok := w.getState(k); ok {
			m[k] = v
		}
	}
	return m
}

// reflectedTypes names the event kinds that the bridge captures by reflection
// because the seed KIT lacks their On* method; other On* methods get a name
// derived from their event struct.
var reflectedTypes = map[string]string{
	"OnThinkingLevelChange": "thinking_level_change",
	"OnTerminalResize":      "terminal_resize",
	"OnTurnStateChange":     "turn_state_change",
}

func registerReflected(api *ext.API, b *bridge, known map[string]bool) {
	defer func() { _ = recover() }()
	v := reflect.ValueOf(api)
	t := v.Type()
	ctxType := reflect.TypeOf(ext.Context{})
	for i := 0; i < t.NumMethod(); i++ {
		m := t.Method(i)
		if !strings.HasPrefix(m.Name, "On") || known[m.Name] {
			continue
		}
		// m.Type includes the receiver: func(*API, handler).
		if m.Type.NumIn() != 2 {
			continue
		}
		ht := m.Type.In(1)
		if ht.Kind() != reflect.Func || ht.NumIn() != 2 || ht.In(1) != ctxType || ht.In(0).Kind() != reflect.Struct {
			continue
		}
		typ := reflectedTypes[m.Name]
		if typ == "" {
			typ = snakeCase(strings.TrimSuffix(ht.In(0).Name(), "Event"))
		}
		if typ == "" {
			continue
		}
		if registerOne(v.Method(i), ht, typ, b) {
			b.registered++
			b.reflected = append(b.reflected, typ)
		}
	}
}

func registerOne(method reflect.Value, ht reflect.Type, typ string, b *bridge) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	outs := make([]reflect.Value, ht.NumOut())
	for i := range outs {
		outs[i] = reflect.Zero(ht.Out(i))
	}
	handler := reflect.MakeFunc(ht, func(args []reflect.Value) []reflect.Value {
		w := b.w
		if w == nil {
			c, _ := args[1].Interface().(ext.Context)
			if w = begin(b, c); w == nil {
				return outs
			}
		}
		enqueue(w, typ, args[0].Interface())
		return outs
	})
	method.Call([]reflect.Value{handler})
	return true
}

// snakeCase turns an event struct name into KIT's event type spelling:
// "TurnStateChange" -> "turn_state_change", "LLMUsage" -> "llm_usage".
func snakeCase(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		upper := ch >= 'A' && ch <= 'Z'
		if upper {
			if i > 0 {
				prevLower := s[i-1] >= 'a' && s[i-1] <= 'z' || s[i-1] >= '0' && s[i-1] <= '9'
				nextLower := i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z'
				if prevLower || (nextLower && s[i-1] >= 'A' && s[i-1] <= 'Z') {
					out = append(out, '_')
				}
			}
			ch += 'a' - 'A'
		}
		out = append(out, ch)
	}
	return string(out)
}

func registerOptions(api *ext.API) {
	api.RegisterOption(ext.OptionDef{Name: optEnabled, Default: "true",
		Description: "kit-otel bridge: set to false to load the bridge without recording anything"})
	api.RegisterOption(ext.OptionDef{Name: optSpoolDir, Default: "",
		Description: "kit-otel bridge: spool directory (default $XDG_STATE_HOME/kit-otel/spool or ~/.local/state/kit-otel/spool)"})
	api.RegisterOption(ext.OptionDef{Name: optSocket, Default: "auto",
		Description: "kit-otel bridge: Unix socket to stream events to as well: a path, auto ($XDG_RUNTIME_DIR/kit-otel/bridge.sock, else next to the spool directory) or off"})
	api.RegisterOption(ext.OptionDef{Name: optQueue, Default: strconv.Itoa(defaultQueueSize),
		Description: "kit-otel bridge: events held in memory while the writer is busy; beyond that they are dropped and counted"})
	api.RegisterOption(ext.OptionDef{Name: optContent, Default: "false",
		Description: "kit-otel bridge: include message bodies in context_prepare and prepare_step (otherwise only MessageCount and MessageBytes)"})
	api.RegisterOption(ext.OptionDef{Name: optShutdown, Default: strconv.Itoa(defaultShutdownMs),
		Description: "kit-otel bridge: how long session_shutdown waits for queued events to reach the spool file (milliseconds)"})
	api.RegisterOption(ext.OptionDef{Name: optFlush, Default: strconv.Itoa(defaultFlushMs),
		Description: "kit-otel bridge: how often the writer collects queued events while events flow (milliseconds)"})
}

// option reads a registered option the way KIT resolves it (runtime
// override, KIT_OPT_<NAME>, .kit.yml, default) through ctx.GetOption. A
// subagent takes the values its parent's instance resolved: KIT gives a child
// Kit the Context of New(), whose GetOption is normalizeContext's stub, so
// .kit.yml settings would never reach it otherwise. The environment is the
// fallback (KIT before RegisterOption defaults, or a Context without options).
func option(c ext.Context, link *childLink, env map[string]string, name, def string) string {
	if link != nil {
		if v, ok := link.Options[name]; ok {
			return v
		}
	}
	v := ""
	if c.GetOption != nil {
		v = c.GetOption(name)
	}
	if v == "" {
		v = env["KIT_OPT_"+strings.ToUpper(strings.Replace(name, "-", "_", -1))]
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return def
	}
	return v
}

func truthy(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// processEnv is the environment of the KIT process. KIT HEAD gives each
// interpreter os.Environ(); KIT 49f8b485 gives it none, so os.Getenv sees
// nothing there and the process environment is read from /proc/self/environ
// (Linux) instead: the defaults then follow XDG_STATE_HOME and HOME as kit-otel
// serve's do.
func processEnv() (map[string]string, string) {
	env := map[string]string{}
	source := "process"
	list := os.Environ()
	if len(list) == 0 {
		source = "none"
		if data, err := os.ReadFile("/proc/self/environ"); err == nil && len(data) > 0 {
			list = strings.Split(string(data), "\x00")
			source = "/proc/self/environ"
		}
	}
	for _, kv := range list {
		if i := strings.Index(kv, "="); i > 0 {
			env[kv[:i]] = kv[i+1:]
		}
	}
	return env, source
}

func stateHome(env map[string]string) string {
	if d := env["XDG_STATE_HOME"]; d != "" {
		return d
	}
	home := env["HOME"]
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".local", "state")
}

// childLink is what a parent's instance leaves for the child Kit that its
// subagent tool call is about to run: KIT runs that child in-process, inside
// the tool's Run, on the goroutine that emitted the call's
// tool_execution_start (internal/extensions/wrapper.go; pkg/kit Subagent).
// The child's bridge instance starts on that goroutine (its first event is
// the child's input) and claims the link there, so parallel subagents -
// each on its own goroutine - are kept apart by the call that runs them.
type childLink struct {
	CallID      string
	SessionPath string
	Options     map[string]string
}

// goroutineID is the number in runtime.Stack's "goroutine N [...]" header.
func goroutineID() string {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		return string(b[:i])
	}
	return ""
}

// sharedChildren is the process-wide map goroutine id -> childLink (JSON).
func sharedChildren() (m *expvar.Map) {
	defer func() {
		if recover() != nil {
			m = nil
		}
	}()
	if v := expvar.Get(sharedName + ".children"); v != nil {
		m, _ = v.(*expvar.Map)
		return m
	}
	return expvar.NewMap(sharedName + ".children")
}

// expectChild runs in the parent's tool_execution_start of a subagent call.
func expectChild(w *writer, callID string) {
	m := sharedChildren()
	gid := goroutineID()
	if m == nil || gid == "" {
		return
	}
	data, err := json.Marshal(childLink{CallID: callID, SessionPath: w.sessionPath(), Options: w.options})
	if err != nil {
		return
	}
	v := new(expvar.String)
	v.Set(string(data))
	m.Set(gid, v)
}

// forgetChild runs in the parent's tool_result of a subagent call (same goroutine).
func forgetChild() {
	if m := sharedChildren(); m != nil {
		if gid := goroutineID(); gid != "" {
			m.Delete(gid)
		}
	}
}

// claimChild is the link a child instance starts under, or nil for a main agent.
func claimChild() *childLink {
	m := sharedChildren()
	if m == nil {
		return nil
	}
	v, ok := m.Get(goroutineID()).(*expvar.String)
	if !ok {
		return nil
	}
	link := &childLink{}
	if json.Unmarshal([]byte(v.Value()), link) != nil || link.CallID == "" {
		return nil
	}
	return link
}

// sharedCounters returns the process-wide counters, creating them on first
// use. The slice is published as an expvar.Func built from a method value of
// a compiled type, so it keeps no interpreter alive after a reload.
func sharedCounters() (s []int64) {
	defer func() {
		if recover() != nil || len(s) < 3 {
			s = make([]int64, 4) // unreachable in practice: counters of this instance only
		}
	}()
	for attempt := 0; attempt < 2; attempt++ {
		if v := expvar.Get(sharedName); v != nil {
			if f, ok := v.(expvar.Func); ok {
				if got, ok := f().([]int64); ok {
					return got
				}
			}
			return nil
		}
		fresh := make([]int64, 4)
		func() {
			defer func() { _ = recover() }() // lost a race with another instance: read theirs
			expvar.Publish(sharedName, expvar.Func(reflect.ValueOf(fresh).Interface))
		}()
	}
	return nil
}

// begin starts a writer at the first event of an instance (or the first
// event after a session_shutdown). It runs in a handler, so it only reads
// options and starts a goroutine: files and sockets are opened by the writer.
func begin(b *bridge, c ext.Context) *writer {
	if b.off {
		return nil
	}
	link := claimChild()
	env, envSource := processEnv()
	if !truthy(option(c, link, env, optEnabled, "true")) {
		b.off = true
		return nil
	}
	// (bounded above too: the queue is allocated at once, in KIT's own memory, and a
	// shutdown wait is KIT's exit waiting)
	queue := intOption(c, link, env, optQueue, defaultQueueSize, 1, 1<<20)
	shutdownMs := intOption(c, link, env, optShutdown, defaultShutdownMs, 0, 60000)
	flushMs := intOption(c, link, env, optFlush, defaultFlushMs, 1, 10000)
	spool := option(c, link, env, optSpoolDir, "")
	if spool == "" {
		spool = filepath.Join(stateHome(env), "kit-otel", "spool")
	}
	sock := option(c, link, env, optSocket, "auto")
	switch strings.ToLower(sock) {
	case "auto":
		if rt := env["XDG_RUNTIME_DIR"]; rt != "" {
			sock = filepath.Join(rt, "kit-otel", "bridge.sock")
		} else {
			sock = filepath.Join(filepath.Dir(spool), "bridge.sock")
		}
	case "off", "none", "false", "0", "no":
		sock = ""
	}
	content := truthy(option(c, link, env, optContent, "false"))

	w := &writer{
		q:            make(chan record, queue),
		quit:         make(chan struct{}),
		done:         make(chan struct{}),
		shared:       sharedCounters(),
		sessionPath:  c.GetSessionPath,
		listState:    c.ListState,
		getState:     c.GetState,
		content:      content,
		spoolDir:     spool,
		sockPath:     sock,
		flushWait:    time.Duration(flushMs) * time.Millisecond,
		shutdownWait: time.Duration(shutdownMs) * time.Millisecond,
		started:      time.Now(),
		pid:          os.Getpid(),
		model:        c.Model,
		traceparent:  env["TRACEPARENT"], // processEnv: /proc/self/environ where Getenv is blind
		tracestate:   env["TRACESTATE"],
		openWait:     minRetry,
		dialWait:     minRetry,
	}
	if w.sessionPath == nil {
		w.sessionPath = func() string { return "" }
	}
	if c.GetState == nil || c.ListState == nil {
		w.listState = nil
	}
	w.agent = "main"
	if link != nil {
		// A subagent: its events belong to the parent's session (KIT's child
		// Context reports no session path and has no state of its own).
		w.agent = "subagent"
		w.parentCall = link.CallID
		parentPath := link.SessionPath
		w.sessionPath = func() string { return parentPath }
		w.listState = nil
	}
	atomic.AddInt64(&w.shared[1], 1)
	sockOpt := sock
	if sockOpt == "" {
		sockOpt = "off"
	}
	w.options = map[string]string{
		optEnabled:  "true",
		optSpoolDir: spool,
		optSocket:   sockOpt,
		optQueue:    strconv.Itoa(queue),
		optContent:  strconv.FormatBool(content),
		optShutdown: strconv.Itoa(shutdownMs),
		optFlush:    strconv.Itoa(flushMs),
	}
	header := map[string]string{"events": strconv.Itoa(b.registered),
		"reflected": strings.Join(b.reflected, ","), "environment": envSource}
	for k, v := range w.options {
		header[k] = v
	}
	w.line = envelope{V: 1, Pid: w.pid, Source: "bridge", Agent: w.agent, ParentToolCallID: w.parentCall}
	// Numbered here, in the order instances start, not when a writer gets
	// to open its file.
	n := atomic.AddInt64(&w.shared[2], 1)
	w.fileName = filepath.Join(spool, "kit-"+strconv.Itoa(w.pid)+"-"+
		w.started.UTC().Format("20060102T150405.000000000Z")+"-"+strconv.FormatInt(n, 10)+".ndjson")
	w.lastPath = w.sessionPath()
	w.header = encodeHeader(w, w.lastPath, header)
	b.w = w
	go run(w)
	return w
}

func intOption(c ext.Context, link *childLink, env map[string]string, name string, def, min, max int) int {
	n, err := strconv.Atoi(option(c, link, env, name, ""))
	if err != nil || n < min {
		return def
	}
	if n > max {
		return max
	}
	return n
}

// stop is the session_shutdown path: the shutdown event is written after
// everything already queued, then the writer flushes, closes and exits. The
// handler waits for that, at most the configured shutdown timeout.
func stop(w *writer, final record) {
	if w.stopped {
		return
	}
	w.stopped = true
	atomic.AddInt64(&w.shared[1], -1)
	w.final = final
	close(w.quit)
	select {
	case <-w.done:
	case <-time.After(w.shutdownWait):
	}
}

// ---------------------------------------------------------------------------
// Writer goroutine
// ---------------------------------------------------------------------------

// run is the writer. While events flow it wakes every flush interval and
// takes what has queued up, so a handler's send never has to wake it (waking
// a parked goroutine is the most expensive part of a send). A backlog is
// drained without waiting, and after idleTicks empty wake-ups it parks on
// the queue and costs nothing until the next event.
func run(w *writer) {
	defer close(w.done)
	w.out = new(bytes.Buffer)
	w.enc = json.NewEncoder(w.out)
	openSpool(w)
	idle := idleTicks
	for {
		if idle >= idleTicks {
			select {
			case r := <-w.q:
				encode(w, r)
				idle = 0
			case <-w.quit:
				shutdownWriter(w)
				return
			}
		} else if len(w.q) == 0 {
			timer := time.NewTimer(w.flushWait)
			select {
			case <-timer.C:
			case <-w.quit:
				timer.Stop()
				shutdownWriter(w)
				return
			}
		}
		n := 0
		for n < maxBatch && encodeNext(w) {
			n++
		}
		if w.out.Len() > 0 {
			flush(w)
			idle = 0
		} else {
			idle++
		}
	}
}

func shutdownWriter(w *writer) {
	for encodeNext(w) {
	}
	encode(w, w.final)
	flush(w)
	closeAll(w)
}

// encodeNext encodes one more queued record if there is one.
func encodeNext(w *writer) bool {
	if len(w.q) == 0 {
		return false
	}
	encode(w, <-w.q)
	return true
}

// envelope is one line of the contract, in the key order of kit-otel's own
// encoder. It is encoded by encoding/json, compiled code, in one call.
type envelope struct {
	V           int         `json:"v"`
	Seq         int64       `json:"seq"`
	Ts          time.Time   `json:"ts"`
	Pid         int         `json:"pid"`
	SessionPath string      `json:"session_path"`
	Type        string      `json:"type"`
	Data        interface{} `json:"data"`
	Source      string      `json:"source"`
	Agent       string      `json:"agent"`
	// ParentToolCallID is a subagent's: the ToolCallID of the parent's
	// subagent tool call that runs it.
	ParentToolCallID string          `json:"parent_tool_call_id,omitempty"`
	Dropped          int64           `json:"dropped,omitempty"`
	State            json.RawMessage `json:"state,omitempty"`
}

// contextSizes and stepSizes replace the data of context_prepare and
// prepare_step: sizes always, the messages only with content capture.
type contextSizes struct {
	Messages     []ext.ContextMessage `json:",omitempty"`
	MessageCount int
	MessageBytes int
}

type stepSizes struct {
	StepNumber   int
	Messages     []ext.ContextMessage `json:",omitempty"`
	MessageCount int
	MessageBytes int
}

func encodeHeader(w *writer, path string, options map[string]string) []byte {
	env := envelope{V: 1, Seq: atomic.AddInt64(&w.shared[0], 1), Ts: w.started.UTC(), Pid: w.pid,
		SessionPath: path, Type: "bridge_start", Source: "bridge", Agent: w.agent, ParentToolCallID: w.parentCall,
		Data: headerData{BridgeVersion: BridgeVersion, StartedAt: w.started.UTC().Format(time.RFC3339Nano), Options: options,
			Traceparent: w.traceparent, Tracestate: w.tracestate, Model: w.model}}
	line, err := json.Marshal(&env)
	if err != nil {
		return nil
	}
	return append(line, '\n')
}

// encode appends one envelope line to w.out.
func encode(w *writer, r record) {
	env := &w.line
	env.Seq = atomic.AddInt64(&w.shared[0], 1)
	env.Ts = r.ts.UTC()
	if r.delta {
		r.path = w.lastPath
	} else {
		w.lastPath = r.path
	}
	env.SessionPath = r.path
	env.Type = r.typ
	env.Data = r.ev
	switch e := r.ev.(type) {
	case ext.ContextPrepareEvent:
		cs := contextSizes{MessageCount: len(e.Messages), MessageBytes: contentBytes(e.Messages)}
		if w.content {
			cs.Messages = e.Messages
		}
		env.Data = cs
	case ext.PrepareStepEvent:
		ss := stepSizes{StepNumber: e.StepNumber, MessageCount: len(e.Messages), MessageBytes: contentBytes(e.Messages)}
		if w.content {
			ss.Messages = e.Messages
		}
		env.Data = ss
	case ext.ToolCallEvent:
		// KIT sends the arguments twice (Input and ParsedArgs): a 650 KB
		// write would make a line over kit-otel's 1 MiB limit. ParsedArgs
		// (dropped in the handler, see OnToolCall) is parsed again from
		// Input only with content capture and small arguments; without
		// content capture, Input is cut too and its full size sent as
		// InputBytes.
		if w.content && len(e.Input) <= maxArgBytes {
			var parsed map[string]interface{}
			if json.Unmarshal([]byte(e.Input), &parsed) == nil {
				e.ParsedArgs = parsed
				env.Data = e
			}
		}
		if !w.content && len(e.Input) > maxArgBytes {
			size := len(e.Input)
			e.Input = cut(e.Input, maxArgBytes)
			env.Data = withSizes(e, "InputBytes", size, "", 0)
		}
	case ext.ToolResultEvent:
		if !w.content && (len(e.Input) > maxArgBytes || len(e.Content) > maxArgBytes) {
			inSize, outSize := len(e.Input), len(e.Content)
			e.Input, e.Content = cut(e.Input, maxArgBytes), cut(e.Content, maxArgBytes)
			env.Data = withSizes(e, "InputBytes", inSize, "ContentBytes", outSize)
		}
	}
	env.Dropped = atomic.SwapInt64(&w.dropped, 0)
	w.batchDropped += env.Dropped
	env.State = nil
	if r.state != nil && (!r.ifChanged || !sameState(r.state, w.lastState)) {
		// Read in the handler, so the state is the one at the event: a
		// change lands on the event after which it was made (a read here,
		// later, would put it on an earlier event).
		env.State = stateJSON(w, r.state)
	}
	start := w.out.Len()
	if err := w.enc.Encode(env); err != nil {
		// A value encoding/json refuses (NaN cost): keep the event, not its data.
		env.Data = struct{}{}
		_ = w.enc.Encode(env)
	}
	if w.out.Len()-start > maxLineBytes {
		// A pasted log in a prompt, a subagent's big write in its chunk, another
		// extension's state: a line kit-otel would refuse as a whole. Its long
		// strings are cut (each with its full size as <Field>Bytes), so the
		// event, its type and its numbers still arrive.
		w.out.Truncate(start)
		env.Data = shortened(env.Data)
		env.State = shortenedState(env.State)
		if err := w.enc.Encode(env); err != nil || w.out.Len()-start > maxLineBytes {
			w.out.Truncate(start)
			env.Data = struct{}{}
			env.State = nil
			_ = w.enc.Encode(env)
		}
	}
	w.lines++
}

// shortened is an event's data with every string longer than maxArgBytes
// cut; a cut top-level field's full size goes beside it as <Field>Bytes.
func shortened(data interface{}) interface{} {
	raw, err := json.Marshal(data)
	if err != nil {
		return struct{}{}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // token counts and costs exactly as they were
	var fields map[string]interface{}
	if dec.Decode(&fields) != nil {
		return struct{}{}
	}
	sizes := map[string]int{}
	for key, value := range fields {
		if text, ok := value.(string); ok && len(text) > maxArgBytes {
			fields[key] = cut(text, maxArgBytes)
			sizes[key+"Bytes"] = len(text)
		} else {
			fields[key] = cutStrings(value)
		}
	}
	for key, size := range sizes {
		if _, taken := fields[key]; !taken {
			fields[key] = size
		}
	}
	return fields
}

// cutStrings cuts the long strings inside lists and objects (message bodies).
func cutStrings(value interface{}) interface{} {
	switch v := value.(type) {
	case string:
		return cut(v, maxArgBytes)
	case []interface{}:
		for i := range v {
			v[i] = cutStrings(v[i])
		}
	case map[string]interface{}:
		for key := range v {
			v[key] = cutStrings(v[key])
		}
	}
	return value
}

// shortenedState is a state map with its long values cut.
func shortenedState(state json.RawMessage) json.RawMessage {
	if state == nil {
		return nil
	}
	var values map[string]string
	if json.Unmarshal(state, &values) != nil {
		return nil
	}
	for key, value := range values {
		values[key] = cut(value, maxArgBytes)
	}
	out, err := json.Marshal(values)
	if err != nil {
		return nil
	}
	return out
}

// cut shortens s to at most n bytes, at a UTF-8 character boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// withSizes is the event's JSON with the original sizes of cut fields added
// (KIT's own struct is encoded as it is; the sizes are appended to it).
func withSizes(ev interface{}, key1 string, size1 int, key2 string, size2 int) interface{} {
	data, err := json.Marshal(ev)
	if err != nil || len(data) < 2 || data[len(data)-1] != '}' {
		return ev
	}
	extra := ",\"" + key1 + "\":" + strconv.Itoa(size1)
	if key2 != "" {
		extra += ",\"" + key2 + "\":" + strconv.Itoa(size2)
	}
	return json.RawMessage(append(data[:len(data)-1], extra+"}"...))
}

func contentBytes(msgs []ext.ContextMessage) int {
	n := 0
	for i := range msgs {
		n += len(msgs[i].Content)
	}
	return n
}

// stateJSON encodes a state map and remembers it as the last one sent.
func stateJSON(w *writer, m map[string]string) json.RawMessage {
	w.lastState = m
	data, err := json.Marshal(m)
	if err != nil {
		return json.RawMessage("{}")
	}
	return data
}

func sameState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// flush writes the encoded batch to the spool file, then to the socket.
func flush(w *writer) {
	data := w.out.Bytes()
	if len(data) > 0 {
		if w.file == nil {
			openSpool(w)
		}
		written := false
		if w.file != nil {
			_, err := w.file.Write(data)
			written = err == nil
		}
		if w.sockPath != "" && sendSocket(w, data) {
			written = true // serve has these lines (and the losses they report)
		}
		if !written {
			// Lost: counted, so the loss shows in the next line written (with
			// the losses these lines were carrying).
			atomic.AddInt64(&w.dropped, w.lines+w.batchDropped)
		}
	}
	w.out.Reset()
	w.lines = 0
	w.batchDropped = 0
}

// openSpool creates the spool file of this instance and writes its header.
// Failures are retried with a growing delay; lines meanwhile are counted.
func openSpool(w *writer) {
	if w.file != nil || time.Now().Before(w.nextOpen) {
		return
	}
	err := os.MkdirAll(w.spoolDir, 0o700)
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(w.fileName, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	}
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil && st.Size() == 0 {
			_, err = f.Write(w.header)
		}
		if err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		w.nextOpen = time.Now().Add(w.openWait)
		w.openWait = nextWait(w.openWait)
		return
	}
	w.file = f
	w.openWait = minRetry
}

// sendSocket streams a batch to the socket, connecting lazily. A slow or
// absent reader costs at most socketWriteWait per attempt; the connection is
// then dropped and retried later. The spool file is the durable path.
func sendSocket(w *writer, data []byte) bool {
	if w.conn == nil {
		if time.Now().Before(w.nextDial) {
			return false
		}
		var conn net.Conn
		err := errNotPrivate
		if privateSocket(w.sockPath) {
			conn, err = net.DialTimeout("unix", w.sockPath, socketDialWait)
		}
		if err != nil {
			w.nextDial = time.Now().Add(w.dialWait)
			w.dialWait = nextWait(w.dialWait)
			return false
		}
		w.conn = conn
		w.dialWait = minRetry
		if !writeSocket(w, w.header) {
			return false
		}
	}
	return writeSocket(w, data)
}

var errNotPrivate = errors.New("socket not in a private directory")

// privateSocket: the events (prompts and tool output with content capture)
// go only to a socket in a directory nobody else can enter, as serve makes
// it (0700, the socket 0600). Next to a spool directory in a shared place
// (/tmp/x/spool without XDG_RUNTIME_DIR), anybody could listen there.
func privateSocket(path string) bool {
	dir, err := os.Lstat(filepath.Dir(path))
	if err != nil || !dir.IsDir() || dir.Mode().Perm()&0o077 != 0 {
		return false
	}
	sock, err := os.Lstat(path)
	return err == nil && sock.Mode()&os.ModeSocket != 0
}

func writeSocket(w *writer, data []byte) bool {
	_ = w.conn.SetWriteDeadline(time.Now().Add(socketWriteWait))
	if _, err := w.conn.Write(data); err != nil {
		_ = w.conn.Close()
		w.conn = nil
		w.nextDial = time.Now().Add(w.dialWait)
		w.dialWait = nextWait(w.dialWait)
		return false
	}
	return true
}

func nextWait(d time.Duration) time.Duration {
	d *= 2
	if d > maxRetry {
		d = maxRetry
	}
	return d
}

func closeAll(w *writer) {
	if w.file != nil {
		_ = w.file.Sync()
		_ = w.file.Close()
		w.file = nil
	}
	if w.conn != nil {
		_ = w.conn.Close()
		w.conn = nil
	}
}
