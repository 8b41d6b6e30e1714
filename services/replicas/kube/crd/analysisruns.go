package crd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sluicehq/sluice/internal/rolloutobj"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
)

// AnalysisRunResource is Argo Rollouts' AnalysisRun.
var AnalysisRunResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}

// AnalysisRunsDurable is the durable consumer on SLUICE_STATUS that every
// replica's AnalysisRuns shares.
const AnalysisRunsDurable = "kube-analysisruns"

// Labels and annotation Argo Rollouts puts on the AnalysisRuns a Rollout
// creates; its kubectl plugin and Argo CD read them.
const (
	labelPodHash   = "rollouts-pod-template-hash"
	labelType      = "rollout-type"
	labelStepIndex = "step-index"
	annRevision    = "rollout.argoproj.io/revision"
)

// Argo Rollouts' defaults of spec.analysis.successfulRunHistoryLimit and
// unsuccessfulRunHistoryLimit.
const (
	DefaultSuccessfulRunHistoryLimit   = 5
	DefaultUnsuccessfulRunHistoryLimit = 5
)

// RunSource reads an analysis run as the analyzer holds it;
// *analyzer.RunReader implements it. Get returns an error wrapping
// analyzer.ErrNoRun when the analyzer holds no such run.
type RunSource interface {
	Get(ctx context.Context, r events.Ref, name string) (analysis.Run, error)
}

// AnalysisRunsConfig configures AnalysisRuns.
type AnalysisRunsConfig struct {
	// Dynamic reads Rollouts and writes AnalysisRuns.
	Dynamic dynamic.Interface
	// Client lists a rollout's ReplicaSets when pruning (a run whose
	// revision has no ReplicaSet left is pruned, as Argo does). Nil: that
	// rule is not applied.
	Client kubernetes.Interface
	// Bus consumes the status events and publishes analysis.terminate
	// tasks; BusConfig is the stream configuration provisioned first.
	Bus       *events.Client
	BusConfig events.BusConfig
	// Consumer tunes the durable consumer; Stream, Durable and
	// FilterSubjects are set by AnalysisRuns.
	Consumer events.ConsumerConfig
	// Runs reads the runs (default: the analyzer's runs bucket through
	// Bus, opened once it exists).
	Runs RunSource
	// Namespace limits the AnalysisRuns watched to one namespace; empty
	// means all.
	Namespace string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the logs (default slog.Default()).
	Logger *slog.Logger
}

// AnalysisRuns mirrors each cluster Rollout's analysis runs into
// argoproj.io/v1alpha1 AnalysisRun objects owned by the Rollout, and turns
// spec.terminate set on one (kubectl argo rollouts terminate analysisrun)
// into an analysis.terminate task.
//
// The object is a function of the run the analyzer holds, read whole on
// every status event that names it, never appended to: a redelivered
// event writes the same object, and an event handled late never writes an
// older state over a newer one (fewer measurements, or not yet finished).
// Hand edits are overwritten by the next write; a live run's object
// deleted by hand is written again at once. A Rollout that is not a
// cluster object gets none.
type AnalysisRuns struct {
	cfg    AnalysisRunsConfig
	log    *slog.Logger
	ready  atomic.Bool
	synced atomic.Bool
	queue  workqueue.TypedRateLimitingInterface[runKey]

	mu   sync.Mutex
	runs RunSource
	inf  cache.SharedIndexInformer
	// cached, when set, gives the Rollouts from the watcher's cache: the
	// owner of the runs a status event names.
	cached *cached
}

// runKey is one AnalysisRun object to act on.
type runKey struct {
	// kind is its owner's: "Rollout", or events.KindExperiment for a
	// standalone experiment's run; rollout names the owner.
	kind                    string
	namespace, rollout, run string
	// terminate is the uid of an object whose spec.terminate is set;
	// empty: the object was deleted while its run was live.
	terminate types.UID
	// actor wrote spec.terminate.
	actor string
}

// NewAnalysisRuns returns the mirror; Run starts it.
func NewAnalysisRuns(cfg AnalysisRunsConfig) (*AnalysisRuns, error) {
	if cfg.Dynamic == nil || cfg.Bus == nil {
		return nil, errors.New("crd analysis runs: a dynamic client and a bus client are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.BusConfig.Defaults()
	cc := &cfg.Consumer
	cc.Stream, cc.Durable, cc.FilterSubjects = events.StreamStatus, AnalysisRunsDurable, []string{events.StatusRoot + ".>"}
	cc.Defaults()
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	return &AnalysisRuns{cfg: cfg, log: cfg.Logger, runs: cfg.Runs}, nil
}

// Ready reports whether the consumer is in place and the AnalysisRuns are
// watched.
func (a *AnalysisRuns) Ready() bool { return a.ready.Load() && a.synced.Load() }

// Run mirrors and watches until ctx ends.
func (a *AnalysisRuns) Run(ctx context.Context) error {
	a.queue = newQueue[runKey]("sluice-analysisruns")
	defer a.queue.ShutDown()
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(a.cfg.Dynamic, 0, a.cfg.Namespace, nil)
	a.inf = factory.ForResource(AnalysisRunResource).Informer()
	if err := a.inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if apierrors.IsNotFound(err) {
			a.log.Error("cannot watch analysisruns.argoproj.io: the CRD is not installed; install it with kubectl apply --server-side -k deploy/crds", "error", err)
			return
		}
		a.log.Warn("watch of analysisruns failed; retrying", "error", err)
	}); err != nil {
		return err
	}
	if _, err := a.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.changed,
		UpdateFunc: func(_, obj any) { a.changed(obj) },
		DeleteFunc: a.deleted,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), a.inf.HasSynced) {
			a.synced.Store(true)
		}
	}()

	mux := events.NewMux()
	for _, t := range events.StatusTypes {
		mux.Handle(t, a.handle)
	}
	if err := a.cfg.Bus.Provision(ctx, a.cfg.BusConfig); err != nil {
		return fmt.Errorf("crd analysis runs: %w", err)
	}
	sub, err := a.cfg.Bus.Consume(ctx, a.cfg.Consumer, mux.Dispatch)
	if err != nil {
		return fmt.Errorf("crd analysis runs: %w", err)
	}
	a.ready.Store(true)
	work(ctx, a.queue, a.log, "acting on an AnalysisRun object", a.reconcile)
	a.ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sub.Stop(sctx)
}

// source is the run reader, opened on first use: the analyzer creates
// its bucket, and may start after this service. It reads the leader's
// records: what it reads is written into the objects, where an older run
// would stay.
func (a *AnalysisRuns) source(ctx context.Context) (RunSource, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.runs == nil {
		rr, err := analyzer.NewLeaderRunReader(ctx, a.cfg.Bus)
		if err != nil {
			return nil, err
		}
		a.runs = rr
	}
	return a.runs, nil
}

// handle mirrors the runs a status event names (the snapshot's runs, the
// run in progress or last finished, and the run the event reports), then
// prunes the rollout's finished runs beyond its history limits when a run
// or the update ended.
func (a *AnalysisRuns) handle(ctx context.Context, _ events.Delivery, ev events.Event) error {
	switch ev.Type() {
	case events.TypeRolloutDeleted, events.TypeRolloutRefused, events.TypeExperimentDeleted, events.TypeExperimentRefused:
		return nil
	}
	var data events.StatusData
	if err := events.DecodeData(ev, &data); err != nil {
		return events.Permanent(fmt.Errorf("status event %s: %w", ev.ID(), err))
	}
	snap := data.Status
	names := runNames(data)
	res := RolloutResource
	prune := ev.Type() == events.TypeAnalysisCompleted || ev.Type() == events.TypeRolloutCompleted || ev.Type() == events.TypeRolloutAborted
	if isExperiment(ev, data) {
		// Owned by the Experiment object and deleted with it: Argo prunes
		// none of an experiment's runs.
		res, prune = ExperimentResource, false
	}
	if len(names) == 0 && !prune {
		return nil
	}
	owner, err := a.owner(ctx, res, events.Ref{Namespace: snap.Namespace, Name: snap.Name})
	if apierrors.IsNotFound(err) {
		return nil // published from CI or the CLI: no cluster object to own runs
	}
	if err != nil {
		return err
	}
	var mirrored []*unstructured.Unstructured
	for _, name := range names {
		if _, _, _, ok := RunLabels(owner.GetName(), name); !ok && res == RolloutResource {
			// A canary step's experiment's run, which Argo's Experiment
			// object would own: Sluice creates no object for a step's
			// experiment, so its runs have none either.
			continue
		}
		u, err := a.mirror(ctx, owner, name)
		if err != nil {
			return err
		}
		if u != nil {
			mirrored = append(mirrored, u)
		}
	}
	if !prune {
		return nil
	}
	// The update's runs are current until it is done, as Argo keeps the
	// runs its status names.
	current := map[string]bool{}
	for _, r := range snap.Runs {
		current[r.Name] = snap.Phase != events.PhaseHealthy
	}
	return a.prune(ctx, owner, current, mirrored)
}

// owner is the object of ref that owns its runs: a Rollout from the
// watcher's cache when it has it (what the runs take from it, its uid,
// name and history limits, an older version has too), else read.
func (a *AnalysisRuns) owner(ctx context.Context, res schema.GroupVersionResource, ref events.Ref) (*unstructured.Unstructured, error) {
	if res == RolloutResource && a.cached != nil {
		if ro, ok := a.cached.rollout(ref); ok {
			return ro, nil
		}
	}
	return a.cfg.Dynamic.Resource(res).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
}

// runNames are the runs a status event names, each once.
func runNames(data events.StatusData) []string {
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, r := range data.Status.Runs {
		add(r.Name)
	}
	if e := data.Status.Experiment; e != nil && data.Status.Kind == events.KindExperiment {
		for _, n := range e.Runs {
			add(n)
		}
	}
	if data.Status.Analysis != nil {
		add(data.Status.Analysis.Name)
	}
	if data.Analysis != nil {
		add(data.Analysis.Name)
	}
	return names
}

// mirror writes run name of the Rollout object ro as the analyzer holds
// it, and returns the object as it is now (nil: none). A run the analyzer
// does not hold (not started yet, or past its retention) is left as it
// is.
func (a *AnalysisRuns) mirror(ctx context.Context, ro *unstructured.Unstructured, name string) (*unstructured.Unstructured, error) {
	ref := events.Ref{Namespace: ro.GetNamespace(), Name: ro.GetName()}
	src, err := a.source(ctx)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// No analyzer ever ran on this bus, so the run has not started:
		// a later event names it again once it has.
		a.log.Warn("analysis run not mirrored: no analyzer has created its runs bucket yet", "rollout", ref.String(), "run", name)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ars := a.cfg.Dynamic.Resource(AnalysisRunResource).Namespace(ref.Namespace)
	for attempt := 0; ; attempt++ {
		run, err := src.Get(ctx, ref, name)
		if errors.Is(err, analyzer.ErrNoRun) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		cur, err := ars.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur = nil
		case err != nil:
			return nil, err
		}
		now, err := a.write(ctx, ars, ro, run, cur)
		if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 5 {
			continue // written meanwhile (another replica): read both again
		}
		if errors.Is(err, errForeign) {
			a.log.Warn("AnalysisRun object not owned by its Rollout; left alone", "rollout", ref.String(), "run", name)
			return nil, nil
		}
		return now, err
	}
}

// errForeign means an AnalysisRun of the run's name exists that the
// Rollout does not own.
var errForeign = errors.New("AnalysisRun owned by another object")

// write creates or updates the object of run from cur (nil: none yet),
// and returns it as written. With Argo's CRD (no status subresource)
// status is written with the object; with a status subresource it is
// written after.
func (a *AnalysisRuns) write(ctx context.Context, ars dynamic.ResourceInterface, ro *unstructured.Unstructured, run analysis.Run, cur *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	want, err := AnalysisRunObject(ro, run, cur, a.cfg.Now())
	if err != nil {
		return nil, events.Permanent(err)
	}
	if cur == nil {
		got, err := ars.Create(ctx, want, metav1.CreateOptions{FieldManager: "sluice"})
		if err != nil {
			return nil, err
		}
		return got, a.writeStatus(ctx, ars, got, want)
	}
	if !ownedBy(cur, ro.GetUID()) {
		return nil, errForeign
	}
	if progress(cur) > progress(want) {
		return cur, nil // a later state is already written
	}
	next := cur.DeepCopy()
	next.SetLabels(want.GetLabels())
	next.SetAnnotations(want.GetAnnotations())
	next.SetOwnerReferences(want.GetOwnerReferences())
	next.Object["spec"] = want.Object["spec"]
	next.Object["status"] = want.Object["status"]
	if reflect.DeepEqual(next.Object, cur.Object) {
		return cur, nil
	}
	got, err := ars.Update(ctx, next, metav1.UpdateOptions{FieldManager: "sluice"})
	if err != nil {
		return nil, err
	}
	return got, a.writeStatus(ctx, ars, got, want)
}

// writeStatus writes want's status into got when the API server kept
// another (a status subresource ignores status on create and update);
// got has want's status after.
func (a *AnalysisRuns) writeStatus(ctx context.Context, ars dynamic.ResourceInterface, got, want *unstructured.Unstructured) error {
	if reflect.DeepEqual(got.Object["status"], want.Object["status"]) {
		return nil
	}
	got.Object["status"] = want.Object["status"]
	_, err := ars.UpdateStatus(ctx, got, metav1.UpdateOptions{FieldManager: "sluice"})
	return err
}

func ownedBy(u *unstructured.Unstructured, uid types.UID) bool {
	for _, o := range u.GetOwnerReferences() {
		if o.UID == uid {
			return true
		}
	}
	return false
}

// progress orders the states of one run: a finished run after every
// unfinished one, and otherwise by how many measurements it took (which
// the status' counters hold even when older measurements were dropped).
func progress(u *unstructured.Unstructured) int64 {
	var n int64
	results, _, _ := unstructured.NestedSlice(u.Object, "status", "metricResults")
	for _, r := range results {
		m, _ := r.(map[string]any)
		for _, k := range []string{"count", "error"} {
			v, _ := m[k].(int64)
			n += v
		}
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	if spec.AnalysisPhase(phase).Completed() {
		n += 1 << 40
	}
	return n
}

// RunLabels are the labels and the revision Argo Rollouts gives the
// AnalysisRun named name of the rollout named rollout, read from the name
// (<rollout>-<pod hash>-<revision>[-<step>|-pre|-post][.<n>]), with the
// run's purpose (background, step, prePromotion, postPromotion). ok is
// false for a name of another form.
func RunLabels(rollout, name string) (labels map[string]string, revision, purpose string, ok bool) {
	rest, found := strings.CutPrefix(name, rollout+"-")
	if !found {
		return nil, "", "", false
	}
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		if _, err := strconv.Atoi(rest[i+1:]); err != nil {
			return nil, "", "", false
		}
		rest = rest[:i]
	}
	parts := strings.Split(rest, "-")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return nil, "", "", false
	}
	if _, err := strconv.ParseInt(parts[1], 10, 64); err != nil {
		return nil, "", "", false
	}
	labels = map[string]string{labelPodHash: parts[0]}
	switch {
	case len(parts) == 2:
		labels[labelType], purpose = "Background", "background"
	case parts[2] == "pre":
		labels[labelType], purpose = "PrePromotion", "prePromotion"
	case parts[2] == "post":
		labels[labelType], purpose = "PostPromotion", "postPromotion"
	default:
		if _, err := strconv.ParseInt(parts[2], 10, 32); err != nil {
			return nil, "", "", false
		}
		labels[labelType], labels[labelStepIndex], purpose = "Step", parts[2], "step"
	}
	return labels, parts[1], purpose, true
}

// AnalysisRunObject is the AnalysisRun object of run, owned by the Rollout
// object ro, as Argo Rollouts writes it: the labels its plugin reads (pod
// template hash, rollout-type, step-index) with the Rollout's selector
// labels, the revision annotation, a controller ownerReference, spec
// (metrics, args with secrets as references, dryRun, measurementRetention,
// terminate) and status (phase, message, startedAt, metricResults with
// their measurements and counters, runSummary, dryRunSummary,
// completedAt). cur is the object as it is (nil: none): a terminate
// written into it is kept, and so is its completedAt; a run completed now
// gets now. The metrics have their arguments substituted (secrets left as
// placeholders), where Argo keeps the placeholders.
//
// The run of a standalone Experiment object ro (<experiment>-<analysis>)
// has the labels and annotations of the experiment's
// spec.analysisRunMetadata, as Argo's experiment controller writes them.
func AnalysisRunObject(ro *unstructured.Unstructured, run analysis.Run, cur *unstructured.Unstructured, now time.Time) (*unstructured.Unstructured, error) {
	labels, annotations := map[string]string{}, map[string]string{}
	var meta metadataOf
	if ro.GetKind() == events.KindExperiment {
		if !strings.HasPrefix(run.Name, ro.GetName()+"-") {
			return nil, fmt.Errorf("analysis run %q: not a run name of experiment %s", run.Name, ro.GetName())
		}
		meta.labels, _, _ = unstructured.NestedStringMap(ro.Object, "spec", "analysisRunMetadata", "labels")
		meta.annotations, _, _ = unstructured.NestedStringMap(ro.Object, "spec", "analysisRunMetadata", "annotations")
	} else {
		var revision string
		var ok bool
		labels, revision, _, ok = RunLabels(ro.GetName(), run.Name)
		if !ok {
			return nil, fmt.Errorf("analysis run %q: not a run name of rollout %s", run.Name, ro.GetName())
		}
		sel, _, _ := unstructured.NestedStringMap(ro.Object, "spec", "selector", "matchLabels")
		for k, v := range sel {
			labels[k] = v
		}
		annotations[annRevision] = revision
		meta = runMetadata(ro, labels)
	}
	for k, v := range meta.labels {
		labels[k] = v
	}
	for k, v := range meta.annotations {
		annotations[k] = v
	}

	metricsJSON, err := toJSON(run.Metrics)
	if err != nil {
		return nil, err
	}
	spc := map[string]any{"metrics": metricsJSON}
	if len(run.Args) > 0 {
		args, err := toJSON(run.Args)
		if err != nil {
			return nil, err
		}
		spc["args"] = args
	}
	var dry, retention []any
	for _, r := range run.Results {
		if r.DryRun {
			dry = append(dry, map[string]any{"metricName": r.Name})
		}
		if r.Retain > 0 && r.Retain != analysis.DefaultMeasurementRetention {
			retention = append(retention, map[string]any{"metricName": r.Name, "limit": int64(r.Retain)})
		}
	}
	if len(dry) > 0 {
		spc["dryRun"] = dry
	}
	if len(retention) > 0 {
		spc["measurementRetention"] = retention
	}
	terminate := run.Terminated
	if cur != nil {
		if t, _, _ := unstructured.NestedBool(cur.Object, "spec", "terminate"); t {
			terminate = true
		}
	}
	if terminate {
		spc["terminate"] = true
	}

	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "AnalysisRun",
		"spec":       spc,
		"status":     runStatus(run, cur, now),
	}}
	u.SetName(run.Name)
	u.SetNamespace(ro.GetNamespace())
	u.SetLabels(labels)
	u.SetAnnotations(annotations)
	t := true
	u.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: ro.GetAPIVersion(), Kind: ro.GetKind(), Name: ro.GetName(), UID: ro.GetUID(),
		Controller: &t, BlockOwnerDeletion: &t,
	}})
	return u, nil
}

// metadataOf is a run's analysisRunMetadata in the Rollout's spec.
type metadataOf struct{ labels, annotations map[string]string }

// runMetadata finds the analysisRunMetadata of the Rollout's analysis the
// run (by its labels) belongs to.
func runMetadata(ro *unstructured.Unstructured, labels map[string]string) metadataOf {
	var path []string
	switch labels[labelType] {
	case "Background":
		path = []string{"spec", "strategy", "canary", "analysis"}
	case "PrePromotion":
		path = []string{"spec", "strategy", "blueGreen", "prePromotionAnalysis"}
	case "PostPromotion":
		path = []string{"spec", "strategy", "blueGreen", "postPromotionAnalysis"}
	case "Step":
		steps, _, _ := unstructured.NestedSlice(ro.Object, "spec", "strategy", "canary", "steps")
		i, err := strconv.Atoi(labels[labelStepIndex])
		if err != nil || i < 0 || i >= len(steps) {
			return metadataOf{}
		}
		step, _ := steps[i].(map[string]any)
		l, _, _ := unstructured.NestedStringMap(step, "analysis", "analysisRunMetadata", "labels")
		an, _, _ := unstructured.NestedStringMap(step, "analysis", "analysisRunMetadata", "annotations")
		return metadataOf{l, an}
	}
	if path == nil {
		return metadataOf{}
	}
	l, _, _ := unstructured.NestedStringMap(ro.Object, append(slices.Clone(path), "analysisRunMetadata", "labels")...)
	an, _, _ := unstructured.NestedStringMap(ro.Object, append(slices.Clone(path), "analysisRunMetadata", "annotations")...)
	return metadataOf{l, an}
}

// runStatus is status as Argo's analysis controller writes it. A metric
// appears in metricResults once it was measured, as in Argo.
func runStatus(run analysis.Run, cur *unstructured.Unstructured, now time.Time) map[string]any {
	st := map[string]any{"phase": string(run.Phase)}
	if run.Message != "" {
		st["message"] = run.Message
	}
	if !run.StartedAt.IsZero() {
		st["startedAt"] = argoTime(run.StartedAt)
	}
	var results []any
	sum, dry := map[string]any{}, map[string]any{}
	add := func(m map[string]any, k string) {
		v, _ := m[k].(int64)
		m[k] = v + 1
	}
	for _, r := range run.Results {
		if r.DryRun {
			add(dry, "count")
		} else {
			add(sum, "count")
		}
		if r.Phase.Completed() {
			counts := sum
			if r.DryRun {
				counts = dry
			}
			add(counts, strings.ToLower(string(r.Phase)))
		}
		if len(r.Measurements) == 0 && r.Count+r.Error == 0 && !r.Phase.Completed() {
			continue
		}
		res := map[string]any{"name": r.Name, "phase": string(r.Phase)}
		if r.Message != "" {
			res["message"] = r.Message
		}
		for k, v := range map[string]int32{
			"count": r.Count, "successful": r.Successful, "failed": r.Failed,
			"inconclusive": r.Inconclusive, "error": r.Error,
			"consecutiveError": r.ConsecutiveError, "consecutiveSuccess": r.ConsecutiveSuccess,
		} {
			if v != 0 {
				res[k] = int64(v)
			}
		}
		if r.DryRun {
			res["dryRun"] = true
		}
		var ms []any
		for _, m := range r.Measurements {
			mm := map[string]any{"phase": string(m.Phase), "startedAt": argoTime(m.StartedAt)}
			if !m.FinishedAt.IsZero() {
				mm["finishedAt"] = argoTime(m.FinishedAt)
			}
			if m.Value != "" {
				mm["value"] = m.Value
			}
			if m.Message != "" {
				mm["message"] = m.Message
			}
			if len(m.Metadata) > 0 {
				md := map[string]any{}
				for k, v := range m.Metadata {
					md[k] = v
				}
				mm["metadata"] = md
			}
			ms = append(ms, mm)
		}
		if len(ms) > 0 {
			res["measurements"] = ms
		}
		results = append(results, res)
	}
	if len(results) > 0 {
		st["metricResults"] = results
	}
	st["runSummary"] = sum
	st["dryRunSummary"] = dry
	if run.Phase.Completed() {
		at := argoTime(now)
		if cur != nil {
			if prev, ok, _ := unstructured.NestedString(cur.Object, "status", "completedAt"); ok && prev != "" {
				at = prev
			}
		}
		st["completedAt"] = at
	}
	return st
}

// argoTime is a time as metav1.Time writes it.
func argoTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// toJSON converts v to the generic form of an unstructured object.
func toJSON(v any) ([]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out []any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// prune deletes the rollout's finished AnalysisRuns beyond its history
// limits, as Argo does: among the runs not current (not in the update's
// runs), newest first, a run without a pod template hash label or whose
// revision has no ReplicaSet left is deleted, and of the others the
// Successful ones past successfulRunHistoryLimit and the Failed, Error
// and Inconclusive ones past unsuccessfulRunHistoryLimit.
//
// mirrored are the runs the caller just mirrored, as they are now: they
// replace the cache's versions, which may not show yet what was written.
func (a *AnalysisRuns) prune(ctx context.Context, ro *unstructured.Unstructured, current map[string]bool, mirrored []*unstructured.Unstructured) error {
	list, err := a.runObjects(ctx, ro.GetNamespace())
	if err != nil {
		return err
	}
	for _, m := range mirrored {
		i := slices.IndexFunc(list, func(u *unstructured.Unstructured) bool { return u.GetName() == m.GetName() })
		if i < 0 {
			list = append(list, m)
		} else {
			list[i] = m
		}
	}
	var owned []*unstructured.Unstructured
	for _, u := range list {
		if ownedBy(u, ro.GetUID()) && !current[u.GetName()] {
			owned = append(owned, u)
		}
	}
	var hashes map[string]bool
	if a.cfg.Client != nil {
		// Listed, not read from Counts' cache, which holds only the
		// ReplicaSets labelled as Sluice's: one of Argo's not yet
		// adopted would look gone, and its revision's runs be deleted.
		rss, err := a.cfg.Client.AppsV1().ReplicaSets(ro.GetNamespace()).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		hashes = map[string]bool{}
		for _, rs := range rss.Items {
			if _, experiment := rs.Annotations[spec.AnnotationExperimentName]; experiment {
				// An experiment's pods, which may share a revision's
				// hash and be going while the revision stays.
				continue
			}
			if h, ok := rs.Labels[labelPodHash]; ok && slices.ContainsFunc(rs.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == ro.GetUID() }) {
				hashes[h] = rs.DeletionTimestamp == nil
			}
		}
	}
	succ, _, _ := unstructured.NestedInt64(ro.Object, "spec", "analysis", "successfulRunHistoryLimit")
	if _, ok, _ := unstructured.NestedFieldNoCopy(ro.Object, "spec", "analysis", "successfulRunHistoryLimit"); !ok {
		succ = DefaultSuccessfulRunHistoryLimit
	}
	unsucc, _, _ := unstructured.NestedInt64(ro.Object, "spec", "analysis", "unsuccessfulRunHistoryLimit")
	if _, ok, _ := unstructured.NestedFieldNoCopy(ro.Object, "spec", "analysis", "unsuccessfulRunHistoryLimit"); !ok {
		unsucc = DefaultUnsuccessfulRunHistoryLimit
	}
	for _, u := range RunsToPrune(owned, hashes, succ, unsucc) {
		uid := u.GetUID()
		err := a.cfg.Dynamic.Resource(AnalysisRunResource).Namespace(u.GetNamespace()).
			Delete(ctx, u.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return err
		}
		a.log.Info("AnalysisRun pruned past the rollout's history limits", "rollout", ro.GetNamespace()+"/"+ro.GetName(), "run", u.GetName())
	}
	return nil
}

// RunsToPrune picks, from a rollout's AnalysisRuns that are not current,
// those Argo deletes (see prune). hashes maps the pod template hash of
// each of the rollout's ReplicaSets to whether it is not being deleted;
// nil skips that rule.
func RunsToPrune(runs []*unstructured.Unstructured, hashes map[string]bool, successful, unsuccessful int64) []*unstructured.Unstructured {
	runs = slices.Clone(runs)
	sort.SliceStable(runs, func(i, j int) bool {
		ti, tj := runs[i].GetCreationTimestamp(), runs[j].GetCreationTimestamp()
		if !ti.Equal(&tj) {
			return tj.Before(&ti)
		}
		return runs[i].GetName() > runs[j].GetName()
	})
	var out []*unstructured.Unstructured
	var keptOK, keptBad int64
	for _, u := range runs {
		h, ok := u.GetLabels()[labelPodHash]
		if !ok {
			out = append(out, u)
			continue
		}
		if hashes != nil && !hashes[h] {
			out = append(out, u)
			continue
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		switch spec.AnalysisPhase(phase) {
		case spec.AnalysisPhaseSuccessful:
			if keptOK < successful {
				keptOK++
			} else {
				out = append(out, u)
			}
		case spec.AnalysisPhaseFailed, spec.AnalysisPhaseError, spec.AnalysisPhaseInconclusive:
			if keptBad < unsuccessful {
				keptBad++
			} else {
				out = append(out, u)
			}
		}
	}
	return out
}

// runObjects are the AnalysisRun objects of namespace, from the informer's
// cache once it has synced. The runs of the update that ended come fresh
// from mirror (prune's mirrored); one the cache lags on else (a run it
// does not show yet, or shows running) prune neither deletes nor counts:
// it keeps more runs than the limits until the next prune, never fewer.
func (a *AnalysisRuns) runObjects(ctx context.Context, namespace string) ([]*unstructured.Unstructured, error) {
	if a.synced.Load() {
		objs, err := a.inf.GetIndexer().ByIndex(cache.NamespaceIndex, namespace)
		if err == nil {
			out := make([]*unstructured.Unstructured, 0, len(objs))
			for _, o := range objs {
				if u, ok := o.(*unstructured.Unstructured); ok {
					out = append(out, u)
				}
			}
			return out, nil
		}
	}
	list, err := a.cfg.Dynamic.Resource(AnalysisRunResource).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// changed queues an AnalysisRun whose spec.terminate is set while its
// phase is not final.
func (a *AnalysisRuns) changed(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	if t, _, _ := unstructured.NestedBool(u.Object, "spec", "terminate"); !t || finished(u) {
		return
	}
	if kind, owner := ownerOf(u); owner != "" {
		a.queue.Add(runKey{kind: kind, namespace: u.GetNamespace(), rollout: owner, run: u.GetName(), terminate: u.GetUID(), actor: terminator(u)})
	}
}

// deleted queues an AnalysisRun deleted while its run was live, to be
// written again.
func (a *AnalysisRuns) deleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || finished(u) {
		return
	}
	if kind, owner := ownerOf(u); owner != "" {
		a.queue.Add(runKey{kind: kind, namespace: u.GetNamespace(), rollout: owner, run: u.GetName()})
	}
}

func finished(u *unstructured.Unstructured) bool {
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	return spec.AnalysisPhase(phase).Completed()
}

// ownerOf is the kind ("Rollout" or "Experiment") and name of the object
// that controls u ("" if none of those).
func ownerOf(u *unstructured.Unstructured) (kind, name string) {
	if c := metav1.GetControllerOf(u); c != nil && (c.Kind == "Rollout" || c.Kind == events.KindExperiment) && strings.HasPrefix(c.APIVersion, "argoproj.io/") {
		return c.Kind, c.Name
	}
	return "", ""
}

// terminator is the actor that set spec.terminate: kube:<manager> of the
// managed fields entry that owns it, else Actor.
func terminator(u *unstructured.Unstructured) string {
	for _, mf := range u.GetManagedFields() {
		if mf.FieldsV1 != nil && mf.Manager != "sluice" && strings.Contains(string(mf.FieldsV1.Raw), `"f:terminate"`) {
			return "kube:" + mf.Manager
		}
	}
	return Actor
}

func (a *AnalysisRuns) reconcile(ctx context.Context, k runKey) error {
	ro, err := a.cfg.Dynamic.Resource(rolloutobj.ResourceOf(k.kind)).Namespace(k.namespace).Get(ctx, k.rollout, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // the owner is gone: so are its runs
	}
	if err != nil {
		return err
	}
	if k.terminate == "" {
		a.log.Info("AnalysisRun deleted while its run is live: written again", "rollout", k.namespace+"/"+k.rollout, "run", k.run)
		_, err := a.mirror(ctx, ro, k.run)
		return err
	}
	return a.terminate(ctx, k)
}

// terminate publishes the analysis.terminate task of the run whose
// object's spec.terminate was set. Its id derives from the object's uid,
// so every replica publishes one task. The analyzer stops the run, which
// reports its verdict (Successful, "Run Terminated", unless a metric had
// already decided otherwise) to the orchestrator as any verdict.
func (a *AnalysisRuns) terminate(ctx context.Context, k runKey) error {
	ref := events.Ref{Namespace: k.namespace, Name: k.rollout}
	t := tasks.Task{ID: fmt.Sprintf("k8s:%s:terminate", k.terminate), Attempt: 1, Kind: tasks.KindAnalysisTerminate, Ref: ref}
	if k.kind == events.KindExperiment {
		// A standalone experiment's run: its tasks have revision 1.
		t.OwnerKind, t.Revision, t.Analysis = events.KindExperiment, 1, &tasks.Analysis{RunName: k.run, Purpose: "experiment"}
	} else {
		_, revision, purpose, ok := RunLabels(k.rollout, k.run)
		if !ok {
			a.log.Warn("AnalysisRun terminated, but its name is not one of its rollout's runs; ignored", "rollout", ref.String(), "run", k.run)
			return nil
		}
		t.Revision, _ = strconv.ParseInt(revision, 10, 64)
		t.Analysis = &tasks.Analysis{RunName: k.run, Purpose: purpose}
	}
	ev, err := events.New(Source, tasks.TypeTriggered, ref.String(), t)
	if err != nil {
		return err
	}
	ev.SetID(t.EventID())
	ev.SetExtension(events.ExtActor, k.actor)
	if _, err := a.cfg.Bus.Publish(ctx, events.TaskSubject(tasks.ServiceAnalyzer, ref), ev); err != nil {
		return err
	}
	a.log.Info("AnalysisRun terminated: terminate requested", "rollout", ref.String(), "run", k.run, "actor", k.actor)
	return nil
}
