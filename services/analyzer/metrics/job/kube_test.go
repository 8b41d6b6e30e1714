package job

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/rolloutobj"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// analyzerRules are the analyzer ClusterRole's rules for the job provider
// (deploy/base/analyzer.yaml), granted here in one namespace.
var analyzerRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
	{APIGroups: []string{"argoproj.io"}, Resources: []string{"rollouts", "experiments"}, Verbs: []string{"get"}},
}

// analyzerClient returns the clients (Config.Kube and Config.Dynamic) of
// a ServiceAccount of namespace that has analyzerRules there and nothing
// else, so that the tests prove the deployed RBAC is enough.
func analyzerClient(t *testing.T, cp *kubetest.ControlPlane, namespace string) Config {
	t.Helper()
	return accountClient(t, cp, namespace, "sluice-analyzer", analyzerRules)
}

// accountClient returns the clients of ServiceAccount name of namespace,
// which has rules there and nothing else.
func accountClient(t *testing.T, cp *kubetest.ControlPlane, namespace, name string, rules []rbacv1.PolicyRule) Config {
	t.Helper()
	cfg := cp.AccountConfig(t, namespace, kubetest.Account{Name: name, Rules: rules, Allowed: func(ctx context.Context, c kubernetes.Interface) error {
		_, err := c.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{})
		return err
	}})
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Kube: client, Dynamic: dyn}
}

// kubeRequest is measurement n of metric in namespace, of a Job whose
// pod labels and annotations are given (kubetest's stages read them).
func kubeRequest(namespace, metric string, n int, podLabels, podAnnotations map[string]string) metrics.Request {
	backoff := int32(0)
	run := "web-6d4f9-1-2"
	return metrics.Request{
		Namespace: namespace, Rollout: "web", Run: run, ID: fmt.Sprintf("%s.%s.%d", run, metric, n),
		Metric: spec.Metric{Name: metric, Provider: spec.MetricProvider{Job: &spec.JobMetric{
			Metadata: metav1.ObjectMeta{Labels: map[string]string{"team": "shop"}},
			Spec: batchv1.JobSpec{
				BackoffLimit: &backoff,
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
					Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicyNever,
						Containers:    []corev1.Container{{Name: "smoke", Image: "curlimages/curl", Command: []string{"sh", "-c", "curl -f http://web/healthz"}}},
					},
				},
			},
		}}},
	}
}

// kubeProvider is a provider of cfg with the clients of clients.
func kubeProvider(t *testing.T, clients Config, cfg Config) *Provider {
	t.Helper()
	cfg.Kube, cfg.Dynamic = clients.Kube, clients.Dynamic
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func jobNames(t *testing.T, client kubernetes.Interface, namespace string) []string {
	t.Helper()
	list, err := client.BatchV1().Jobs(namespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range list.Items {
		names = append(names, j.Name)
	}
	sort.Strings(names)
	return names
}

// TestKubeJobs runs Jobs on the real control plane: the Job controller
// creates their pods and kwok's stages end them, Succeeded or (labelled
// kubetest.sluice.io/fail) Failed.
func TestKubeJobs(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	client := analyzerClient(t, cp, ns)
	p := kubeProvider(t, client, Config{})
	fail := map[string]string{kubetest.LabelFail: "true"}
	for _, tc := range []struct {
		name        string
		req         metrics.Request
		phase       spec.AnalysisPhase
		messageHas  []string
		annotations map[string]string
	}{
		{
			name:       "passes",
			req:        kubeRequest(ns, "smoke", 1, nil, nil),
			phase:      spec.AnalysisPhaseSuccessful,
			messageHas: []string{"Job " + ns + "/web-6d4f9-1-2-smoke-1-", " completed"},
		},
		{
			name:  "fails with the container's termination message",
			req:   kubeRequest(ns, "smoke-fail", 1, fail, map[string]string{kubetest.AnnotationExitCode: "3", kubetest.AnnotationMessage: "smoke failed: 503 from /healthz"}),
			phase: spec.AnalysisPhaseFailed,
			messageHas: []string{
				" failed: BackoffLimitExceeded: Job has reached the specified backoff limit",
				"container smoke exited with code 3 (Error): smoke failed: 503 from /healthz",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(t.Context(), tc.req)
			if m.Phase != tc.phase {
				t.Fatalf("phase %q, want %q: %s", m.Phase, tc.phase, m.Message)
			}
			for _, s := range tc.messageHas {
				if !strings.Contains(m.Message, s) {
					t.Errorf("message %q lacks %q", m.Message, s)
				}
			}
			name := jobName(tc.req.ID)
			if m.Metadata[MetadataJobName] != name || m.Metadata[MetadataJobNamespace] != ns {
				t.Errorf("metadata %v", m.Metadata)
			}
			job, err := cp.Client.BatchV1().Jobs(ns).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("the Job is kept after it finished: %v", err)
			}
			for k, v := range map[string]string{"team": "shop", LabelRollout: "web", LabelMetric: tc.req.Metric.Name} {
				if job.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, job.Labels[k], v)
				}
			}
			for k, v := range map[string]string{AnnotationRunName: tc.req.Run, AnnotationRunNamespace: ns, AnnotationMetricName: tc.req.Metric.Name, AnnotationMeasurement: tc.req.ID} {
				if job.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, job.Annotations[k], v)
				}
			}
			// No Rollout object web (nor, unless a test before installed
			// it, Argo's CRD): no owner.
			if len(job.OwnerReferences) != 0 {
				t.Errorf("owners %v, want none", job.OwnerReferences)
			}
		})
	}
}

// TestKubeJobsKeepTheLastOfEachMetric: Jobs past Config.Keep of a metric
// are deleted, oldest first; another metric's are not.
func TestKubeJobsKeepTheLastOfEachMetric(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	client := analyzerClient(t, cp, ns)
	p := kubeProvider(t, client, Config{Keep: 2})
	other := kubeRequest(ns, "other", 1, nil, nil)
	if m := p.Measure(t.Context(), other); m.Phase != spec.AnalysisPhaseSuccessful {
		t.Fatalf("%s: %s", m.Phase, m.Message)
	}
	var reqs []metrics.Request
	for n := 1; n <= 4; n++ {
		req := kubeRequest(ns, "smoke", n, nil, nil)
		reqs = append(reqs, req)
		if m := p.Measure(t.Context(), req); m.Phase != spec.AnalysisPhaseSuccessful {
			t.Fatalf("measurement %d: %s: %s", n, m.Phase, m.Message)
		}
	}
	want := []string{jobName(other.ID), jobName(reqs[2].ID), jobName(reqs[3].ID)}
	sort.Strings(want)
	// Deleted Jobs go once their pods' finalizers are handled.
	poll.Until(t, "the Jobs beyond the last 2 of metric smoke to be gone", func() error {
		if got := jobNames(t, cp.Client, ns); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("Jobs %v, want %v", got, want)
		}
		return nil
	})
}

// TestKubeJobIsAdoptedByTheSameMeasurement: a replica measuring in place
// of a dead one (same ID) waits for the Job the first created instead of
// running a second; a Job of that name from elsewhere is not adopted.
func TestKubeJobIsAdoptedByTheSameMeasurement(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	client := analyzerClient(t, cp, ns)
	p := kubeProvider(t, client, Config{})
	req := kubeRequest(ns, "smoke", 1, nil, nil)
	// The dead replica's Job.
	first, err := cp.Client.BatchV1().Jobs(ns).Create(t.Context(), newJob(req), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := p.Measure(t.Context(), req)
	if m.Phase != spec.AnalysisPhaseSuccessful || !strings.HasSuffix(m.Message, "(adopted from an earlier attempt of this measurement)") {
		t.Fatalf("%s: %s", m.Phase, m.Message)
	}
	job, err := cp.Client.BatchV1().Jobs(ns).Get(t.Context(), first.Name, metav1.GetOptions{})
	if err != nil || job.UID != first.UID {
		t.Fatalf("the first Job is not the one measured: %v", err)
	}
	if got := jobNames(t, cp.Client, ns); len(got) != 1 {
		t.Errorf("Jobs %v, want only the adopted one", got)
	}

	// Same name, another measurement's annotation.
	stranger := kubeRequest(ns, "smoke", 2, nil, nil)
	j := newJob(stranger)
	j.Annotations[AnnotationMeasurement] = "someone-else"
	if _, err := cp.Client.BatchV1().Jobs(ns).Create(t.Context(), j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m = p.Measure(t.Context(), stranger)
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, `is not this measurement's (annotation analysis.sluice.io/measurement is "someone-else")`) {
		t.Errorf("%s: %s", m.Phase, m.Message)
	}
}

// TestKubeJobPastItsTimeoutIsDeleted: a Job whose pod never runs (no node
// matches it) is an Error at the timeout, and is deleted with its pods.
func TestKubeJobPastItsTimeoutIsDeleted(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	client := analyzerClient(t, cp, ns)
	p := kubeProvider(t, client, Config{DefaultTimeout: 3 * time.Second})
	req := kubeRequest(ns, "stuck", 1, nil, nil)
	req.Metric.Provider.Job.Spec.Template.Spec.NodeSelector = map[string]string{"no-such-node": "true"}
	m := p.Measure(t.Context(), req)
	name := jobName(req.ID)
	if m.Phase != spec.AnalysisPhaseError || m.Message != fmt.Sprintf("Job %s/%s did not finish within 3s and was deleted", ns, name) {
		t.Fatalf("%s: %s", m.Phase, m.Message)
	}
	poll.Until(t, "the timed-out Job and its pod to be gone", func() error {
		_, err := cp.Client.BatchV1().Jobs(ns).Get(t.Context(), name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("Job: %v", err)
		}
		pods, err := cp.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return errors.New("its pod is still there")
		}
		return nil
	})
}

// TestKubeJobWhosePodCannotPullItsImageIsInconclusive: as Argo Rollouts,
// a Job whose container waits in ErrImagePull is Inconclusive at once
// (kwok's stage keeps its pod so); the Job, which would wait forever, is
// deleted.
func TestKubeJobWhosePodCannotPullItsImageIsInconclusive(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	client := analyzerClient(t, cp, ns)
	p := kubeProvider(t, client, Config{PodCheckInterval: 200 * time.Millisecond})
	req := kubeRequest(ns, "pull", 1, map[string]string{kubetest.LabelImagePullError: "true"}, nil)
	m := p.Measure(t.Context(), req)
	name := jobName(req.ID)
	if m.Phase != spec.AnalysisPhaseInconclusive ||
		!strings.HasPrefix(m.Message, fmt.Sprintf("Job %s/%s cannot run: pod %s-", ns, name, name)) ||
		!strings.HasSuffix(m.Message, "container smoke cannot start (ErrImagePull): pull access denied for curlimages/curl; it was deleted") {
		t.Fatalf("%s: %s", m.Phase, m.Message)
	}
	poll.Until(t, "the Job to be gone", func() error {
		_, err := cp.Client.BatchV1().Jobs(ns).Get(t.Context(), name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("Job: %v", err)
		}
		return nil
	})
}

// TestKubeJobIsOwnedByItsRollout: the Rollout object a measurement is for
// owns its Job, and Kubernetes' garbage collector deletes the Job with
// it; the Job of a rollout without an object has no owner; and a Rollout
// the analyzer may not read makes the measurement an Error, no Job
// created.
func TestKubeJobIsOwnedByItsRollout(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := t.Context()
	if err := cp.InstallCRDs(ctx, filepath.Join(cp.CRDDir(kubetest.CRDsArgoRollouts), "rollout-crd.yaml")); err != nil {
		t.Fatal(err)
	}
	ns := cp.Namespace(t)
	clients := analyzerClient(t, cp, ns)
	p := kubeProvider(t, clients, Config{})
	rollouts := cp.Dynamic.Resource(rolloutobj.Resource).Namespace(ns)
	ro := cp.CreateRollout(t, ns, "web")

	req := kubeRequest(ns, "smoke", 1, nil, nil)
	if m := p.Measure(ctx, req); m.Phase != spec.AnalysisPhaseSuccessful {
		t.Fatalf("%s: %s", m.Phase, m.Message)
	}
	name := jobName(req.ID)
	job, err := cp.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	no := false
	want := []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web", UID: ro.GetUID(), Controller: &no, BlockOwnerDeletion: &no}}
	if !equality.Semantic.DeepEqual(job.OwnerReferences, want) {
		t.Errorf("owners %v, want %v", job.OwnerReferences, want)
	}

	t.Run("no Rollout object", func(t *testing.T) {
		req := kubeRequest(ns, "smoke", 1, nil, nil)
		req.Rollout, req.ID = "api", "api-6d4f9-1-2.smoke.1"
		if m := p.Measure(ctx, req); m.Phase != spec.AnalysisPhaseSuccessful {
			t.Fatalf("%s: %s", m.Phase, m.Message)
		}
		job, err := cp.Client.BatchV1().Jobs(ns).Get(ctx, jobName(req.ID), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(job.OwnerReferences) != 0 {
			t.Errorf("owners %v, want none", job.OwnerReferences)
		}
	})

	t.Run("Rollout not readable", func(t *testing.T) {
		rules := slices.DeleteFunc(slices.Clone(analyzerRules), func(r rbacv1.PolicyRule) bool { return slices.Contains(r.APIGroups, "argoproj.io") })
		denied := kubeProvider(t, accountClient(t, cp, ns, "no-rollouts", rules), Config{})
		req := kubeRequest(ns, "smoke", 2, nil, nil)
		m := denied.Measure(ctx, req)
		if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, fmt.Sprintf("Job %s/%s not created: read Rollout %s/web: ", ns, jobName(req.ID), ns)) ||
			!strings.Contains(m.Message, "forbidden") {
			t.Fatalf("%s: %s", m.Phase, m.Message)
		}
		if _, err := cp.Client.BatchV1().Jobs(ns).Get(ctx, jobName(req.ID), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the Job: %v, want NotFound", err)
		}
	})

	bg := metav1.DeletePropagationBackground
	if err := rollouts.Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	// The garbage collector learns of a new resource when it next reads
	// the API's discovery (every 30s), hence the longer deadline.
	poll.Until(t, "the garbage collector to delete the Job of the deleted Rollout", func() error {
		_, err := cp.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("Job %s: %v", name, err)
		}
		return nil
	}, poll.Timeout(2*time.Minute))
	if _, err := cp.Client.BatchV1().Jobs(ns).Get(ctx, jobName("api-6d4f9-1-2.smoke.1"), metav1.GetOptions{}); err != nil {
		t.Errorf("the Job without an owner: %v, want it kept", err)
	}
}
