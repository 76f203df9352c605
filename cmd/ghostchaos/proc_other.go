//go:build !linux

package main

import (
	"errors"
	"io"
	"syscall"
)

// childAttr has nothing to add off Linux.
func childAttr() *syscall.SysProcAttr { return nil }

// onLinux: the suite runs on Linux only (network namespaces).
const onLinux = false

func runDelayer(string, io.Reader, io.Writer) error {
	return errors.New("the delayer needs Linux")
}
