package prometheus

import (
	"fmt"
	"regexp"
	"strings"
)

// successOnly matches a label matcher that keeps only the requests that did
// not fail: code!~"5..", status!="500", code=~"2..", response_code=~"[23]..".
var successOnly = regexp.MustCompile(`\b(code|status|status_code|response_code)\s*(!~|!=)\s*"5[^"]*"|\b(code|status|status_code|response_code)\s*=~?\s*"\[?2[^"]*"`)

// orVector matches a fallback for an empty result: "or vector(0)", "or
// on() vector(1)".
var orVector = regexp.MustCompile(`\bor\b[^/]*\bvector\s*\(`)

// Hints returns advice on query, a PromQL expression, for `sluice lint`:
// nothing wrong enough to refuse it, but a likely surprise. There is one,
// deliberately narrow: a ratio whose numerator keeps only successful
// requests (a matcher such as code!~"5.." or code=~"2..") and that has no
// "or vector(...)" fallback. When every request fails, the numerator
// selects no series and the query returns no data: the measurement is an
// Error, not a Failure, and the rollout aborts only once
// consecutiveErrorLimit errors in a row are reached, if the condition does
// not treat the empty result as a pass.
func Hints(query string) []string {
	num, ok := numerator(query)
	if !ok || orVector.MatchString(query) {
		return nil
	}
	m := successOnly.FindString(num)
	if m == "" {
		return nil
	}
	return []string{fmt.Sprintf("the numerator keeps only successful requests (%s): when every request fails it selects nothing and the query returns no data, "+
		"so the measurement is an Error, not a Failure (the rollout aborts only after consecutiveErrorLimit errors in a row); "+
		"append \"or vector(0)\" to the numerator, or measure the error rate (code=~\"5..\") instead", m)}
}

// numerator returns the part of query before its first division outside
// parentheses, braces, brackets and strings, and whether there is one.
func numerator(query string) (string, bool) {
	depth := 0
	var quote rune
	for i, r := range query {
		switch {
		case quote != 0:
			if r == quote && (i == 0 || query[i-1] != '\\') {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case strings.ContainsRune("({[", r):
			depth++
		case strings.ContainsRune(")}]", r):
			depth--
		case r == '/' && depth <= 0:
			return query[:i], true
		}
	}
	return "", false
}
