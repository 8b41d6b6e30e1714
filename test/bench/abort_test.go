package bench

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/test/systest"
)

// failingCanary is a canary whose analysis step fails at its first
// measurement: the success ratio it queries is 0.5.
func failingCanary(name, image string) string {
	return canary(name, image, `"abortScaleDownDelaySeconds": 1, `, `{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "failing"}]}}`)
}

// BenchmarkAbortReaction measures how fast a failing measurement takes
// traffic off the canary: from the analyzer's task.measured event with a
// Failed measurement (its publish time) to the router applying weight 0
// (route-0-ms) and to the rollout.aborted event (aborted-ms, published once
// the route is in effect). The analysis queries the real PromQL engine.
// rollouts=1 updates one rollout 100 times in a row; rollouts=100 updates
// 100 at once, three times.
func BenchmarkAbortReaction(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("rollouts=%d", n), func(b *testing.B) {
			for range b.N {
				abortReaction(b, n)
			}
		})
	}
}

func abortReaction(b *testing.B, n int) {
	prom := systest.StartPrometheus(b)
	type aborted struct {
		name string
		at   time.Time
	}
	var (
		mu       sync.Mutex
		failedAt = map[string]time.Time{}
		zeroAt   = map[string][]time.Time{}
		abortCh  = make(chan aborted, n)
	)
	st := startStack(b, instantRouter{zero: func(ref events.Ref, at time.Time) {
		mu.Lock()
		zeroAt[ref.Name] = append(zeroAt[ref.Name], at)
		mu.Unlock()
	}}, 1, 0)
	st.follow(b, events.StreamResults, func(subject string, ev events.Event) {
		if ev.Type() != tasks.TypeMeasured {
			return
		}
		var m tasks.Measured
		r, err := events.RefFromSubject(subject)
		if err != nil || events.DecodeData(ev, &m) != nil || m.Measurement.Phase != "Failed" {
			return
		}
		mu.Lock()
		if _, ok := failedAt[r.Name]; !ok {
			failedAt[r.Name] = ev.Time()
		}
		mu.Unlock()
	})
	var live atomic.Int32 // rollouts completed (only web:v1 completes)
	st.follow(b, events.StreamStatus, func(subject string, ev events.Event) {
		if ev.Type() == events.TypeRolloutCompleted {
			live.Add(1)
		}
		if ev.Type() == events.TypeRolloutAborted {
			r, err := events.RefFromSubject(subject)
			if err == nil {
				abortCh <- aborted{r.Name, ev.Time()}
			}
		}
	})
	template := fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
  "metadata": {"name": "failing", "namespace": "bench"},
  "spec": {"metrics": [{"name": "success", "count": 1, "successCondition": "result[0] >= 0.95",
    "provider": {"prometheus": {"address": %q, "query": "chaos_success_ratio{class=\"bad\"}"}}}]}}`, prom.URL)
	st.publish(b, events.Ref{Namespace: "bench", Name: "failing"}, events.TypeAnalysisTemplateApply, json.RawMessage(template))
	kv, err := st.admin.JetStream().KeyValue(st.ctx, analyzer.BucketTemplates)
	if err != nil {
		b.Fatal(err)
	}
	poll.Until(b, "the failing analysis template stored", func() error {
		_, err := kv.Get(st.ctx, "bench.failing")
		return err
	}, poll.Every(20*time.Millisecond))

	rollouts := names(n)
	update := func(image string) {
		st.request(b, rollouts, func(name string) string { return failingCanary(name, image) })
	}
	// The first revision goes straight to Healthy (no analysis); each
	// update after it must find it live, or it would be a first revision
	// too and never abort.
	update("web:v1")
	poll.True(b, "every rollout live at web:v1", func() bool { return int(live.Load()) >= n })

	rounds := max(3, 100/n)
	var toZero, toEvent []time.Duration
	b.ResetTimer()
	for round := range rounds {
		mu.Lock()
		clear(failedAt)
		clear(zeroAt)
		mu.Unlock()
		update(fmt.Sprintf("web:v%d", round+2))
		for range n {
			a := <-abortCh
			// The results follower may see the measurement after the
			// status follower saw the abort.
			var (
				failed time.Time
				ok     bool
			)
			_ = poll.Wait(a.name+"'s failed measurement", func() error {
				mu.Lock()
				defer mu.Unlock()
				if failed, ok = failedAt[a.name]; !ok {
					return fmt.Errorf("not seen")
				}
				return nil
			}, poll.Timeout(5*time.Second), poll.Every(time.Millisecond))
			mu.Lock()
			var zero time.Time
			for _, z := range zeroAt[a.name] {
				if z.After(failed) {
					zero = z
					break
				}
			}
			mu.Unlock()
			if !ok || zero.IsZero() {
				b.Fatalf("%s aborted without a failed measurement or a route to weight 0 seen", a.name)
			}
			toZero = append(toZero, zero.Sub(failed))
			toEvent = append(toEvent, a.at.Sub(failed))
		}
	}
	b.StopTimer()
	report := func(ds []time.Duration, unit string) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-"+unit)
		b.ReportMetric(float64(ds[min(len(ds)-1, len(ds)*99/100)].Microseconds())/1000, "p99-"+unit)
	}
	report(toZero, "route-0-ms")
	report(toEvent, "aborted-ms")
	b.ReportMetric(0, "ns/op")
}
