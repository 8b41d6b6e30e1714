//go:build sluicetest

package clock

import (
	"os"
	"time"
)

const testBuild = true

func readTestSkew() (time.Duration, error) { return parseSkew(os.Getenv(EnvTestSkew)) }
