package clock

import (
	"fmt"
	"time"
)

// EnvTestSkew names the environment variable that skews the local clock
// of a test build (a Go duration, e.g. "90s" or "-3s"). Only binaries
// built with the build tag sluicetest, as package testbin builds the
// binaries tests run, read it: a release binary cannot be told to lie
// about the time, and says so when the variable is set.
const EnvTestSkew = "SLUICE_TEST_CLOCK_SKEW"

// TestBuild reports whether this binary was built for tests (build tag
// sluicetest), so that its local clock can be skewed.
const TestBuild = testBuild

// testSkew is added to the local clock: EnvTestSkew in a test build, zero
// otherwise.
var testSkew, testSkewErr = readTestSkew()

// Local is the host's clock: time.Now, plus EnvTestSkew in a test build.
// It keeps time.Now's monotonic reading, so durations between two of its
// readings are exact whatever the skew.
func Local() time.Time { return time.Now().Add(testSkew) }

// TestSkew returns the skew EnvTestSkew sets on Local. The error says
// that the variable is unreadable (test build) or ignored (release
// build); the binary's start-up reports it.
func TestSkew() (time.Duration, error) { return testSkew, testSkewErr }

func parseSkew(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a duration (e.g. 90s, -3s): %w", EnvTestSkew, v, err)
	}
	return d, nil
}
