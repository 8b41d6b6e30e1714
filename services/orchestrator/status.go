package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// ErrNoRollout means a rollout was never requested, or was deleted.
var ErrNoRollout = errors.New("no such rollout")

// Reader reads rollouts' status as the orchestrator holds it now. A status
// event's snapshot is the status when the event was published; what
// changed since without an event (replica counts a finished scale-down
// reported) shows only here.
//
// Any replica of the bucket answers a Reader's read, and one that lags
// behind answers with an older record: a moment-old view, which the views
// (the gateway, `sluice get`, chat status) show until they read again. A
// reader that writes what it reads where it stays opens a LeaderReader.
type Reader struct {
	st store
	// leader: every read is the leader's record (NewLeaderReader).
	leader bool
}

// NewReader opens the rollouts bucket through client. It fails, wrapping
// jetstream.ErrBucketNotFound, when no orchestrator ever ran on the bus.
func NewReader(ctx context.Context, client *events.Client) (*Reader, error) {
	kv, err := client.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketRollouts, err)
	}
	// Reads are any replica's, but a record that names a part no longer
	// there is out of date, and one part a replica behind does not hold
	// yet is there on the leader: both are read again from the leader.
	return &Reader{st: newStore(kv, 0, client.Conn())}, nil
}

// NewLeaderReader is NewReader whose every read is the record of the
// leader of the bucket's stream (records.Store.Latest), for a reader that
// writes what it reads where it stays: the status writer of Rollout
// objects would otherwise write an older status, kept until the
// rollout's next event, which a finished rollout never has.
func NewLeaderReader(ctx context.Context, client *events.Client) (*Reader, error) {
	kv, err := client.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketRollouts, err)
	}
	return &Reader{st: newStore(kv, 0, client.Conn()), leader: true}, nil
}

// load returns r's record, as a replica of the bucket or its leader has it.
func (rd *Reader) load(ctx context.Context, r events.Ref) (record, uint64, error) {
	if rd.leader {
		return rd.st.latest(ctx, r)
	}
	return rd.st.load(ctx, r)
}

// Get returns r's status, as of the orchestrator's last decision on it.
func (rd *Reader) Get(ctx context.Context, r events.Ref) (events.Snapshot, error) {
	rec, rev, err := rd.load(ctx, r)
	if err != nil {
		return events.Snapshot{}, err
	}
	if rev == 0 || rec.State.Revision == 0 {
		return events.Snapshot{}, fmt.Errorf("%w: %s", ErrNoRollout, r)
	}
	return rec.State.Snapshot(rec.State.EvaluatedAt), nil
}

// List returns the status of every rollout in namespace ("" for all), by
// namespace and name.
func (rd *Reader) List(ctx context.Context, namespace string) ([]events.Snapshot, error) {
	keys, err := rd.st.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var out []events.Snapshot
	for _, k := range keys {
		r, err := records.RefOf(k)
		if err != nil || namespace != "" && r.Namespace != namespace {
			continue
		}
		snap, err := rd.Get(ctx, r)
		switch {
		case errors.Is(err, ErrNoRollout):
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, snap)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Detail is what the orchestrator holds of a rollout beyond its snapshot.
type Detail struct {
	Status events.Snapshot
	// Steps is the plan: canary steps, or blue/green stages.
	Steps []machine.PlanStep
	// Revisions are the revisions kept, newest first.
	Revisions []machine.RevisionDetail
	// Runs are the analysis runs of the rollout's revisions, oldest first.
	Runs []machine.RunRecord
}

// Detail returns r's status with its plan, revisions and analysis runs. It
// returns an error wrapping ErrNoRollout when there is no such rollout.
func (rd *Reader) Detail(ctx context.Context, r events.Ref) (Detail, error) {
	rec, rev, err := rd.load(ctx, r)
	if err != nil {
		return Detail{}, err
	}
	if rev == 0 || rec.State.Revision == 0 {
		return Detail{}, fmt.Errorf("%w: %s", ErrNoRollout, r)
	}
	s := rec.State
	return Detail{Status: s.Snapshot(s.EvaluatedAt), Steps: s.Steps(), Revisions: s.Revisions(), Runs: s.Runs}, nil
}

// Manifest returns r's latest accepted Rollout as the orchestrator keeps
// it (defaulted, its metadata with annotations and labels), with the pod
// template of the revision whose pod-template hash is podHash, or of the
// current revision when podHash is "" or no longer kept. Readers that
// render a rollout as Argo's object (notifications) use it. It returns an
// error wrapping ErrNoRollout when there is no such rollout.
func (rd *Reader) Manifest(ctx context.Context, r events.Ref, podHash string) (*spec.Rollout, error) {
	rec, rev, err := rd.load(ctx, r)
	if err != nil {
		return nil, err
	}
	s := rec.State
	if rev == 0 || s.Revision == 0 || s.Spec == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoRollout, r)
	}
	m := *s.Spec
	m.ObjectMeta = *s.Spec.ObjectMeta.DeepCopy()
	if podHash == "" {
		podHash = s.PodHash
	}
	for _, want := range []string{podHash, s.PodHash} {
		for i := len(s.History) - 1; i >= 0; i-- {
			if s.History[i].Hash == want {
				m.Spec.Template = *s.History[i].Template.DeepCopy()
				return &m, nil
			}
		}
	}
	return &m, nil
}

// ValidateRequest checks the data of a rollout.requested event for r
// exactly as the orchestrator does when it receives one: it returns what
// the request sets that Sluice does not know (accepted with a warning) and
// every problem, each with its field path (rejected).
func ValidateRequest(r events.Ref, data []byte) (warnings, problems []string) {
	_, warnings, problems = parseRollout(r, data)
	return warnings, problems
}

// ValidateExperimentRequest is ValidateRequest for the data of an
// experiment.requested event.
func ValidateExperimentRequest(r events.Ref, data []byte) (warnings, problems []string) {
	_, warnings, problems = parseExperiment(r, data)
	return warnings, problems
}
