package main

import "syscall"

// childAttr has the kernel kill a child when the suite dies, however it
// dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// onLinux: the suite runs on Linux only (network namespaces).
const onLinux = true
