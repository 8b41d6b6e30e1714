//go:build !linux

package plugin

import "os/exec"

// dieWithParent does nothing outside Linux: a plugin outlives an analyzer
// that dies without closing it.
func dieWithParent(*exec.Cmd) {}
