package newrelic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/newrelic/newrelic-client-go/v2/pkg/nrdb"
)

// ErrNoResults is wrapped by the error of a query that returned no row, or
// one empty row: Argo Rollouts makes that an Error measurement, and so
// does Sluice.
var ErrNoResults = errors.New("no results returned from NRQL query")

// convert turns the rows of an NRQL answer into what the conditions see as
// `result` and the value as Argo Rollouts records it: one row is that row
// (a map, `result.count`), several rows are the list of rows
// (`result[0].count`), and the value is the JSON of either. No row, or a
// single empty row, is ErrNoResults. Numbers are float64; a null stays nil,
// which a comparison cannot evaluate, so it is an Error, never a verdict.
func convert(results []nrdb.NRDBResult) (any, string, error) {
	switch len(results) {
	case 0:
		return nil, "", ErrNoResults
	case 1:
		row := results[0]
		if len(row) == 0 {
			return nil, "", ErrNoResults
		}
		text, err := json.Marshal(row)
		if err != nil {
			return nil, "", fmt.Errorf("could not marshal results: %w", err)
		}
		return map[string]any(row), string(text), nil
	}
	rows := make([]any, len(results))
	for i, r := range results {
		rows[i] = map[string]any(r)
	}
	text, err := json.Marshal(results)
	if err != nil {
		return nil, "", fmt.Errorf("could not marshal results: %w", err)
	}
	return rows, string(text), nil
}

// Limits of the New Relic text quoted in a message.
const (
	maxMessageRunes = 300
	maxMessages     = 3
)

// describe says why a answered no results, in New Relic's words where
// it gave some. budget is how long the request was given; profile names
// the Secret the credentials came from.
func describe(a *answer, budget time.Duration, profile string) string {
	switch {
	case a.err != nil && (errors.Is(a.err, context.DeadlineExceeded) || errors.Is(a.err, context.Canceled)):
		return fmt.Sprintf("New Relic did not answer within %s (%s)", budget.Round(time.Millisecond), a.target)
	case a.err != nil:
		return fmt.Sprintf("%s: %v", a.target, a.err)
	case a.tooLarge:
		return fmt.Sprintf("NerdGraph's answer to %s is too large", a.target)
	}
	g, isJSON := parseGraphQL(a.body)
	words := messages(g.failures())
	ok := a.status >= 200 && a.status <= 299
	var b strings.Builder
	switch {
	case ok && isJSON:
		b.WriteString("NerdGraph error")
	case ok:
		return fmt.Sprintf("NerdGraph's answer (HTTP %d) is not JSON", a.status)
	default:
		fmt.Fprintf(&b, "NerdGraph answered HTTP %d %s", a.status, http.StatusText(a.status))
	}
	if words != "" {
		b.WriteString(": ")
		b.WriteString(words)
	}
	if a.status == http.StatusTooManyRequests || hasClass(g, "TOO_MANY_REQUESTS") {
		b.WriteString("; New Relic's rate limit: the metric's consecutiveErrorLimit decides whether to try again")
		if ra := strings.TrimSpace(a.retryAfter); ra != "" {
			fmt.Fprintf(&b, " (Retry-After: %s)", trim(ra, 40))
		}
	}
	if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || hasCode(g, "BAD_API_KEY") {
		fmt.Fprintf(&b, "; check key %s of the Secret %q", KeyPersonalAPIKey, profile)
	}
	return b.String()
}

// messages joins New Relic's error messages, with their class, trimmed.
func messages(errs []graphQLError) string {
	var parts []string
	for i, e := range errs {
		if i == maxMessages {
			parts = append(parts, fmt.Sprintf("and %d more", len(errs)-maxMessages))
			break
		}
		msg := trim(strings.Join(strings.Fields(e.Message), " "), maxMessageRunes)
		if class := e.Extensions.ErrorClass; class != "" {
			msg = fmt.Sprintf("%s (%s)", msg, class)
		}
		parts = append(parts, msg)
	}
	return strings.Join(parts, "; ")
}

func hasClass(g graphQLAnswer, class string) bool {
	for _, e := range g.Errors {
		if e.Extensions.ErrorClass == class {
			return true
		}
	}
	return false
}

func hasCode(g graphQLAnswer, code string) bool {
	for _, e := range g.Errors {
		if e.Extensions.ErrorCode == code || e.Extensions.Code == code {
			return true
		}
	}
	return false
}

func trim(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
