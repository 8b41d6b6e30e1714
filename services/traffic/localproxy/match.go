package localproxy

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/pkg/spec"
)

// stringMatcher reports whether a string matches a spec.StringMatch.
type stringMatcher func(string) bool

// compileStringMatch turns m into a matcher. Exact and prefix compare
// bytes; a regex must match the whole string (RE2 syntax, anchored at both
// ends as Istio and Envoy do), so "v1" does not match "v10".
func compileStringMatch(m spec.StringMatch) (stringMatcher, error) {
	set := 0
	for _, s := range []string{m.Exact, m.Prefix, m.Regex} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("must set exactly one of exact, prefix and regex")
	}
	switch {
	case m.Exact != "":
		want := m.Exact
		return func(s string) bool { return s == want }, nil
	case m.Prefix != "":
		want := m.Prefix
		return func(s string) bool { return strings.HasPrefix(s, want) }, nil
	}
	re, err := regexp.Compile(`^(?:` + m.Regex + `)$`)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %v", m.Regex, err)
	}
	return re.MatchString, nil
}

// headerCond matches one request header: it holds when any value of the
// header matches. An absent header matches nothing, not even regex ".*".
type headerCond struct {
	name  string
	match stringMatcher
}

func (c headerCond) matches(r *http.Request) bool {
	for _, v := range headerValues(r, c.name) {
		if c.match(v) {
			return true
		}
	}
	return false
}

// headerValues returns the values of the named header. Host (or HTTP/2's
// :authority) is read from r.Host, where net/http keeps it.
func headerValues(r *http.Request, name string) []string {
	if strings.EqualFold(name, "host") || name == ":authority" {
		if r.Host == "" {
			return nil
		}
		return []string{r.Host}
	}
	return r.Header.Values(name)
}

// headerRoute is a compiled spec.SetHeaderRoute: a request matches when it
// matches every condition. A route without conditions matches nothing (a
// setHeaderRoute step without match removes the route).
type headerRoute struct {
	name  string
	conds []headerCond
}

func (h headerRoute) matches(r *http.Request) bool {
	if len(h.conds) == 0 {
		return false
	}
	for _, c := range h.conds {
		if !c.matches(r) {
			return false
		}
	}
	return true
}

func compileHeaderRoute(i int, h spec.SetHeaderRoute) (headerRoute, error) {
	out := headerRoute{name: h.Name}
	for j, m := range h.Match {
		where := fmt.Sprintf("headerRoutes[%d] (%s) match[%d]", i, h.Name, j)
		if m.HeaderName == "" {
			return out, fmt.Errorf("%s: headerName is required", where)
		}
		if m.HeaderValue == nil {
			return out, fmt.Errorf("%s: headerValue is required", where)
		}
		fn, err := compileStringMatch(*m.HeaderValue)
		if err != nil {
			return out, fmt.Errorf("%s headerValue: %v", where, err)
		}
		out.conds = append(out.conds, headerCond{name: m.HeaderName, match: fn})
	}
	return out, nil
}

// requestMatch is a compiled spec.RouteMatch: every condition set must
// hold. One with no condition matches nothing.
type requestMatch struct {
	method, path stringMatcher
	headers      []headerCond
}

func (m requestMatch) matches(r *http.Request) bool {
	if m.method == nil && m.path == nil && len(m.headers) == 0 {
		return false
	}
	if m.method != nil && !m.method(r.Method) {
		return false
	}
	if m.path != nil && !m.path(r.URL.Path) {
		return false
	}
	for _, h := range m.headers {
		if !h.matches(r) {
			return false
		}
	}
	return true
}

// mirrorRoute is a compiled spec.SetMirrorRoute: a request matches when any
// of its matches does; percent of the matching requests are mirrored.
type mirrorRoute struct {
	name    string
	matches []requestMatch
	percent int
}

func (m mirrorRoute) match(r *http.Request) bool {
	for _, rm := range m.matches {
		if rm.matches(r) {
			return true
		}
	}
	return false
}

func compileMirrorRoute(i int, m spec.SetMirrorRoute) (mirrorRoute, error) {
	out := mirrorRoute{name: m.Name, percent: 100}
	if m.Percentage != nil {
		out.percent = int(min(max(*m.Percentage, 0), 100))
	}
	for j, rm := range m.Match {
		where := fmt.Sprintf("mirrorRoutes[%d] (%s) match[%d]", i, m.Name, j)
		var c requestMatch
		var err error
		if rm.Method != nil {
			if c.method, err = compileStringMatch(*rm.Method); err != nil {
				return out, fmt.Errorf("%s method: %v", where, err)
			}
		}
		if rm.Path != nil {
			if c.path, err = compileStringMatch(*rm.Path); err != nil {
				return out, fmt.Errorf("%s path: %v", where, err)
			}
		}
		for name, sm := range rm.Headers {
			fn, err := compileStringMatch(sm)
			if err != nil {
				return out, fmt.Errorf("%s headers[%s]: %v", where, name, err)
			}
			c.headers = append(c.headers, headerCond{name: name, match: fn})
		}
		out.matches = append(out.matches, c)
	}
	return out, nil
}
