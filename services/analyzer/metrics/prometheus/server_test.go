package prometheus

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/analyzer/internal/promtest"
)

// The Prometheus of these tests is promtest's: the real PromQL engine over
// in-memory series, shared with the analyzer service's tests.

// epoch is the time of the first sample of every series.
var epoch = time.Unix(1_700_000_000, 0).UTC()

// series is one time series: samples one minute apart from epoch.
type series = promtest.Series

func newSeries(lbls map[string]string, values ...float64) series {
	return series{Labels: lbls, Values: values}
}

// promServer serves PromQL over data. guard, when set, may answer a request
// itself (for auth checks, slowness) by returning true.
func promServer(t *testing.T, data []series, guard func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	return promtest.Start(t, data, promtest.Options{Epoch: epoch, Guard: guard})
}

func promHandler(t *testing.T, data []series, guard func(w http.ResponseWriter, r *http.Request) bool) http.Handler {
	t.Helper()
	return promtest.Handler(t, data, promtest.Options{Epoch: epoch, Guard: guard})
}

func apiError(w http.ResponseWriter, code int, typ, msg string) { promtest.APIError(w, code, typ, msg) }
