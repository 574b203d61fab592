//go:build !yaegicli
// +build !yaegicli

package main

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPU is the CPU time of the calling thread
// (clock_gettime(CLOCK_THREAD_CPUTIME_ID), Linux; ns resolution).
func threadCPU() time.Duration {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3 /* CLOCK_THREAD_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}
