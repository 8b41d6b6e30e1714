package analyzer

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/promtest"
)

const (
	successful = spec.AnalysisPhaseSuccessful
	failedP    = spec.AnalysisPhaseFailed
	errorP     = spec.AnalysisPhaseError
)

func checkVerdict(t *testing.T, fin tasks.Finished, phase spec.AnalysisPhase, message string) {
	t.Helper()
	if fin.Outcome != tasks.OutcomeSucceeded || fin.Analysis == nil {
		t.Fatalf("finished %s (%s) with analysis %+v; want Succeeded with a verdict", fin.Outcome, fin.Message, fin.Analysis)
	}
	if spec.AnalysisPhase(fin.Analysis.Phase) != phase || !strings.Contains(fin.Analysis.Message, message) {
		t.Fatalf("verdict %s %q; want %s with %q", fin.Analysis.Phase, fin.Analysis.Message, phase, message)
	}
}

func TestRunMeasuresCountTimesThenSucceeds(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, func(c *Config) { c.Retention = 300 * time.Millisecond })
	rs := watchResults(t, b.client)
	r := events.Ref{Namespace: "prod", Name: "checkout"}
	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    count: 3\n    successCondition: result[0] < 0.05"))
	applyTemplates(t, b.client, r.Namespace, tmpl)
	task := runTask(r, "checkout-6d9f7c8b5-2-1", 1, "good", []spec.AnalysisTemplate{tmpl})

	sendTask(t, b.client, task)
	fin := rs.finished(t, task)
	checkVerdict(t, fin, successful, "")
	if fin.Analysis.Successful != 1 || fin.Analysis.Name != task.Analysis.RunName {
		t.Errorf("summary %+v; want one successful metric of run %s", fin.Analysis, task.Analysis.RunName)
	}
	ms := checkMeasured(t, rs, task, "error-rate", 3, successful)
	for i, m := range ms {
		mm := m.Measurement
		if mm.Provider != "prometheus" || !strings.Contains(mm.Query, `service="good"`) || strings.Contains(mm.Query, "{{") {
			t.Errorf("measurement %d: provider %q, query %q", i+1, mm.Provider, mm.Query)
		}
		if v, err := strconv.ParseFloat(strings.Trim(mm.Value, "[]"), 64); err != nil || math.Abs(v-0.01) > 1e-9 {
			t.Errorf("measurement %d: value %q, want [0.01]", i+1, mm.Value)
		}
		if i > 0 && mm.StartedAt.Sub(ms[i-1].Measurement.FinishedAt) < 200*time.Millisecond {
			t.Errorf("measurement %d started %s after the previous one finished; the interval is 200ms", i+1, mm.StartedAt.Sub(ms[i-1].Measurement.FinishedAt))
		}
		if i < 2 && m.Analysis.Phase != string(spec.AnalysisPhaseRunning) {
			t.Errorf("summary after measurement %d: %+v; want Running", i+1, m.Analysis)
		}
	}
	if got := rs.count(tasks.TypeStarted, task.ID); got != 1 {
		t.Errorf("%d started reports, want 1", got)
	}
	if got := p.queries.Load(); got != 3 {
		t.Errorf("prometheus answered %d queries, want 3", got)
	}
	// Reports come in order: the verdict after every measurement.
	rs.mu.Lock()
	last := rs.all[len(rs.all)-1]
	rs.mu.Unlock()
	if last.typ != tasks.TypeFinished {
		t.Errorf("last result is %s, want the verdict", last.typ)
	}
	// The record is kept for Retention after the verdict, then deleted.
	waitKey(t, b.client, BucketRuns, "prod.checkout."+task.Analysis.RunName, false)
}

func TestFailingMetricFailsOnTheSecondFailure(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    count: 5\n    failureLimit: 1\n    successCondition: result[0] < 0.05"))
	applyTemplates(t, b.client, "prod", tmpl)
	task := runTask(events.Ref{Namespace: "prod", Name: "checkout"}, "checkout-1", 1, "bad", []spec.AnalysisTemplate{tmpl})

	sendTask(t, b.client, task)
	fin := rs.finished(t, task)
	checkVerdict(t, fin, failedP, `metric "error-rate" assessed Failed due to failed (2) > failureLimit (1)`)
	if fin.Analysis.Failed != 1 {
		t.Errorf("summary %+v; want one failed metric", fin.Analysis)
	}
	ms := checkMeasured(t, rs, task, "error-rate", 2, failedP)
	if v, err := strconv.ParseFloat(strings.Trim(ms[0].Measurement.Value, "[]"), 64); err != nil || math.Abs(v-0.5) > 1e-9 || !strings.Contains(ms[0].Measurement.Message, `successCondition "result[0] < 0.05" is false`) {
		t.Errorf("first measurement: %+v", ms[0].Measurement)
	}
	if p.queries.Load() != 2 {
		t.Errorf("prometheus answered %d queries; a failed run measures no more", p.queries.Load())
	}
}

func TestMissingDataIsNeverSuccessful(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	r := events.Ref{Namespace: "prod", Name: "checkout"}
	for i, cond := range []string{"successCondition: result[0] < 0.05", "failureCondition: result[0] > 0.05"} {
		t.Run(cond, func(t *testing.T) {
			tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    count: 3\n    consecutiveErrorLimit: 0\n    "+cond))
			applyTemplates(t, b.client, r.Namespace, tmpl)
			task := runTask(r, fmt.Sprintf("checkout-%d", i), int64(i+1), "nope", []spec.AnalysisTemplate{tmpl})
			sendTask(t, b.client, task)
			checkVerdict(t, rs.finished(t, task), errorP, "consecutiveErrors (1) > consecutiveErrorLimit (0)")
			ms := checkMeasured(t, rs, task, "error-rate", 1, errorP)
			if m := ms[0].Measurement; m.Value != "[]" || !strings.Contains(m.Message, "the query returned no data") {
				t.Errorf("measurement: value %q, message %q", m.Value, m.Message)
			}
		})
	}
}

func TestPrometheusDownEndsInErrorAfterConsecutiveErrors(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	addr := deadAddress(t)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", addr, "    interval: 200ms\n    count: 3\n    consecutiveErrorLimit: 1\n    successCondition: result[0] < 0.05"))
	applyTemplates(t, b.client, "prod", tmpl)
	task := runTask(events.Ref{Namespace: "prod", Name: "checkout"}, "checkout-1", 1, "good", []spec.AnalysisTemplate{tmpl})

	sendTask(t, b.client, task)
	checkVerdict(t, rs.finished(t, task), errorP, "consecutiveErrors (2) > consecutiveErrorLimit (1)")
	ms := checkMeasured(t, rs, task, "error-rate", 2, errorP)
	for i, m := range ms {
		if !strings.Contains(m.Measurement.Message, "connection refused") || !strings.Contains(m.Measurement.Message, addr) {
			t.Errorf("measurement %d: message %q", i+1, m.Measurement.Message)
		}
	}
	if gap := ms[1].Measurement.StartedAt.Sub(ms[0].Measurement.FinishedAt); gap < analysis.ErrorRetryInterval {
		t.Errorf("an error was retried after %s; Argo waits %s", gap, analysis.ErrorRetryInterval)
	}
}

func TestTemplatesAppliedByEventAreUsedByLaterRuns(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)

	sendCommand(t, b.client, events.Ref{Namespace: "prod", Name: "error-rate"}, events.TypeAnalysisTemplateApply,
		templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    count: 2\n    successCondition: result[0] < 0.05"))
	sendCommand(t, b.client, events.Ref{Namespace: "platform", Name: "error-budget"}, events.TypeAnalysisTemplateApply,
		templateYAML(spec.KindClusterAnalysisTemplate, "error-budget", p.URL, "    failureCondition: result[0] > 0.2"))
	waitKey(t, b.client, BucketTemplates, "prod.error-rate", true)
	waitKey(t, b.client, BucketTemplates, "_cluster.error-budget", true)

	// The cluster template is named first; Argo merges namespaced
	// templates first.
	task := runTask(events.Ref{Namespace: "prod", Name: "web"}, "web-1", 1, "good", nil,
		spec.AnalysisTemplateRef{TemplateName: "error-budget", ClusterScope: true},
		spec.AnalysisTemplateRef{TemplateName: "error-rate"})
	sendTask(t, b.client, task)
	fin := rs.finished(t, task)
	checkVerdict(t, fin, successful, "")
	if fin.Analysis.Successful != 2 {
		t.Errorf("summary %+v; want two successful metrics", fin.Analysis)
	}
	checkMeasured(t, rs, task, "error-rate", 2, successful)
	checkMeasured(t, rs, task, "error-budget", 1, successful)
	if first := rs.measured(task.ID)[0].measured.Measurement.Metric; first != "error-rate" {
		t.Errorf("first measurement is of %s; the namespaced template's metrics come first", first)
	}
	// The same name in another namespace is another template.
	other := runTask(events.Ref{Namespace: "staging", Name: "web"}, "web-1", 1, "good", nil, spec.AnalysisTemplateRef{TemplateName: "error-rate"})
	sendTask(t, b.client, other)
	if fin := rs.finished(t, other); fin.Outcome != tasks.OutcomeFailed {
		t.Errorf("a template of prod served staging: %+v", fin)
	}
}

func TestUnknownTemplateFinishesFailed(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	task := runTask(events.Ref{Namespace: "prod", Name: "web"}, "web-1", 1, "good", nil,
		spec.AnalysisTemplateRef{TemplateName: "nope"}, spec.AnalysisTemplateRef{TemplateName: "shared", ClusterScope: true})

	sendTask(t, b.client, task)
	fin := rs.finished(t, task)
	want := `analysis template "nope" not found in namespace "prod"; cluster analysis template "shared" not found`
	if fin.Outcome != tasks.OutcomeFailed || fin.Message != want || fin.Analysis != nil {
		t.Fatalf("finished %s %q %+v; want Failed %q without a verdict", fin.Outcome, fin.Message, fin.Analysis, want)
	}
	if n := len(rs.measured(task.ID)); n != 0 {
		t.Errorf("%d measurements of a run that never started", n)
	}
}

func TestInvalidRunGetsAnErrorVerdict(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    successCondition: result[0] < 0.05"))
	applyTemplates(t, b.client, "prod", tmpl)
	task := runTask(events.Ref{Namespace: "prod", Name: "web"}, "web-1", 1, "good", []spec.AnalysisTemplate{tmpl})
	task.Analysis.Spec.Args = nil // the template's argument gets no value

	sendTask(t, b.client, task)
	checkVerdict(t, rs.finished(t, task), errorP, `argument "service" has no value`)
}

func TestTwoReplicasMeasureEachSlotOnce(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    count: 3\n    successCondition: result[0] < 0.05"))

	const runs = 4
	var all []tasks.Task
	for i := range runs {
		applyTemplates(t, b.client, "prod", tmpl)
		task := runTask(events.Ref{Namespace: "prod", Name: fmt.Sprintf("web-%d", i)}, "web-run", 1, "good", []spec.AnalysisTemplate{tmpl})
		all = append(all, task)
		sendTask(t, b.client, task)
	}
	for _, task := range all {
		checkVerdict(t, rs.finished(t, task), successful, "")
		checkMeasured(t, rs, task, "error-rate", 3, successful)
	}
	// The claim, not the stream's deduplication, keeps replicas apart:
	// Prometheus saw one query per slot.
	if got := p.queries.Load(); got != 3*runs {
		t.Errorf("prometheus answered %d queries for %d slots", got, 3*runs)
	}
}

func TestKilledReplicaHandsItsRunOver(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	var n atomic.Int64
	held := make(chan struct{})
	release := make(chan struct{})
	p := startProm(t, func(w http.ResponseWriter, r *http.Request) bool {
		if n.Add(1) != 2 {
			return false
		}
		close(held) // the first replica is measuring the second slot
		select {
		case <-release:
		case <-r.Context().Done():
		}
		promtest.APIError(w, http.StatusServiceUnavailable, "unavailable", "held by the test")
		return true
	})
	t.Cleanup(func() { close(release) })
	short := func(c *Config) { c.LeaseMargin = 500 * time.Millisecond }
	first := startAnalyzer(t, b, short)
	rs := watchResults(t, b.client)
	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    count: 3\n    successCondition: result[0] < 0.05", "        timeout: 1"))
	applyTemplates(t, b.client, "prod", tmpl)
	task := runTask(events.Ref{Namespace: "prod", Name: "web"}, "web-1", 1, "good", []spec.AnalysisTemplate{tmpl})

	sendTask(t, b.client, task)
	select {
	case <-held:
	case <-time.After(patience):
		t.Fatal("the second measurement never started")
	}
	first.kill()
	startAnalyzer(t, b, short)

	checkVerdict(t, rs.finished(t, task), successful, "")
	checkMeasured(t, rs, task, "error-rate", 3, successful)
	// The slot the dead replica held was measured again (its lease
	// expired), and only then: 1 + 1 held + 2.
	if got := p.queries.Load(); got != 4 {
		t.Errorf("prometheus answered %d queries, want 4", got)
	}
}

func TestCommandsOfOthersAreIgnoredAndBadTemplatesDeadLettered(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()

	r := events.Ref{Namespace: "prod", Name: "web"}
	sendCommand(t, b.client, r, events.TypeRolloutRequested, `{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"}}`)
	sendCommand(t, b.client, r, events.TypeRolloutPromote, events.PromoteData{Full: true})
	sendCommand(t, b.client, r, events.TypeRolloutAbort, nil)
	sendCommand(t, b.client, r, events.TypeRolloutUndo, events.UndoData{})
	sendCommand(t, b.client, r, "io.sluice.rollout.frobnicate.v1", nil)
	// Three bad template events.
	tr := events.Ref{Namespace: "prod", Name: "error-rate"}
	sendCommand(t, b.client, tr, events.TypeAnalysisTemplateApply, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 5\n    successCondition: result[0] < 0.05"))
	sendCommand(t, b.client, tr, events.TypeAnalysisTemplateApply, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    successCondition: result[0] <"))
	sendCommand(t, b.client, tr, "io.sluice.analysistemplate.applied.v9", templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, ""))
	good := sendCommand(t, b.client, tr, events.TypeAnalysisTemplateApply, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    successCondition: result[0] < 0.05"))

	waitKey(t, b.client, BucketTemplates, "prod.error-rate", true)
	cons, err := b.client.JetStream().Consumer(ctx, events.StreamCommands, DurableTemplates)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "every template command handled", func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("%d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	}, poll.Context(ctx))

	dlq, err := b.client.JetStream().OrderedConsumer(ctx, events.StreamDeadLetter, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.DeadLetterSubject(events.StreamCommands, DurableTemplates)},
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := dlq.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for msg := range batch.Messages() {
		dl, err := events.ParseDeadLetter(msg.Subject(), msg.Data(), msg.Headers())
		if err != nil {
			t.Fatal(err)
		}
		if typ := dl.Header.Get("ce-type"); strings.HasPrefix(typ, "io.sluice.rollout.") {
			t.Errorf("rollout command %s dead-lettered by the analyzer: %s", typ, dl.Reason)
		}
		reasons = append(reasons, dl.Reason)
	}
	want := []string{
		`invalid AnalysisTemplate prod/error-rate: spec.metrics[0].interval: Invalid value: "5"`,
		`invalid AnalysisTemplate prod/error-rate: spec.metrics[0].successCondition: Invalid value: "result[0] <": unexpected token EOF`,
		`unknown event type "io.sluice.analysistemplate.applied.v9"`,
	}
	if len(reasons) != len(want) {
		t.Fatalf("dead letters: %q; want %d", reasons, len(want))
	}
	for i := range want {
		if !strings.Contains(reasons[i], want[i]) {
			t.Errorf("dead letter %d: %q; want %q", i, reasons[i], want[i])
		}
	}
	e := waitKey(t, b.client, BucketTemplates, "prod.error-rate", true)
	if !strings.Contains(string(e.Value()), good.ID()) {
		t.Errorf("stored template is not the valid one: %s", e.Value())
	}
}

func TestTerminate(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	r := events.Ref{Namespace: "prod", Name: "web"}
	background := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    successCondition: result[0] < 0.05"))

	t.Run("a background run measures until terminated", func(t *testing.T) {
		applyTemplates(t, b.client, r.Namespace, background)
		run := runTask(r, "web-bg", 1, "good", []spec.AnalysisTemplate{background})
		sendTask(t, b.client, run)
		rs.waitFor(t, "two measurements", func([]result) bool { return len(rs.measured(run.ID)) >= 2 })
		stop := terminateTask(r, "web-bg", 2)
		sendTask(t, b.client, stop)
		if fin := rs.finished(t, stop); fin.Outcome != tasks.OutcomeSucceeded {
			t.Fatalf("terminate finished %s: %s", fin.Outcome, fin.Message)
		}
		checkVerdict(t, rs.finished(t, run), successful, "Run Terminated")
		n := len(rs.measured(run.ID))
		checkMeasured(t, rs, run, "error-rate", n, successful)
	})
	t.Run("a run terminated before it starts never starts", func(t *testing.T) {
		stop := terminateTask(r, "web-late", 4)
		sendTask(t, b.client, stop)
		if fin := rs.finished(t, stop); fin.Outcome != tasks.OutcomeSucceeded || !strings.Contains(fin.Message, "does not exist") {
			t.Fatalf("terminate finished %s: %s", fin.Outcome, fin.Message)
		}
		applyTemplates(t, b.client, r.Namespace, background)
		late := runTask(r, "web-late", 3, "good", []spec.AnalysisTemplate{background})
		sendTask(t, b.client, late)
		if fin := rs.finished(t, late); fin.Outcome != tasks.OutcomeStale {
			t.Fatalf("late run finished %s: %s; want Stale", fin.Outcome, fin.Message)
		}
	})
}

func TestTaskSentAgainDoesNotStartASecondRun(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	p := startProm(t, nil)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	tmpl := template(t, templateYAML(spec.KindAnalysisTemplate, "error-rate", p.URL, "    interval: 200ms\n    count: 3\n    successCondition: result[0] < 0.05"))
	applyTemplates(t, b.client, "prod", tmpl)
	task := runTask(events.Ref{Namespace: "prod", Name: "web"}, "web-1", 1, "good", []spec.AnalysisTemplate{tmpl})

	sendTask(t, b.client, task)
	rs.waitFor(t, "a measurement", func([]result) bool { return len(rs.measured(task.ID)) >= 1 })
	again := task
	again.Attempt = 2
	sendTask(t, b.client, again)
	// The verdict answers the attempt the orchestrator waits for.
	checkVerdict(t, rs.finished(t, again), successful, "")
	checkMeasured(t, rs, task, "error-rate", 3, successful)
	if got := p.queries.Load(); got != 3 {
		t.Errorf("prometheus answered %d queries, want 3", got)
	}
}

func TestSecretArgumentsComeFromTheEnvironment(t *testing.T) {
	t.Parallel()
	const token = "s3cr3t-t0ken"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"ratio": 0.01, "note": "authorized with %s"}`, token)
	}))
	t.Cleanup(srv.Close)
	b := startBus(t)
	env := map[string]string{"SLUICE_SECRET_WEB_CREDS_TOKEN": token}
	startAnalyzer(t, b, func(c *Config) { c.Getenv = func(k string) string { return env[k] } })
	rs := watchResults(t, b.client)
	webTemplate := func(secret string) spec.AnalysisTemplate {
		return template(t, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: check}
spec:
  args:
  - name: token
    valueFrom: {secretKeyRef: {name: %s, key: token}}
  metrics:
  - name: check
    consecutiveErrorLimit: 0
    successCondition: result.ratio < 0.05
    provider:
      web:
        url: %s/check
        headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
`, secret, srv.URL))
	}
	r := events.Ref{Namespace: "prod", Name: "web"}

	applyTemplates(t, b.client, r.Namespace, webTemplate("web-creds"))
	ok := runTask(r, "web-1", 1, "", []spec.AnalysisTemplate{webTemplate("web-creds")})
	sendTask(t, b.client, ok)
	checkVerdict(t, rs.finished(t, ok), successful, "")
	m := checkMeasured(t, rs, ok, "check", 1, successful)[0].Measurement
	if strings.Contains(m.Value+m.Query+m.Message, token) || !strings.Contains(m.Value, "*****") {
		t.Errorf("the secret was not redacted: %+v", m)
	}

	applyTemplates(t, b.client, r.Namespace, webTemplate("other-creds"))
	missing := runTask(r, "web-2", 2, "", []spec.AnalysisTemplate{webTemplate("other-creds")})
	sendTask(t, b.client, missing)
	checkVerdict(t, rs.finished(t, missing), errorP, "")
	m = checkMeasured(t, rs, missing, "check", 1, errorP)[0].Measurement
	if !strings.Contains(m.Message, "set SLUICE_SECRET_OTHER_CREDS_TOKEN") {
		t.Errorf("message %q does not say which variable to set", m.Message)
	}
}
