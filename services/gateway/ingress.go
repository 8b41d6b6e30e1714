package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Accepted answers an event the gateway published (202), or an update it
// waited for (?wait=completed: 200, 409, 504).
type Accepted struct {
	ID string `json:"id"`
	// Duplicate is set when the bus already held an event with this id:
	// it was not acted on again.
	Duplicate bool `json:"duplicate,omitempty"`
	// Outcome, with ?wait=completed: completed, failed, timeout, or
	// unanswered when the gateway stopped waiting first.
	Outcome string           `json:"outcome,omitempty"`
	Status  *events.Snapshot `json:"status,omitempty"`
	Error   string           `json:"error,omitempty"`
}

// ingress takes a command as a CloudEvent over HTTP (binary or structured
// mode) and publishes it on the bus as if a NATS client had, with the
// caller as its actor.
func (s *Service) ingress(w http.ResponseWriter, r *http.Request) {
	p, ok := caller(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	wait, timeout := q.Get("wait"), s.cfg.MaxWait
	if wait != "" && wait != "completed" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("wait=%s: the only wait is wait=completed", wait))
		return
	}
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout=%s is not a positive duration such as 10m", t))
			return
		}
		timeout = min(d, s.cfg.MaxWait)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	got, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	if err != nil {
		writeError(w, http.StatusBadRequest, "not a CloudEvent (binary mode: ce-* headers; structured mode: Content-Type application/cloudevents+json): "+err.Error())
		return
	}
	ev := *got
	if err := ev.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid CloudEvent: "+err.Error())
		return
	}
	if !slices.Contains(events.CommandTypes, ev.Type()) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("type %q is not a command Sluice takes: use one of %v", ev.Type(), events.CommandTypes))
		return
	}
	ref, err := events.ParseRef(ev.Subject())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "subject: " + err.Error() + ` (the subject is "<namespace>/<name>")`, Errors: []string{"subject"}})
		return
	}
	if wait != "" && ev.Type() != events.TypeRolloutRequested {
		writeError(w, http.StatusBadRequest, "wait=completed follows an update: only for "+events.TypeRolloutRequested)
		return
	}
	ev.SetExtension(events.ExtActor, p.Actor) // the caller, whatever the event said
	if !s.auth.Allow(p, ref.Namespace, needs(ev.Type(), ref)) {
		if slices.Contains(events.OperatorCommandTypes, ev.Type()) {
			s.forbid(r.Context(), w, p, ev, ref)
			return
		}
		writeError(w, http.StatusForbidden, s.forbidden(p, ev.Type(), ref))
		return
	}
	if isYAML(ev.DataContentType()) {
		if err := yamlToJSON(&ev); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Errors: []string{"data"}})
			return
		}
	}
	switch ev.Type() {
	case events.TypeRolloutRequested:
		if _, problems := orchestrator.ValidateRequest(ref, ev.Data()); len(problems) > 0 {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "the Rollout is invalid (sluice lint shows the same)", Errors: problems})
			return
		}
	case events.TypeExperimentRequested:
		if _, problems := orchestrator.ValidateExperimentRequest(ref, ev.Data()); len(problems) > 0 {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "the Experiment is invalid (sluice lint shows the same)", Errors: problems})
			return
		}
	case events.TypeAnalysisTemplateApply:
		// Checked as the analyzer will: it would dead-letter what fails.
		if _, problems := analyzer.CheckTemplate(s.providers, ref, ev.Data()); len(problems) > 0 {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "the template is invalid (sluice lint shows the same)", Errors: problems})
			return
		}
	}
	if wait == "" {
		res, err := s.client.Publish(r.Context(), events.CommandSubject(ref), ev)
		if err != nil {
			s.unavailable(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, Accepted{ID: ev.ID(), Duplicate: res.Duplicate})
		return
	}
	s.waitCompleted(r.Context(), w, ref, ev, timeout)
}

// waitCompleted publishes rollout request ev and answers once the update
// it starts completes (200), fails (409) or timeout passes (504).
func (s *Service) waitCompleted(ctx context.Context, w http.ResponseWriter, ref events.Ref, ev events.Event, timeout time.Duration) {
	f, err := follow.Status(ctx, s.client, ref)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	defer f.Stop()
	res, err := s.client.Publish(ctx, events.CommandSubject(ref), ev)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	out := Accepted{ID: ev.ID(), Duplicate: res.Duplicate}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := &follow.Update{Ref: ref, RequestID: ev.ID()}
	for !u.Done {
		d, err := f.Next(wctx)
		if err != nil {
			if ctx.Err() != nil {
				// The caller went, or the gateway is stopping: never let
				// that read as an empty 200.
				out.Outcome, out.Status = "unanswered", u.Last
				out.Error = fmt.Sprintf("%s published, but the gateway stopped waiting before the update finished: `sluice get %s` shows where it stands", ev.ID(), ref)
				writeJSON(w, http.StatusServiceUnavailable, out)
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				s.unavailable(w, err)
				return
			}
			out.Outcome, out.Status = "timeout", u.Last
			out.Error = fmt.Sprintf("%s published, but the update did not complete within %s", ev.ID(), timeout)
			if !u.Accepted {
				out.Error += ": it was not accepted (is the orchestrator running?)"
			}
			writeJSON(w, http.StatusGatewayTimeout, out)
			return
		}
		var sd events.StatusData
		if events.DecodeData(d.Event, &sd) != nil {
			continue
		}
		if u.Observe(d.Event, sd) == follow.Completed {
			st := sd.Status
			out.Status = &st
		}
	}
	if u.Failure != "" {
		out.Outcome, out.Status, out.Error = "failed", u.Last, u.Failure
		writeJSON(w, http.StatusConflict, out)
		return
	}
	out.Outcome = "completed"
	writeJSON(w, http.StatusOK, out)
}

// isYAML reports whether contentType is YAML's media type (RFC 9512) or
// one of the names it had before.
func isYAML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		return true
	}
	return false
}

// yamlToJSON turns a manifest sent as YAML (a CI job posting the file it
// has) into the JSON data the contract specifies, so the bus carries the
// same event whichever way the manifest came.
func yamlToJSON(ev *events.Event) error {
	manifests := []string{events.TypeRolloutRequested, events.TypeAnalysisTemplateApply, events.TypeExperimentRequested}
	if !slices.Contains(manifests, ev.Type()) {
		return fmt.Errorf("data: YAML is taken only for a manifest (%s); send %s as application/json", strings.Join(manifests, ", "), ev.Type())
	}
	j, err := yaml.YAMLToJSON(ev.Data())
	if err != nil {
		return fmt.Errorf("data: not one YAML document: %v", err)
	}
	return ev.SetData(cloudevents.ApplicationJSON, json.RawMessage(j))
}
