//go:build !sluicetest

package clock

import (
	"fmt"
	"os"
	"time"
)

const testBuild = false

func readTestSkew() (time.Duration, error) {
	if v := os.Getenv(EnvTestSkew); v != "" {
		return 0, fmt.Errorf("%s=%q is ignored: only a test build (build tag sluicetest) skews its clock", EnvTestSkew, v)
	}
	return 0, nil
}
