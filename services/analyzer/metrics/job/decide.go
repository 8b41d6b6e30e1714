package job

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Labels and annotations of the Jobs the provider creates. The
// analysisrun.argoproj.io annotations are Argo Rollouts'; Sluice has no
// AnalysisRun UID, so Argo's uid label is not set.
const (
	// LabelRollout is the rollout's name.
	LabelRollout = "analysis.sluice.io/rollout"
	// LabelMetric is the metric's name (a hashed form when the name is
	// not a valid label value). With LabelRollout it selects the Jobs a
	// measurement's garbage collection considers.
	LabelMetric = "analysis.sluice.io/metric"
	// AnnotationMeasurement is the measurement's ID: a Job found under
	// the measurement's name is adopted only when it carries the same.
	AnnotationMeasurement = "analysis.sluice.io/measurement"

	AnnotationRunName      = "analysisrun.argoproj.io/name"
	AnnotationRunNamespace = "analysisrun.argoproj.io/namespace"
	AnnotationMetricName   = "analysisrun.argoproj.io/metric-name"
)

// Measurement metadata keys, Argo Rollouts' names.
const (
	MetadataJobName      = "job-name"
	MetadataJobNamespace = "job-namespace"
)

// maxName is the longest Job name: the Job controller copies it into its
// pods' job-name label, whose values stop at 63 characters.
const maxName = validation.DNS1123LabelMaxLength

// hashLen is the length of the hash suffix of names and label values.
const hashLen = 10

// jobName names the Job of measurement id ("<run>.<metric>.<n>"): a DNS
// label of at most 63 characters, the id made lower case with every other
// character than a letter, digit or '-' a '-', cut to fit, followed by a
// hash of the whole id. The same id always gives the same name, so a
// replica measuring in place of a dead one finds the Job; two ids that
// read alike differ by their hash.
func jobName(id string) string {
	return hashed(id, maxName)
}

// hashed is s sanitized to a DNS label prefix and suffixed with a hash of
// s, at most max characters.
func hashed(s string, max int) string {
	sum := sha256.Sum256([]byte(s))
	suffix := hex.EncodeToString(sum[:])[:hashLen]
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	prefix := strings.TrimRight(b.String(), "-")
	if room := max - hashLen - 1; len(prefix) > room {
		prefix = strings.TrimRight(prefix[:room], "-")
	}
	if prefix == "" {
		return "job-" + suffix
	}
	return prefix + "-" + suffix
}

// metricLabel is name as a label value: itself when valid, else hashed.
func metricLabel(name string) string {
	if len(validation.IsValidLabelValue(name)) == 0 {
		return name
	}
	return hashed(name, validation.LabelValueMaxLength)
}

// newJob is the Job of req: the metric's metadata and spec, named after
// the measurement, with Argo Rollouts' annotations and Sluice's labels
// added.
func newJob(req metrics.Request) *batchv1.Job {
	jm := req.Metric.Provider.Job
	labels := maps.Clone(jm.Metadata.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelRollout] = req.Rollout
	labels[LabelMetric] = metricLabel(req.Metric.Name)
	annotations := maps.Clone(jm.Metadata.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationRunName] = req.Run
	annotations[AnnotationRunNamespace] = req.Namespace
	annotations[AnnotationMetricName] = req.Metric.Name
	annotations[AnnotationMeasurement] = req.ID
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        jobName(req.ID),
			Namespace:   req.Namespace,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: *jm.Spec.DeepCopy(),
	}
}

// outcome is what a Job's conditions say: Successful once it is Complete
// (or SuccessCriteriaMet, which comes first on Kubernetes 1.31 and
// later), Failed once it is Failed (or FailureTarget), with the
// condition's reason and message. done is false while it runs.
func outcome(job *batchv1.Job) (phase spec.AnalysisPhase, reason string, done bool) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			return spec.AnalysisPhaseSuccessful, "", true
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			return spec.AnalysisPhaseFailed, conditionText(c), true
		}
	}
	return "", "", false
}

func conditionText(c batchv1.JobCondition) string {
	switch {
	case c.Reason != "" && c.Message != "":
		return c.Reason + ": " + c.Message
	case c.Reason != "":
		return c.Reason
	}
	return c.Message
}

// podFailure describes the last container of pods that ended with a
// non-zero exit code (its current or, after a restart, its last
// state): pod, container, exit code, reason and termination message.
// It is empty when no container failed.
func podFailure(pods []corev1.Pod) string {
	var last *corev1.ContainerStateTerminated
	var where string
	for _, pod := range pods {
		for _, cs := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
			for _, t := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
				if t == nil || t.ExitCode == 0 {
					continue
				}
				if last == nil || t.FinishedAt.After(last.FinishedAt.Time) {
					last, where = t, fmt.Sprintf("pod %s container %s", pod.Name, cs.Name)
				}
			}
		}
	}
	if last == nil {
		return ""
	}
	s := fmt.Sprintf("%s exited with code %d", where, last.ExitCode)
	if last.Reason != "" {
		s += " (" + last.Reason + ")"
	}
	if msg := strings.TrimSpace(last.Message); msg != "" {
		s += ": " + tail(msg)
	}
	return s
}

// terminalWaiting are the reasons a container waits for that no retry
// cures, as Argo Rollouts lists them: its Job would never finish.
var terminalWaiting = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true}

// stuck describes the first container of pods that waits for a reason in
// terminalWaiting, or "" when none does.
func stuck(pods []corev1.Pod) string {
	for _, pod := range pods {
		for _, cs := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses) {
			if w := cs.State.Waiting; w != nil && terminalWaiting[w.Reason] {
				s := fmt.Sprintf("pod %s container %s cannot start (%s)", pod.Name, cs.Name, w.Reason)
				if msg := strings.TrimSpace(w.Message); msg != "" {
					s += ": " + tail(msg)
				}
				return s
			}
		}
	}
	return ""
}

// stale returns the Jobs to delete so that the newest keep of jobs stay,
// oldest first; current is never one of them.
func stale(jobs []batchv1.Job, keep int, current string) []batchv1.Job {
	others := slices.DeleteFunc(slices.Clone(jobs), func(j batchv1.Job) bool { return j.Name == current })
	slices.SortFunc(others, func(a, b batchv1.Job) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	// The current Job is one of the kept.
	if n := len(others) - (keep - 1); n > 0 {
		return others[:n]
	}
	return nil
}
