package datadog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxMessage bounds how much of Datadog's error text a message carries.
const maxMessage = 300

// v1Response is the part of Datadog's MetricsQueryResponse used. Points
// are [timestamp, value] pairs whose value may be null.
type v1Response struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Series []struct {
		Pointlist [][]*float64 `json:"pointlist"`
	} `json:"series"`
}

// parseV1 turns a v1 query's 200 body into the result and the recorded
// value: the last point of the first series, as Argo Rollouts takes it.
// No series, no points or a null last point is no data: a nil result.
func parseV1(body []byte) (any, string, error) {
	var r v1Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, "", fmt.Errorf("datadog response is not a v1 query response: %v", err)
	}
	if r.Status == "error" || r.Error != "" {
		msg := r.Error
		if msg == "" {
			msg = "status error without a message"
		}
		return nil, "", fmt.Errorf("datadog could not run the query: %s", trim(msg))
	}
	if len(r.Series) == 0 || len(r.Series[0].Pointlist) == 0 {
		return nil, "[]", nil
	}
	points := r.Series[0].Pointlist
	last := points[len(points)-1]
	if len(last) != 2 {
		return nil, "", fmt.Errorf("datadog returned a point with %d values; want [timestamp, value]", len(last))
	}
	if last[1] == nil {
		return nil, "null", nil
	}
	return *last[1], formatFloat(*last[1]), nil
}

// v2Response is the part of Datadog's ScalarFormulaQueryResponse used.
type v2Response struct {
	Data *struct {
		Attributes struct {
			Columns []struct {
				Type   string          `json:"type"`
				Values json.RawMessage `json:"values"`
			} `json:"columns"`
		} `json:"attributes"`
		// Errors here is where Argo Rollouts looks; Datadog documents
		// the top-level one. Both are read.
		Errors string `json:"errors"`
	} `json:"data"`
	Errors string `json:"errors"`
}

// parseV2 turns a v2 scalar query's 200 body into the result and the
// recorded value: the first value of the first number column (the
// formula's when there is one), as Argo Rollouts takes it. No column, no
// value or a null first value is no data: a nil result.
func parseV2(body []byte) (any, string, error) {
	var r v2Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, "", fmt.Errorf("datadog response is not a scalar query response: %v", err)
	}
	if msg := r.Errors; msg != "" || (r.Data != nil && r.Data.Errors != "") {
		if msg == "" {
			msg = r.Data.Errors
		}
		return nil, "", fmt.Errorf("datadog could not run the query: %s", trim(msg))
	}
	if r.Data == nil {
		return nil, "[]", nil
	}
	for _, c := range r.Data.Attributes.Columns {
		if c.Type != "" && c.Type != "number" {
			continue // a group column: the tag values of each row
		}
		var values []*float64
		if err := json.Unmarshal(c.Values, &values); err != nil {
			if c.Type == "" {
				continue
			}
			return nil, "", fmt.Errorf("datadog returned a number column that holds no numbers: %v", err)
		}
		text, _ := json.Marshal(values)
		if values == nil {
			text = []byte("[]")
		}
		if len(values) == 0 || values[0] == nil {
			return nil, string(text), nil
		}
		return *values[0], formatFloat(*values[0]), nil
	}
	return nil, "[]", nil
}

// statusError says why Datadog answered code: its own message (the
// errors of its error body, trimmed), and for 429 when the rate limit
// resets.
func statusError(code int, h http.Header, body []byte) error {
	status := strconv.Itoa(code) + " " + http.StatusText(code)
	msg := errorMessage(body)
	var out string
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		out = fmt.Sprintf("datadog refused the API or application key (%s)", status)
	case http.StatusTooManyRequests:
		out = fmt.Sprintf("datadog rate limit reached (%s)", status)
		if reset := h.Get("X-RateLimit-Reset"); reset != "" {
			out += "; the limit resets in " + reset + "s"
		}
		if limit, period := h.Get("X-RateLimit-Limit"), h.Get("X-RateLimit-Period"); limit != "" && period != "" {
			out += " (" + limit + " requests per " + period + "s"
			if name := h.Get("X-RateLimit-Name"); name != "" {
				out += " for " + name
			}
			out += ")"
		}
	default:
		out = "datadog answered " + status
	}
	if msg != "" {
		out += ": " + msg
	}
	return errors.New(out)
}

// errorMessage is the text of Datadog's error body: {"errors": [...]}
// (strings, or JSON:API objects with a title and detail), {"error": "..."},
// or the body itself, trimmed.
func errorMessage(body []byte) string {
	var r struct {
		Errors []json.RawMessage `json:"errors"`
		Error  string            `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return trim(string(body))
	}
	var msgs []string
	for _, raw := range r.Errors {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			msgs = append(msgs, s)
			continue
		}
		var obj struct{ Title, Detail string }
		if json.Unmarshal(raw, &obj) == nil && (obj.Title != "" || obj.Detail != "") {
			msgs = append(msgs, strings.TrimSpace(obj.Title+" "+obj.Detail))
		}
	}
	if r.Error != "" {
		msgs = append(msgs, r.Error)
	}
	return trim(strings.Join(msgs, "; "))
}

// trim makes s one line of at most maxMessage bytes.
func trim(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
