package gateway

import (
	"errors"
	"net/http"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// ExperimentDetail answers
// GET /api/v1/namespaces/{namespace}/experiments/{name}: a standalone
// Experiment's status (its phase, message, templates with their pods'
// counts, and its runs' phases) with its analysis runs' measurements.
type ExperimentDetail struct {
	Status       events.Snapshot `json:"status"`
	AnalysisRuns []AnalysisRun   `json:"analysisRuns"`
	LastEvent    *events.Event   `json:"lastEvent,omitempty"`
}

func (s *Service) getExperiment(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.readable(w, r)
	if !ok {
		return
	}
	noExperiment := func() {
		writeError(w, http.StatusNotFound, "no experiment "+ref.String()+" (GET /api/v1/experiments lists them)")
	}
	rd, ok := s.readerOr(w, r, noExperiment)
	if !ok {
		return
	}
	snap, err := rd.Get(r.Context(), ref)
	if errors.Is(err, orchestrator.ErrNoRollout) {
		noExperiment()
		return
	}
	if err != nil {
		s.unavailable(w, err)
		return
	}
	if snap.Kind != events.KindExperiment {
		otherKind(w, ref, snap.Kind)
		return
	}
	hist, err := s.client.History(r.Context(), ref)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	out := experimentDetailOf(snap, hist)
	s.addMetrics(r.Context(), ref, out.AnalysisRuns)
	writeJSON(w, http.StatusOK, out)
}

// experimentDetailOf assembles an experiment's detail from its snapshot
// and its history. The history may still hold an earlier experiment of
// the name (deleted, then requested again, its runs named alike): only
// what came after the last deletion counts.
func experimentDetailOf(snap events.Snapshot, hist []events.HistoryEntry) ExperimentDetail {
	out := ExperimentDetail{Status: snap}
	var runs runSet
	for _, e := range hist {
		if e.Err != nil || e.Stream != events.StreamStatus {
			continue
		}
		var sd events.StatusData
		if events.DecodeData(e.Event, &sd) != nil {
			continue
		}
		last := e.Event
		out.LastEvent = &last
		if e.Event.Type() == events.TypeExperimentDeleted {
			runs = runSet{}
		}
		runs.observe(e.Event, sd)
	}
	// The runs that have not reported yet, and each run's phase and
	// purpose as the experiment holds them now.
	for _, rs := range snap.Runs {
		run := runs.named(rs.Name)
		run.Purpose, run.Phase = rs.Purpose, rs.Phase
		if rs.Message != "" {
			run.Message = rs.Message
		}
	}
	out.AnalysisRuns = runs.list()
	return out
}
