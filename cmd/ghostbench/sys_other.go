//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// childAttr has nothing to add off Linux: children end when their stdin
// closes.
func childAttr() *syscall.SysProcAttr { return nil }

// cpuTime is measured on Linux only.
func cpuTime(pid int) (float64, error) {
	return 0, errors.New("CPU time is measured on Linux only")
}
