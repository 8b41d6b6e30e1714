package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// stream serves the status events of everything, a namespace or one
// rollout as server-sent events: each event's id is its status stream
// sequence, so a client that reconnects with Last-Event-ID gets exactly
// the events after the last one it saw.
func (s *Service) stream(w http.ResponseWriter, r *http.Request) {
	p, ok := caller(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	ns, name := q.Get("namespace"), q.Get("rollout")
	subject := events.StatusRoot + ".>"
	switch {
	case name != "" && ns == "":
		writeError(w, http.StatusBadRequest, "rollout="+name+" needs namespace= too")
		return
	case name != "":
		ref := events.Ref{Namespace: ns, Name: name}
		if err := ref.Validate(); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		subject = events.StatusSubject(ref)
	case ns != "":
		if err := events.ValidateName("namespace", ns); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		subject = events.StatusRoot + "." + ns + ".*"
	}
	if ns != "" && !s.mayRead(w, p, ns) {
		return
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = q.Get("lastEventId")
	}
	var f *follow.Follower
	var err error
	if last == "" {
		f, err = follow.FromNow(r.Context(), s.client, subject)
	} else {
		after, perr := strconv.ParseUint(last, 10, 64)
		if perr != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Last-Event-ID %q is not a status stream sequence (the id: of an event this stream sent)", last))
			return
		}
		f, err = follow.After(r.Context(), s.client, after, subject)
	}
	if err != nil {
		s.unavailable(w, err)
		return
	}
	defer f.Stop()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The first comment tells the client the stream is open: every event
	// stored from now on will come.
	if _, err := fmt.Fprintf(w, ": following %s\n\n", subject); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	ctx := r.Context()
	for {
		hctx, cancel := context.WithTimeout(ctx, s.cfg.Heartbeat)
		d, err := f.Next(hctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil {
				return
			}
		case err != nil:
			return
		default:
			ref, err := events.ParseRef(d.Event.Subject())
			if err != nil || !s.auth.Allow(p, ref.Namespace, auth.RoleViewer) {
				continue
			}
			data, err := json.Marshal(d.Event)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", d.Seq, d.Event.Type(), data); err != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}
