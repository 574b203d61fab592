//go:build ignore

// kit-otel budget: an opt-in KIT extension that shows spend against the
// configured kit-otel budgets inside KIT — a status-bar entry, a notice when
// a threshold is crossed (default 50/75/90/100 %), and, if asked, a refusal of
// new tool calls once a budget is spent.
//
// It reads budget-status.json, which `kit-otel serve` writes into the spool
// directory (the one the bridge writes to), and nothing else: no network, no
// waiting. The file is a few hundred bytes, read at session start and at
// each turn's start and end, and from tool calls at most every few seconds. With serve down or the file missing or stale, the extension says so
// once and does nothing else: telemetry never breaks the agent.
//
// Load it with `kit -e "$(kit-otel bridge path --budget)"`, or copy it next to
// the bridge. Documentation: docs/cost.md.
package main

import (
	"bytes"
	"encoding/json"
	"expvar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"kit/ext"
)

const (
	budgetOptSpoolDir   = "kit-otel-spool-dir"
	budgetOptThresholds = "kit-otel-budget-thresholds"
	budgetOptBlock      = "kit-otel-budget-block"
	budgetStatusFile    = "budget-status.json"
	budgetStatusKey     = "kit-otel:budget"
	budgetMaxFileBytes  = 64 * 1024
	budgetReadEvery     = 3 * time.Second
	budgetStaleAfter    = 10 * time.Minute
	// budgetChildren is the process-wide expvar map goroutine id -> budgetLink
	budgetChildren = "kit-otel.budget.v1.children"
)

type budgetEntry struct {
	Window  string  `json:"window"`
	Scope   string  `json:"scope"`
	USD     float64 `json:"usd"`
	Project string  `json:"project"`
}

type budgetStatus struct {
	Version       int                           `json:"version"`
	WrittenUnixMs int64                         `json:"written_unix_ms"`
	Windows       map[string]string             `json:"windows"`
	Spend         map[string]map[string]float64 `json:"spend"`
	Budgets       []budgetEntry                 `json:"budgets"`
}

// budgetUse is one budget that applies to this session, with its spend.
type budgetUse struct {
	label string // "day", "month", "day (project payments)"
	key   string // window + scope + project + window period: one warning set each
	spent float64
	limit float64
}

var budgetState struct {
	sync.Mutex
	readAt   time.Time
	uses     []budgetUse
	problem  string          // why there is nothing to show ("" when fine)
	showing  bool            // our status-bar entry is up
	said     map[string]bool // problems and threshold warnings already shown
	warnedAt map[string]int  // budget key -> highest threshold warned
	// role: decided at this instance's first event; a subagent's child Kit
	// gets the parent's settings through the link
	decided bool
	link    *budgetLink
}

// budgetLink is what the parent's instance leaves for the child Kit that its
// subagent call is about to run. KIT runs the child in-process on the
// goroutine that emitted the call's tool_execution_start
// (internal/extensions/wrapper.go), loads the extensions into it again and
// gives it only stub Context functions: no options, no working directory.
// With the link the child gates its own tool calls on the parent's budgets.
type budgetLink struct {
	SpoolDir string
	Project  string
	Block    string
}

// budgetGoroutine and budgetLinks mirror the bridge's goroutineID and sharedChildren on
// purpose: KIT interprets each extension file on its own, so two extensions cannot share a
// function, only process-wide state (the expvar map the parent hands its children through).
func budgetGoroutine() string {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		return string(b[:i])
	}
	return ""
}

func budgetLinks() (m *expvar.Map) {
	defer func() {
		if recover() != nil {
			m = nil
		}
	}()
	if v := expvar.Get(budgetChildren); v != nil {
		m, _ = v.(*expvar.Map)
		return m
	}
	return expvar.NewMap(budgetChildren)
}

// budgetRole decides once, at the instance's first event, whether it runs
// inside a subagent's child Kit: a link left on this goroutine says so.
func budgetRole(first string) {
	if budgetState.decided {
		return
	}
	budgetState.decided = true
	if first != "agent_start" {
		return // a session starts in the main agent only
	}
	if m := budgetLinks(); m != nil {
		if v, ok := m.Get(budgetGoroutine()).(*expvar.String); ok {
			link := &budgetLink{}
			if json.Unmarshal([]byte(v.Value()), link) == nil && link.SpoolDir != "" {
				budgetState.link = link
			}
		}
	}
}

// budgetExpectChild runs in the parent's tool_execution_start of a subagent
// call, budgetForgetChild in its tool_result (the same goroutine).
func budgetExpectChild(c ext.Context) {
	defer func() { _ = recover() }()
	m, gid := budgetLinks(), budgetGoroutine()
	if m == nil || gid == "" {
		return
	}
	var data []byte
	budgetLocked(func() bool {
		data, _ = json.Marshal(budgetLink{SpoolDir: budgetSpoolDir(c), Project: budgetProject(c),
			Block: budgetOption(c, budgetOptBlock, "false")})
		return true
	})
	v := new(expvar.String)
	v.Set(string(data))
	m.Set(gid, v)
}

func budgetForgetChild() {
	defer func() { _ = recover() }()
	if m, gid := budgetLinks(), budgetGoroutine(); m != nil && gid != "" {
		m.Delete(gid)
	}
}

func Init(api ext.API) {
	api.RegisterOption(ext.OptionDef{Name: budgetOptThresholds, Default: "50,75,90,100",
		Description: "kit-otel budget: percentages of a budget at which to warn"})
	api.RegisterOption(ext.OptionDef{Name: budgetOptBlock, Default: "false",
		Description: "kit-otel budget: refuse new tool calls while a budget is spent"})
	api.OnSessionStart(func(_ ext.SessionStartEvent, c ext.Context) {
		budgetRoleOnce("session_start")
		budgetRefresh(c, true)
	})
	// a new prompt sees what serve knows now, not what it knew at the last turn's end
	api.OnAgentStart(func(_ ext.AgentStartEvent, c ext.Context) {
		budgetRoleOnce("agent_start")
		budgetRefresh(c, true)
	})
	api.OnToolExecutionStart(func(e ext.ToolExecutionStartEvent, c ext.Context) {
		if e.ToolName == "subagent" {
			budgetExpectChild(c)
		}
	})
	api.OnToolResult(func(e ext.ToolResultEvent, _ ext.Context) *ext.ToolResultResult {
		if e.ToolName == "subagent" {
			budgetForgetChild()
		}
		return nil
	})
	api.OnAgentEnd(func(_ ext.AgentEndEvent, c ext.Context) { budgetRefresh(c, true) })
	api.OnToolCall(func(_ ext.ToolCallEvent, c ext.Context) *ext.ToolCallResult {
		return budgetGate(c)
	})
}

func budgetRoleOnce(first string) {
	defer func() { _ = recover() }()
	budgetLocked(func() bool { budgetRole(first); return true })
}

// budgetLocked runs f under budgetState's lock, released even if f panics
// (a lock left held would stall KIT's next tool call).
func budgetLocked(f func() bool) bool {
	budgetState.Lock()
	defer budgetState.Unlock()
	return f()
}

// budgetOption is a KIT option, or in a subagent's child the parent's.
// Callers hold budgetState's lock.
func budgetOption(c ext.Context, name, def string) string {
	if l := budgetState.link; l != nil {
		switch name {
		case budgetOptSpoolDir:
			return l.SpoolDir
		case budgetOptBlock:
			return l.Block
		}
	}
	v := ""
	if c.GetOption != nil {
		v = c.GetOption(name)
	}
	if v == "" {
		v = budgetEnv()["KIT_OPT_"+strings.ToUpper(strings.Replace(name, "-", "_", -1))]
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return def
	}
	return v
}

func budgetSpoolDir(c ext.Context) string {
	if d := budgetOption(c, budgetOptSpoolDir, ""); d != "" {
		return d
	}
	env := budgetEnv()
	state := env["XDG_STATE_HOME"]
	if state == "" {
		home := env["HOME"]
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		state = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(state, "kit-otel", "spool")
}

var budgetEnvOnce struct {
	sync.Once
	env map[string]string
}

// budgetEnv is the KIT process's environment, as the bridge reads it (each
// extension is its own interpreter, so it cannot call the bridge's): KIT HEAD
// gives an interpreter os.Environ(), KIT 49f8b485 gives it none, and then
// /proc/self/environ (Linux) still names XDG_STATE_HOME, HOME and KIT_OPT_*.
func budgetEnv() map[string]string {
	budgetEnvOnce.Do(func() {
		list := os.Environ()
		if len(list) == 0 {
			if data, err := os.ReadFile("/proc/self/environ"); err == nil {
				list = strings.Split(string(data), "\x00")
			}
		}
		budgetEnvOnce.env = map[string]string{}
		for _, kv := range list {
			if i := strings.Index(kv, "="); i > 0 {
				budgetEnvOnce.env[kv[:i]] = kv[i+1:]
			}
		}
	})
	return budgetEnvOnce.env
}

func budgetProject(c ext.Context) string {
	if l := budgetState.link; l != nil {
		return l.Project
	}
	cwd := strings.TrimRight(c.CWD, "/")
	if cwd == "" {
		cwd, _ = os.Getwd()
	}
	if base := filepath.Base(cwd); base != "" && base != "." && base != "/" {
		return base
	}
	return "unknown"
}

// budgetRead loads the status file into budgetState (caller holds the lock).
func budgetRead(c ext.Context, now time.Time) {
	budgetState.readAt = now
	budgetState.uses = nil
	path := filepath.Join(budgetSpoolDir(c), budgetStatusFile)
	f, err := os.Open(path)
	if err != nil {
		budgetState.problem = "no " + path + " (is `kit-otel serve` running?): budgets not shown"
		return
	}
	data, err := io.ReadAll(io.LimitReader(f, budgetMaxFileBytes))
	f.Close()
	var st budgetStatus
	if err != nil || json.Unmarshal(data, &st) != nil || st.Version != 1 {
		budgetState.problem = path + " is not a budget status kit-otel wrote: budgets not shown"
		return
	}
	if now.Sub(time.UnixMilli(st.WrittenUnixMs)) > budgetStaleAfter {
		budgetState.problem = path + " is stale (is `kit-otel serve` running?): budgets not shown"
		return
	}
	budgetState.problem = ""
	project := budgetProject(c)
	for _, b := range st.Budgets {
		if b.USD <= 0 || (b.Window != "day" && b.Window != "month") {
			continue // turn budgets are per turn, not spend to date; model ones are not in the file
		}
		label, who := b.Window, "*"
		switch b.Scope {
		case "global":
		case "project":
			if b.Project != project {
				continue
			}
			label, who = b.Window+" ("+project+")", project
		default:
			continue
		}
		budgetState.uses = append(budgetState.uses, budgetUse{
			label: label, key: b.Window + "/" + b.Scope + "/" + b.Project + "/" + st.Windows[b.Window],
			spent: st.Spend[b.Window][who], limit: b.USD})
	}
}

// budgetRefresh re-reads the status (at most every budgetReadEvery unless
// forced), updates the status bar and prints each newly crossed threshold once.
func budgetRefresh(c ext.Context, force bool) {
	defer func() { _ = recover() }() // never break KIT over a budget display
	budgetState.Lock()
	defer budgetState.Unlock()
	now := time.Now()
	if !force && now.Sub(budgetState.readAt) < budgetReadEvery {
		return
	}
	budgetRead(c, now)
	if budgetState.said == nil {
		budgetState.said, budgetState.warnedAt = map[string]bool{}, map[string]int{}
	}
	if budgetState.problem != "" {
		if !budgetState.said[budgetState.problem] && c.PrintInfo != nil {
			budgetState.said[budgetState.problem] = true
			c.PrintInfo("kit-otel budget: " + budgetState.problem)
		}
		if budgetState.showing && c.RemoveStatus != nil {
			budgetState.showing = false
			c.RemoveStatus(budgetStatusKey) // a figure from a file we cannot trust any more
		}
		return
	}
	parts := []string{}
	thresholds := budgetThresholds(budgetOption(c, budgetOptThresholds, "50,75,90,100"))
	for _, u := range budgetState.uses {
		pct := int(u.spent*100/u.limit + 1e-9) // 7.8 of 10 is 78 %, not 77.99…
		parts = append(parts, fmt.Sprintf("%s $%.2f/$%.2f (%d%%)", u.label, u.spent, u.limit, pct))
		crossed := 0
		for _, t := range thresholds {
			if pct >= t {
				crossed = t
			}
		}
		if crossed > budgetState.warnedAt[u.key] {
			budgetState.warnedAt[u.key] = crossed
			if c.PrintInfo != nil {
				c.PrintInfo(fmt.Sprintf("kit-otel budget: %d%% of the %s budget spent ($%.2f of $%.2f)",
					crossed, u.label, u.spent, u.limit))
			}
		}
	}
	if c.SetStatus != nil && len(parts) > 0 {
		budgetState.showing = true
		c.SetStatus(budgetStatusKey, "budget "+strings.Join(parts, " · "), 50)
	}
}

func budgetThresholds(s string) []int {
	out := []int{}
	for _, p := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(p), "%"))); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// budgetGate refuses a tool call while a budget is spent, when asked to.
func budgetGate(c ext.Context) (result *ext.ToolCallResult) {
	defer func() {
		if recover() != nil {
			result = nil
		}
	}()
	if !budgetLocked(func() bool { return budgetTruthy(budgetOption(c, budgetOptBlock, "false")) }) {
		return nil
	}
	budgetRefresh(c, false)
	budgetState.Lock()
	defer budgetState.Unlock()
	for _, u := range budgetState.uses {
		if u.spent >= u.limit {
			return &ext.ToolCallResult{Block: true, Reason: fmt.Sprintf(
				"kit-otel budget: the %s budget is spent ($%.2f of $%.2f); tool calls are refused "+
					"until it resets or is raised (option %s=false turns this off)",
				u.label, u.spent, u.limit, budgetOptBlock)}
		}
	}
	return nil
}

func budgetTruthy(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
