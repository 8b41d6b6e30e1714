// Package buildinfo says which build of Sluice is running: the version every
// binary prints (`sluice version`, `sluice-orchestrator --version`, ...).
//
// `make build` and the Dockerfile set it from `git describe --always
// --dirty`:
//
//	go build -ldflags "-X github.com/sluicehq/sluice/internal/buildinfo.version=$(git describe --always --dirty)"
//
// A plain `go build` or `go install` leaves it unset; Version then reads the
// module version or the VCS revision Go records in the binary.
package buildinfo

import (
	"runtime/debug"
)

// version is set at link time (see the package doc).
var version = ""

// Version returns the build's version: the one set at link time, else the
// module version of a `go install module@version`, else the VCS revision
// (12 hex digits, "-dirty" when the tree had changes), else "unknown".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return fromBuildInfo(bi)
}

// fromBuildInfo picks the version from what the Go toolchain recorded.
func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
