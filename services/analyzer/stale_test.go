package analyzer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records/recordstest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
)

// TestRunsAreDecidedOnTheLeadersRecords starts runs and processes their
// records on buckets one of whose replicas fell behind before the
// template was applied (recordstest): what it answers is no template,
// and no run record.
//   - The template must be found, and each run start: on "no template"
//     its task failed (and came back, up to its attempts).
//   - Processing a new run's record, as the bucket's watch hands it over
//     once when its first measurement is due, must take that measurement:
//     on "no record" there was nothing to do, and the run waited for a
//     change of its record that never came. Its measured report must be
//     published: on "no record" the outbox was left for a change of the
//     record too.
//   - Terminating a run whose tombstone (a terminate that came before
//     its task) the replica behind holds, while a later task has started
//     it again, must terminate it: on the tombstone it "had already
//     finished", and went on measuring.
//
// Each is made recordstest.Tries times; before the analyzer read the
// leader's records for these, about one in three went wrong.
func TestRunsAreDecidedOnTheLeadersRecords(t *testing.T) {
	c := recordstest.Start(t)
	runsKV := c.Bucket(t, jetstream.KeyValueConfig{Bucket: BucketRuns})
	templatesKV := c.Bucket(t, jetstream.KeyValueConfig{Bucket: BucketTemplates})
	c.Stream(t, jetstream.StreamConfig{Name: events.StreamResults, Subjects: []string{events.ResultRoot + ".>"}})
	client := eventstest.Connect(t, c.URL)
	p := startProm(t, nil)
	reg, err := DefaultProviders(ProviderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The service's stores, as it opens them when it runs, and its task
	// executors and scheduler's work called here one at a time.
	s, err := New(client, Config{Logger: eventstest.Quiet(), Providers: reg, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	s.runs = newRunStore(runsKV, s.cfg.LeaseMargin, s.cfg.Retention, client.Conn())
	s.templates = newTemplateStore(templatesKV, client.Conn())
	r := events.Ref{Namespace: "prod", Name: "web"}
	ctx := context.Background()
	for i := range recordstest.Tries {
		if _, err := s.terminateRun(ctx, terminateTask(r, fmt.Sprintf("restarted-%d", i+1), 1)); err != nil {
			t.Fatal(err)
		}
	}
	c.FallBehind(t, runsKV, templatesKV)

	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 1h\n    count: 2\n    successCondition: result[0] < 0.05"))
	if _, err := s.storeTemplate(ctx, storedTemplate{Kind: tmpl.Kind, Namespace: "prod", Name: tmpl.Name, Spec: tmpl.Spec, Sequence: 1, AppliedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, rev, err := s.templates.Latest(ctx, templateKey("prod", tmpl.Name))
	if err != nil {
		t.Fatal(err)
	}
	c.Behind(t, templatesKV, templateKey("prod", tmpl.Name), rev)

	for i := range recordstest.Tries {
		if _, err := lookupTemplate(ctx, s.templates, "prod", spec.AnalysisTemplateRef{TemplateName: tmpl.Name}); err != nil {
			t.Fatalf("try %d: %v", i+1, err)
		}
	}
	for i := range recordstest.Tries {
		name := fmt.Sprintf("run-%d", i+1)
		fin, err := s.startRun(ctx, runTask(r, name, int64(i+1), "good", []spec.AnalysisTemplate{tmpl}))
		if err != nil || fin.Outcome != "" {
			t.Fatalf("try %d: the run did not start: %+v, %v", i+1, fin, err)
		}
		key, err := runKey(r, name)
		if err != nil {
			t.Fatal(err)
		}
		s.process(ctx, key)
		rec, _, err := s.runs.Latest(ctx, key)
		if err != nil || rec.Run == nil {
			t.Fatalf("try %d: the run's record: %+v, %v", i+1, rec, err)
		}
		if res, _ := rec.Run.Result(tmpl.Name); total(res) != 1 {
			t.Fatalf("try %d: %d measurements taken by processing a new run's record, want 1", i+1, total(res))
		}
		if len(rec.Outbox) != 0 {
			t.Fatalf("try %d: %d reports left in the outbox after processing, want them published", i+1, len(rec.Outbox))
		}
	}

	for i := range recordstest.Tries {
		name := fmt.Sprintf("restarted-%d", i+1)
		if fin, err := s.startRun(ctx, runTask(r, name, 2, "good", []spec.AnalysisTemplate{tmpl})); err != nil || fin.Outcome != "" {
			t.Fatalf("try %d: the run did not start after its tombstone: %+v, %v", i+1, fin, err)
		}
		if _, err := s.terminateRun(ctx, terminateTask(r, name, 3)); err != nil {
			t.Fatal(err)
		}
		key, err := runKey(r, name)
		if err != nil {
			t.Fatal(err)
		}
		rec, _, err := s.runs.Latest(ctx, key)
		if err != nil || rec.Run == nil || !rec.Run.Completed() {
			t.Fatalf("try %d: a terminated run: %+v, %v; want it completed", i+1, rec.Run, err)
		}
	}
}

// TestLeaderRunReaderReadsTheLeadersRecord reads a run whose record has a
// replica that fell behind while the run was running (recordstest), and
// which has succeeded since. A RunReader's view is moment-old now and
// then; a LeaderRunReader, which the mirror of runs into AnalysisRun
// objects reads through (an older run written there stays until the
// run's next event, and a finished run has none), must read the verdict
// every time.
func TestLeaderRunReaderReadsTheLeadersRecord(t *testing.T) {
	c := recordstest.Start(t)
	kv := c.Bucket(t, jetstream.KeyValueConfig{Bucket: BucketRuns})
	st := newRunStore(kv, time.Second, time.Hour, nil)
	ctx := context.Background()
	r := events.Ref{Namespace: "prod", Name: "web"}
	key, err := runKey(r, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := st.Put(ctx, key, runRecord{Run: &analysis.Run{Name: "run-1", Phase: spec.AnalysisPhaseRunning}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.FallBehind(t, kv)
	if rev, err = st.Put(ctx, key, runRecord{Run: &analysis.Run{Name: "run-1", Phase: spec.AnalysisPhaseSuccessful}}, rev); err != nil {
		t.Fatal(err)
	}
	c.Behind(t, kv, key, rev)

	client := eventstest.Connect(t, c.URL)
	view, err := NewRunReader(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	leader, err := NewLeaderRunReader(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	older := 0
	for i := range recordstest.Tries {
		if run, err := view.Get(ctx, r, "run-1"); err != nil {
			t.Fatal(err)
		} else if run.Phase == spec.AnalysisPhaseRunning {
			older++
		}
		run, err := leader.Get(ctx, r, "run-1")
		if err != nil || run.Phase != spec.AnalysisPhaseSuccessful {
			t.Fatalf("try %d: the leader run reader read phase %q (%v), want Successful", i+1, run.Phase, err)
		}
	}
	t.Logf("the view read the older record %d times of %d; the leader run reader never did", older, recordstest.Tries)
}
