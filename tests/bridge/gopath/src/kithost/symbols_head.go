//go:build yaegihost && !kitseed
// +build yaegihost,!kitseed

package main

import "kit/ext"

func variantTypes() []interface{} {
	return []interface{}{
		(*ext.ThinkingLevelChangeEvent)(nil), (*ext.TerminalResizeEvent)(nil), (*ext.TurnStateChangeEvent)(nil),
	}
}
