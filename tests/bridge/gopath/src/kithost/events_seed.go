//go:build kitseed
// +build kitseed

package main

import "kit/ext"

// fireNewer: the seed KIT has none of the newer event kinds.
func fireNewer(d *driver, r *ext.Registry, phase string) {}

func fireSessionSwitch(d *driver, r *ext.Registry) {
	d.fire(r, "before_session_switch", ext.BeforeSessionSwitchEvent{Reason: "clear"}, "")
}
