package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the node process when the program
// dies, however it dies. Closing stdin covers the orderly exits.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
