package orchestrator

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// BucketRollouts holds one entry per rollout, keyed <namespace>.<name>.
const BucketRollouts = "sluice-rollouts"

// errConflict means another replica wrote the entry first.
var errConflict = errors.New("rollout state changed concurrently")

// record is what the bucket stores for one rollout. Wakeup and Phase come
// first, always present, so that watchers read them without scanning the
// rest (jsonlead.Fields).
type record struct {
	// Wakeup mirrors State.NextWakeup so that timer watchers need not
	// interpret the state; null when nothing is scheduled.
	Wakeup *time.Time `json:"wakeup"`
	// Phase mirrors State.Phase for the rollouts-by-phase gauge.
	Phase string        `json:"phase"`
	State machine.State `json:"state"`
	// Outbox holds the effects of the decision that produced State. They
	// are published after the write and republished, idempotently, when the
	// message that triggered the decision is redelivered.
	Outbox []machine.Effect `json:"outbox,omitempty"`
	// Commands are the event ids of the last commands applied (requests
	// included), oldest first, so that a command delivered again later,
	// after newer ones, is recognised and changes nothing.
	Commands []string `json:"commands,omitempty"`
}

func key(r events.Ref) string { return r.Namespace + "." + r.Name }

func refFromKey(k string) (events.Ref, error) {
	ns, name, ok := strings.Cut(k, ".")
	if !ok {
		return events.Ref{}, fmt.Errorf("key %q is not <namespace>.<name>", k)
	}
	r := events.Ref{Namespace: ns, Name: name}
	return r, r.Validate()
}

// store reads and writes records with compare-and-swap. It keeps the
// records it read or wrote last, decoded, by revision: a rollout that is
// busy is decided on again and again, and decoding its record each time
// was the largest cost of a decision after the decision itself. A record
// from the cache is shared: callers must not modify it (the machine never
// modifies the state it is given).
type store struct {
	kv    jetstream.KeyValue
	cache *recordCache
}

// recent returns the record this replica read or wrote last for r, without
// asking the bucket whether another replica has written since: a decision
// on it is checked by the compare-and-swap of its write, and a decision
// that writes nothing must be made again on load's record.
func (s store) recent(r events.Ref) (record, uint64, bool) {
	return s.cache.latest(key(r))
}

// load returns the record and its revision; a missing rollout is the zero
// record at revision 0.
func (s store) load(ctx context.Context, r events.Ref) (record, uint64, error) {
	e, err := s.kv.Get(ctx, key(r))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return record{}, 0, nil
	}
	if err != nil {
		return record{}, 0, fmt.Errorf("load %s: %w", r, err)
	}
	if rec, ok := s.cache.get(e.Key(), e.Revision()); ok {
		return rec, e.Revision(), nil
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		// A corrupt entry must not be overwritten silently: surface it.
		return record{}, 0, events.Permanent(fmt.Errorf("rollout state %s is unreadable: %w", r, err))
	}
	s.cache.put(e.Key(), e.Revision(), rec)
	return rec, e.Revision(), nil
}

// save writes rec if the entry is still at revision rev (0: must not exist).
// It returns errConflict when another writer got there first.
func (s store) save(ctx context.Context, r events.Ref, rec record, rev uint64) error {
	rec.Wakeup, rec.Phase = nil, rec.State.Phase
	if w, ok := rec.State.NextWakeup(); ok {
		rec.Wakeup = &w
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return events.Permanent(fmt.Errorf("encode state of %s: %w", r, err))
	}
	var written uint64
	if rev == 0 {
		written, err = s.kv.Create(ctx, key(r), data)
	} else {
		written, err = s.kv.Update(ctx, key(r), data, rev)
	}
	if err == nil {
		s.cache.put(key(r), written, rec)
		return nil
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return errConflict
	}
	return fmt.Errorf("save %s: %w", r, err)
}

// recordCache holds up to max decoded records, the least recently used
// going first. It is safe for concurrent use; a nil cache holds nothing.
type recordCache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *cached, most recent first
	entries map[string]*list.Element
}

type cached struct {
	key string
	rev uint64
	rec record
}

func newRecordCache(max int) *recordCache {
	if max <= 0 {
		return nil
	}
	return &recordCache{max: max, order: list.New(), entries: map[string]*list.Element{}}
}

// get returns the record of key at revision rev, if the cache has that one.
func (c *recordCache) get(key string, rev uint64) (record, bool) {
	if c == nil {
		return record{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok || el.Value.(*cached).rev != rev {
		return record{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cached).rec, true
}

// latest returns the newest record the cache holds for key.
func (c *recordCache) latest(key string) (record, uint64, bool) {
	if c == nil {
		return record{}, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return record{}, 0, false
	}
	c.order.MoveToFront(el)
	e := el.Value.(*cached)
	return e.rec, e.rev, true
}

// put remembers the record of key at revision rev, unless a later
// revision is already there.
func (c *recordCache) put(key string, rev uint64, rec record) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		if e := el.Value.(*cached); e.rev <= rev {
			e.rev, e.rec = rev, rec
		}
		c.order.MoveToFront(el)
		return
	}
	c.entries[key] = c.order.PushFront(&cached{key: key, rev: rev, rec: rec})
	if c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cached).key)
	}
}
