package crd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// StatusDurable is the durable consumer on SLUICE_STATUS that every
// replica's StatusWriter shares.
const StatusDurable = "kube-status"

// StatusWriterConfig configures a StatusWriter.
type StatusWriterConfig struct {
	// Dynamic writes Rollout status.
	Dynamic dynamic.Interface
	// Client consumes the status events.
	Client *events.Client
	// Bus is the stream configuration provisioned before consuming.
	Bus events.BusConfig
	// Consumer tunes the durable consumer; Stream, Durable and
	// FilterSubjects are set by the writer.
	Consumer events.ConsumerConfig
	// Logger receives the writer's logs (default slog.Default()).
	Logger *slog.Logger
}

// StatusWriter writes status events into Rollout objects' status.
type StatusWriter struct {
	cfg   StatusWriterConfig
	log   *slog.Logger
	ready atomic.Bool
}

// NewStatusWriter returns a writer; Run starts it.
func NewStatusWriter(cfg StatusWriterConfig) (*StatusWriter, error) {
	if cfg.Dynamic == nil || cfg.Client == nil {
		return nil, errors.New("crd status writer: a dynamic client and a bus client are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Bus.Defaults()
	cc := &cfg.Consumer
	cc.Stream, cc.Durable, cc.FilterSubjects = events.StreamStatus, StatusDurable, []string{events.StatusRoot + ".>"}
	cc.Defaults()
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	return &StatusWriter{cfg: cfg, log: cfg.Logger}, nil
}

// Ready reports whether the consumer is in place.
func (s *StatusWriter) Ready() bool { return s.ready.Load() }

// Run consumes status events until ctx ends.
func (s *StatusWriter) Run(ctx context.Context) error {
	mux := events.NewMux()
	for _, t := range events.StatusTypes {
		mux.Handle(t, s.handle)
	}
	if err := s.cfg.Client.Provision(ctx, s.cfg.Bus); err != nil {
		return fmt.Errorf("crd status writer: %w", err)
	}
	sub, err := s.cfg.Client.Consume(ctx, s.cfg.Consumer, mux.Dispatch)
	if err != nil {
		return fmt.Errorf("crd status writer: %w", err)
	}
	s.ready.Store(true)
	<-ctx.Done()
	s.ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sub.Stop(sctx)
}

// handle writes one event's snapshot, unless the Rollout is not a cluster
// object or already shows a later snapshot.
//
// A deleted rollout has no object left to write to, and a refused command
// changed nothing: neither is written.
func (s *StatusWriter) handle(ctx context.Context, _ events.Delivery, ev events.Event) error {
	switch ev.Type() {
	case events.TypeRolloutDeleted, events.TypeRolloutRefused:
		return nil
	}
	var data events.StatusData
	if err := events.DecodeData(ev, &data); err != nil {
		return events.Permanent(fmt.Errorf("status event %s: %w", ev.ID(), err))
	}
	snap := data.Status
	rollouts := s.cfg.Dynamic.Resource(RolloutResource).Namespace(snap.Namespace)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		ro, err := rollouts.Get(ctx, snap.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if prev, _, _ := unstructured.NestedString(ro.Object, "status", "sluice", "updatedAt"); prev != "" {
			if t, err := time.Parse(time.RFC3339Nano, prev); err == nil && t.After(snap.UpdatedAt) {
				return nil // a later snapshot is already written
			}
		}
		status, err := Status(ro, data)
		if err != nil {
			return err
		}
		if ev.Type() == events.TypeRolloutRestarted {
			// Argo's field, which its kubectl plugin shows.
			status["restartedAt"] = ev.Time().UTC().Format(time.RFC3339)
		}
		ro.Object["status"] = status
		_, err = rollouts.UpdateStatus(ctx, ro, metav1.UpdateOptions{FieldManager: "sluice"})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil // published from CI or the CLI: no cluster object to write to
	}
	return err
}

// Status is the Rollout's status after the event data, as Argo writes it
// (argostatus.Status), keeping what the snapshot does not own: the
// generations the watcher observed, and the replica counts Counts writes.
func Status(ro *unstructured.Unstructured, data events.StatusData) (map[string]any, error) {
	old, _, _ := unstructured.NestedMap(ro.Object, "status")
	in := argostatus.Rollout{Status: old}
	if raw, ok := ro.Object["spec"]; ok {
		if b, err := json.Marshal(raw); err == nil {
			r := &spec.Rollout{}
			if json.Unmarshal(b, &r.Spec) == nil {
				r.SetDefaults()
				in.Spec = r
			}
		}
	}
	// The counts are Counts' (from the ReplicaSets), kept as they are.
	if _, ok := old["replicas"]; ok {
		n := func(k string) int32 { v, _, _ := unstructured.NestedInt64(old, k); return int32(v) }
		in.Replicas = &events.Replicas{Current: n("replicas"), Updated: n("updatedReplicas"), Ready: n("readyReplicas"), Available: n("availableReplicas")}
	}
	return argostatus.Status(data, in, time.Now()), nil
}
