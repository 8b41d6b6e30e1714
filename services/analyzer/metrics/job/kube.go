package job

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/rolloutobj"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// cleanupTimeout bounds the deletions after a measurement: of a Job that
// ran out of time, and of the Jobs past Config.Keep.
const cleanupTimeout = 5 * time.Second

// errDeleted ends the wait for a Job someone deleted.
var errDeleted = errors.New("the Job was deleted before it finished")

// measureKube creates the measurement's Job (or adopts the one a replica
// that died before finishing created), waits until it finishes, and
// deletes the Jobs of the metric beyond Config.Keep.
func (p *Provider) measureKube(ctx context.Context, req metrics.Request, m metrics.Measurement, timeout time.Duration) metrics.Measurement {
	if req.Namespace == "" {
		req.Namespace = metav1.NamespaceDefault
	}
	want := newJob(req)
	ref := req.Namespace + "/" + want.Name
	m.Query = "Job " + ref
	m.Metadata = map[string]string{MetadataJobName: want.Name, MetadataJobNamespace: req.Namespace}
	jobs := p.cfg.Kube.BatchV1().Jobs(req.Namespace)

	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	owner, err := p.owner(tctx, req)
	if err != nil {
		return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("Job %s not created: %v", ref, err))
	}
	if owner != nil {
		want.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	adopted := false
	job, err := jobs.Create(tctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		job, err = jobs.Get(tctx, want.Name, metav1.GetOptions{})
		if err == nil && job.Annotations[AnnotationMeasurement] != req.ID {
			return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("Job %s exists and is not this measurement's (annotation %s is %q)", ref, AnnotationMeasurement, job.Annotations[AnnotationMeasurement]))
		}
		adopted = true
	}
	if err != nil {
		return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("create Job %s: %v", ref, err))
	}

	final, blocked, err := p.wait(tctx, req.Namespace, job)
	switch {
	case ctx.Err() != nil:
		// The analyzer is stopping: the next replica adopts the Job.
		return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("interrupted while Job %s runs; the next attempt adopts it", ref))
	case tctx.Err() != nil:
		del := p.delete(ctx, req.Namespace, job.Name)
		if del != nil {
			return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("Job %s did not finish within %s; deleting it failed: %v", ref, timeout, del))
		}
		return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("Job %s did not finish within %s and was deleted", ref, timeout))
	case blocked != "":
		// As Argo Rollouts: nothing will make it run, and a person should
		// look. Its pod would wait forever, so the Job goes.
		msg := fmt.Sprintf("Job %s cannot run: %s", ref, blocked)
		if del := p.delete(ctx, req.Namespace, job.Name); del != nil {
			msg += fmt.Sprintf("; deleting it failed: %v", del)
		} else {
			msg += "; it was deleted"
		}
		return p.finish(m, spec.AnalysisPhaseInconclusive, msg)
	case err != nil:
		return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("Job %s: %v", ref, err))
	}

	phase, reason, _ := outcome(final)
	var msg string
	if phase == spec.AnalysisPhaseSuccessful {
		msg = fmt.Sprintf("Job %s completed", ref)
	} else {
		msg = fmt.Sprintf("Job %s failed", ref)
		if reason != "" {
			msg += ": " + reason
		}
		if why := p.podFailure(tctx, req.Namespace, final); why != "" {
			msg += "; " + why
		}
	}
	if adopted {
		msg += " (adopted from an earlier attempt of this measurement)"
	}
	if err := p.collect(ctx, req, job.Name); err != nil {
		m.Metadata["garbage-collection"] = err.Error()
	}
	return p.finish(m, phase, msg)
}

// owner is the reference to the Rollout object req measures for (the
// Experiment object, for a standalone experiment's run: req.OwnerKind), so
// that Kubernetes' garbage collector deletes the Job with it; nil when
// there is no Config.Dynamic or no such object: a rollout or experiment
// that reached Sluice only through the bus, or a cluster without Argo's
// CRD (both NotFound). It is neither the Job's controller nor blocks the
// owner's deletion, which would need update on its finalizers.
//
// Any other error (forbidden, the API server failing) is returned, and the
// measurement is an Error rather than a Job without an owner: a missing
// RBAC rule then shows in the measurement that needs it instead of leaking
// Jobs unnoticed (the provider has no log), and a failing API server would
// likely fail the create as well.
func (p *Provider) owner(ctx context.Context, req metrics.Request) (*metav1.OwnerReference, error) {
	if p.cfg.Dynamic == nil || req.Rollout == "" {
		return nil, nil
	}
	return rolloutobj.OwnerReference(ctx, p.cfg.Dynamic, req.OwnerKind, req.Namespace, req.Rollout, false)
}

// wait watches job until its conditions say it finished, and returns it
// as last seen; or, when a pod of it cannot start (stuck), says why in
// blocked. Pods are listed every PodCheckInterval.
func (p *Provider) wait(ctx context.Context, namespace string, job *batchv1.Job) (final *batchv1.Job, blocked string, err error) {
	if _, _, done := outcome(job); done {
		return job, "", nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan string, 1)
	go func() {
		t := time.NewTicker(p.cfg.PodCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if why := stuck(p.pods(ctx, namespace, job)); why != "" {
				found <- why
				cancel()
				return
			}
		}
	}()
	final, err = p.watch(ctx, namespace, job)
	select {
	case why := <-found:
		return nil, why, nil
	default:
	}
	return final, "", err
}

// watch waits until job's conditions say it finished.
func (p *Provider) watch(ctx context.Context, namespace string, job *batchv1.Job) (*batchv1.Job, error) {
	jobs := p.cfg.Kube.BatchV1().Jobs(namespace)
	byName := fields.OneTermEqualSelector("metadata.name", job.Name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return jobs.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return jobs.Watch(ctx, o)
		},
	}
	ev, err := watchtools.UntilWithSync(ctx, lw, &batchv1.Job{}, nil, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			return false, errDeleted
		case watch.Added, watch.Modified:
			j, ok := ev.Object.(*batchv1.Job)
			if !ok {
				return false, nil
			}
			if j.UID != job.UID {
				return false, errDeleted // deleted and created again: not ours
			}
			_, _, done := outcome(j)
			return done, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return ev.Object.(*batchv1.Job), nil
}

// podFailure describes the failed container of job's pods, or "" when
// none is found or the pods cannot be read.
func (p *Provider) podFailure(ctx context.Context, namespace string, job *batchv1.Job) string {
	return podFailure(p.pods(ctx, namespace, job))
}

// pods lists job's pods; none when they cannot be read.
func (p *Provider) pods(ctx context.Context, namespace string, job *batchv1.Job) []corev1.Pod {
	if job.Spec.Selector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
	if err != nil {
		return nil
	}
	pods, err := p.cfg.Kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil
	}
	return pods.Items
}

// collect deletes the Jobs of req's metric and rollout beyond the newest
// Config.Keep, the current one always kept.
func (p *Provider) collect(ctx context.Context, req metrics.Request, current string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	sel := labels.SelectorFromSet(labels.Set{LabelRollout: req.Rollout, LabelMetric: metricLabel(req.Metric.Name)})
	list, err := p.cfg.Kube.BatchV1().Jobs(req.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("list Jobs: %v", err)
	}
	var failed []string
	for _, j := range stale(list.Items, p.cfg.Keep, current) {
		if err := p.delete(ctx, j.Namespace, j.Name); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", j.Name, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("delete Jobs: %s", strings.Join(failed, "; "))
	}
	return nil
}

// delete deletes a Job and, in the background, its pods.
func (p *Provider) delete(ctx context.Context, namespace, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	err := p.cfg.Kube.BatchV1().Jobs(namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
