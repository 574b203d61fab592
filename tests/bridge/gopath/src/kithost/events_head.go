//go:build !kitseed
// +build !kitseed

package main

import "kit/ext"

// fireNewer fires the event kinds KIT gained after the seed commit.
func fireNewer(d *driver, r *ext.Registry, phase string) {
	if phase == "before" {
		d.fire(r, "terminal_resize", ext.TerminalResizeEvent{Width: 120, Height: 40}, "")
		d.fire(r, "thinking_level_change", ext.ThinkingLevelChangeEvent{NewLevel: "high", PreviousLevel: "off", Source: "user"}, "")
		d.fire(r, "turn_state_change", ext.TurnStateChangeEvent{State: "working", Previous: "idle"}, "")
		return
	}
	d.fire(r, "turn_state_change", ext.TurnStateChangeEvent{State: "idle", Previous: "working"}, "")
	d.fire(r, "terminal_resize", ext.TerminalResizeEvent{Width: 80, Height: 24}, "")
}

func fireSessionSwitch(d *driver, r *ext.Registry) {
	d.fire(r, "before_session_switch", ext.BeforeSessionSwitchEvent{Reason: "new", InitialPrompt: "start over: \"clean\""}, "")
}
