package plugin

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// argoMetric is metric as Argo Rollouts' type: Sluice's spec.Metric has
// Argo's field names, so its JSON is Argo's.
func argoMetric(metric spec.Metric) (v1alpha1.Metric, error) {
	var am v1alpha1.Metric
	b, err := json.Marshal(metric)
	if err != nil {
		return am, err
	}
	if err := json.Unmarshal(b, &am); err != nil {
		return am, fmt.Errorf("metric %q as Argo Rollouts' Metric: %w", metric.Name, err)
	}
	return am, nil
}

// analysisRun is the AnalysisRun a plugin is given: the run's name and
// namespace, owned by the rollout as Argo's are, with the one metric
// being measured. Sluice keeps no AnalysisRun object; its measurements and
// results are not included.
func analysisRun(req metrics.Request, metric v1alpha1.Metric) *v1alpha1.AnalysisRun {
	run := &v1alpha1.AnalysisRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "AnalysisRun"},
		ObjectMeta: metav1.ObjectMeta{Name: req.Run, Namespace: req.Namespace},
		Spec:       v1alpha1.AnalysisRunSpec{Metrics: []v1alpha1.Metric{metric}},
		Status:     v1alpha1.AnalysisRunStatus{Phase: v1alpha1.AnalysisPhaseRunning},
	}
	if req.Rollout != "" {
		run.OwnerReferences = []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: req.Rollout}}
	}
	return run
}

// measurement is what the plugin measured, for the analyzer. The plugin
// judges by itself, as Argo Rollouts has it do: its phase is the verdict
// and the metric's conditions are not evaluated again. Metadata is the
// plugin's GetMetadata under the measurement's own.
func measurement(am v1alpha1.Measurement, metadata map[string]string) metrics.Measurement {
	m := metrics.Measurement{
		Phase:   spec.AnalysisPhase(am.Phase),
		Value:   am.Value,
		Message: strings.TrimSpace(am.Message),
	}
	if len(metadata)+len(am.Metadata) > 0 {
		m.Metadata = make(map[string]string, len(metadata)+len(am.Metadata))
		maps.Copy(m.Metadata, metadata)
		maps.Copy(m.Metadata, am.Metadata)
	}
	return m
}

// completed reports whether the plugin is done with am: Argo Rollouts
// resumes a measurement until its phase is one of the four verdicts.
func completed(am v1alpha1.Measurement) bool { return am.Phase.Completed() }
