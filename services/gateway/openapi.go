package gateway

import (
	_ "embed"
	"net/http"
)

// openAPI describes the API; TestOpenAPIMatchesRoutes keeps it in step
// with routes.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
