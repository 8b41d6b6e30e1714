package plugin

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the plugin when the analyzer dies
// without closing it (SIGKILL, OOM): a go-plugin server does not notice
// that its host is gone, and would live on. (Pdeathsig fires when the
// thread that started the process exits; Go's runtime keeps its threads.)
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
