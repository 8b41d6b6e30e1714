// Package crd connects Argo Rollouts' cluster objects with the bus, for
// teams that keep Rollouts in the cluster (kubectl apply, GitOps) rather
// than publishing them from CI:
//
//   - Watcher publishes io.sluice.rollout.requested.v1 when a Rollout's
//     spec changes (its metadata.generation rises past
//     status.observedGeneration), undo when the new template is one of
//     its ReplicaSets', the commands that Argo's tools write into its
//     status (Requests), io.sluice.experiment.requested.v1 when a
//     standalone Experiment's spec is new or changed and
//     io.sluice.experiment.delete.v1 when it is deleted, and
//     io.sluice.analysistemplate.applied.v1 for every AnalysisTemplate and
//     ClusterAnalysisTemplate added or changed, so the analyzer finds
//     them by name.
//   - StatusWriter writes each rollout's latest status into the Rollout's
//     status as Argo's controller writes it (argostatus.Status), and each
//     standalone experiment's into its Experiment object
//     (argostatus.ExperimentStatus), so that
//     kubectl, Argo's plugin and Argo CD, and a HorizontalPodAutoscaler
//     can read it, and records what it wrote (BucketWritten) so that the
//     watcher tells a tool's request from its own lagging write.
//   - Counts keeps the status' replica counts equal to the sums over the
//     rollout's ReplicaSets, which change without any status event.
//   - AnalysisRuns mirrors each rollout's analysis runs into AnalysisRun
//     objects owned by the Rollout (an experiment's, by the Experiment),
//     prunes them past its history limits, and turns spec.terminate set on
//     one into an analysis.terminate task.
//
// Both are safe to run in every replica of the replicas service: requested
// events have deterministic ids (the bus drops the duplicates) and the
// status consumer is shared, so each status event is written once.
package crd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/orchestrator"

	"github.com/sluicehq/sluice/services/replicas/kube"
)

// Resources of Argo Rollouts' CRDs, which deploy/crds ships.
var (
	RolloutResource                 = kube.RolloutResource
	ExperimentResource              = kube.ExperimentResource
	AnalysisTemplateResource        = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysistemplates"}
	ClusterAnalysisTemplateResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "clusteranalysistemplates"}
)

// Source is the CloudEvents source of the events the watcher publishes.
const Source = "/sluice/kube"

// Config configures Controllers.
type Config struct {
	// Client watches ReplicaSets; Dynamic watches Rollouts and templates
	// and writes Rollout status.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Bus publishes requested and applied events and consumes status
	// events; BusConfig is the stream configuration provisioned first.
	Bus       *events.Client
	BusConfig events.BusConfig
	// Namespace limits them to one namespace; empty means all.
	Namespace string
	// Logger receives their logs (default slog.Default()).
	Logger *slog.Logger
}

// Controllers runs the Watcher, the StatusWriter, Counts and AnalysisRuns together: what
// the replicas service runs on Kubernetes with --watch-rollouts.
type Controllers struct {
	cfg     Config
	watcher *Watcher
	status  *StatusWriter
	counts  *Counts
	runs    *AnalysisRuns
}

// New builds the controllers.
func New(cfg Config) (*Controllers, error) {
	var (
		c    = Controllers{cfg: cfg}
		errs = make([]error, 4)
	)
	if cfg.Bus == nil {
		return nil, errors.New("crd controllers: a bus client is required")
	}
	snaps := &lazyReader{client: cfg.Bus}
	c.watcher, errs[0] = NewWatcher(WatcherConfig{Dynamic: cfg.Dynamic, Client: cfg.Client, Bus: cfg.Bus, Snapshots: snaps, Namespace: cfg.Namespace, Logger: cfg.Logger})
	c.status, errs[1] = NewStatusWriter(StatusWriterConfig{Dynamic: cfg.Dynamic, Client: cfg.Bus, Bus: cfg.BusConfig, Snapshots: snaps, Kube: cfg.Client, Logger: cfg.Logger})
	c.counts, errs[2] = NewCounts(CountsConfig{Client: cfg.Client, Dynamic: cfg.Dynamic, Namespace: cfg.Namespace, Logger: cfg.Logger})
	c.runs, errs[3] = NewAnalysisRuns(AnalysisRunsConfig{Dynamic: cfg.Dynamic, Client: cfg.Client, Bus: cfg.Bus, BusConfig: cfg.BusConfig, Namespace: cfg.Namespace, Logger: cfg.Logger})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

// Run provisions BucketWritten, then runs the controllers until ctx ends
// or one fails.
func (c *Controllers) Run(ctx context.Context) error {
	bus := c.cfg.BusConfig
	bus.Defaults()
	kv := bus.Bucket(BucketWritten, bucketWritten.Description, bucketWritten.History)
	if err := c.cfg.Bus.Provision(ctx, bus, kv); err != nil {
		return fmt.Errorf("crd controllers: %w", err)
	}
	bucket, err := c.cfg.Bus.JetStream().KeyValue(ctx, BucketWritten)
	if err != nil {
		return fmt.Errorf("crd controllers: open bucket %s: %w", BucketWritten, err)
	}
	written := records.New(bucket, records.Config[Written]{Name: "written Rollout status", OverwriteUnreadable: true, Leader: c.cfg.Bus.Conn()})
	c.watcher.written, c.status.cfg.Written = written, written
	c.status.held = c.watcher.requeue
	c.counts.rewrite = c.status.Rewrite
	// The status writer and Counts read Rollouts from the watcher's cache
	// and ReplicaSets from Counts'.
	shared := &cached{}
	c.watcher.cached, c.counts.cached, c.status.cached, c.runs.cached = shared, shared, shared, shared
	c.watcher.rolloutChanged = c.counts.recount
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.watcher.Run(ctx) })
	g.Go(func() error { return c.status.Run(ctx) })
	g.Go(func() error { return c.counts.Run(ctx) })
	g.Go(func() error { return c.runs.Run(ctx) })
	return g.Wait()
}

// Ready reports whether all of them are watching.
func (c *Controllers) Ready() bool {
	return c.watcher.Ready() && c.status.Ready() && c.counts.Ready() && c.runs.Ready()
}

// newQueue is the work queue of a controller: a key that failed comes back
// after 100ms, doubling up to a minute.
func newQueue[T comparable](name string) workqueue.TypedRateLimitingInterface[T] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[T](100*time.Millisecond, time.Minute),
		workqueue.TypedRateLimitingQueueConfig[T]{Name: name})
}

// work handles the keys of q one at a time until ctx ends: a key whose
// handling fails is logged as what failed and requeued with backoff.
func work[T comparable](ctx context.Context, q workqueue.TypedRateLimitingInterface[T], log *slog.Logger, what string, handle func(context.Context, T) error) {
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	for {
		k, quit := q.Get()
		if quit {
			return
		}
		if err := handle(ctx, k); err != nil && ctx.Err() == nil {
			log.Warn(what+" failed; retrying", "key", fmt.Sprint(k), "error", err)
			q.AddRateLimited(k)
		} else {
			q.Forget(k)
		}
		q.Done(k)
	}
}

// Needs is what the controllers use on the bus besides the replicas
// service's own: they publish the requested and template events of Rollout
// objects (commands), the status writer's and the AnalysisRuns' consumers
// follow the status, and AnalysisRuns reads the analyzer's runs and
// publishes analysis.terminate tasks.
var Needs = events.Needs{
	Consumers: []events.Durable{{Stream: events.StreamStatus, Name: StatusDurable}, {Stream: events.StreamStatus, Name: AnalysisRunsDurable}},
	Buckets:   []events.Bucket{bucketWritten},
	Views:     []string{orchestrator.BucketRollouts, analyzer.BucketRuns},
	Publish:   []string{events.CommandRoot + ".>", events.TaskRoot + "." + tasks.ServiceAnalyzer + ".>"},
}

var bucketWritten = events.Bucket{Name: BucketWritten, Description: "Sluice on Kubernetes: what the status writer wrote of each Rollout object's request fields", History: 1}

// lazyReader is the orchestrator's Reader, opened when first used: the
// orchestrator may start after the replicas service. Until its bucket
// exists, no rollout exists. It reads the leader's records
// (orchestrator.NewLeaderReader): the status writer writes what it reads
// into the objects, where an older status, which a replica of the bucket
// that lags behind answers, would stay until the rollout's next event.
type lazyReader struct {
	client *events.Client
	mu     sync.Mutex
	rd     *orchestrator.Reader
}

var _ Snapshots = (*lazyReader)(nil)

func (l *lazyReader) open(ctx context.Context) (*orchestrator.Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rd != nil {
		return l.rd, nil
	}
	rd, err := orchestrator.NewLeaderReader(ctx, l.client)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: no orchestrator ran yet", orchestrator.ErrNoRollout)
	}
	if err != nil {
		return nil, err
	}
	l.rd = rd
	return rd, nil
}

func (l *lazyReader) Get(ctx context.Context, r events.Ref) (events.Snapshot, error) {
	rd, err := l.open(ctx)
	if err != nil {
		return events.Snapshot{}, err
	}
	return rd.Get(ctx, r)
}

func (l *lazyReader) Manifest(ctx context.Context, r events.Ref, podHash string) (*spec.Rollout, error) {
	rd, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	return rd.Manifest(ctx, r, podHash)
}
