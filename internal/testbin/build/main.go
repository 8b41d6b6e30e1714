// Command build builds the binaries tests run (package testbin) and prints
// their directory, for SLUICE_TEST_BIN:
//
//	SLUICE_TEST_BIN=$(go run ./internal/testbin/build) go test ./...
//
// Run it from inside the module.
package main

import (
	"fmt"
	"os"

	"github.com/sluicehq/sluice/internal/testbin"
)

func main() {
	root, err := testbin.ModuleRoot()
	if err == nil {
		var dir string
		if dir, err = testbin.Build(root); err == nil {
			fmt.Println(dir)
			return
		}
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
