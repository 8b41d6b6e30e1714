package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/test/systest"
)

// BenchmarkSteadyRequests counts the bus traffic Sluice makes besides the
// steps themselves: every service binary's JetStream check (every 2 s),
// every bucket watch's check of its stream leader (events.WatchKV, every
// 5 s), the orchestrator's look back on a command's subject (one read of
// the commands stream per command), the analyzer's read of a run's
// record from the leader per wakeup. A connection subscribed to every
// subject (">") sees each request, counted by kind (kindOf).
//
//   - binaries,idle: the service binaries of `sluice dev` (orchestrator,
//     analyzer, replicas on the local platform, traffic with the local
//     router, gateway, notifier) as processes on one embedded server, no
//     rollout, for idleWindow: requests per second by kind, and the CPU
//     the server's process (this one) used.
//   - rollouts=N: the services in this process (as BenchmarkSluice) update
//     N rollouts of ten steps once: messages per completed step by kind
//     (but this benchmark's own follower's deliveries of status events),
//     cmd-look/step the look backs on the commands stream;
//     then, with the N rollouts at rest, requests per second by kind and
//     this process's CPU (server and services) for idleWindow.
//   - analysis,rollouts=N: N rollouts paused at a canary step with a
//     background analysis measured every analysisInterval against the
//     real PromQL engine: messages per second by kind for idleWindow, and
//     per measurement (reads/measurement: the analyzer's reads of the
//     runs bucket, leader reads included, per task.measured).
func BenchmarkSteadyRequests(b *testing.B) {
	b.Run("binaries,idle", func(b *testing.B) {
		for range b.N {
			idleBinaries(b)
		}
	})
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("rollouts=%d", n), func(b *testing.B) {
			for range b.N {
				steadyRollouts(b, n)
			}
		})
	}
	b.Run("analysis,rollouts=100", func(b *testing.B) {
		for range b.N {
			steadyAnalysis(b, 100)
		}
	})
}

// analysisInterval is the background analysis' interval of
// BenchmarkSteadyRequests/analysis.
const analysisInterval = 5 * time.Second

func steadyAnalysis(b *testing.B, n int) {
	prom := systest.StartPrometheus(b)
	st := startStack(b, instantRouter{}, 1, 0)
	completed, paused := make(chan struct{}, n), make(chan struct{}, n)
	st.follow(b, events.StreamStatus, func(_ string, ev events.Event) {
		switch ev.Type() {
		case events.TypeRolloutCompleted:
			completed <- struct{}{}
		case events.TypeRolloutPaused:
			paused <- struct{}{}
		}
	})
	template := fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
  "metadata": {"name": "passing", "namespace": "bench"},
  "spec": {"metrics": [{"name": "success", "interval": %q, "successCondition": "result[0] >= 0.95",
    "provider": {"prometheus": {"address": %q, "query": "chaos_success_ratio{class=\"good\"}"}}}]}}`, analysisInterval, prom.URL)
	st.publish(b, events.Ref{Namespace: "bench", Name: "passing"}, events.TypeAnalysisTemplateApply, json.RawMessage(template))
	kv, err := st.admin.JetStream().KeyValue(st.ctx, analyzer.BucketTemplates)
	if err != nil {
		b.Fatal(err)
	}
	poll.Until(b, "the passing analysis template stored", func() error {
		_, err := kv.Get(st.ctx, "bench.passing")
		return err
	}, poll.Every(20*time.Millisecond))
	rollouts := names(n)
	manifest := func(image string) func(string) string {
		return func(name string) string {
			return canary(name, image, `"analysis": {"templates": [{"templateName": "passing"}]}, `, `{"setWeight": 20}, {"pause": {}}`)
		}
	}
	st.request(b, rollouts, manifest("web:v1")) // straight to Healthy
	for range n {
		<-completed
	}
	st.request(b, rollouts, manifest("web:v2"))
	for range n {
		<-paused
	}
	c := countRequests(b, st.admin.Conn().ConnectedUrl())
	// One interval for every run to be measuring.
	time.Sleep(analysisInterval)
	c.take()
	cpu := cpuTime()
	b.ResetTimer()
	time.Sleep(idleWindow)
	counts := c.take()
	used := cpuTime() - cpu
	b.StopTimer()
	for k := range counts {
		if strings.HasPrefix(k, "delivery "+events.StreamStatus) {
			delete(counts, k) // this benchmark's own follower
		}
	}
	reportPerSecond(b, counts, idleWindow, used)
	measured := counts["sluice.result task.measured"]
	if measured == 0 {
		b.Fatalf("no measurement in %s of %d rollouts with a background analysis every %s", idleWindow, n, analysisInterval)
	}
	reads := 0
	for k, v := range counts {
		if strings.HasPrefix(k, "$JS.API.") && strings.HasSuffix(k, " KV_"+analyzer.BucketRuns) && !strings.Contains(k, "STREAM.INFO") {
			reads += v
		}
	}
	b.ReportMetric(float64(measured)/idleWindow.Seconds(), "measurements/s")
	b.ReportMetric(float64(reads)/float64(measured), "reads/measurement")
}

// idleWindow is how long idle traffic is counted: several periods of the
// slowest periodic check (5 s).
const idleWindow = 30 * time.Second

func idleBinaries(b *testing.B) {
	bus := systest.StartBus(b)
	sys := systest.Start(b, systest.Spec{NATS: bus.URL, LogDir: b.TempDir(), Local: true})
	poll.True(b, "every service process ready", sys.Ready, poll.Timeout(5*time.Minute), poll.Every(50*time.Millisecond))
	c := countRequests(b, bus.URL)
	// Past the start: provisioning, consumers and watches made.
	time.Sleep(5 * time.Second)
	c.take()
	cpu := cpuTime()
	b.ResetTimer()
	time.Sleep(idleWindow)
	counts := c.take()
	used := cpuTime() - cpu
	b.StopTimer()
	reportPerSecond(b, counts, idleWindow, used)
}

func steadyRollouts(b *testing.B, n int) {
	st := startStack(b, instantRouter{}, 1, 0)
	rollouts := names(n)
	completed := make(chan struct{}, n)
	st.follow(b, events.StreamStatus, func(_ string, ev events.Event) {
		if ev.Type() == events.TypeRolloutCompleted {
			completed <- struct{}{}
		}
	})
	update := func(version string) {
		st.request(b, rollouts, func(name string) string { return tenSteps(name, "web:"+version) })
		for range n {
			<-completed
		}
	}
	c := countRequests(b, st.admin.Conn().ConnectedUrl())
	update("v1") // straight to Healthy
	c.take()
	b.ResetTimer()
	update("v2")
	counts := c.take()
	for k := range counts {
		if strings.HasPrefix(k, "delivery "+events.StreamStatus) {
			delete(counts, k) // this benchmark's own follower
		}
	}
	steps := float64(10 * n)
	b.Logf("%d rollouts, one update of ten steps each: bus messages per step by kind", n)
	for _, k := range byCount(counts) {
		b.Logf("  %-56s %8.3f/step (%d)", k, float64(counts[k])/steps, counts[k])
	}
	b.ReportMetric(float64(counts["$JS.API.STREAM.MSG.GET "+events.StreamCommands])/steps, "cmd-look/step")
	b.ReportMetric(float64(apiRequests(counts))/steps, "js-api/step")
	b.ReportMetric(float64(total(counts))/steps, "msgs/step")

	// At rest: what the services ask of the bus with n rollouts and
	// nothing to do.
	c.take()
	cpu := cpuTime()
	time.Sleep(idleWindow)
	counts = c.take()
	used := cpuTime() - cpu
	b.StopTimer()
	reportPerSecond(b, counts, idleWindow, used)
}

// reportPerSecond logs counts per second of window by kind and reports
// the totals, and the CPU this process used as a share of one core.
func reportPerSecond(b *testing.B, counts map[string]int, window, cpu time.Duration) {
	b.Logf("at rest for %s: bus messages per second by kind; this process's CPU %s (%.2f%% of one core)", window, cpu.Round(time.Millisecond), 100*cpu.Seconds()/window.Seconds())
	for _, k := range byCount(counts) {
		b.Logf("  %-56s %8.2f/s (%d)", k, float64(counts[k])/window.Seconds(), counts[k])
	}
	b.ReportMetric(float64(apiRequests(counts))/window.Seconds(), "idle-js-api/s")
	b.ReportMetric(float64(total(counts))/window.Seconds(), "idle-msgs/s")
	b.ReportMetric(100*cpu.Seconds()/window.Seconds(), "idle-cpu-%")
	b.ReportMetric(0, "ns/op")
}

// requestCounter counts every message published on a server's account,
// by kind, from its own connection.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func countRequests(tb testing.TB, url string) *requestCounter {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Name("bench-counter"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	c := &requestCounter{counts: map[string]int{}}
	sub, err := nc.Subscribe(">", func(m *nats.Msg) {
		k := kindOf(m.Subject, m.Reply, m.Header.Get("ce-type"))
		c.mu.Lock()
		c.counts[k]++
		c.mu.Unlock()
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	return c
}

// take returns the counts so far and starts again from zero.
func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

// apiOps are the JetStream API operations kindOf tells apart, longest
// first; what follows one is the stream (and consumer) it names.
var apiOps = []string{
	"CONSUMER.MSG.NEXT", "CONSUMER.DURABLE.CREATE", "CONSUMER.CREATE", "CONSUMER.INFO", "CONSUMER.DELETE", "CONSUMER.NAMES", "CONSUMER.LIST",
	"STREAM.MSG.GET", "STREAM.MSG.DELETE", "STREAM.INFO", "STREAM.CREATE", "STREAM.UPDATE", "STREAM.NAMES", "STREAM.LIST", "STREAM.PURGE",
	"DIRECT.GET", "INFO",
}

// kindOf names what a message is for: a consumer's delivery of a
// stream's message (which the subscriber to ">" sees with the message's
// own subject and an ack subject as reply: "delivery SLUICE_TASKS
// replicas"), a JetStream API operation and the stream it is on
// ("$JS.API.STREAM.MSG.GET SLUICE_COMMANDS"; pulls are
// "$JS.API.CONSUMER.MSG.NEXT <stream>"), an ack, a key-value write on a
// bucket, a reply to an inbox, or a publish by its subject's first two
// tokens and its CloudEvents type.
func kindOf(subject, reply, eventType string) string {
	switch {
	case strings.HasPrefix(reply, "$JS.ACK."):
		// $JS.ACK.<stream>.<consumer>.... or, with a domain and an
		// account hash, $JS.ACK.<domain>.<hash>.<stream>.<consumer>....
		t := strings.Split(strings.TrimPrefix(reply, "$JS.ACK."), ".")
		if len(t) >= 11 {
			t = t[2:]
		}
		if len(t) < 2 {
			return "delivery ?"
		}
		if strings.HasPrefix(t[0], "KV_") {
			return "delivery " + t[0] + " (watch)"
		}
		return "delivery " + t[0] + " " + t[1]
	case strings.HasPrefix(subject, "$JS.API."):
		rest := strings.TrimPrefix(subject, "$JS.API.")
		for _, op := range apiOps {
			if rest == op {
				return "$JS.API." + op
			}
			if after, ok := strings.CutPrefix(rest, op+"."); ok {
				stream, _, _ := strings.Cut(after, ".")
				return "$JS.API." + op + " " + stream
			}
		}
		return "$JS.API. other"
	case strings.HasPrefix(subject, "$JS.ACK."):
		stream, _, _ := strings.Cut(strings.TrimPrefix(subject, "$JS.ACK."), ".")
		return "$JS.ACK " + stream
	case strings.HasPrefix(subject, "$KV."):
		bucket, _, _ := strings.Cut(strings.TrimPrefix(subject, "$KV."), ".")
		return "$KV " + bucket
	case strings.HasPrefix(subject, "_INBOX."):
		return "_INBOX (replies, deliveries)"
	}
	t := strings.SplitN(subject, ".", 3)
	k := strings.Join(t[:min(2, len(t))], ".")
	if eventType != "" {
		k += " " + strings.TrimSuffix(strings.TrimPrefix(eventType, "io.sluice."), ".v1")
	}
	return k
}

// apiRequests is the JetStream API requests in counts but the pulls.
func apiRequests(counts map[string]int) int {
	n := 0
	for k, v := range counts {
		if strings.HasPrefix(k, "$JS.API.") && !strings.HasPrefix(k, "$JS.API.CONSUMER.MSG.NEXT") {
			n += v
		}
	}
	return n
}

func total(counts map[string]int) int {
	n := 0
	for _, v := range counts {
		n += v
	}
	return n
}

// byCount is counts' kinds, most first.
func byCount(counts map[string]int) []string {
	return slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b))
	})
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
