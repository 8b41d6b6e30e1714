package job

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

func TestJobNameIsAStableDNSLabel(t *testing.T) {
	long := strings.Repeat("checkout-", 12) + "1-2.smoke.3"
	for _, tc := range []struct {
		name, id, prefix string
	}{
		{"plain", "web-6d4f9-1-2.smoke.1", "web-6d4f9-1-2-smoke-1-"},
		{"upper case and symbols", "Web_6D4F9.Smoke Test.10", "web-6d4f9-smoke-test-10-"},
		{"long", long, "checkout-checkout-checkout-checkout-checkout-checkou"},
		{"nothing usable", "...", "job-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := jobName(tc.id)
			if msgs := validation.IsDNS1123Label(got); len(msgs) > 0 {
				t.Fatalf("jobName(%q) = %q: %v", tc.id, got, msgs)
			}
			if !strings.HasPrefix(got, tc.prefix) {
				t.Errorf("jobName(%q) = %q, want prefix %q", tc.id, got, tc.prefix)
			}
			if again := jobName(tc.id); again != got {
				t.Errorf("not stable: %q then %q", got, again)
			}
		})
	}
	if a, b := jobName("run.a-b.1"), jobName("run.a.b.1"); a == b {
		t.Errorf("ids that sanitize alike share the name %q", a)
	}
}

func TestNewJobKeepsTheTemplateAndAddsArgosAnnotations(t *testing.T) {
	req := metrics.Request{
		Namespace: "shop", Rollout: "web", Run: "web-abc-1-2", ID: "web-abc-1-2.smoke.1",
		Metric: spec.Metric{Name: "smoke", Provider: spec.MetricProvider{Job: &spec.JobMetric{
			Metadata: metav1.ObjectMeta{Labels: map[string]string{"team": "shop"}, Annotations: map[string]string{"note": "x"}},
			Spec:     batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever}}},
		}}},
	}
	job := newJob(req)
	if job.Namespace != "shop" || job.Name != jobName(req.ID) {
		t.Errorf("job %s/%s", job.Namespace, job.Name)
	}
	for k, v := range map[string]string{"team": "shop", LabelRollout: "web", LabelMetric: "smoke"} {
		if job.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, job.Labels[k], v)
		}
	}
	for k, v := range map[string]string{"note": "x", AnnotationRunName: "web-abc-1-2", AnnotationRunNamespace: "shop", AnnotationMetricName: "smoke", AnnotationMeasurement: req.ID} {
		if job.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, job.Annotations[k], v)
		}
	}
	if _, ok := req.Metric.Provider.Job.Metadata.Labels[LabelRollout]; ok {
		t.Error("newJob changed the metric's labels")
	}
	if got := metricLabel("Smoke Test!"); len(validation.IsValidLabelValue(got)) > 0 {
		t.Errorf("metricLabel gave an invalid label value %q", got)
	}
}

func TestOutcomeReadsTheJobConditions(t *testing.T) {
	cond := func(typ batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: typ, Status: status, Reason: reason, Message: msg}
	}
	for _, tc := range []struct {
		name   string
		conds  []batchv1.JobCondition
		phase  spec.AnalysisPhase
		reason string
		done   bool
	}{
		{"running", nil, "", "", false},
		{"complete", []batchv1.JobCondition{cond(batchv1.JobComplete, corev1.ConditionTrue, "", "")}, spec.AnalysisPhaseSuccessful, "", true},
		{"success criteria met", []batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, "CompletionsReached", "")}, spec.AnalysisPhaseSuccessful, "", true},
		{"failed", []batchv1.JobCondition{cond(batchv1.JobFailed, corev1.ConditionTrue, "BackoffLimitExceeded", "Job has reached the specified backoff limit")}, spec.AnalysisPhaseFailed, "BackoffLimitExceeded: Job has reached the specified backoff limit", true},
		{"failure target", []batchv1.JobCondition{cond(batchv1.JobFailureTarget, corev1.ConditionTrue, "DeadlineExceeded", "")}, spec.AnalysisPhaseFailed, "DeadlineExceeded", true},
		{"false conditions", []batchv1.JobCondition{cond(batchv1.JobFailed, corev1.ConditionFalse, "x", ""), cond(batchv1.JobSuspended, corev1.ConditionTrue, "", "")}, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			phase, reason, done := outcome(&batchv1.Job{Status: batchv1.JobStatus{Conditions: tc.conds}})
			if phase != tc.phase || reason != tc.reason || done != tc.done {
				t.Errorf("outcome = %q, %q, %v; want %q, %q, %v", phase, reason, done, tc.phase, tc.reason, tc.done)
			}
		})
	}
}

func TestPodFailureNamesTheLastFailedContainer(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(1000+int64(s), 0)) }
	term := func(code int32, reason, msg string, s int) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg, FinishedAt: at(s)}}
	}
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "smoke", State: term(2, "Error", "first try", 1)}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "smoke", State: term(1, "Error", "smoke failed\n", 5)},
			{Name: "sidecar", State: term(0, "Completed", "", 9)},
		}}},
	}
	if got, want := podFailure(pods), "pod b container smoke exited with code 1 (Error): smoke failed"; got != want {
		t.Errorf("podFailure = %q, want %q", got, want)
	}
	if got := podFailure(pods[1:][:0]); got != "" {
		t.Errorf("no pods: %q", got)
	}
}

func TestStaleKeepsTheNewest(t *testing.T) {
	job := func(name string, s int) batchv1.Job {
		return batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(int64(s), 0))}}
	}
	jobs := []batchv1.Job{job("d", 4), job("a", 1), job("c", 3), job("b", 1), job("e", 5)}
	names := func(js []batchv1.Job) string {
		var out []string
		for _, j := range js {
			out = append(out, j.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name    string
		keep    int
		current string
		want    string
	}{
		{"keep three", 3, "e", "a,b"},
		{"keep all", 5, "e", ""},
		{"keep one", 1, "e", "a,b,c,d"},
		{"current is never deleted", 1, "a", "b,c,d,e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(stale(jobs, tc.keep, tc.current)); got != tc.want {
				t.Errorf("stale = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	if got := tail("  short\n"); got != "short" {
		t.Errorf("tail = %q", got)
	}
	long := strings.Repeat("x", MaxOutput) + "é" + strings.Repeat("y", 10)
	got := tail(long)
	if !strings.HasPrefix(got, "...") || !strings.HasSuffix(got, "yyyyyyyyyy") || len(got) > MaxOutput+3 {
		t.Errorf("tail of %d bytes: %d bytes, %q...", len(long), len(got), got[:10])
	}
}

func TestStuckFindsContainersThatCannotStart(t *testing.T) {
	waiting := func(name, reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	for _, tc := range []struct {
		name string
		pod  corev1.PodStatus
		want string
	}{
		{"creating", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("smoke", "ContainerCreating", "")}}, ""},
		{"image pull", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("smoke", "ErrImagePull", "pull access denied")}}, "pod p container smoke cannot start (ErrImagePull): pull access denied"},
		{"back-off", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("smoke", "ImagePullBackOff", "")}}, "pod p container smoke cannot start (ImagePullBackOff)"},
		{"init container", corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{waiting("init", "InvalidImageName", "bad ref")}}, "pod p container init cannot start (InvalidImageName): bad ref"},
		{"crash loop is not stuck", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("smoke", "CrashLoopBackOff", "")}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stuck([]corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: tc.pod}}); got != tc.want {
				t.Errorf("stuck = %q, want %q", got, tc.want)
			}
		})
	}
}
