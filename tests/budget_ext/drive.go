//go:build ignore

// Plays KIT for the budget extension (src/kit_otel/bridge/kit_otel_budget.go)
// on the kit/ext stand-in of tests/bridge/gopath: fires the handlers the
// extension registered, in the order of BUDGET_STEPS, with a Context whose
// SetStatus / RemoveStatus / PrintInfo are recorded, and prints what KIT
// would have shown as one JSON object.
//
// Steps: session_start, agent_end, tool_call, and use:NAME (replace the
// status file by BUDGET_DIR/NAME before the next step; "use:-" removes it).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"kit/ext"
)

type shown struct {
	Status  []string `json:"status"`
	Removed int      `json:"removed"`
	Info    []string `json:"info"`
	Blocked []string `json:"blocked"`
	Allowed int      `json:"allowed"`
}

func main() {
	reg := &ext.Registry{}
	Init(ext.NewTestAPI(reg))
	var out shown
	ctx := ext.Context{CWD: os.Getenv("BUDGET_CWD")}
	ctx.SetStatus = func(key, text string, priority int) { out.Status = append(out.Status, key+"="+text) }
	ctx.RemoveStatus = func(key string) { out.Removed++ }
	ctx.PrintInfo = func(s string) { out.Info = append(out.Info, s) }
	ctx.GetOption = func(name string) string {
		return os.Getenv("KIT_OPT_" + strings.ToUpper(strings.Replace(name, "-", "_", -1)))
	}
	status := filepath.Join(os.Getenv("KIT_OPT_KIT_OTEL_SPOOL_DIR"), "budget-status.json")
	for _, step := range strings.Split(os.Getenv("BUDGET_STEPS"), ",") {
		switch {
		case strings.HasPrefix(step, "use:"):
			name := strings.TrimPrefix(step, "use:")
			os.Remove(status)
			if name != "-" {
				data, err := os.ReadFile(filepath.Join(os.Getenv("BUDGET_DIR"), name))
				if err != nil {
					panic(err)
				}
				if err := os.WriteFile(status, data, 0o600); err != nil {
					panic(err)
				}
			}
		case step == "tool_call":
			for _, h := range reg.Handlers["tool_call"] {
				if r, _ := h(ext.ToolCallEvent{ToolName: "bash", ToolCallID: "c1"}, ctx).(*ext.ToolCallResult); r != nil && r.Block {
					out.Blocked = append(out.Blocked, r.Reason)
				} else {
					out.Allowed++
				}
			}
		case step == "session_start":
			reg.Fire("session_start", ext.SessionStartEvent{}, ctx)
		case step == "agent_end":
			reg.Fire("agent_end", ext.AgentEndEvent{}, ctx)
		default:
			panic("unknown step " + step)
		}
	}
	data, _ := json.Marshal(out)
	fmt.Println(string(data))
}
