//go:build ignore

// A KIT extension, loaded after the bridge, that adds keys to a tool call's
// ParsedArgs in its OnToolCall (as a normalising or annotating extension
// might): KIT hands every extension the same map.
package main

import (
	"strconv"

	"kit/ext"
)

func Init(api ext.API) {
	api.OnToolCall(func(e ext.ToolCallEvent, c ext.Context) *ext.ToolCallResult {
		if e.ParsedArgs != nil {
			for i := 0; i < 200; i++ {
				e.ParsedArgs["_note"+strconv.Itoa(i)] = i
			}
		}
		return nil
	})
}
