package influxdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// convert turns the _values of a response into what conditions see and the
// value as Argo Rollouts records it. No rows is an error, as in Argo.
func convert(values []any) (any, string, error) {
	if len(values) == 0 {
		return nil, "", errNoResults
	}
	return values, fmt.Sprint(values), nil
}

// maxMessage bounds how much of InfluxDB's own message a measurement keeps.
const maxMessage = 512

// describe renders a query error with InfluxDB's message and status,
// without the request's query string.
func describe(err error) string {
	var se *streamError
	if errors.As(err, &se) {
		return "flux query failed: " + trim(se.err.Error())
	}
	var he *influxhttp.Error
	if !errors.As(err, &he) {
		return transport.Describe(err)
	}
	if he.StatusCode == 0 {
		// No answer: he.Err is the HTTP client's (a *url.Error).
		if he.Err != nil {
			return transport.Describe(he.Err)
		}
		return trim(he.Error())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "influxdb answered %d %s", he.StatusCode, http.StatusText(he.StatusCode))
	switch {
	case he.Err != nil:
		// A JSON error body that did not decode.
		fmt.Fprintf(&b, " with an unreadable error body: %s", trim(he.Err.Error()))
	default:
		status := fmt.Sprintf("%d %s", he.StatusCode, http.StatusText(he.StatusCode))
		var parts []string
		if c := trim(he.Code); c != "" && c != status {
			parts = append(parts, c)
		}
		if msg := trim(bodyMessage(he.Message)); msg != "" {
			parts = append(parts, msg)
		}
		if len(parts) > 0 {
			b.WriteString(": " + strings.Join(parts, ": "))
		}
	}
	if ra := trim(he.Header.Get("Retry-After")); ra != "" {
		fmt.Fprintf(&b, " (Retry-After: %s)", ra)
	}
	return b.String()
}

// bodyMessage is the message of a JSON error body that the client library
// kept as text: InfluxDB 1.x sends {"error": "..."} with the CSV content
// type once it has chosen it. Any other text is returned as it is.
func bodyMessage(s string) string {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "{") {
		return s
	}
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal([]byte(t), &body) != nil {
		return s
	}
	switch {
	case body.Message != "":
		return body.Message
	case body.Error != "":
		return body.Error
	}
	return s
}

// trim makes a server's text one bounded line.
func trim(s string) string {
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
