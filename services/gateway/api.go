package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// maxBody bounds a request body: a Rollout manifest is a few KiB.
const maxBody = 1 << 20

// writeJSON answers with v as JSON and status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is every error's body: a message a user can act on.
type apiError struct {
	Error string `json:"error"`
	// Errors lists every problem with its field path (an invalid Rollout).
	Errors []string `json:"errors,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// caller returns the request's principal, or answers 401 and returns
// false.
func caller(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	p, ok := auth.PrincipalFrom(r.Context())
	if !ok {
		writeError(w, http.StatusUnauthorized, "sign in (GET /auth/login) or send Authorization: Bearer <token>")
	}
	return p, ok
}

// pathRef returns the rollout or experiment the path names, or answers
// 400 and returns false.
func pathRef(w http.ResponseWriter, r *http.Request) (events.Ref, bool) {
	ref := events.Ref{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if err := ref.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return ref, false
	}
	return ref, true
}

// mayRead answers 403 and returns false unless p may read namespace ns.
func (s *Service) mayRead(w http.ResponseWriter, p auth.Principal, ns string) bool {
	if s.auth.Allow(p, ns, auth.RoleViewer) {
		return true
	}
	writeError(w, http.StatusForbidden, fmt.Sprintf("%s may not read namespace %s (needs the viewer role)", p.Actor, ns))
	return false
}

// readJSON decodes the request's body, which may be empty, into v, strictly:
// an unknown field is an error, as is anything after the value.
func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read the body: %w", err)
	}
	if len(body) > maxBody {
		return errors.New("the body is larger than 1 MiB")
	}
	if len(body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the body is not valid JSON for this request: %w", err)
	}
	if dec.More() {
		return errors.New("the body holds more than one JSON value")
	}
	return nil
}
