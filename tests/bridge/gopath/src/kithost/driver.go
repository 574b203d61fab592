// Command kithost plays KIT for the kit-otel bridge: it loads the bridge
// through the kit/ext stand-in, fires KIT events at it the way KIT's runner
// does and reports what it did, so the tests can compare the bridge's NDJSON
// with what was fired.
//
// The same driver runs three ways (see load_*.go):
//
//	yaegi run        everything interpreted by the yaegi CLI (the stand-in too)
//	go build         everything compiled (reflection on a compiled API, go vet)
//	-tags yaegihost  compiled host + compiled stand-in, extensions interpreted
//	                 by the yaegi library exactly as KIT loads them
//
// Usage: KITHOST_SCENARIO=<scenario> KITHOST_WORKDIR=<dir> kithost (the
// yaegi CLI does not pass program arguments through when it runs a
// directory); results go to <dir>/result.json, the events fired to
// <dir>/expected.ndjson.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"kit/ext"
)

// fakeKit is the KIT side of a Context: session path, extension state and
// options.
type fakeKit struct {
	zero      bool // a Context KIT never set (in-process child agents): all zero
	mu        sync.Mutex
	path      string
	state     map[string]string
	overrides map[string]string
	defaults  map[string]string
}

func newKit(path string) *fakeKit {
	return &fakeKit{path: path, state: map[string]string{}, overrides: map[string]string{}, defaults: map[string]string{}}
}

func (k *fakeKit) register(opts []ext.OptionDef) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, o := range opts {
		k.defaults[o.Name] = o.Default
	}
}

func (k *fakeKit) setPath(p string) {
	k.mu.Lock()
	k.path = p
	k.mu.Unlock()
}

func (k *fakeKit) setState(key, value string) {
	k.mu.Lock()
	k.state[key] = value
	k.mu.Unlock()
}

func (k *fakeKit) deleteState(key string) {
	k.mu.Lock()
	delete(k.state, key)
	k.mu.Unlock()
}

func (k *fakeKit) context() ext.Context {
	if k.zero {
		return ext.Context{}
	}
	return ext.Context{
		SessionID: "",
		CWD:       "/home/alice/proj",
		Model:     "anthropic/claude-sonnet-4-5-20250929",
		// No defer: under the yaegi command this closure is interpreted
		// and would bill the bridge for the harness (in KIT it is compiled).
		GetSessionPath: func() string {
			k.mu.Lock()
			p := k.path
			k.mu.Unlock()
			return p
		},
		SetState: func(key, value string) { k.setState(key, value) },
		GetState: func(key string) (string, bool) {
			k.mu.Lock()
			defer k.mu.Unlock()
			v, ok := k.state[key]
			return v, ok
		},
		DeleteState: func(key string) { k.deleteState(key) },
		ListState: func() []string {
			k.mu.Lock()
			keys := make([]string, 0, len(k.state))
			for key := range k.state {
				keys = append(keys, key)
			}
			k.mu.Unlock()
			return keys
		},
		// KIT's resolution order: runtime override, KIT_OPT_<NAME>,
		// config file (none here), registered default; "" if unregistered.
		GetOption: func(name string) string {
			k.mu.Lock()
			defer k.mu.Unlock()
			if v, ok := k.overrides[name]; ok {
				return v
			}
			if v := os.Getenv("KIT_OPT_" + strings.ToUpper(strings.Replace(name, "-", "_", -1))); v != "" {
				return v
			}
			return k.defaults[name]
		},
		SetOption: func(name, value string) {
			k.mu.Lock()
			k.overrides[name] = value
			k.mu.Unlock()
		},
		IsIdle: func() bool { return true },
	}
}

// fired is one event as KIT emitted it.
type fired struct {
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data"`
	Path     string          `json:"session_path"`
	Handlers int             `json:"handlers"`
	Note     string          `json:"note,omitempty"`
}

type driver struct {
	workdir string
	kit     *fakeKit
	fired   []fired
	result  map[string]interface{}
}

func (d *driver) fire(r *ext.Registry, typ string, ev interface{}, note string) int {
	ctx := d.kit.context()
	n := r.Fire(typ, ev, ctx)
	data, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	path := ""
	if ctx.GetSessionPath != nil {
		path = ctx.GetSessionPath()
	}
	d.fired = append(d.fired, fired{Type: typ, Data: data, Path: path, Handlers: n, Note: note})
	return n
}

func (d *driver) load(name string) *ext.Registry {
	r := &ext.Registry{}
	if err := loadExtension(name, ext.NewTestAPI(r)); err != nil {
		fail("loading %s: %v", name, err)
	}
	d.kit.register(r.Options)
	return r
}

func (d *driver) save() {
	f, err := os.Create(filepath.Join(d.workdir, "expected.ndjson"))
	if err != nil {
		fail("%v", err)
	}
	enc := json.NewEncoder(f)
	for _, e := range d.fired {
		if err := enc.Encode(e); err != nil {
			fail("%v", err)
		}
	}
	f.Close()
	d.result["pid"] = os.Getpid()
	d.result["variant"] = ext.Variant
	d.result["loader"] = loaderName
	data, _ := json.MarshalIndent(d.result, "", "  ")
	if err := os.WriteFile(filepath.Join(d.workdir, "result.json"), data, 0o644); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kithost: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	scenario, workdir := os.Getenv("KITHOST_SCENARIO"), os.Getenv("KITHOST_WORKDIR")
	if scenario == "" || workdir == "" {
		fail("set KITHOST_SCENARIO and KITHOST_WORKDIR")
	}
	d := &driver{
		workdir: workdir,
		kit:     newKit("/home/alice/.kit/sessions/home--alice--proj/2026-06-09T13-18-10-000Z_3f9a1c2b7d4e.jsonl"),
		result:  map[string]interface{}{"scenario": scenario},
	}
	if path := os.Getenv("KITHOST_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	switch scenario {
	case "roundtrip":
		roundtrip(d)
	case "drops":
		drops(d)
	case "reload":
		reload(d)
	case "subagent":
		subagent(d)
	case "state":
		stateScenario(d)
	case "bench":
		bench(d)
	case "idle":
		idle(d)
	default:
		if !directScenario(d, scenario) {
			fail("unknown scenario %q", scenario)
		}
	}
	d.save()
}

// handledTypes lists the event types that have a handler in r, sorted.
func handledTypes(r *ext.Registry) []string {
	var out []string
	for t, hs := range r.Handlers {
		if len(hs) > 0 {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// turn fires one realistic KIT turn (docs/design.md#event-contract order) with a tool call, a
// subagent, a retry and an error, and every other event kind once.
func turn(d *driver, r *ext.Registry) {
	sessionPath := d.kit.context().GetSessionPath()
	d.fire(r, "session_start", ext.SessionStartEvent{SessionID: ""}, "")
	d.fire(r, "model_change", ext.ModelChangeEvent{NewModel: "anthropic/claude-sonnet-4-5-20250929", PreviousModel: "openai/gpt-4o", Source: "user"}, "")
	fireNewer(d, r, "before")
	d.fire(r, "input", ext.InputEvent{Text: "Fix the failing test in \"pkg/app\" <now> & report"}, "")
	d.fire(r, "before_agent_start", ext.BeforeAgentStartEvent{Prompt: "Fix the failing test in \"pkg/app\" <now> & report"}, "")
	d.fire(r, "before_compact", ext.BeforeCompactEvent{EstimatedTokens: 182000, ContextLimit: 200000, UsagePercent: 0.91, MessageCount: 64, IsAutomatic: true}, "")
	d.fire(r, "context_prepare", ext.ContextPrepareEvent{Messages: []ext.ContextMessage{
		{Index: 0, Role: "system", Content: "You are KIT."},
		{Index: 1, Role: "user", Content: "Fix the failing test — ünïcödé ✓"},
		{Index: -1, Role: "system", Content: ""},
	}}, "")
	d.fire(r, "agent_start", ext.AgentStartEvent{Prompt: "Fix the failing test in \"pkg/app\" <now> & report"}, "")
	d.fire(r, "message_start", ext.MessageStartEvent{}, "")
	d.fire(r, "prepare_step", ext.PrepareStepEvent{StepNumber: 0, Messages: []ext.ContextMessage{
		{Index: 0, Role: "system", Content: "You are KIT."},
		{Index: 1, Role: "user", Content: "Fix the failing test — ünïcödé ✓"},
	}}, "")
	d.fire(r, "step_start", ext.StepStartEvent{StepNumber: 0}, "")
	d.fire(r, "reasoning_start", ext.ReasoningStartEvent{ID: "rs_01"}, "")
	d.fire(r, "message_update", ext.MessageUpdateEvent{Chunk: "Let me look"}, "")
	d.fire(r, "message_update", ext.MessageUpdateEvent{Chunk: " at the test.\n\t\"quoted\" \\ back\u2028slash 🙂"}, "")
	d.fire(r, "source", ext.SourceEvent{SourceType: "url", ID: "src_1", URL: "https://example.com/a?b=1&c=<2>", Title: "Example"}, "")
	d.fire(r, "warnings", ext.WarningsEvent{Warnings: []string{"temperature ignored", "top_k unsupported"}}, "")
	d.fire(r, "warnings", ext.WarningsEvent{}, "nil slice")
	d.fire(r, "tool_call_input_start", ext.ToolCallInputStartEvent{ToolCallID: "toolu_01A", ToolName: "bash", ToolKind: "execute"}, "")
	d.fire(r, "tool_call_input_delta", ext.ToolCallInputDeltaEvent{ToolCallID: "toolu_01A", Delta: `{"command":"go te`}, "")
	d.fire(r, "tool_call_input_delta", ext.ToolCallInputDeltaEvent{ToolCallID: "toolu_01A", Delta: `st ./..."}`}, "")
	d.fire(r, "tool_call_input_end", ext.ToolCallInputEndEvent{ToolCallID: "toolu_01A"}, "")
	d.fire(r, "tool_call", ext.ToolCallEvent{ToolName: "bash", ToolCallID: "toolu_01A", ToolKind: "execute",
		Input:      `{"command":"go test ./...","timeout":120}`,
		ParsedArgs: map[string]any{"command": "go test ./...", "timeout": float64(120), "env": map[string]any{"CI": true}, "args": []any{"-v", nil}},
		Source:     "llm"}, "")
	d.fire(r, "tool_execution_start", ext.ToolExecutionStartEvent{ToolCallID: "toolu_01A", ToolName: "bash", ToolKind: "execute"}, "")
	d.fire(r, "tool_output", ext.ToolOutputEvent{ToolCallID: "toolu_01A", ToolName: "bash", Chunk: "ok  \tpkg/app\t0.012s\n"}, "")
	d.fire(r, "tool_output", ext.ToolOutputEvent{ToolCallID: "toolu_01A", ToolName: "bash", Chunk: "FAIL\n", IsStderr: true}, "")
	d.fire(r, "tool_execution_end", ext.ToolExecutionEndEvent{ToolCallID: "toolu_01A", ToolName: "bash", ToolKind: "execute"}, "")
	d.fire(r, "tool_result", ext.ToolResultEvent{ToolCallID: "toolu_01A", ToolName: "bash", ToolKind: "execute",
		Input: `{"command":"go test ./..."}`, Content: "FAIL\texample.com/pkg/app\n", IsError: true, Metadata: `{"exit_code":1}`}, "")
	d.fire(r, "tool_call", ext.ToolCallEvent{ToolName: "subagent", ToolCallID: "toolu_01B", ToolKind: "agent",
		Input: `{"task":"find flaky tests"}`, ParsedArgs: nil, Source: "llm"}, "nil ParsedArgs")
	d.fire(r, "subagent_start", ext.SubagentStartEvent{ToolCallID: "toolu_01B", Task: "find flaky tests"}, "")
	d.fire(r, "subagent_chunk", ext.SubagentChunkEvent{ToolCallID: "toolu_01B", Task: "find flaky tests", ChunkType: "tool_call", ToolName: "grep", ToolArgs: `{"pattern":"t.Skip"}`}, "")
	d.fire(r, "subagent_chunk", ext.SubagentChunkEvent{ToolCallID: "toolu_01B", Task: "find flaky tests", ChunkType: "tool_result", ToolName: "grep", ToolResult: "no matches", IsError: false}, "")
	d.fire(r, "subagent_chunk", ext.SubagentChunkEvent{ToolCallID: "toolu_01B", Task: "find flaky tests", ChunkType: "text", Content: "None found."}, "")
	d.fire(r, "subagent_end", ext.SubagentEndEvent{ToolCallID: "toolu_01B", Task: "find flaky tests", Response: "None found.", ErrorMsg: ""}, "")
	d.fire(r, "tool_result", ext.ToolResultEvent{ToolCallID: "toolu_01B", ToolName: "subagent", ToolKind: "agent", Input: `{"task":"find flaky tests"}`, Content: "None found."}, "")
	d.fire(r, "llm_usage", ext.LLMUsageEvent{InputTokens: 1200, OutputTokens: 85, CacheReadTokens: 900, CacheWriteTokens: 0, Cost: 0.0051,
		Model: "claude-sonnet-4-5-20250929", Provider: "anthropic", RequestID: "", StepNumber: 0, FinishReason: "tool-calls"}, "")
	d.fire(r, "step_finish", ext.StepFinishEvent{StepNumber: 0, HasToolCalls: true, FinishReason: "tool-calls", InputTokens: 1200, OutputTokens: 85, CacheReadTokens: 900, CacheWriteTokens: 0}, "")
	d.fire(r, "retry", ext.RetryEvent{Attempt: 0, Error: "429 Too Many Requests: rate_limit_error"}, "")
	d.fire(r, "error", ext.ErrorEvent{Error: "stream closed: unexpected EOF"}, "")
	d.fire(r, "message_end", ext.MessageEndEvent{Content: "The test failed because…"}, "")
	d.fire(r, "agent_end", ext.AgentEndEvent{Response: "", StopReason: "error", ToolCallCount: 2, ToolNames: []string{"bash", "subagent"}, LLMCallCount: 1,
		InputTokensDelta: 1200, OutputTokensDelta: 85, CacheReadTokensDelta: 900, CacheWriteTokensDelta: 0, CostDelta: 0.0051, DurationMs: 8123}, "")
	d.fire(r, "agent_end", ext.AgentEndEvent{StopReason: "completed"}, "nil ToolNames, zero values")
	d.fire(r, "before_fork", ext.BeforeForkEvent{TargetID: "e1f2", IsUserMessage: true, UserText: "try again"}, "")
	fireNewer(d, r, "after")
	fireSessionSwitch(d, r)
	// /new: a fresh session file; KIT fires no session_start for it, the
	// next events simply carry the new path.
	d.kit.setPath(strings.TrimSuffix(sessionPath, "_3f9a1c2b7d4e.jsonl") + "_0b1c2d3e4f5a.jsonl")
	d.fire(r, "input", ext.InputEvent{Text: "start over: \"clean\""}, "new session")
}

func shutdown(d *driver, r *ext.Registry) time.Duration {
	start := time.Now()
	d.fire(r, "session_shutdown", ext.SessionShutdownEvent{}, "")
	return time.Since(start)
}

func roundtrip(d *driver) {
	before := baseline()
	r := d.load("bridge")
	d.result["handled"] = handledTypes(r)
	d.result["options"] = r.Options
	turn(d, r)
	// A session without a file (--no-session): the path is "".
	d.kit.setPath("")
	d.fire(r, "input", ext.InputEvent{Text: "in memory"}, "no session file")
	d.result["shutdown_ms"] = shutdown(d, r).Milliseconds()
	d.result["goroutines_before"] = before
	d.result["goroutines_after"] = settle(before)
}

// settle waits (up to 5 s) for goroutines to finish and returns the count.
func settle(target int) int {
	n := runtime.NumGoroutine()
	for i := 0; i < 500 && n > target; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// baseline is the goroutine count before anything is loaded, once what the
// program's start-up began has finished (up to 300 ms).
func baseline() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 30 && n > 1; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// drops holds the writer back (stallWriter)
// and fires far more events than the queue holds: the handlers must return
// at once, the excess must be counted. KITHOST_NO_STALL=1 fires without the
// stall, KITHOST_CHUNK pads each chunk to that many bytes.
func drops(d *driver) {
	r := d.load("bridge")
	n := envInt("KITHOST_EVENTS", 500)
	pad := strings.Repeat("x", envInt("KITHOST_CHUNK", 0))
	stalled := os.Getenv("KITHOST_NO_STALL") == ""
	d.kit.setState("budget:cap", "10")
	d.fire(r, "session_start", ext.SessionStartEvent{}, "")
	var stall chan struct{}
	if stalled {
		stall = stallWriter(d, r)
	}
	var worst time.Duration
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		d.fire(r, "message_update", ext.MessageUpdateEvent{Chunk: "chunk " + strconv.Itoa(i) + pad}, "")
		if dt := time.Since(t0); dt > worst {
			worst = dt
		}
	}
	d.result["fire_ms"] = time.Since(start).Milliseconds()
	d.result["worst_handler_us"] = worst.Microseconds()
	if stalled {
		close(stall)
		time.Sleep(300 * time.Millisecond) // let the writer catch up
	}
	// After the stall: one more event.
	d.fire(r, "agent_end", ext.AgentEndEvent{StopReason: "completed"}, "")
	d.result["shutdown_ms"] = shutdown(d, r).Milliseconds()
	d.result["fired_updates"] = n
}

// stallWriter holds the bridge's writer back while events are fired. The
// writer touches nothing of KIT's, so it is held by its own timer: run with
// kit-otel-flush-ms far above the test's length (10 s), the writer, woken by
// the session_start before, sleeps a whole flush interval once its queue is
// empty, and events queue up until session_shutdown drains them. The
// returned channel is closed by callers when the stall may end.
func stallWriter(d *driver, r *ext.Registry) chan struct{} {
	d.fire(r, "message_start", ext.MessageStartEvent{}, "stall")
	time.Sleep(100 * time.Millisecond) // the writer has taken message_start and sleeps
	return make(chan struct{})
}

// reload: session_shutdown, then a fresh Init (a new interpreter under the
// yaegi host), as KIT's ReloadExtensions does.
func reload(d *driver) {
	before := baseline()
	d.result["goroutines_before"] = before
	rounds := envInt("KITHOST_ROUNDS", 3)
	var after []int
	for round := 0; round < rounds; round++ {
		r := d.load("bridge")
		d.fire(r, "session_start", ext.SessionStartEvent{}, fmt.Sprintf("round %d", round))
		d.fire(r, "input", ext.InputEvent{Text: fmt.Sprintf("round %d", round)}, "")
		d.fire(r, "agent_start", ext.AgentStartEvent{Prompt: "p"}, "")
		d.fire(r, "agent_end", ext.AgentEndEvent{StopReason: "completed"}, "")
		shutdown(d, r)
		after = append(after, settle(before))
	}
	d.result["goroutines_after"] = after
}

// subagent: bridge instances loaded while the first one is live. A child
// agent (KIT runs it in-process, loads the global extensions into it and
// never sets its Context) and a sibling session such as a second ACP
// session (its own Kit, with a Context).
func subagent(d *driver) {
	parent := d.load("bridge")
	// An option only the parent's Context knows (as from .kit.yml).
	d.kit.overrides["kit-otel-queue-size"] = "777"
	d.fire(parent, "session_start", ext.SessionStartEvent{}, "parent")
	d.fire(parent, "tool_call", ext.ToolCallEvent{ToolName: "subagent", ToolCallID: "toolu_S", ToolKind: "agent", Input: "{}"}, "parent")
	// KIT's wrapper: tool_execution_start, then the tool's Run - the child
	// Kit - on this same goroutine.
	d.fire(parent, "tool_execution_start", ext.ToolExecutionStartEvent{ToolName: "subagent", ToolCallID: "toolu_S", ToolKind: "agent"}, "parent")
	d.result["main_path"] = d.kit.context().GetSessionPath()

	childKit := newKit("")
	childKit.zero = true
	childDriver := &driver{workdir: d.workdir, kit: childKit, result: d.result}
	child := childDriver.load("bridge")
	childDriver.fire(child, "input", ext.InputEvent{Text: "find flaky tests"}, "child")
	childDriver.fire(child, "agent_start", ext.AgentStartEvent{Prompt: "find flaky tests"}, "child")
	childDriver.fire(child, "agent_end", ext.AgentEndEvent{StopReason: "stop"}, "child")
	childDriver.fire(child, "session_shutdown", ext.SessionShutdownEvent{}, "child")
	d.fire(parent, "tool_result", ext.ToolResultEvent{ToolCallID: "toolu_S", ToolName: "subagent", ToolKind: "agent"}, "parent")

	siblingKit := newKit("/home/alice/.kit/sessions/home--alice--proj/2026-06-09T14-00-00-000Z_aaaaaaaaaaaa.jsonl")
	siblingDriver := &driver{workdir: d.workdir, kit: siblingKit, result: d.result}
	sibling := siblingDriver.load("bridge")
	siblingDriver.fire(sibling, "session_start", ext.SessionStartEvent{}, "sibling")
	siblingDriver.fire(sibling, "session_shutdown", ext.SessionShutdownEvent{}, "sibling")
	shutdown(d, parent)
	d.fired = append(d.fired, childDriver.fired...)
	d.fired = append(d.fired, siblingDriver.fired...)

	// After all are gone, a fresh instance is the main agent again, and so
	// is a lone Kit whose Context was never set (the SDK, embedded).
	again := d.load("bridge")
	d.fire(again, "session_start", ext.SessionStartEvent{}, "after")
	shutdown(d, again)
	lone := &driver{workdir: d.workdir, kit: childKit, result: d.result}
	alone := lone.load("bridge")
	lone.fire(alone, "input", ext.InputEvent{Text: "sdk"}, "lone")
	lone.fire(alone, "session_shutdown", ext.SessionShutdownEvent{}, "lone")
}

// stateScenario changes extension state between events. The bridge reads it
// in the handlers of turn boundaries (always sent) and of tool and step ends
// (sent when changed).
func stateScenario(d *driver) {
	r := d.load("bridge")
	pause := func() { time.Sleep(time.Duration(envInt("KITHOST_PAUSE_MS", 100)) * time.Millisecond) }
	d.kit.setState("usage-budget:warn-at-usd", "5.00")
	d.fire(r, "session_start", ext.SessionStartEvent{}, "forced")
	pause()
	d.fire(r, "input", ext.InputEvent{Text: "hi"}, "unchanged")
	pause()
	d.fire(r, "agent_start", ext.AgentStartEvent{Prompt: "hi"}, "forced")
	pause()
	d.fire(r, "step_start", ext.StepStartEvent{StepNumber: 0}, "unchanged")
	pause()
	// A tool sets state while it runs: it shows on the tool's result, the
	// first state-carrying event after the change (tool_call carries none).
	d.fire(r, "tool_call", ext.ToolCallEvent{ToolName: "read", ToolCallID: "t1"}, "unchanged")
	d.kit.setState("plan-mode:active", "true")
	pause()
	d.fire(r, "tool_result", ext.ToolResultEvent{ToolCallID: "t1", ToolName: "read"}, "changed")
	pause()
	d.kit.setState("usage-budget:warn-at-usd", "7.50")
	d.fire(r, "llm_usage", ext.LLMUsageEvent{InputTokens: 10, Cost: 0.01}, "unchanged")
	pause()
	d.kit.deleteState("plan-mode:active")
	d.fire(r, "step_finish", ext.StepFinishEvent{StepNumber: 0}, "changed")
	pause()
	d.kit.setState("weird \"key\"\n", "välue ✓ <&>")
	d.fire(r, "message_end", ext.MessageEndEvent{Content: "ok"}, "unchanged")
	pause()
	d.fire(r, "agent_end", ext.AgentEndEvent{StopReason: "stop"}, "forced")
	pause()
	d.fire(r, "message_update", ext.MessageUpdateEvent{Chunk: "x"}, "unchanged")
	shutdown(d, r)
}

// idle loads the bridge and fires nothing: no file may appear.
func idle(d *driver) {
	r := d.load("bridge")
	d.result["handled"] = handledTypes(r)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
