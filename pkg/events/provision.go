package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
)

// Stream names. Every service provisions all of them at start-up.
const (
	StreamCommands   = "SLUICE_COMMANDS"   // sluice.cmd.>
	StreamStatus     = "SLUICE_STATUS"     // sluice.status.>
	StreamTasks      = "SLUICE_TASKS"      // sluice.task.>
	StreamResults    = "SLUICE_RESULTS"    // sluice.result.>
	StreamDeadLetter = "SLUICE_DEADLETTER" // sluice.dlq.>
)

// BusConfig holds what an operator tunes about Sluice's streams and
// key-value buckets. Development runs R1 on file storage; production should
// run Replicas: 3 on a three-node cluster (see docs/operations.md).
type BusConfig struct {
	// Storage is "file" (default) or "memory". It cannot change in place.
	Storage string
	// Replicas is the number of copies of each stream and bucket: 1, 3 or 5.
	Replicas int
	// DuplicateWindow is how long a stream remembers event ids to drop a
	// repeated publish (default 2m). At most MaxAge.
	DuplicateWindow time.Duration
	// MaxAge is how long command, status, task and result events are kept
	// (default 7 days); `sluice history` can replay this far back.
	MaxAge time.Duration
	// DeadLetterMaxAge is how long dead letters are kept (default 30 days).
	DeadLetterMaxAge time.Duration
	// MaxBytes caps each stream's size; -1 (default) means no cap beyond the
	// server's own limits.
	MaxBytes int64
	// AckWait is how long a delivered event may go unacknowledged before
	// the server redelivers it (default 30s): how long the work of a
	// replica that crashed waits before another replica takes it. Handlers
	// in progress extend it with heartbeats, so it does not bound how long
	// a task may take. It applies to consumers that set no AckWait of their
	// own (WithAckWait).
	AckWait time.Duration
}

// Defaults fills unset fields with their documented defaults.
func (b *BusConfig) Defaults() {
	if b.Storage == "" {
		b.Storage = "file"
	}
	if b.Replicas == 0 {
		b.Replicas = 1
	}
	if b.DuplicateWindow == 0 {
		b.DuplicateWindow = 2 * time.Minute
	}
	if b.MaxAge == 0 {
		b.MaxAge = 7 * 24 * time.Hour
	}
	if b.DeadLetterMaxAge == 0 {
		b.DeadLetterMaxAge = 30 * 24 * time.Hour
	}
	if b.MaxBytes == 0 {
		b.MaxBytes = -1
	}
	if b.AckWait == 0 {
		b.AckWait = DefaultAckWait
	}
}

// DefaultAckWait is BusConfig.AckWait's and ConsumerConfig.AckWait's default.
const DefaultAckWait = 30 * time.Second

// Validate reports every problem at once, each wrapping ErrInvalidConfig.
func (b BusConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if b.Storage != "file" && b.Storage != "memory" {
		bad("--bus-storage %q: want file or memory", b.Storage)
	}
	if !slices.Contains([]int{1, 3, 5}, b.Replicas) {
		bad("--bus-replicas %d: want 1, 3 or 5", b.Replicas)
	}
	if b.DuplicateWindow <= 0 {
		bad("--bus-duplicate-window %s must be positive", b.DuplicateWindow)
	}
	if b.MaxAge <= 0 || b.DeadLetterMaxAge <= 0 {
		bad("--bus-max-age and the dead-letter max age must be positive")
	}
	if b.AckWait < 100*time.Millisecond {
		bad("--bus-ack-wait %s must be at least 100ms", b.AckWait)
	}
	if b.DuplicateWindow > b.MaxAge {
		bad("--bus-duplicate-window %s is longer than --bus-max-age %s", b.DuplicateWindow, b.MaxAge)
	}
	return errors.Join(errs...)
}

// AddFlags registers the bus flags on fs.
func (b *BusConfig) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&b.Storage, "bus-storage", "file", "JetStream storage for Sluice's streams and buckets: file or memory")
	fs.IntVar(&b.Replicas, "bus-replicas", 1, "replicas of each stream and bucket: 1 (development) or 3 (production)")
	fs.DurationVar(&b.DuplicateWindow, "bus-duplicate-window", 2*time.Minute, "how long a repeated event id is dropped")
	fs.DurationVar(&b.MaxAge, "bus-max-age", 7*24*time.Hour, "how long events are kept")
	fs.DurationVar(&b.AckWait, "bus-ack-wait", DefaultAckWait, "how long a delivered event may go unacknowledged before another replica gets it (how long a crashed replica's work waits)")
}

func (b BusConfig) storage() jetstream.StorageType {
	if b.Storage == "memory" {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// Streams returns the configuration of every Sluice stream.
func (b BusConfig) Streams() []jetstream.StreamConfig {
	mk := func(name, subject, desc string, maxAge time.Duration) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject},
			Retention:   jetstream.LimitsPolicy,
			Storage:     b.storage(),
			Replicas:    b.Replicas,
			MaxAge:      maxAge,
			MaxBytes:    b.MaxBytes,
			MaxMsgs:     -1,
			Duplicates:  min(b.DuplicateWindow, maxAge),
			Discard:     jetstream.DiscardOld,
		}
	}
	return []jetstream.StreamConfig{
		mk(StreamCommands, CommandRoot+".>", "Sluice commands: rollout requests, promote, abort, ...", b.MaxAge),
		mk(StreamStatus, StatusRoot+".>", "Sluice rollout status events", b.MaxAge),
		mk(StreamTasks, TaskRoot+".>", "Sluice tasks from the orchestrator to worker services", b.MaxAge),
		mk(StreamResults, ResultRoot+".>", "Sluice task results from worker services", b.MaxAge),
		mk(StreamDeadLetter, DeadLetterRoot+".>", "Sluice events no consumer could handle, with the reason", b.DeadLetterMaxAge),
	}
}

// Bucket returns a key-value bucket configuration on the bus's storage and
// replicas. history is how many revisions of a key are kept (1 suffices for
// compare-and-swap).
func (b BusConfig) Bucket(name, description string, history uint8) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      name,
		Description: description,
		History:     history,
		Storage:     b.storage(),
		Replicas:    b.Replicas,
	}
}

// Provision creates every stream and the given buckets, or updates them when
// their configuration changed. It is idempotent and safe to run from every
// replica of every service at once. A change the server cannot make in place
// (storage type, retention) is an error that names the stream and the field.
func (c *Client) Provision(ctx context.Context, bus BusConfig, buckets ...jetstream.KeyValueConfig) error {
	bus.Defaults()
	if err := bus.Validate(); err != nil {
		return err
	}
	var errs []error
	for _, want := range bus.Streams() {
		if err := c.provisionStream(ctx, want); err != nil {
			errs = append(errs, err)
		}
	}
	for _, kv := range buckets {
		if _, err := c.js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			errs = append(errs, fmt.Errorf("provision bucket %s: %w", kv.Bucket, err))
		}
	}
	err := errors.Join(errs...)
	var api *jetstream.APIError
	if errors.As(err, &api) && api.ErrorCode == errReplicasNotClustered {
		return fmt.Errorf("%w: --bus-replicas %d needs a JetStream cluster of at least %d servers, and the server at %s is not clustered: run --bus-replicas 1 on it, or a cluster (docs/operations.md, Sizing NATS): %w", ErrInvalidConfig, bus.Replicas, bus.Replicas, c.nc.ConnectedUrlRedacted(), err)
	}
	return err
}

// errReplicasNotClustered is JetStream's "replicas > 1 not supported in
// non-clustered mode".
const errReplicasNotClustered = 10074

func (c *Client) provisionStream(ctx context.Context, want jetstream.StreamConfig) error {
	s, err := c.js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := c.js.CreateStream(ctx, want); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if have.Storage != want.Storage {
		return fmt.Errorf("%w: stream %s uses %s storage but the configuration asks for %s; storage cannot change in place: back up and delete the stream, or keep the old storage", ErrInvalidConfig, want.Name, have.Storage, want.Storage)
	}
	if have.Retention != want.Retention {
		return fmt.Errorf("%w: stream %s has retention %s but Sluice needs %s; retention cannot change in place", ErrInvalidConfig, want.Name, have.Retention, want.Retention)
	}
	changes := streamChanges(have, want)
	if len(changes) == 0 {
		return nil
	}
	// Keep server-side settings Sluice does not manage.
	merged := have
	merged.Description, merged.Subjects, merged.Replicas = want.Description, want.Subjects, want.Replicas
	merged.MaxAge, merged.MaxBytes, merged.MaxMsgs, merged.Duplicates, merged.Discard = want.MaxAge, want.MaxBytes, want.MaxMsgs, want.Duplicates, want.Discard
	if _, err := c.js.UpdateStream(ctx, merged); err != nil {
		return fmt.Errorf("update stream %s (%s): %w", want.Name, strings.Join(changes, ", "), err)
	}
	c.log.Info("stream configuration updated", "stream", want.Name, "changes", strings.Join(changes, ", "))
	return nil
}

// streamChanges lists the managed fields that differ, as "field old -> new".
func streamChanges(have, want jetstream.StreamConfig) []string {
	var out []string
	diff := func(field string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			out = append(out, fmt.Sprintf("%s %v -> %v", field, a, b))
		}
	}
	diff("subjects", have.Subjects, want.Subjects)
	diff("replicas", have.Replicas, want.Replicas)
	diff("max_age", have.MaxAge, want.MaxAge)
	diff("max_bytes", have.MaxBytes, want.MaxBytes)
	diff("max_msgs", have.MaxMsgs, want.MaxMsgs)
	diff("duplicate_window", have.Duplicates, want.Duplicates)
	diff("discard", have.Discard, want.Discard)
	diff("description", have.Description, want.Description)
	return out
}
