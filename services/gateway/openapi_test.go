package gateway

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// The OpenAPI document describes exactly the operations the API's mux
// serves: every path and method of the document is routed to its own
// pattern, and every route is in the document.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", doc.OpenAPI)
	}
	srv := eventstest.StartServer(t)
	s, err := New(eventstest.Connect(t, srv.ClientURL()), Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := s.apiMux()

	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			op := strings.ToUpper(method) + " " + path
			documented = append(documented, op)
			// A request to the path, with a value for each parameter.
			url := strings.NewReplacer("{namespace}", "shop", "{name}", "web", "{command}", "promote").Replace(path)
			if _, pattern := mux.Handler(httptest.NewRequest(strings.ToUpper(method), url, nil)); pattern != op {
				t.Errorf("the document's %s is served by %q", op, pattern)
			}
		}
	}
	var routed []string
	for _, rt := range s.routes() {
		routed = append(routed, rt.method+" "+rt.path)
	}
	slices.Sort(documented)
	slices.Sort(routed)
	if !slices.Equal(documented, routed) {
		t.Fatalf("the document describes\n  %s\nthe mux serves\n  %s", strings.Join(documented, "\n  "), strings.Join(routed, "\n  "))
	}
}
