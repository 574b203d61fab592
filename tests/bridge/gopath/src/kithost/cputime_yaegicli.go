//go:build yaegicli
// +build yaegicli

package main

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time of the calling thread from getrusage
// (RUSAGE_THREAD, Linux): the yaegi command has no syscall.Syscall, and this
// clock is coarser, so CPU figures from the CLI harness are rough.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
