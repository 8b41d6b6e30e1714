package machine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// TestRandomWalk drives rollouts with random requests, commands, worker
// behaviour and clock jumps. Every transition is checked by the world's
// invariants (versions, JSON round trip, wakeups in the future, unique
// ids, ordered sequence numbers, no traffic to an aborted canary, ignored
// redeliveries). Then the workers recover, and retry, resume and a full
// promotion must bring every rollout to Healthy.
func TestRandomWalk(t *testing.T) {
	// WALK_SEEDS and WALK_STREAM widen the search, e.g. WALK_SEEDS=1000.
	seeds, stream := 16, uint64(7)
	if s := os.Getenv("WALK_SEEDS"); s != "" {
		seeds, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("WALK_STREAM"); s != "" {
		stream, _ = strconv.ParseUint(s, 10, 64)
	}
	if testing.Short() {
		seeds = 4
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			rnd := rand.New(rand.NewPCG(uint64(seed), stream))
			w := newWorld(t, Config{})
			for range 200 {
				randomAction(w, rnd)
			}
			recoverWorld(w)
			if w.st.inProgress() || w.st.Phase != events.PhaseHealthy {
				t.Fatalf("not healthy after recovery: phase %s (%s), revision %d stable %d",
					w.st.Phase, w.st.Message, w.st.Revision, w.st.StableRevision)
			}
		})
	}
}

func randomRollout(rnd *rand.Rand) *spec.Rollout {
	replicas := rnd.Int32N(5) + 1
	var ro *spec.Rollout
	switch rnd.IntN(6) {
	case 0:
		ro = basicCanary(replicas, intStr(rnd.Int32N(2)), intStr(1), setWeight(30), pauseFor(20), setWeight(60), pauseIndefinitely())
	case 1:
		ro = nginxCanary(replicas, setWeight(20), analysisStep("smoke"), pauseFor(15), setWeight(70))
		ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("bg"), StartingStep: ptr(int32(1))}
	case 2:
		ro = nginxCanary(replicas, spec.CanaryStep{SetCanaryScale: &spec.SetCanaryScale{Replicas: ptr(int32(1))}}, setWeight(40), pauseIndefinitely())
		ro.Spec.Strategy.Canary.DynamicStableScale = rnd.IntN(2) == 0
		if ro.Spec.Strategy.Canary.DynamicStableScale {
			ro.Spec.Strategy.Canary.ScaleDownDelaySeconds = nil
		}
	case 3:
		header := spec.SetHeaderRoute{Name: "header", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Canary", HeaderValue: &spec.StringMatch{Exact: "1"}}}}
		ro = istioCanary(replicas, setWeight(10), spec.CanaryStep{SetHeaderRoute: &header}, pauseFor(30), setWeight(50))
	case 4:
		ro = blueGreen(replicas, spec.BlueGreenStrategy{PreviewReplicaCount: ptr(int32(1)), AutoPromotionEnabled: ptr(false),
			PrePromotionAnalysis: analysisRef("smoke"), PostPromotionAnalysis: analysisRef("error-rate")})
	default:
		ro = blueGreen(replicas, spec.BlueGreenStrategy{AutoPromotionSeconds: 20, ScaleDownDelaySeconds: ptr(int32(10)), AbortScaleDownDelaySeconds: ptr(rnd.Int32N(2) * 30)})
	}
	ro.Spec.ProgressDeadlineSeconds = ptr(int32(120))
	ro.Spec.ProgressDeadlineAbort = rnd.IntN(2) == 0
	ro.Spec.RevisionHistoryLimit = ptr(rnd.Int32N(3))
	ro.Spec.Paused = rnd.IntN(10) == 0
	return image(ro, fmt.Sprintf("web:%d", rnd.IntN(4)+1))
}

var services = []string{tasks.ServiceReplicas, tasks.ServiceTraffic, tasks.ServiceAnalyzer}

var phases = []string{string(phaseSuccessful), string(phaseFailed), string(phaseError), string(phaseInconclusive)}

func randomAction(w *world, rnd *rand.Rand) {
	switch n := rnd.IntN(100); {
	case n < 12 || w.st.Revision == 0:
		w.request(randomRollout(rnd))
	case n < 30:
		kinds := []string{CommandPromote, CommandAbort, CommandRetry, CommandPause, CommandResume, CommandUndo}
		c := Command{Kind: kinds[rnd.IntN(len(kinds))], Full: rnd.IntN(3) == 0}
		if c.Kind == CommandUndo {
			c.ToRevision = rnd.Int64N(4)
		}
		w.apply(Observation{Command: &c})
	case n < 55:
		// Answer some tasks, in order.
		for k := rnd.IntN(4); k >= 0 && len(w.pending) > 0; k-- {
			tk := w.pending[0]
			w.pending = w.pending[1:]
			w.answer(tk)
		}
	case n < 62:
		w.settle()
	case n < 70:
		for name, run := range w.running {
			w.finishRun(run.Analysis.Purpose, phases[rnd.IntN(len(phases))])
			_ = name
			break
		}
	case n < 82:
		w.advance(time.Duration(rnd.IntN(90)) * time.Second)
	case n < 88:
		svc := services[rnd.IntN(len(services))]
		switch rnd.IntN(4) {
		case 0:
			if w.down[svc] {
				w.up(svc)
			} else {
				w.down[svc] = true
			}
		case 1:
			w.failNext[svc] = rnd.IntN(3)
		case 2:
			w.hang[svc] = !w.hang[svc] && svc != tasks.ServiceReplicas
		default:
			w.broken[hashOf(fmt.Sprintf("web:%d", rnd.IntN(4)+1))] = rnd.IntN(2) == 0
		}
	case n < 94:
		for name, v := range map[string]string{purposeStep: "", purposeBackground: "", purposePrePromotion: "", purposePostPromotion: ""} {
			_ = v
			if rnd.IntN(2) == 0 {
				w.verdicts[name] = phases[rnd.IntN(len(phases))]
			} else {
				delete(w.verdicts, name)
			}
		}
	default:
		// Reports nobody asked for.
		w.apply(Observation{Finished: &tasks.Finished{TaskID: fmt.Sprintf("shop/web/r%d/scale/%d", rnd.IntN(5), rnd.IntN(30)), Attempt: rnd.IntN(3), Outcome: tasks.OutcomeSucceeded}})
		w.apply(Observation{Started: &tasks.Started{TaskID: fmt.Sprintf("shop/web/r%d/route/%d", rnd.IntN(5), rnd.IntN(30)), Attempt: 1}})
	}
}

// recoverWorld makes every worker healthy, redelivers what was lost, and
// asks the rollout to finish.
func recoverWorld(w *world) {
	w.t.Helper()
	for _, svc := range services {
		w.up(svc)
	}
	clear(w.hang)
	clear(w.broken)
	clear(w.failNext)
	for _, p := range []string{purposeStep, purposeBackground, purposePrePromotion, purposePostPromotion} {
		w.verdicts[p] = string(phaseSuccessful)
	}
	w.pending = append(w.pending, w.stuck...)
	w.stuck = nil
	w.settle()
	for len(w.running) > 0 {
		for _, run := range w.running {
			w.finishRun(run.Analysis.Purpose, string(phaseSuccessful))
			break
		}
	}
	w.command(CommandResume)
	w.command(CommandRetry)
	w.advance(10 * time.Minute)
	w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
	w.command(CommandPromote)
	w.advance(10 * time.Minute)
}
