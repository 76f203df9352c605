//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing outside Linux: node processes exit when their
// stdin closes, which happens when the program exits.
func dieWithParent(cmd *exec.Cmd) {}
