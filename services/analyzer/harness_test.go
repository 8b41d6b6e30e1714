package analyzer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/promtest"
)

// patience bounds every wait of these tests. It is a failure guard, never
// an expectation: healthy runs take a few hundred milliseconds (the
// consecutive-error test takes the 10s Argo waits after an error).
const patience = 30 * time.Second

// bus is one embedded NATS server with a client for the test's own use.
type bus struct {
	url    string
	client *events.Client
}

func startBus(t *testing.T) *bus {
	t.Helper()
	srv := eventstest.StartServer(t)
	return &bus{url: srv.ClientURL(), client: eventstest.Connect(t, srv.ClientURL())}
}

// analyzerProc is one running analyzer replica.
type analyzerProc struct {
	svc    *Service
	client *events.Client
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startAnalyzer starts a replica on b. edit may change its configuration.
func startAnalyzer(t *testing.T, b *bus, edit func(*Config)) *analyzerProc {
	t.Helper()
	c := eventstest.Connect(t, b.url)
	reg, err := DefaultProviders(ProviderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Logger: eventstest.Quiet(), Providers: reg, Getenv: func(string) string { return "" }, LeaseMargin: 2 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	svc, err := New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &analyzerProc{svc: svc, client: c, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- svc.Run(ctx) }()
	poll.True(t, "the analyzer to be ready", func() bool {
		select {
		case err := <-p.done:
			t.Fatalf("analyzer exited: %v", err)
		default:
		}
		return svc.Ready()
	}, poll.Timeout(patience))
	t.Cleanup(p.stop)
	return p
}

func (p *analyzerProc) stop() {
	p.once.Do(func() {
		p.cancel()
		<-p.done
	})
}

// kill drops the replica's connection without a graceful stop, as SIGKILL
// would: nothing in flight is written or acknowledged.
func (p *analyzerProc) kill() {
	p.client.Conn().Close()
}

// prom is a Prometheus with the real PromQL engine that counts queries.
type prom struct {
	*httptest.Server
	queries atomic.Int64
}

// startProm serves request counters of three services, sampled every
// minute for the last ten minutes: "good" fails 1% of requests, "bad" 50%,
// and "nope" has no data. guard, when set, sees every query after it is
// counted.
func startProm(t *testing.T, guard func(w http.ResponseWriter, r *http.Request) bool) *prom {
	t.Helper()
	ramp := func(step float64) []float64 {
		out := make([]float64, 11)
		for i := range out {
			out[i] = step * float64(i)
		}
		return out
	}
	series := func(service, code string, step float64) promtest.Series {
		return promtest.Series{Labels: map[string]string{"__name__": "http_requests_total", "service": service, "code": code}, Values: ramp(step)}
	}
	data := []promtest.Series{
		series("good", "200", 594), series("good", "500", 6),
		series("bad", "200", 300), series("bad", "500", 300),
	}
	p := &prom{}
	p.Server = promtest.Start(t, data, promtest.Options{
		Epoch: time.Now().Add(-10 * time.Minute),
		Guard: func(w http.ResponseWriter, r *http.Request) bool {
			p.queries.Add(1)
			return guard != nil && guard(w, r)
		},
	})
	return p
}

// deadAddress is an http address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	_ = l.Close()
	return addr
}

// errorRate is the PromQL error ratio of the service named by an argument.
const errorRate = `sum(rate(http_requests_total{service="{{args.service}}",code="500"}[5m])) / sum(rate(http_requests_total{service="{{args.service}}"}[5m]))`

// templateYAML renders an AnalysisTemplate (or ClusterAnalysisTemplate)
// measuring errorRate of the service named by its argument. metric is the
// YAML of the metric's fields besides name and provider, indented by four
// spaces; extra, more fields of its prometheus block, indented by eight.
func templateYAML(kind, name, address, metric string, extra ...string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: %s
metadata:
  name: %s
spec:
  args:
  - name: service
  metrics:
  - name: %s
%s
    provider:
      prometheus:
        address: %s
        query: '%s'
%s
`, kind, name, name, metric, address, errorRate, strings.Join(extra, "\n"))
}

// template decodes a manifest into the form tasks carry.
func template(t *testing.T, manifest string) spec.AnalysisTemplate {
	t.Helper()
	var tmpl spec.AnalysisTemplate
	if err := yaml.UnmarshalStrict([]byte(manifest), &tmpl); err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// applyTemplates applies each template, as sluice apply does, in namespace
// ns (a ClusterAnalysisTemplate cluster-wide), and waits until the analyzer
// has stored that very version.
func applyTemplates(t *testing.T, c *events.Client, ns string, tmpls ...spec.AnalysisTemplate) {
	t.Helper()
	for _, tmpl := range tmpls {
		r, key := events.Ref{Namespace: ns, Name: tmpl.Name}, templateKey(ns, tmpl.Name)
		if tmpl.Kind == spec.KindClusterAnalysisTemplate {
			r.Namespace, key = events.ClusterScope, templateKey("", tmpl.Name)
		}
		ev := sendCommand(t, c, r, events.TypeAnalysisTemplateApply, tmpl)
		kv, err := c.JetStream().KeyValue(context.Background(), BucketTemplates)
		if err != nil {
			t.Fatal(err)
		}
		poll.Until(t, fmt.Sprintf("template %s applied by event %s to be stored", key, ev.ID()), func() error {
			var stored storedTemplate
			e, err := kv.Get(context.Background(), key)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(e.Value(), &stored); err != nil {
				return err
			}
			if stored.EventID != ev.ID() {
				return fmt.Errorf("stored version is from event %s", stored.EventID)
			}
			return nil
		}, poll.Timeout(patience))
	}
}

// runTask is an analysis.run task for run name of rollout r, measuring
// service svc. It refers to refs, or, when there are none, to each of
// templates (which the test applies: applyTemplates).
func runTask(r events.Ref, name string, seq int64, svc string, templates []spec.AnalysisTemplate, refs ...spec.AnalysisTemplateRef) tasks.Task {
	if len(refs) == 0 {
		for _, tmpl := range templates {
			refs = append(refs, spec.AnalysisTemplateRef{TemplateName: tmpl.Name, ClusterScope: tmpl.Kind == spec.KindClusterAnalysisTemplate})
		}
	}
	return tasks.Task{
		ID: fmt.Sprintf("%s/%s/r1/analysis-%s/%d", r.Namespace, r.Name, name, seq), Attempt: 1,
		Kind: tasks.KindAnalysisRun, Ref: r, Seq: seq, Revision: 1,
		Analysis: &tasks.Analysis{
			RunName: name, Purpose: "step",
			Spec: &spec.RolloutAnalysis{Templates: refs, Args: []spec.AnalysisRunArgument{{Name: "service", Value: svc}}},
		},
	}
}

func terminateTask(r events.Ref, name string, seq int64) tasks.Task {
	return tasks.Task{
		ID: fmt.Sprintf("%s/%s/r1/terminate-%s/%d", r.Namespace, r.Name, name, seq), Attempt: 1,
		Kind: tasks.KindAnalysisTerminate, Ref: r, Seq: seq, Revision: 1,
		Analysis: &tasks.Analysis{RunName: name},
	}
}

// sendTask publishes one attempt of task as the orchestrator does.
func sendTask(t *testing.T, c *events.Client, task tasks.Task) {
	t.Helper()
	ev, err := events.New("/test/orchestrator", tasks.TypeTriggered, task.Ref.String(), task)
	if err != nil {
		t.Fatal(err)
	}
	ev.SetID(task.EventID())
	publish(t, c, events.TaskSubject(tasks.ServiceAnalyzer, task.Ref), ev)
}

// sendCommand publishes a command or a template event on the commands
// stream; manifest YAML is sent as JSON data.
func sendCommand(t *testing.T, c *events.Client, r events.Ref, typ string, data any) events.Event {
	t.Helper()
	if s, ok := data.(string); ok {
		j, err := yaml.YAMLToJSON([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		data = json.RawMessage(j)
	}
	ev, err := events.New("/test", typ, r.String(), data)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, events.CommandSubject(r), ev)
	return ev
}

func publish(t *testing.T, c *events.Client, subject string, ev events.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if _, err := c.Publish(ctx, subject, ev); err != nil {
		t.Fatal(err)
	}
}

// result is one event on the results stream, decoded.
type result struct {
	id       string
	typ      string
	started  tasks.Started
	measured tasks.Measured
	finished tasks.Finished
}

// results follows the results stream from its start.
type results struct {
	mu  sync.Mutex
	all []result
}

func watchResults(t *testing.T, c *events.Client) *results {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	cons, err := c.JetStream().OrderedConsumer(ctx, events.StreamResults, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.ResultRoot + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	rs := &results{}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ev, err := events.Decode(msg.Data(), msg.Headers())
		if err != nil {
			t.Errorf("undecodable result on %s: %v", msg.Subject(), err)
			return
		}
		r := result{id: ev.ID(), typ: ev.Type()}
		var derr error
		switch ev.Type() {
		case tasks.TypeStarted:
			derr = events.DecodeData(ev, &r.started)
		case tasks.TypeMeasured:
			derr = events.DecodeData(ev, &r.measured)
		case tasks.TypeFinished:
			derr = events.DecodeData(ev, &r.finished)
		}
		if derr != nil {
			t.Errorf("result %s: %v", ev.ID(), derr)
		}
		rs.mu.Lock()
		rs.all = append(rs.all, r)
		rs.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return rs
}

// finished waits for the finished report of task's attempt.
func (rs *results) finished(t *testing.T, task tasks.Task) tasks.Finished {
	t.Helper()
	var out tasks.Finished
	rs.waitFor(t, "finished "+task.EventID(), func(all []result) bool {
		for _, r := range all {
			if r.typ == tasks.TypeFinished && r.finished.TaskID == task.ID && r.finished.Attempt == task.Attempt {
				out = r.finished
				return true
			}
		}
		return false
	})
	return out
}

// measured returns the measured reports of task so far, in stream order.
func (rs *results) measured(taskID string) []result {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []result
	for _, r := range rs.all {
		if r.typ == tasks.TypeMeasured && r.measured.TaskID == taskID {
			out = append(out, r)
		}
	}
	return out
}

// count counts the results of typ for task.
func (rs *results) count(typ, taskID string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, r := range rs.all {
		if r.typ != typ {
			continue
		}
		if r.started.TaskID == taskID || r.measured.TaskID == taskID || r.finished.TaskID == taskID {
			n++
		}
	}
	return n
}

func (rs *results) waitFor(t *testing.T, what string, ok func([]result) bool) {
	t.Helper()
	poll.True(t, what, func() bool {
		rs.mu.Lock()
		all := slices.Clone(rs.all)
		rs.mu.Unlock()
		return ok(all)
	}, poll.Timeout(patience))
}

// checkMeasured checks that task reported exactly n measurements of
// metric, numbered 1..n in their ids, each in phase, and returns them.
func checkMeasured(t *testing.T, rs *results, task tasks.Task, metric string, n int, phase spec.AnalysisPhase) []tasks.Measured {
	t.Helper()
	var got []tasks.Measured
	var ids []string
	for _, r := range rs.measured(task.ID) {
		if r.measured.Measurement.Metric == metric {
			got = append(got, r.measured)
			ids = append(ids, r.id)
		}
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, measuredID(task.Ref, task.Analysis.RunName, metric, int32(i)))
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("measured events of %s = %v, want %v", metric, ids, want)
	}
	for i, m := range got {
		if spec.AnalysisPhase(m.Measurement.Phase) != phase {
			t.Errorf("measurement %d of %s: phase %s (%s), want %s", i+1, metric, m.Measurement.Phase, m.Measurement.Message, phase)
		}
		if m.RunName != task.Analysis.RunName || m.Analysis.Name != task.Analysis.RunName {
			t.Errorf("measurement %d of %s: run %q, summary of %q", i+1, metric, m.RunName, m.Analysis.Name)
		}
	}
	return got
}

// waitKey waits until key is in bucket (present) or not, and returns its
// entry when present.
func waitKey(t *testing.T, c *events.Client, bucket, key string, present bool) jetstream.KeyValueEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	kv, err := c.JetStream().KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	var found jetstream.KeyValueEntry
	poll.Until(t, fmt.Sprintf("key %s in %s present=%v", key, bucket, present), func() error {
		e, err := kv.Get(ctx, key)
		switch {
		case err == nil && present:
			found = e
			return nil
		case errors.Is(err, jetstream.ErrKeyNotFound) && !present:
			return nil
		case err == nil:
			return fmt.Errorf("still there at revision %d", e.Revision())
		}
		return err
	}, poll.Context(ctx))
	return found
}
