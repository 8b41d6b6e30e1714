package machine

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config
		wantErr bool
	}{
		{name: "zero means the defaults", want: Config{TaskStartTimeout: 30 * time.Second, TaskMaxAttempts: 3, RouteFinishTimeout: time.Minute}},
		{name: "set fields are kept", cfg: Config{TaskStartTimeout: time.Second, TaskMaxAttempts: 1, RouteFinishTimeout: 2 * time.Second},
			want: Config{TaskStartTimeout: time.Second, TaskMaxAttempts: 1, RouteFinishTimeout: 2 * time.Second}},
		{name: "negative timeout", cfg: Config{TaskStartTimeout: -time.Second}, wantErr: true},
		{name: "negative attempts", cfg: Config{TaskMaxAttempts: -1}, wantErr: true},
		{name: "negative route timeout", cfg: Config{RouteFinishTimeout: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr || err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if got := tt.cfg.effective(); got.Validate() != nil {
					t.Fatalf("effective config %+v is invalid", got)
				}
				return
			}
			got := tt.cfg
			got.Defaults()
			if got != tt.want {
				t.Fatalf("Defaults: %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPodTemplateHash(t *testing.T) {
	label := regexp.MustCompile(`^[bcdfghjklmnpqrstvwxz2456789]{1,10}$`)
	withEnv := podTemplate("web:1")
	withEnv.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
	reordered := podTemplate("web:1")
	reordered.Labels = map[string]string{"tier": "front", "app": "web"}
	reordered2 := podTemplate("web:1")
	reordered2.Labels = map[string]string{"app": "web", "tier": "front"}
	tests := []struct {
		name string
		a, b corev1.PodTemplateSpec
		same bool
	}{
		{"same template, same hash", podTemplate("web:1"), podTemplate("web:1"), true},
		{"another image", podTemplate("web:1"), podTemplate("web:2"), false},
		{"an added variable", podTemplate("web:1"), withEnv, false},
		{"label order does not matter", reordered, reordered2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := PodTemplateHash(tt.a), PodTemplateHash(tt.b)
			if !label.MatchString(a) || !label.MatchString(b) {
				t.Fatalf("hashes %q %q are not pod-template-hash labels", a, b)
			}
			if (a == b) != tt.same {
				t.Fatalf("hashes %q %q, want same=%v", a, b, tt.same)
			}
		})
	}
	// A stored state must keep matching: the hash of a template is fixed.
	if got := PodTemplateHash(podTemplate("web:1")); got != h1 {
		t.Fatalf("hash changed between calls: %s %s", got, h1)
	}
}

func TestSnapshot(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *world)
		check func(t *testing.T, s events.Snapshot)
	}{
		{"nothing requested", func(w *world) {}, func(t *testing.T, s events.Snapshot) {
			if s.Phase != "" || s.Revision != 0 || s.StepIndex != nil {
				t.Fatalf("%+v", s)
			}
		}},
		{"canary in a pause step", func(w *world) {
			ro := nginxCanary(10, setWeight(30), pauseIndefinitely())
			ro.Spec.Strategy.Canary.TrafficRouting.MaxTrafficWeight = ptr(int32(1000))
			ro.Spec.Strategy.Canary.Steps[0] = setWeight(300)
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
		}, func(t *testing.T, s events.Snapshot) {
			if s.Phase != events.PhasePaused || *s.StepIndex != 1 || s.StepCount != 2 || s.Strategy != "canary" {
				t.Fatalf("%+v", s)
			}
			if s.CanaryWeight != 30 || s.StableWeight != 70 {
				t.Fatalf("weights %d/%d, want 30/70 of a maxTrafficWeight of 1000", s.CanaryWeight, s.StableWeight)
			}
			if s.Replicas != (events.Replicas{Desired: 10, Current: 13, Updated: 3, Ready: 13, Available: 13}) {
				t.Fatalf("replicas %+v", s.Replicas)
			}
			if len(s.PauseConditions) != 1 || s.PauseConditions[0].Reason != PauseCanaryStep || !s.PauseConditions[0].StartTime.Equal(t0) {
				t.Fatalf("pause conditions %+v", s.PauseConditions)
			}
			if s.Revision != 2 || s.StableRevision != 1 || s.PodHash != h2 || s.StablePodHash != h1 || s.Message != PauseCanaryStep {
				t.Fatalf("%+v", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, Config{})
			tt.setup(w)
			s := w.snap()
			if !s.UpdatedAt.Equal(w.now) {
				t.Fatalf("updatedAt %s", s.UpdatedAt)
			}
			tt.check(t, s)
		})
	}
}

func TestEveryStatusEventCarriesItsSnapshot(t *testing.T) {
	w := newWorld(t, Config{})
	ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
	start(w, ro)
	effs := w.apply(Observation{Request: image(ro, "web:2")})
	want := []struct {
		typ   string
		phase string
		step  *int32
	}{
		{events.TypeRolloutAccepted, events.PhaseProgressing, ptr(int32(0))},
		{events.TypeRolloutStepStarted, events.PhaseProgressing, ptr(int32(0))},
	}
	var got []StatusEvent
	for _, e := range effs {
		if e.Status != nil {
			got = append(got, *e.Status)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("events %s", describeEffects(effs))
	}
	for i, ev := range got {
		if ev.Type != want[i].typ || ev.Data.Status.Phase != want[i].phase || *ev.Data.Status.StepIndex != *want[i].step {
			t.Errorf("event %d: %s %s step %v", i, ev.Type, ev.Data.Status.Phase, ev.Data.Status.StepIndex)
		}
		if wantID := "shop/web/v" + itoa(w.st.Version) + "/" + itoa(int64(i)); ev.ID != wantID {
			t.Errorf("event %d id %s, want %s", i, ev.ID, wantID)
		}
	}
	if st := got[1].Data.Step; st == nil || st.Action != "setWeight" || st.Detail != "setWeight 25" {
		t.Errorf("step info %+v", st)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestDeterministic runs one scenario twice: the effects, task IDs and
// event IDs are the same.
func TestDeterministic(t *testing.T) {
	run := func() ([]StatusEvent, []tasks.Task) {
		w := newWorld(t, Config{})
		ro := nginxCanary(4, setWeight(25), analysisStep("smoke"), pauseFor(30))
		w.verdicts[purposeStep] = string(phaseSuccessful)
		start(w, ro)
		w.request(image(ro, "web:2"))
		w.advance(time.Minute)
		return w.events, w.sent
	}
	e1, t1 := run()
	e2, t2 := run()
	if !reflect.DeepEqual(e1, e2) || !reflect.DeepEqual(t1, t2) {
		t.Fatalf("two runs differ")
	}
	var ids []string
	for _, tk := range t1 {
		ids = append(ids, tk.EventID())
	}
	want := "shop/web/r1/scale/1#1 shop/web/r1/route/1#1 shop/web/r2/scale/2#1 shop/web/r2/route/2#1 shop/web/r2/route/3#1 " +
		"shop/web/r2/analysis-step-1/1#1 shop/web/r2/scale/3#1 shop/web/r2/route/4#1 shop/web/r2/scale/4#1 shop/web/r2/route/5#1 " +
		"shop/web/r2/scale/5#1"
	if got := strings.Join(ids, " "); got != want {
		t.Fatalf("task ids\n%s\nwant\n%s", got, want)
	}
}

// TestStateStaysLean updates a rollout many times: the history keeps
// revisionHistoryLimit revisions besides the current and stable ones, and
// the stored state stays well under 20 KB.
func TestStateStaysLean(t *testing.T) {
	w := newWorld(t, Config{})
	ro := nginxCanary(4, setWeight(25), pauseFor(10), setWeight(50), analysisStep("smoke"), pauseFor(10))
	ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate")}
	ro.Annotations = map[string]string{lastAppliedAnnotation: strings.Repeat("x", 4000)}
	ro.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "REGION", Value: "eu-west-1"}}
	ro.Spec.Template.Spec.Containers[0].Args = []string{"--port", "$(PORT)", "--metrics"}
	w.verdicts[purposeStep] = string(phaseSuccessful)
	start(w, ro)
	largest := 0
	for i := 2; i <= 15; i++ {
		w.request(image(ro, "web:"+itoa(int64(i))))
		w.advance(time.Minute)
		w.expectPhase(events.PhaseHealthy)
		b, _ := json.Marshal(w.st)
		largest = max(largest, len(b))
	}
	if n := len(w.st.History); n != 11 {
		t.Fatalf("history keeps %d revisions, want 10 old ones and the current", n)
	}
	if largest > 12_000 {
		t.Fatalf("state is %d bytes", largest)
	}
	t.Logf("largest state: %d bytes", largest)
}

func TestMalformedInput(t *testing.T) {
	noStrategy := rollout(3, "web:1")
	both := nginxCanary(3)
	both.Spec.Strategy.BlueGreen = &spec.BlueGreenStrategy{ActiveService: "web"}
	badWeight := basicCanary(3, intstr.FromInt32(1), intstr.FromInt32(0), setWeight(150))
	noReplicas := nginxCanary(3)
	noReplicas.Spec.Replicas = nil
	tests := []struct {
		name       string
		ro         *spec.Rollout
		wantReject string
	}{
		{"no strategy", noStrategy, "spec.strategy: Required value"},
		{"two strategies", both, "spec.strategy"},
		{"weight above 100", badWeight, "spec.strategy.canary.steps[0].setWeight"},
		{"unset replicas mean one", noReplicas, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, Config{})
			w.request(tt.ro)
			w.settle()
			if tt.wantReject == "" {
				w.expectPhase(events.PhaseHealthy)
				w.expectPods(map[int64]int32{1: 1})
				return
			}
			ev := w.lastEvent("rollout.rejected")
			if !strings.Contains(strings.Join(ev.Data.Errors, "\n"), tt.wantReject) || w.st.Revision != 0 {
				t.Fatalf("rejected %v", ev.Data.Errors)
			}
			// A valid request then creates the rollout.
			w.request(nginxCanary(2))
			w.settle()
			w.expectPhase(events.PhaseHealthy)
		})
	}
}
