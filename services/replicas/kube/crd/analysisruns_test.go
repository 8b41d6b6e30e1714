package crd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

func TestRunLabels(t *testing.T) {
	cases := []struct {
		name, run         string
		labels            map[string]string
		revision, purpose string
		ok                bool
	}{
		{"background", "my-web-abc12-3", map[string]string{"rollouts-pod-template-hash": "abc12", "rollout-type": "Background"}, "3", "background", true},
		{"step", "my-web-abc12-3-4", map[string]string{"rollouts-pod-template-hash": "abc12", "rollout-type": "Step", "step-index": "4"}, "3", "step", true},
		{"step after a retry", "my-web-abc12-3-4.2", map[string]string{"rollouts-pod-template-hash": "abc12", "rollout-type": "Step", "step-index": "4"}, "3", "step", true},
		{"pre-promotion", "my-web-abc12-3-pre", map[string]string{"rollouts-pod-template-hash": "abc12", "rollout-type": "PrePromotion"}, "3", "prePromotion", true},
		{"post-promotion", "my-web-abc12-3-post.1", map[string]string{"rollouts-pod-template-hash": "abc12", "rollout-type": "PostPromotion"}, "3", "postPromotion", true},
		{"another rollout", "other-abc12-3", nil, "", "", false},
		{"no revision", "my-web-abc12-x", nil, "", "", false},
		{"unknown infix", "my-web-abc12-3-mid", nil, "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			labels, rev, purpose, ok := crd.RunLabels("my-web", c.run)
			if ok != c.ok || rev != c.revision || purpose != c.purpose || !reflect.DeepEqual(labels, c.labels) {
				t.Errorf("RunLabels(%q) = %v %q %q %v, want %v %q %q %v", c.run, labels, rev, purpose, ok, c.labels, c.revision, c.purpose, c.ok)
			}
		})
	}
}

// measuredRun is a run of one metric ("errors", count 3) and one dry-run
// metric, with measurements recorded.
func measuredRun(t *testing.T, name string, phases ...spec.AnalysisPhase) analysis.Run {
	t.Helper()
	secret := "token"
	v := "abc12"
	rs := spec.AnalysisRunSpec{
		Args: []spec.Argument{
			{Name: "hash", Value: &v},
			{Name: "token", ValueFrom: &spec.ValueFrom{SecretKeyRef: &spec.SecretKeyRef{Name: "creds", Key: secret}}},
		},
		Metrics: []spec.Metric{
			metric(t, `{"name":"errors","interval":"1s","count":3,"successCondition":"result < 1","provider":{"web":{"url":"http://m/{{args.hash}}","headers":[{"key":"Authorization","value":"{{args.token}}"}],"jsonPath":"{$.n}"}}}`),
			metric(t, `{"name":"latency","interval":"1s","count":3,"successCondition":"result < 1","provider":{"web":{"url":"http://m/l","jsonPath":"{$.n}"}}}`),
		},
		DryRun: []spec.DryRun{{MetricName: "latency"}},
	}
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	run, err := analysis.New(name, rs, start)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range phases {
		at := start.Add(time.Duration(i+1) * time.Second)
		value := "0"
		if p == spec.AnalysisPhaseFailed {
			value = "5"
		}
		run = analysis.Record(run, "errors", metrics.Measurement{Phase: p, Value: value, StartedAt: at, FinishedAt: at.Add(100 * time.Millisecond), Query: "GET http://m/abc12", Provider: "web"})
	}
	return run
}

func metric(t *testing.T, js string) spec.Metric {
	t.Helper()
	var m spec.Metric
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func ownedRollout() *unstructured.Unstructured {
	ro := rollout(1)
	ro.SetName("my-web")
	unstructured.SetNestedField(ro.Object, map[string]any{"labels": map[string]any{"team": "a"}, "annotations": map[string]any{"note": "x"}}, "spec", "strategy", "canary", "analysis", "analysisRunMetadata")
	return ro
}

func TestAnalysisRunObject(t *testing.T) {
	ro := ownedRollout()
	run := measuredRun(t, "my-web-abc12-2", spec.AnalysisPhaseSuccessful, spec.AnalysisPhaseSuccessful)
	now := time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC)
	u, err := crd.AnalysisRunObject(ro, run, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetName() != "my-web-abc12-2" || u.GetNamespace() != "shop" {
		t.Errorf("name %s/%s", u.GetNamespace(), u.GetName())
	}
	wantLabels := map[string]string{"rollouts-pod-template-hash": "abc12", "rollout-type": "Background", "app": "web", "team": "a"}
	if !reflect.DeepEqual(u.GetLabels(), wantLabels) {
		t.Errorf("labels %v, want %v", u.GetLabels(), wantLabels)
	}
	if want := map[string]string{"rollout.argoproj.io/revision": "2", "note": "x"}; !reflect.DeepEqual(u.GetAnnotations(), want) {
		t.Errorf("annotations %v, want %v", u.GetAnnotations(), want)
	}
	c := metav1.GetControllerOf(u)
	if c == nil || c.UID != "u-1" || c.Kind != "Rollout" || c.Name != "my-web" || c.BlockOwnerDeletion == nil || !*c.BlockOwnerDeletion {
		t.Errorf("controller %+v", c)
	}
	args, _, _ := unstructured.NestedSlice(u.Object, "spec", "args")
	wantArgs := []any{
		map[string]any{"name": "hash", "value": "abc12"},
		map[string]any{"name": "token", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "creds", "key": "token"}}},
	}
	if !reflect.DeepEqual(args, wantArgs) {
		t.Errorf("spec.args %v, want %v (the secret as its reference)", args, wantArgs)
	}
	metricsOut, _, _ := unstructured.NestedSlice(u.Object, "spec", "metrics")
	if len(metricsOut) != 2 || metricsOut[0].(map[string]any)["name"] != "errors" {
		t.Errorf("spec.metrics %v", metricsOut)
	}
	if dry, _, _ := unstructured.NestedSlice(u.Object, "spec", "dryRun"); !reflect.DeepEqual(dry, []any{map[string]any{"metricName": "latency"}}) {
		t.Errorf("spec.dryRun %v", dry)
	}
	if _, ok := u.Object["spec"].(map[string]any)["terminate"]; ok {
		t.Error("spec.terminate set on a live run")
	}

	st := u.Object["status"].(map[string]any)
	want := map[string]any{
		"phase":     "Running",
		"startedAt": "2026-12-07T10:00:00Z",
		"metricResults": []any{map[string]any{
			"name": "errors", "phase": "Running", "count": int64(2), "successful": int64(2), "consecutiveSuccess": int64(2),
			"measurements": []any{
				map[string]any{"phase": "Successful", "value": "0", "startedAt": "2026-12-07T10:00:01Z", "finishedAt": "2026-12-07T10:00:01Z"},
				map[string]any{"phase": "Successful", "value": "0", "startedAt": "2026-12-07T10:00:02Z", "finishedAt": "2026-12-07T10:00:02Z"},
			},
		}},
		"runSummary":    map[string]any{"count": int64(1)},
		"dryRunSummary": map[string]any{"count": int64(1)},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("status\n got %v\nwant %v", st, want)
	}

	t.Run("a failed run", func(t *testing.T) {
		run := measuredRun(t, "my-web-abc12-2-1", spec.AnalysisPhaseFailed)
		u, err := crd.AnalysisRunObject(ro, run, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		st := u.Object["status"].(map[string]any)
		if st["phase"] != "Failed" || st["completedAt"] != "2026-12-07T11:00:00Z" {
			t.Errorf("phase %v completedAt %v", st["phase"], st["completedAt"])
		}
		if want := map[string]any{"count": int64(1), "failed": int64(1)}; !reflect.DeepEqual(st["runSummary"], want) {
			t.Errorf("runSummary %v, want %v", st["runSummary"], want)
		}
		if u.GetLabels()["step-index"] != "1" {
			t.Errorf("labels %v", u.GetLabels())
		}
		// Written again later: completedAt stays.
		again, err := crd.AnalysisRunObject(ro, run, u, now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if got := again.Object["status"].(map[string]any)["completedAt"]; got != "2026-12-07T11:00:00Z" {
			t.Errorf("completedAt %v after a rewrite", got)
		}
	})

	t.Run("terminated by hand", func(t *testing.T) {
		cur := u.DeepCopy()
		unstructured.SetNestedField(cur.Object, true, "spec", "terminate")
		next, err := crd.AnalysisRunObject(ro, run, cur, now)
		if err != nil {
			t.Fatal(err)
		}
		if term, _, _ := unstructured.NestedBool(next.Object, "spec", "terminate"); !term {
			t.Error("the written terminate was dropped before the analyzer took it")
		}
		done := analysis.Terminate(run)
		next, err = crd.AnalysisRunObject(ro, done, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		st := next.Object["status"].(map[string]any)
		if term, _, _ := unstructured.NestedBool(next.Object, "spec", "terminate"); !term || st["phase"] != "Successful" || st["message"] != "Run Terminated" {
			t.Errorf("terminate %v phase %v message %v, want true, Successful, Run Terminated", term, st["phase"], st["message"])
		}
	})

	t.Run("a name of another rollout", func(t *testing.T) {
		if _, err := crd.AnalysisRunObject(ro, measuredRun(t, "other-abc12-2"), nil, now); err == nil {
			t.Error("no error")
		}
	})

	// A standalone Experiment's run (<experiment>-<analysis>) is owned by
	// the Experiment, with its analysisRunMetadata, as Argo's experiment
	// controller creates it: no rollout labels, no revision.
	t.Run("an Experiment's run", func(t *testing.T) {
		ex := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment",
			"metadata": map[string]any{"namespace": "shop", "name": "exp", "uid": "e-1"},
			"spec":     map[string]any{"analysisRunMetadata": map[string]any{"labels": map[string]any{"team": "b"}, "annotations": map[string]any{"note": "y"}}},
		}}
		u, err := crd.AnalysisRunObject(ex, measuredRun(t, "exp-errors", spec.AnalysisPhaseSuccessful), nil, now)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(u.GetLabels(), map[string]string{"team": "b"}) || !reflect.DeepEqual(u.GetAnnotations(), map[string]string{"note": "y"}) {
			t.Errorf("labels %v annotations %v, want the analysisRunMetadata's", u.GetLabels(), u.GetAnnotations())
		}
		if c := metav1.GetControllerOf(u); c == nil || c.Kind != "Experiment" || c.Name != "exp" || c.UID != "e-1" {
			t.Errorf("controller %+v, want the Experiment", c)
		}
		if _, err := crd.AnalysisRunObject(ex, measuredRun(t, "other-errors"), nil, now); err == nil {
			t.Error("another experiment's run: no error")
		}
	})
}

func TestRunsToPrune(t *testing.T) {
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	ar := func(name, hash, phase string, minute int) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": phase}}}
		u.SetName(name)
		if hash != "" {
			u.SetLabels(map[string]string{"rollouts-pod-template-hash": hash})
		}
		u.SetCreationTimestamp(metav1.NewTime(base.Add(time.Duration(minute) * time.Minute)))
		return u
	}
	runs := []*unstructured.Unstructured{
		ar("s1", "a", "Successful", 1), ar("s2", "a", "Successful", 2), ar("s3", "b", "Successful", 3),
		ar("f1", "a", "Failed", 4), ar("e1", "b", "Error", 5), ar("i1", "b", "Inconclusive", 6),
		ar("r1", "b", "Running", 0), ar("nolabel", "", "Successful", 7), ar("gone", "c", "Successful", 8),
		ar("deleting", "d", "Successful", 9),
	}
	names := func(us []*unstructured.Unstructured) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.GetName())
		}
		return out
	}
	hashes := map[string]bool{"a": true, "b": true, "d": false}
	cases := []struct {
		name       string
		hashes     map[string]bool
		succ, fail int64
		want       []string
	}{
		{"Argo's defaults keep them all", hashes, 5, 5, []string{"deleting", "gone", "nolabel"}},
		{"one of each", hashes, 1, 1, []string{"deleting", "gone", "nolabel", "e1", "f1", "s2", "s1"}},
		{"none kept", hashes, 0, 0, []string{"deleting", "gone", "nolabel", "i1", "e1", "f1", "s3", "s2", "s1"}},
		{"without ReplicaSets", nil, 1, 1, []string{"gone", "nolabel", "e1", "f1", "s3", "s2", "s1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := names(crd.RunsToPrune(runs, c.hashes, c.succ, c.fail))
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("pruned %v, want %v", got, c.want)
			}
		})
	}
}

// fakeRuns is a RunSource over a map.
type fakeRuns map[string]analysis.Run

func (f fakeRuns) Get(_ context.Context, r events.Ref, name string) (analysis.Run, error) {
	run, ok := f[name]
	if !ok {
		return analysis.Run{}, fmt.Errorf("%w: %s %s", analyzer.ErrNoRun, r, name)
	}
	return run, nil
}

// TestAnalysisRunsMirrorOnlyTheRolloutsOwnRuns publishes measured events
// for a rollout from CI (no cluster object), for a run whose name an
// object the Rollout does not own already has, and for a run of a cluster
// Rollout: only the last is written, and nothing is retried.
func TestAnalysisRunsMirrorOnlyTheRolloutsOwnRuns(t *testing.T) {
	ro := ownedRollout()
	foreign := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
		"metadata": map[string]any{"namespace": "shop", "name": "my-web-abc12-2-1", "ownerReferences": []any{map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "my-web", "uid": "an-older-one", "controller": true,
		}}},
		"spec": map[string]any{"metrics": []any{}},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		crd.RolloutResource:     "RolloutList",
		crd.AnalysisRunResource: "AnalysisRunList",
	}, ro, foreign)
	runs := fakeRuns{
		"ci-abc12-1":       measuredRun(t, "ci-abc12-1", spec.AnalysisPhaseSuccessful),
		"my-web-abc12-2-1": measuredRun(t, "my-web-abc12-2-1", spec.AnalysisPhaseSuccessful),
		"my-web-abc12-2":   measuredRun(t, "my-web-abc12-2", spec.AnalysisPhaseSuccessful),
	}
	bus := startMirror(t, dyn, runs)

	measured(t, bus, "ci", "ci-abc12-1")
	measured(t, bus, "my-web", "my-web-abc12-2-1")
	measured(t, bus, "my-web", "my-web-abc12-2")

	ars := dyn.Resource(crd.AnalysisRunResource).Namespace("shop")
	poll.Until(t, "the cluster Rollout's run written", func() error {
		u, err := ars.Get(context.Background(), "my-web-abc12-2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != "Running" {
			return fmt.Errorf("phase %q", phase)
		}
		return nil
	})
	drained(t, bus)
	if _, err := ars.Get(context.Background(), "ci-abc12-1", metav1.GetOptions{}); err == nil {
		t.Error("an AnalysisRun was written for a rollout that is not a cluster object")
	}
	got, err := ars.Get(context.Background(), "my-web-abc12-2-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Object["status"]; ok || !reflect.DeepEqual(got.Object["spec"], foreign.Object["spec"]) {
		t.Errorf("an AnalysisRun the Rollout does not own was written: %v", got.Object)
	}
}

// startMirror runs AnalysisRuns on dyn and a fresh bus, reading runs (nil:
// the analyzer's bucket), and returns the bus.
func startMirror(t *testing.T, dyn *dynamicfake.FakeDynamicClient, runs crd.RunSource) *events.Client {
	t.Helper()
	url := eventstest.StartServer(t).ClientURL()
	bus := eventstest.Connect(t, url)
	ar, err := crd.NewAnalysisRuns(crd.AnalysisRunsConfig{Dynamic: dyn, Bus: bus, Runs: runs, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ar.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	poll.True(t, "AnalysisRuns ready", ar.Ready)
	return bus
}

// measured publishes an analysis.measured event of run for rollout in
// namespace shop.
func measured(t *testing.T, bus *events.Client, rollout, run string) {
	t.Helper()
	ref := events.Ref{Namespace: "shop", Name: rollout}
	ev, err := events.New("/test", events.TypeAnalysisMeasured, ref.String(), events.StatusData{
		Status:   events.Snapshot{Namespace: "shop", Name: rollout, Phase: events.PhaseProgressing},
		Analysis: &events.AnalysisSummary{Name: run, Phase: "Running"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(context.Background(), events.StatusSubject(ref), ev); err != nil {
		t.Fatal(err)
	}
}

// drained waits until the mirror acknowledged every status event, none
// of them after a retry.
func drained(t *testing.T, bus *events.Client) {
	t.Helper()
	poll.Until(t, "every event acknowledged", func() error {
		cons, err := bus.JetStream().Consumer(context.Background(), events.StreamStatus, crd.AnalysisRunsDurable)
		if err != nil {
			return err
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0 {
			return fmt.Errorf("%d pending, %d unacknowledged, %d redelivered", info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}

// TestAnalysisRunsWithoutAnAnalyzer: with no analyzer ever run on the bus
// (no runs bucket), a run named by a status event is not written and the
// event is not retried.
func TestAnalysisRunsWithoutAnAnalyzer(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		crd.RolloutResource:     "RolloutList",
		crd.AnalysisRunResource: "AnalysisRunList",
	}, ownedRollout())
	bus := startMirror(t, dyn, nil)
	measured(t, bus, "my-web", "my-web-abc12-2")
	drained(t, bus)
	if _, err := dyn.Resource(crd.AnalysisRunResource).Namespace("shop").Get(context.Background(), "my-web-abc12-2", metav1.GetOptions{}); err == nil {
		t.Error("an AnalysisRun was written without a run to mirror")
	}
}
