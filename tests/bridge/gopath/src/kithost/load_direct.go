//go:build !yaegihost
// +build !yaegihost

package main

import (
	"fmt"

	"kit/ext"
)

// Extensions are compiled into this program (go build) or interpreted along
// with it (yaegi run): the bridge's Init, and the reference extensions,
// copied in as InitEmpty and InitNaive.
const loaderName = "direct"

func loadExtension(name string, api ext.API) error {
	switch name {
	case "bridge":
		Init(api)
	case "empty":
		InitEmpty(api)
	case "naive":
		InitNaive(api)
	default:
		return fmt.Errorf("unknown extension %q", name)
	}
	return nil
}

// directScenario runs scenarios that call into the bridge's own functions,
// possible only when the bridge is part of this program.
func directScenario(d *driver, scenario string) bool {
	switch scenario {
	case "names":
		// Event type names derived for On* methods the bridge does not know.
		names := map[string]string{}
		for _, n := range []string{"TurnStateChange", "LLMUsage", "ToolCallInputStart", "MCPServerReady",
			"SubagentChunk", "Step2Finish", "A", "HTTPRequest", "OAuthRefresh"} {
			names[n] = snakeCase(n)
		}
		d.result["names"] = names
		return true
	}
	return false
}
