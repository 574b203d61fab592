// kithost plays KIT around KIT's own extension runtime: it loads extensions
// with extensions.LoadExtensions, builds each agent with NewMini (KIT New()'s
// extension set-up: bridgeExtensions, then the minimal Context that
// normalizeContext fills with stubs), gives the main agent the CLI's Context,
// and emits KIT's bus events in the order KIT's loop does:
//
//	runTurn (pkg/kit/kit.go): BeforeTurn hooks (extension Input, BeforeAgentStart),
//	  ContextPrepare, TurnStart, MessageStart, generate, MessageEnd, TurnEnd
//	  (on error: TurnEnd{Error} only).
//	fantasy Stream (agent.go), per step: PrepareStep, StepStart, the stream
//	  (text deltas, tool input start/delta/end, then per call KIT's OnToolCall:
//	  ToolCall + ToolExecutionStart — the subagent_start of a subagent call),
//	  StreamFinish; then the tools, after the stream: sequential ones one by one,
//	  Parallel ones (subagent) concurrently, at most 5; each through KIT's
//	  extension wrapper (internal/extensions/wrapper.go: ToolCall, which may
//	  block, ToolExecutionStart, Run, ToolExecutionEnd, ToolResult), then the
//	  SDK's ToolExecutionEnd + ToolResult; then StepUsage, StepFinish.
//	  A stream error (or a cancel) fires Error and ends the turn.
//	Kit.Subagent (kit.go): on the subagent tool's goroutine, a child Kit with
//	  the extensions loaded again, the parent's per-call listeners subscribed,
//	  the child's turn, then Close.
//
// The scenario's ground truth (what KIT's provider reported) goes to -truth as
// JSON, so tests can compare kit-otel's numbers with KIT's.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"charm.land/fantasy"
	"github.com/mark3labs/kit/internal/extensions"
	"github.com/mark3labs/kit/pkg/kit"
	"github.com/spf13/viper"
)

const model = "anthropic/claude-sonnet-4-5-20250929"

// call is one tool call the model makes.
type call struct {
	ID, Name, Input string
	Output          string
	Stdout          []string // streamed tool output chunks (bash)
	Child           *turn    // the subagent's task (Name "subagent")
	StatusFile      string   // budget scenario: serve's next status, written while this call runs
	Sleep           time.Duration
}

// step is one LLM call.
type step struct {
	Text   []string
	Calls  []call
	Usage  fantasy.Usage
	Finish string
	Err    error // the stream fails after the text
	Cancel bool  // the user presses ESC during this step's tools
}

type turn struct {
	Prompt string
	Steps  []step
}

type agentTruth struct {
	Agent      string `json:"agent"`
	ToolCallID string `json:"tool_call_id,omitempty"`
	Input      int64  `json:"input_tokens"`
	Output     int64  `json:"output_tokens"`
	CacheRead  int64  `json:"cache_read_tokens"`
	CacheWrite int64  `json:"cache_write_tokens"`
	LLMCalls   int    `json:"llm_calls"`
}

type truth struct {
	Scenario string        `json:"scenario"`
	Pid      int           `json:"pid"`
	Session  string        `json:"session_path"`
	Agents   []*agentTruth `json:"agents"`
	Turns    int           `json:"turns"`
	Reloads  int           `json:"reloads"`
	Blocked  []string      `json:"blocked"`
	// the tool result KIT's wrapper handed the loop for each blocked call
	BlockedResults map[string]string `json:"blocked_results"`
	Panicked       bool              `json:"panicked"`
	// what the user saw (budget scenario): [0] at session start, [i] in turn i
	Shown []*shown `json:"shown"`
	mu    sync.Mutex
}

// shown is what KIT's TUI would show: the status bar (the Runner's entries,
// in its order) after a step, and the info blocks printed during it.
type shown struct {
	StatusFile string   `json:"status_file"`
	Status     []string `json:"status"`
	Info       []string `json:"info"`
}

type host struct {
	paths   []string
	install []string // extensions installed into the running session (hot-install)
	cwd     string
	session string
	options map[string]string
	truth   *truth
	// budget scenario: the files that become -status-path, one per step
	statusFiles    []string
	statusPath     string
	subagentStatus string // the status serve writes while the budget scenario's subagent runs
}

// printInfo is the CLI's PrintInfo: an info block in the TUI, here the truth.
func (h *host) printInfo(text string) {
	h.truth.mu.Lock()
	defer h.truth.mu.Unlock()
	if n := len(h.truth.Shown); n > 0 {
		h.truth.Shown[n-1].Info = append(h.truth.Shown[n-1].Info, text)
	}
}

type agent struct {
	h      *host
	k      *kit.Kit
	runner *extensions.Runner
	tools  map[string]fantasy.AgentTool // wrapped by the agent's runner
	truth  *agentTruth
	cancel context.CancelFunc
}

func (h *host) load() *extensions.Runner {
	exts, err := extensions.LoadExtensions(h.paths)
	if err != nil {
		fail("load extensions: %v", err)
	}
	return extensions.NewRunner(exts)
}

func (h *host) newAgent(main bool, forward func(kit.Event), callID string) *agent {
	runner := h.load()
	v := viper.New()
	for name, value := range h.options {
		v.Set("options."+name, value) // .kit.yml's options: the main Kit's config store
	}
	if main {
		runner.SetConfigStore(v)
	} else {
		// KIT's child re-loads its own config, but its Context's GetOption is
		// normalizeContext's stub all the same.
		runner.SetConfigStore(viper.New())
	}
	k := kit.NewMini(runner, model, h.cwd, v)
	a := &agent{h: h, k: k, runner: runner, tools: map[string]fantasy.AgentTool{}}
	a.truth = &agentTruth{Agent: "main", ToolCallID: callID}
	if !main {
		a.truth.Agent = "subagent"
	}
	h.truth.mu.Lock()
	h.truth.Agents = append(h.truth.Agents, a.truth)
	h.truth.mu.Unlock()
	if main {
		// The CLI's Context (cmd/extension_context.go): session path, options, state.
		session := h.session
		runner.SetContext(extensions.Context{
			CWD: h.cwd, Model: model, Interactive: true,
			GetSessionPath: func() string { return session },
			GetOption:      runner.GetOption, SetOption: runner.SetOption,
			SetState: runner.SetState, GetState: runner.GetState,
			DeleteState: runner.DeleteState, ListState: runner.ListState,
			// cmd/extension_context.go: the status bar is the Runner's entries
			SetStatus: func(key, text string, priority int) {
				runner.SetStatusEntry(extensions.StatusBarEntry{Key: key, Text: text, Priority: priority})
			},
			RemoveStatus: runner.RemoveStatusEntry,
			PrintInfo:    h.printInfo,
		})
	}
	if forward != nil {
		k.Subscribe(forward) // Kit.Subagent: child.Subscribe(cfg.OnEvent)
	}
	raw := []fantasy.AgentTool{}
	for _, name := range []string{"bash", "read", "write", "edit", "grep", "subagent"} {
		if name == "subagent" && !main {
			continue // GetToolsForSubagent drops it
		}
		raw = append(raw, &tool{name: name, a: a})
	}
	for _, t := range extensions.WrapToolsWithExtensions(raw, runner) {
		a.tools[t.Info().Name] = t
	}
	return a
}

// tool is a core tool as fantasy sees it; what it does comes from the call.
type tool struct {
	name string
	a    *agent
}

func (t *tool) Info() fantasy.ToolInfo {
	return fantasy.ToolInfo{Name: t.name, Parameters: map[string]any{}, Parallel: t.name == "subagent"}
}
func (t *tool) ProviderOptions() fantasy.ProviderOptions     { return nil }
func (t *tool) SetProviderOptions(o fantasy.ProviderOptions) {}

var calls sync.Map // call ID → *call, so Run finds its script

func (t *tool) Run(ctx context.Context, tc fantasy.ToolCall) (fantasy.ToolResponse, error) {
	v, _ := calls.Load(tc.ID)
	c := v.(*call)
	if c.Sleep > 0 {
		time.Sleep(c.Sleep)
	}
	if c.StatusFile != "" {
		t.a.h.writeStatus(c.StatusFile)
	}
	for _, chunk := range c.Stdout {
		t.a.k.Emit(kit.ToolOutputEvent{ToolCallID: tc.ID, ToolName: t.name, Chunk: chunk})
	}
	if t.name == "subagent" && c.Child != nil {
		return t.a.spawn(tc.ID, c.Child), nil
	}
	return fantasy.NewTextResponse(c.Output), nil
}

// spawn is generate's spawner + Kit.Subagent, on the tool's own goroutine.
func (a *agent) spawn(callID string, task *turn) fantasy.ToolResponse {
	forward := a.k.SubagentForwarder(callID)
	child := a.h.newAgent(false, forward, callID)
	response, err := child.runTurn(task)
	child.k.Close()
	a.k.CleanupSubagent(callID)
	if err != nil {
		return fantasy.NewTextErrorResponse("Subagent failed after 0s.\n\nError: " + err.Error())
	}
	return fantasy.NewTextResponse(response)
}

func toolKind(name string) string {
	switch name {
	case "bash":
		return "execute"
	case "edit", "write":
		return "edit"
	case "read", "ls":
		return "read"
	case "grep", "find":
		return "search"
	case "subagent":
		return "agent"
	}
	return "execute"
}

func parseArgs(input string) map[string]any {
	var m map[string]any
	if json.Unmarshal([]byte(input), &m) == nil {
		return m
	}
	return nil
}

// runTurn is runTurn + generate + fantasy's Stream for one scripted turn.
func (a *agent) runTurn(t *turn) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	defer cancel()
	msgs := []kit.LLMMessage{{Role: kit.LLMRoleUser, Content: []kit.LLMMessagePart{kit.LLMTextPart{Text: t.Prompt}}}}
	a.k.BeforeTurn(t.Prompt)
	a.k.ContextPrepare(msgs)
	a.k.Emit(kit.TurnStartEvent{Prompt: t.Prompt})
	a.k.Emit(kit.MessageStartEvent{})
	response, finish := "", ""
	for n := range t.Steps {
		s := &t.Steps[n]
		a.k.PrepareStep(n, msgs)
		a.k.Emit(kit.StepStartEvent{StepNumber: n})
		text := ""
		if len(s.Text) > 0 {
			a.k.Emit(kit.TextStartEvent{ID: fmt.Sprintf("txt-%d", n)})
			for _, chunk := range s.Text {
				a.k.Emit(kit.MessageUpdateEvent{Chunk: chunk})
				text += chunk
			}
			a.k.Emit(kit.TextEndEvent{ID: fmt.Sprintf("txt-%d", n)})
		}
		if s.Err != nil {
			a.k.Emit(kit.ErrorEvent{Error: s.Err})
			a.k.Emit(kit.TurnEndEvent{Error: s.Err})
			return "", s.Err
		}
		for i := range s.Calls {
			c := &s.Calls[i]
			calls.Store(c.ID, c)
			a.k.Emit(kit.ToolCallStartEvent{ToolCallID: c.ID, ToolName: c.Name, ToolKind: toolKind(c.Name)})
			for i := 0; i < len(c.Input); i += 1024 { // providers stream arguments in pieces
				a.k.Emit(kit.ToolCallDeltaEvent{ToolCallID: c.ID, Delta: c.Input[i:min(i+1024, len(c.Input))]})
			}
			a.k.Emit(kit.ToolCallEndEvent{ToolCallID: c.ID})
			// KIT's OnToolCall callback, still inside the stream.
			a.k.Emit(kit.ToolCallEvent{ToolCallID: c.ID, ToolName: c.Name, ToolKind: toolKind(c.Name),
				ToolArgs: c.Input, ParsedArgs: parseArgs(c.Input)})
			a.k.Emit(kit.ToolExecutionStartEvent{ToolCallID: c.ID, ToolName: c.Name, ToolKind: toolKind(c.Name), ToolArgs: c.Input})
		}
		a.k.Emit(kit.StreamFinishEvent{Usage: s.Usage, FinishReason: s.Finish})
		a.runTools(ctx, s)
		if s.Cancel {
			// ESC: the loop's context is cancelled; fantasy returns ctx.Err()
			// from the next callback, KIT reports it through OnError.
			err := context.Canceled
			a.k.Emit(kit.ErrorEvent{Error: err})
			a.k.Emit(kit.TurnEndEvent{Error: err})
			return "", err
		}
		a.k.Emit(kit.StepUsageEvent{InputTokens: uint64(s.Usage.InputTokens), OutputTokens: uint64(s.Usage.OutputTokens),
			CacheReadTokens: uint64(s.Usage.CacheReadTokens), CacheWriteTokens: uint64(s.Usage.CacheCreationTokens)})
		a.k.Emit(kit.StepFinishEvent{StepNumber: n, HasToolCalls: len(s.Calls) > 0, FinishReason: s.Finish, Usage: s.Usage})
		a.record(s.Usage)
		response, finish = text, s.Finish
	}
	a.k.Emit(kit.MessageEndEvent{Content: response})
	a.k.Emit(kit.TurnEndEvent{Response: response, StopReason: finish})
	return response, nil
}

func (a *agent) record(u fantasy.Usage) {
	a.h.truth.mu.Lock()
	defer a.h.truth.mu.Unlock()
	a.truth.Input += u.InputTokens
	a.truth.Output += u.OutputTokens
	a.truth.CacheRead += u.CacheReadTokens
	a.truth.CacheWrite += u.CacheCreationTokens
	a.truth.LLMCalls++
}

// runTools is fantasy's dispatch after the stream: one coordinator, Parallel
// tools concurrently (at most 5), the others one at a time, in call order.
func (a *agent) runTools(ctx context.Context, s *step) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 5)
	var sequential sync.Mutex
	for i := range s.Calls {
		c := &s.Calls[i]
		t := a.tools[c.Name]
		run := func() {
			resp, err := t.Run(ctx, fantasy.ToolCall{ID: c.ID, Name: c.Name, Input: c.Input})
			if resp.IsError && strings.HasPrefix(resp.Content, "Error: ") && c.Name != "subagent" {
				a.h.truth.mu.Lock()
				a.h.truth.Blocked = append(a.h.truth.Blocked, c.ID)
				if a.h.truth.BlockedResults == nil {
					a.h.truth.BlockedResults = map[string]string{}
				}
				a.h.truth.BlockedResults[c.ID] = resp.Content
				a.h.truth.mu.Unlock()
			}
			// fantasy's OnToolResult → KIT's OnToolExecution(false) + OnToolResult
			a.k.Emit(kit.ToolExecutionEndEvent{ToolCallID: c.ID, ToolName: c.Name, ToolKind: toolKind(c.Name)})
			a.k.Emit(kit.ToolResultEvent{ToolCallID: c.ID, ToolName: c.Name, ToolKind: toolKind(c.Name),
				ToolArgs: c.Input, ParsedArgs: parseArgs(c.Input), Result: resp.Content,
				IsError: err != nil || resp.IsError})
		}
		if t.Info().Parallel {
			sem <- struct{}{}
			wg.Add(1)
			go func() { defer wg.Done(); defer func() { <-sem }(); run() }()
		} else {
			wg.Add(1)
			go func() { defer wg.Done(); sequential.Lock(); defer sequential.Unlock(); run() }()
			wg.Wait() // the coordinator runs a sequential tool before dispatching the next
		}
	}
	wg.Wait()
}

func usage(in, out, cr, cw int64) fantasy.Usage {
	return fantasy.Usage{InputTokens: in, OutputTokens: out, CacheReadTokens: cr, CacheCreationTokens: cw,
		TotalTokens: in + out}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kithost: "+format+"\n", args...)
	os.Exit(2)
}

type optionFlags map[string]string

func (o optionFlags) String() string { return "" }
func (o optionFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return errors.New("want name=value")
	}
	o[name] = value
	return nil
}

func main() {
	scenario := flag.String("scenario", "", "scenario name")
	session := flag.String("session", "", "session file the CLI's Context reports (empty: --no-session)")
	cwd := flag.String("cwd", "", "working directory the Context reports")
	truthPath := flag.String("truth", "", "where to write the ground truth (JSON)")
	var exts, installs stringList
	flag.Var(&exts, "e", "extension file, in load order (repeatable)")
	flag.Var(&installs, "install", "extension installed while the session runs (hot-install)")
	statusFiles := flag.String("status-files", "", "budget scenario: comma-separated files copied to -status-path, one per step (- removes it)")
	statusPath := flag.String("status-path", "", "budget scenario: where the extension reads budget-status.json")
	subagentStatus := flag.String("subagent-status", "", "budget scenario: turn 1 runs a subagent, and this file becomes the status while it works")
	opts := optionFlags{}
	flag.Var(opts, "option", "name=value: .kit.yml options.<name> (repeatable)")
	flag.Parse()
	run, ok := scenarios[*scenario]
	if !ok {
		fail("unknown scenario %q", *scenario)
	}
	h := &host{paths: exts, install: installs, cwd: *cwd, session: *session, options: opts,
		truth:      &truth{Scenario: *scenario, Pid: os.Getpid(), Session: *session},
		statusPath: *statusPath, subagentStatus: *subagentStatus}
	if *statusFiles != "" {
		h.statusFiles = strings.Split(*statusFiles, ",")
	}
	if h.cwd == "" {
		h.cwd, _ = os.Getwd()
	}
	run(h)
	if *truthPath != "" {
		data, _ := json.MarshalIndent(h.truth, "", " ")
		if err := os.WriteFile(*truthPath, data, 0o644); err != nil {
			fail("truth: %v", err)
		}
	}
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// session runs turns in one main agent between SessionStart and Close, as the CLI does.
func (h *host) mainSession(turns ...*turn) *agent {
	a := h.newAgent(true, nil, "")
	if a.runner.HasHandlers(extensions.SessionStart) {
		_, _ = a.runner.Emit(extensions.SessionStartEvent{})
	}
	for _, t := range turns {
		_, _ = a.runTurn(t)
		h.truth.Turns++
	}
	return a
}

// placeStatus makes src the budget status the extension will read (as serve's
// atomic replace would: write beside, rename over), or removes it for "-".
func (h *host) placeStatus(src string) {
	h.truth.mu.Lock()
	h.truth.Shown = append(h.truth.Shown, &shown{StatusFile: src})
	h.truth.mu.Unlock()
	h.writeStatus(src)
}

func (h *host) writeStatus(src string) {
	if src == "-" {
		_ = os.Remove(h.statusPath)
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		fail("status file: %v", err)
	}
	tmp := h.statusPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		fail("status file: %v", err)
	}
	if err := os.Rename(tmp, h.statusPath); err != nil {
		fail("status file: %v", err)
	}
}

// snapshotStatus records the status bar as it stands now.
func (h *host) snapshotStatus(r *extensions.Runner) {
	entries := r.GetStatusEntries()
	h.truth.mu.Lock()
	defer h.truth.mu.Unlock()
	cur := h.truth.Shown[len(h.truth.Shown)-1]
	for _, e := range entries {
		cur.Status = append(cur.Status, e.Key+"="+e.Text)
	}
}

var scenarios = map[string]func(h *host){
	"big-lines": func(h *host) {
		// Events that carry over a megabyte: a pasted 1.2 MB log in the prompt,
		// another extension's 1.1 MB state, and a subagent writing a 1.1 MB file
		// (the parent's bridge gets the child's call as a subagent_chunk).
		body := strings.Repeat("0123456789abcdef", 1100*1024/16)
		input, _ := json.Marshal(map[string]string{"path": "big.txt", "content": body})
		child := &turn{Prompt: "write it", Steps: []step{
			{Finish: "tool-calls", Usage: usage(500, 300, 0, 0), Calls: []call{
				{ID: "toolu_child_write", Name: "write", Input: string(input), Output: body}}},
			{Text: []string{"Written."}, Finish: "stop", Usage: usage(1000, 5, 0, 0)},
		}}
		a := h.newAgent(true, nil, "")
		a.runner.SetState("notes", strings.Repeat("n", 1100*1024))
		_, _ = a.runner.Emit(extensions.SessionStartEvent{})
		prompt := "why does this fail?\n" + strings.Repeat("ERROR some line of a build log\n", 1200*1024/31)
		_, _ = a.runTurn(&turn{Prompt: prompt, Steps: []step{
			{Finish: "tool-calls", Usage: usage(900, 40, 0, 0), Calls: []call{
				{ID: "toolu_sub_W", Name: "subagent", Input: `{"task":"write it"}`, Child: child}}},
			{Text: []string{"Done."}, Finish: "stop", Usage: usage(1000, 5, 0, 0)},
		}})
		h.truth.Turns = 1
		a.k.Close()
	},
	"spool-comes-late": func(h *host) {
		// The spool directory cannot be made for a while (KITHOST_BLOCK, a regular
		// file, sits at its path): the queue overflows meanwhile, then the file
		// goes and the directory can be made. Turns: the events fired.
		block := os.Getenv("KITHOST_BLOCK")
		a := h.newAgent(true, nil, "")
		_, _ = a.runner.Emit(extensions.SessionStartEvent{})
		for i := 0; i < 500; i++ {
			_, _ = a.runner.Emit(extensions.ToolOutputEvent{ToolCallID: "toolu_out", ToolName: "bash",
				Chunk: strconv.Itoa(i)})
		}
		time.Sleep(2500 * time.Millisecond)
		_ = os.Remove(block)
		time.Sleep(3 * time.Second)
		_, _ = a.runner.Emit(extensions.ToolOutputEvent{ToolCallID: "toolu_out", ToolName: "bash",
			Chunk: "last"})
		a.k.Close()
		h.truth.Turns = 1 + 500 + 1 + 1 // session_start, the outputs, session_shutdown
	},
	"shared-args": func(h *host) {
		// Many tool calls, each with its ParsedArgs map as KIT's tool wrapper makes
		// it (wrapper.go: one map per call, handed to every extension in turn), so
		// an extension after the bridge writes to the map the bridge was given.
		a := h.newAgent(true, nil, "")
		_, _ = a.runner.Emit(extensions.SessionStartEvent{})
		args := map[string]any{}
		for i := 0; i < 300; i++ {
			args["arg"+strconv.Itoa(i)] = strings.Repeat("x", 20)
		}
		raw, _ := json.Marshal(args)
		for i := 0; i < 2000; i++ {
			var parsed map[string]any
			_ = json.Unmarshal(raw, &parsed)
			_, _ = a.runner.Emit(extensions.ToolCallEvent{ToolName: "bash", ToolKind: "execute",
				ToolCallID: "toolu_args_" + strconv.Itoa(i), Input: string(raw),
				ParsedArgs: parsed, Source: "llm"})
		}
		a.k.Close()
		h.truth.Turns = 2000
	},
	"budget": func(h *host) {
		// The session starts on the first status file; each later file is
		// what serve has written by the time the next prompt comes, and that
		// turn makes one bash call (which an over-budget gate may refuse).
		a := h.newAgent(true, nil, "")
		for i, src := range h.statusFiles {
			h.placeStatus(src)
			if i == 0 {
				_, _ = a.runner.Emit(extensions.SessionStartEvent{})
			} else {
				c := call{ID: fmt.Sprintf("toolu_budget_%d", i), Name: "bash", Input: `{"command":"ls"}`, Output: "a.go"}
				if i == 1 && h.subagentStatus != "" {
					// the parent's gate lets the subagent start; the child's read
					// comes after serve wrote h.subagentStatus
					c = call{ID: "toolu_budget_sub", Name: "subagent", Input: `{"task":"look"}`,
						StatusFile: h.subagentStatus, Child: &turn{Prompt: "look", Steps: []step{
							{Finish: "tool-calls", Usage: usage(300, 10, 0, 0), Calls: []call{
								{ID: "toolu_budget_child_read", Name: "read", Input: `{"path":"a.go"}`, Output: "package a"}}},
							{Text: []string{"looked"}, Finish: "stop", Usage: usage(320, 5, 0, 0)},
						}}}
				}
				_, _ = a.runTurn(&turn{Prompt: fmt.Sprintf("step %d", i), Steps: []step{
					{Finish: "tool-calls", Usage: usage(400, 20, 0, 0), Calls: []call{c}},
					{Text: []string{"ok"}, Finish: "stop", Usage: usage(450, 5, 0, 0)},
				}})
				h.truth.Turns++
			}
			h.snapshotStatus(a.runner)
		}
		a.k.Close()
	},
	"parallel-tools": func(h *host) {
		a := h.mainSession(&turn{Prompt: "look around", Steps: []step{
			{Text: []string{"Reading ", "both."}, Finish: "tool-calls", Usage: usage(1200, 80, 300, 0), Calls: []call{
				{ID: "toolu_read_1", Name: "read", Input: `{"path":"a.go"}`, Output: "package a"},
				{ID: "toolu_grep_1", Name: "grep", Input: `{"pattern":"TODO"}`, Output: "a.go:3: TODO"},
				{ID: "toolu_bash_1", Name: "bash", Input: `{"command":"ls"}`, Output: "a.go\nb.go", Stdout: []string{"a.go\n", "b.go\n"}},
			}},
			{Text: []string{"Done."}, Finish: "stop", Usage: usage(1500, 40, 1200, 0)},
		}})
		a.k.Close()
	},
	"subagents": func(h *host) {
		// Two parallel subagents with different usage; equal task text, so
		// nothing but the call itself tells them apart.
		child := func(tag string, in, out int64) *turn {
			return &turn{Prompt: "inspect the module", Steps: []step{
				{Finish: "tool-calls", Usage: usage(in, out, 0, 0), Calls: []call{
					{ID: "toolu_child_read_" + tag, Name: "read", Input: `{"path":"` + tag + `.go"}`, Output: "package " + tag, Sleep: 30 * time.Millisecond},
				}},
				{Text: []string{"Module " + tag + " is fine."}, Finish: "stop", Usage: usage(in*2, out, 100, 0)},
			}}
		}
		a := h.mainSession(&turn{Prompt: "check both modules", Steps: []step{
			{Text: []string{"Delegating."}, Finish: "tool-calls", Usage: usage(2000, 120, 0, 500), Calls: []call{
				{ID: "toolu_sub_A", Name: "subagent", Input: `{"task":"inspect the module"}`, Child: child("a", 1000, 50)},
				{ID: "toolu_sub_B", Name: "subagent", Input: `{"task":"inspect the module"}`, Child: child("b", 7000, 900)},
			}},
			{Text: []string{"Both fine."}, Finish: "stop", Usage: usage(2600, 30, 2000, 0)},
		}})
		a.k.Close()
	},
	"blocked": func(h *host) {
		a := h.mainSession(&turn{Prompt: "clean up", Steps: []step{
			{Finish: "tool-calls", Usage: usage(900, 60, 0, 0), Calls: []call{
				{ID: "toolu_rm", Name: "bash", Input: `{"command":"rm -rf /tmp/x"}`, Output: "never runs"},
				{ID: "toolu_ls", Name: "bash", Input: `{"command":"ls"}`, Output: "x"},
			}},
			{Text: []string{"I was not allowed to delete."}, Finish: "stop", Usage: usage(1000, 20, 0, 0)},
		}})
		a.k.Close()
	},
	"big-write": func(h *host) {
		body := strings.Repeat("0123456789abcdef", 650*1024/16)
		input, _ := json.Marshal(map[string]string{"path": "big.txt", "content": body})
		a := h.mainSession(&turn{Prompt: "write the file", Steps: []step{
			{Finish: "tool-calls", Usage: usage(500, 170000, 0, 0), Calls: []call{
				{ID: "toolu_write", Name: "write", Input: string(input), Output: "wrote 665600 bytes"},
			}},
			{Text: []string{"Written."}, Finish: "stop", Usage: usage(171000, 10, 0, 0)},
		}})
		a.k.Close()
	},
	"error-and-cancel": func(h *host) {
		a := h.mainSession(
			&turn{Prompt: "first", Steps: []step{
				{Text: []string{"Hi"}, Err: errors.New("anthropic: 529 overloaded_error: Overloaded")},
			}},
			&turn{Prompt: "second", Steps: []step{
				{Text: []string{"Let me run it"}, Finish: "tool-calls", Usage: usage(800, 30, 0, 0), Cancel: true, Calls: []call{
					{ID: "toolu_sleep", Name: "bash", Input: `{"command":"sleep 100"}`, Output: "", Sleep: 20 * time.Millisecond},
				}},
			}},
			&turn{Prompt: "third", Steps: []step{
				{Text: []string{"OK."}, Finish: "stop", Usage: usage(900, 12, 800, 0)},
			}},
		)
		a.k.Close()
	},
	"hot-reload": func(h *host) {
		a := h.mainSession(&turn{Prompt: "t0", Steps: []step{{Text: []string{"0"}, Finish: "stop", Usage: usage(100, 1, 0, 0)}}})
		for i := 1; i <= 20; i++ {
			a.k.Reload(func() []extensions.LoadedExtension {
				exts, _ := extensions.LoadExtensions(h.paths)
				return exts
			})
			h.truth.Reloads++
			_, _ = a.runTurn(&turn{Prompt: fmt.Sprintf("t%d", i), Steps: []step{
				{Text: []string{fmt.Sprint(i)}, Finish: "stop", Usage: usage(100+int64(i), 1, 0, 0)}}})
			h.truth.Turns++
		}
		a.k.Close()
	},
	"hot-install": func(h *host) {
		// KIT's /reload after an extension was installed into the running
		// session: the Runner's per-extension locks were sized at NewRunner,
		// Reload only swaps the list (runner.go), so an Emit to an extension
		// past the old count indexes past them. The truth records whether
		// the reload (its SessionStart) or the next Emit panicked.
		a := h.mainSession(&turn{Prompt: "t0", Steps: []step{{Text: []string{"0"}, Finish: "stop", Usage: usage(100, 1, 0, 0)}}})
		func() {
			defer func() {
				if recover() != nil {
					h.truth.Panicked = true
				}
			}()
			a.k.Reload(func() []extensions.LoadedExtension {
				// a newly installed global extension is discovered first
				exts, _ := extensions.LoadExtensions(append(append([]string{}, h.install...), h.paths...))
				return exts
			})
			_, _ = a.runner.Emit(extensions.InputEvent{Text: "after the install"})
		}()
	},
	"state": func(h *host) {
		// An extension-state change made inside one tool must land on that
		// tool's events, not on another's.
		a := h.newAgent(true, nil, "")
		_, _ = a.runner.Emit(extensions.SessionStartEvent{})
		a.tools["bash"] = wrapOne(&stateTool{a: a, name: "bash"}, a.runner)
		_, _ = a.runTurn(&turn{Prompt: "count", Steps: []step{
			{Finish: "tool-calls", Usage: usage(300, 20, 0, 0), Calls: []call{
				{ID: "toolu_state_1", Name: "bash", Input: `{"command":"one"}`, Output: "1"},
				{ID: "toolu_state_2", Name: "bash", Input: `{"command":"two"}`, Output: "2"},
			}},
			{Text: []string{"ok"}, Finish: "stop", Usage: usage(320, 2, 0, 0)},
		}})
		h.truth.Turns++
		a.k.Close()
	},
}

// stateTool sets extension state while it runs, as a stateful extension tool would.
type stateTool struct {
	a    *agent
	name string
}

func (t *stateTool) Info() fantasy.ToolInfo {
	return fantasy.ToolInfo{Name: t.name, Parameters: map[string]any{}}
}
func (t *stateTool) ProviderOptions() fantasy.ProviderOptions     { return nil }
func (t *stateTool) SetProviderOptions(o fantasy.ProviderOptions) {}
func (t *stateTool) Run(ctx context.Context, tc fantasy.ToolCall) (fantasy.ToolResponse, error) {
	t.a.runner.SetState("counter", tc.ID)
	return fantasy.NewTextResponse("done"), nil
}

func wrapOne(t fantasy.AgentTool, r *extensions.Runner) fantasy.AgentTool {
	return extensions.WrapToolsWithExtensions([]fantasy.AgentTool{t}, r)[0]
}

var _ = filepath.Join
