package e2e

import "syscall"

// sysProcAttr puts a child in a process group of its own and has the
// kernel kill it when the test binary dies, so that a crashed or
// interrupted test leaves no process behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
