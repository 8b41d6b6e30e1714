// Package records keeps typed records in a JetStream key-value bucket and
// changes them with compare-and-swap on the entry's revision, so that
// several replicas can share one bucket without locks. Every service that
// stores state on the bus reads and writes it through a Store.
package records

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// MaxAttempts bounds the compare-and-swap attempts of one Update on
// records read from the bucket; past it Update gives up with ErrConflict,
// and the caller (usually a message handler) retries later with backoff.
const MaxAttempts = 8

var (
	// ErrConflict means another writer changed the entry first.
	ErrConflict = errors.New("record changed concurrently")
	// ErrUnreadable is wrapped, as a permanent error, by reads of an entry
	// that does not decode. A corrupt entry must not be overwritten
	// silently: it is surfaced unless Config.OverwriteUnreadable says
	// otherwise.
	ErrUnreadable = errors.New("record is unreadable")
	// Unchanged is returned by an Update's change function to write
	// nothing; Update then returns nil.
	Unchanged = errors.New("record unchanged")
	// ErrStale is returned by an Update's change function when the record
	// it was given may be out of date (one given to UpdateFrom, or one a
	// replica of the bucket answered): Update reads the entry again, from
	// the leader of the bucket's stream (Latest), and calls change again.
	ErrStale = errors.New("record may be stale")
)

// Config configures a Store. The zero value stores records under the
// name "record", without a cache.
type Config[T any] struct {
	// Name says what the records are, in errors ("rollout state").
	Name string
	// Prepare, when set, fills the fields of a record that derive from the
	// rest (its wakeup, for deadlines.Follow) before it is written.
	Prepare func(*T)
	// Cache is how many decoded records the store keeps, by revision, the
	// least recently used going first (zero or negative: none). Records
	// from the cache are shared: callers must not modify what they point
	// to.
	Cache int
	// OverwriteUnreadable makes Update treat an entry that does not
	// decode as the zero record at its revision, so that change replaces
	// it. Get still reports ErrUnreadable.
	OverwriteUnreadable bool
	// Leader, when set, is the connection Latest asks the leader of the
	// bucket's stream through; without it Latest reads as Get does.
	Leader Requester
}

// Requester sends a request and waits for its reply (*nats.Conn is one).
type Requester interface {
	RequestWithContext(ctx context.Context, subject string, data []byte) (*nats.Msg, error)
}

// Store reads and writes records of type T, encoded as JSON, in one
// bucket. It is safe for concurrent use.
type Store[T any] struct {
	kv    jetstream.KeyValue
	cfg   Config[T]
	cache *cache[T]
}

// New returns a store over kv.
func New[T any](kv jetstream.KeyValue, cfg Config[T]) *Store[T] {
	if cfg.Name == "" {
		cfg.Name = "record"
	}
	return &Store[T]{kv: kv, cfg: cfg, cache: newCache[T](cfg.Cache)}
}

// Get returns the record under key and its revision; a missing key is the
// zero record at revision 0. An entry that does not decode is an error
// wrapping ErrUnreadable, marked permanent, returned with the entry's
// revision.
func (s *Store[T]) Get(ctx context.Context, key string) (T, uint64, error) {
	var rec T
	e, err := GetEntry(ctx, s.kv, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, 0, nil
	}
	if err != nil {
		return rec, 0, fmt.Errorf("load %s %s: %w", s.cfg.Name, key, err)
	}
	return s.decode(key, e.Value(), e.Revision())
}

// decode returns the record value holds, at revision rev.
func (s *Store[T]) decode(key string, value []byte, rev uint64) (T, uint64, error) {
	if cached, ok := s.cache.get(key, rev); ok {
		return cached, rev, nil
	}
	var rec T
	if err := json.Unmarshal(value, &rec); err != nil {
		var zero T
		return zero, rev, events.Permanent(fmt.Errorf("%s %s: %w: %w", s.cfg.Name, key, ErrUnreadable, err))
	}
	s.cache.put(key, rev, rec)
	return rec, rev, nil
}

// Latest is Get answered by the leader of the bucket's stream. Get's
// reads may be answered by any replica, and one that lags behind, or no
// longer receives the stream at all (a node past its store limit goes on
// answering), answers with an older record: a caller that would act on
// finding nothing to do asks Latest (Update does, after its change found
// the record stale). While the stream has no leader Latest waits for one,
// up to leaderWait. Without Config.Leader it is Get.
func (s *Store[T]) Latest(ctx context.Context, key string) (T, uint64, error) {
	if s.cfg.Leader == nil {
		return s.Get(ctx, key)
	}
	var rec T
	value, rev, err := lastBySubject(ctx, s.cfg.Leader, "KV_"+s.kv.Bucket(), "$KV."+s.kv.Bucket()+"."+key)
	if err != nil {
		return rec, 0, fmt.Errorf("load %s %s from the leader: %w", s.cfg.Name, key, err)
	}
	if rev == 0 {
		return rec, 0, nil
	}
	return s.decode(key, value, rev)
}

// apiError is the error in a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

// msgNotFound is JetStream's "no message found".
const msgNotFound = 10037

// lastBySubject asks the leader of stream for the last message on
// subject and returns its data and sequence; sequence 0 when there is
// none, or when it marks the key deleted or purged.
func lastBySubject(ctx context.Context, nc Requester, stream, subject string) ([]byte, uint64, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return nil, 0, err
	}
	var resp struct {
		Error   *apiError `json:"error"`
		Message *struct {
			Seq    uint64 `json:"seq"`
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
	}
	if err := leaderRequest(ctx, nc, "$JS.API.STREAM.MSG.GET."+stream, req, &resp); err != nil {
		return nil, 0, err
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == msgNotFound:
		return nil, 0, nil
	case resp.Error != nil:
		return nil, 0, fmt.Errorf("%s's leader: %s (error %d)", stream, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return nil, 0, fmt.Errorf("%s's leader answered without a message", stream)
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, 0, fmt.Errorf("the headers of %s's last message on %s: %w", stream, subject, err)
		}
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil, 0, nil
		}
	}
	return resp.Message.Data, resp.Message.Seq, nil
}

// leaderRequest sends req to subject, an API request only the leader of
// a stream answers, and decodes the answer into resp. An attempt the
// leader has not answered within writeAttempt (there is none: an
// election) is made again, up to leaderWait.
func leaderRequest(ctx context.Context, nc Requester, subject string, req []byte, resp any) error {
	deadline := time.Now().Add(leaderWait)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, writeAttempt)
		msg, err := nc.RequestWithContext(actx, subject, req)
		cancel()
		if err == nil {
			if err := json.Unmarshal(msg.Data, resp); err != nil {
				return fmt.Errorf("the answer to %s: %w", subject, err)
			}
			return nil
		}
		timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
		if ctx.Err() != nil || time.Now().After(deadline) || !timedOut && !events.NoLeader(err) {
			return err
		}
		if !timedOut {
			t := time.NewTimer(events.LeaderBackoff.Delay(attempt))
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
	}
}

// Reads are hedged: when a read has had no answer after readHedge, the
// same read is asked again without giving up on the first, then again
// after twice as long, and so on, every maxHedge at most, until one
// answers or the caller's context ends; the first answer wins. A read is
// a direct get that any node holding the bucket may answer, and the
// server hands it to one of them at random, so a node that vanished
// without closing its routes (cut off by a partition, or paused) takes
// its share of the reads until its peers give up on it, which their route
// pings take 30 s or more to do; a read asked again is handed to a node
// drawn afresh (issue 21, TestRecordsDoNotWaitOnAVanishedNode). A read
// that is merely slow costs the bus a second read, never a wrong answer.
const (
	readHedge = 250 * time.Millisecond
	maxHedge  = time.Second
	// maxReads bounds the reads in flight for one caller.
	maxReads = 30
)

// GetEntry gets the entry under key from kv as Store.Get does, hedged,
// for callers that read a bucket's raw entries.
func GetEntry(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		e   jetstream.KeyValueEntry
		err error
	}
	answers := make(chan answer, maxReads)
	ask := func() {
		go func() {
			e, err := kv.Get(ctx, key)
			answers <- answer{e, err}
		}()
	}
	ask()
	asked, pending, wait := 1, 1, readHedge
	hedge := time.NewTimer(wait)
	defer hedge.Stop()
	for {
		select {
		case a := <-answers:
			pending--
			// A read that timed out on its own (the client's default
			// request timeout, when ctx has no deadline) leaves the
			// others to answer.
			if a.err == nil || pending == 0 && asked == maxReads || !(errors.Is(a.err, context.DeadlineExceeded) || errors.Is(a.err, nats.ErrTimeout)) {
				return a.e, a.err
			}
			if ctx.Err() != nil {
				return a.e, a.err
			}
		case <-hedge.C:
			if asked < maxReads {
				ask()
				asked, pending, wait = asked+1, pending+1, min(2*wait, maxHedge)
				hedge.Reset(wait)
			}
		}
	}
}

// Recent returns the record this store read or wrote last under key, from
// its cache, without asking the bucket whether another writer has written
// since. ok is false when the cache does not hold key.
func (s *Store[T]) Recent(key string) (rec T, rev uint64, ok bool) {
	return s.cache.latest(key)
}

// Forget drops the record this store holds under key: the next Recent
// finds none, and the next Update reads the bucket. A writer that learns
// another may have written meanwhile (it lost the ownership of the key)
// forgets rather than decide on what it knew.
func (s *Store[T]) Forget(key string) { s.cache.forget(key) }

// Put writes rec under key if the entry is still at revision rev (0: must
// not exist) and returns the new revision. It returns an error wrapping
// ErrConflict when another writer got there first.
func (s *Store[T]) Put(ctx context.Context, key string, rec T, rev uint64) (uint64, error) {
	if s.cfg.Prepare != nil {
		s.cfg.Prepare(&rec)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return 0, events.Permanent(fmt.Errorf("encode %s %s: %w", s.cfg.Name, key, err))
	}
	written, err := s.write(ctx, key, data, rev)
	if isConflict(err) {
		return 0, fmt.Errorf("save %s %s: %w", s.cfg.Name, key, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("save %s %s: %w", s.cfg.Name, key, err)
	}
	s.cache.put(key, written, rec)
	return written, nil
}

// writeAttempt is how long one request of a write may take before the
// write is made again. A write goes to the leader of the bucket's stream,
// and while its peers elect a new one after the old one vanished (cut
// off, or paused) the write is handed to the old leader and never
// answered. A write made again after the election reaches the new leader,
// within writeAttempt of it, instead of the handler failing its message
// into a backoff that outlasts the election (issue 21). It is two round
// trips of a link 500 ms long each way (TestSlowLinksToTheBus).
const writeAttempt = 2 * time.Second

// createRequests is how many requests the client's Create makes when the
// key's last entry is a delete marker (a record deleted before, as a
// pending task is once done): a write expecting no entry, which the
// marker refuses, a read of the marker, and a write at its revision
// (JetStream has no create over a marker in one request, and kv.Get hides
// the marker's revision). Each request has writeAttempt: over a link 500 ms
// long each way three round trips do not fit in one (TestUpdateOverASlowLink).
const createRequests = 3

// write stores data under key if the entry is still at revision rev, and
// returns the new revision. It makes the write again while no leader
// takes it (events.NoLeader: nothing was stored) and after an attempt
// timed out, up to leaderWait. An attempt that timed out may have been
// stored all the same, and then the next one conflicts with it: the
// write succeeded if the entry holds exactly its data; otherwise the
// timeout is returned, which leaves the caller as unsure as before.
func (s *Store[T]) write(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	deadline := time.Now().Add(leaderWait)
	var timedOut error // an attempt that timed out and may have been stored
	for attempt := 1; ; attempt++ {
		written, err := s.writeOnce(ctx, key, data, rev)
		switch {
		case err == nil:
			return written, nil
		case timedOut != nil && isConflict(err):
			if e, gerr := GetEntry(ctx, s.kv, key); gerr == nil && e.Revision() > rev && bytes.Equal(e.Value(), data) {
				return e.Revision(), nil
			}
			return 0, timedOut
		case ctx.Err() != nil || time.Now().After(deadline):
			return 0, err
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
			// Made again at once: the attempt has waited already.
			timedOut = err
			continue
		case !events.NoLeader(err):
			return 0, err
		}
		t := time.NewTimer(events.LeaderBackoff.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, err
		case <-t.C:
		}
	}
}

// writeOnce makes one attempt of write, within writeAttempt per request.
// A create is first written expecting no entry, one request, as a write at
// a revision is: a key that never had an entry is created in one round
// trip, and a create sent to a leader that vanished is made again after
// writeAttempt, as an update is. Only when that is refused does the
// client's Create go on to find whether the refusal came from a delete
// marker. A Create cut off after its first request was refused is
// reported by the client as that refusal, as if the key existed: it is a
// timeout (the key may be merely deleted; nothing was stored unless its
// last request went out), never a conflict.
func (s *Store[T]) writeOnce(ctx context.Context, key string, data []byte, rev uint64) (uint64, error) {
	actx, cancel := context.WithTimeout(ctx, writeAttempt)
	written, err := s.kv.Update(actx, key, data, rev)
	cancel()
	if rev != 0 || !isConflict(err) {
		return written, err
	}
	actx, cancel = context.WithTimeout(ctx, createRequests*writeAttempt)
	defer cancel()
	written, err = s.kv.Create(actx, key, data)
	if isConflict(err) && actx.Err() != nil {
		return 0, fmt.Errorf("create %s cut off after the key refused a write expecting no entry: %w", key, actx.Err())
	}
	return written, err
}

// Delete removes the entry under key if it is still at revision rev. It
// returns an error wrapping ErrConflict when the entry has changed.
func (s *Store[T]) Delete(ctx context.Context, key string, rev uint64) error {
	_, err := whileNoLeader(ctx, func() (uint64, error) { return 0, s.kv.Delete(ctx, key, jetstream.LastRevision(rev)) })
	if isConflict(err) {
		return fmt.Errorf("delete %s %s: %w", s.cfg.Name, key, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", s.cfg.Name, key, err)
	}
	s.cache.forget(key)
	return nil
}

// leaderWait bounds how long a write waits for its bucket's stream to
// have a leader again. An election takes seconds; a bucket nobody answers
// for longer (deleted, or its cluster lost its quorum) is an error for the
// caller, whose message is then retried with its own backoff.
const leaderWait = 30 * time.Second

// whileNoLeader calls write again while no leader of the bucket's stream
// takes it (events.NoLeader: nothing was stored), up to leaderWait, so
// that a handler whose write lands while the node leading the bucket has
// died waits for the new leader instead of failing its message into a
// backoff that outlasts the election (issue 21).
func whileNoLeader(ctx context.Context, write func() (uint64, error)) (uint64, error) {
	deadline := time.Now().Add(leaderWait)
	for attempt := 1; ; attempt++ {
		rev, err := write()
		if !events.NoLeader(err) || time.Now().After(deadline) {
			return rev, err
		}
		t := time.NewTimer(events.LeaderBackoff.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return rev, err
		case <-t.C:
		}
	}
}

// Keys returns the keys of the bucket's entries.
func (s *Store[T]) Keys(ctx context.Context) ([]string, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s keys: %w", s.cfg.Name, err)
	}
	defer lister.Stop()
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// LatestKeys is Keys answered by the leader of the bucket's stream. Keys
// lists the bucket through a consumer that JetStream may place on a
// replica that lags behind, which then lists nothing written since it
// fell behind; a caller that acts on every entry (resumes the waits, or
// restores the routes, stored before a restart) asks LatestKeys. It may
// return the key of a deleted entry: read each with Latest, which says
// revision 0. Without Config.Leader it is Keys.
func (s *Store[T]) LatestKeys(ctx context.Context) ([]string, error) {
	if s.cfg.Leader == nil {
		return s.Keys(ctx)
	}
	stream, prefix := "KV_"+s.kv.Bucket(), "$KV."+s.kv.Bucket()+"."
	var keys []string
	for offset := 0; ; {
		req, err := json.Marshal(struct {
			Filter string `json:"subjects_filter"`
			Offset int    `json:"offset,omitempty"`
		}{prefix + ">", offset})
		if err != nil {
			return nil, err
		}
		var resp struct {
			Error *apiError `json:"error"`
			Total int       `json:"total"`
			State struct {
				Subjects map[string]uint64 `json:"subjects"`
			} `json:"state"`
		}
		if err := leaderRequest(ctx, s.cfg.Leader, "$JS.API.STREAM.INFO."+stream, req, &resp); err != nil {
			return nil, fmt.Errorf("list %s keys from the leader: %w", s.cfg.Name, err)
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("list %s keys: %s's leader: %s (error %d)", s.cfg.Name, stream, resp.Error.Description, resp.Error.ErrCode)
		}
		for subject := range resp.State.Subjects {
			keys = append(keys, strings.TrimPrefix(subject, prefix))
		}
		offset += len(resp.State.Subjects)
		if len(resp.State.Subjects) == 0 || offset >= resp.Total {
			return keys, nil
		}
	}
}

// Update reads the record under key, lets change modify it and writes it
// back with compare-and-swap; when another writer got there first it reads
// the entry again and calls change again, at most MaxAttempts times, and
// then returns an error wrapping ErrConflict. change sees the zero record
// at revision 0 when the key has none; it returns Unchanged to write
// nothing, and any other error ends Update with that error. Update returns
// the revision written (or read, when nothing was written).
func (s *Store[T]) Update(ctx context.Context, key string, change func(rec *T, rev uint64) error) (uint64, error) {
	return s.update(ctx, key, nil, change)
}

// UpdateFrom is Update that first calls change on rec, which the caller
// read earlier at revision rev (perhaps from Recent), sparing a read of
// the bucket. When that first write conflicts, or change returns ErrStale,
// it goes on as Update does; the first attempt is not counted among
// MaxAttempts.
func (s *Store[T]) UpdateFrom(ctx context.Context, key string, rec T, rev uint64, change func(rec *T, rev uint64) error) (uint64, error) {
	return s.update(ctx, key, &known[T]{rec: rec, rev: rev}, change)
}

type known[T any] struct {
	rec T
	rev uint64
}

func (s *Store[T]) update(ctx context.Context, key string, first *known[T], change func(*T, uint64) error) (uint64, error) {
	// After change found a record stale, the next is the leader's: a
	// replica's may be as stale again.
	latest := false
	if first != nil {
		rev, done, stale, err := s.attempt(ctx, key, first.rec, first.rev, change)
		if done {
			return rev, err
		}
		latest = stale
	}
	for range MaxAttempts {
		read := s.Get
		if latest {
			read = s.Latest
		}
		rec, rev, err := read(ctx, key)
		if err != nil && !(s.cfg.OverwriteUnreadable && errors.Is(err, ErrUnreadable)) {
			return 0, err
		}
		rev, done, stale, err := s.attempt(ctx, key, rec, rev, change)
		if done {
			return rev, err
		}
		latest = stale
	}
	return 0, fmt.Errorf("%s %s: %d concurrent updates in a row: %w", s.cfg.Name, key, MaxAttempts, ErrConflict)
}

// attempt calls change on rec and writes the result. done is false when
// the entry must be read again: the write conflicted, or change found rec
// stale (stale).
func (s *Store[T]) attempt(ctx context.Context, key string, rec T, rev uint64, change func(*T, uint64) error) (written uint64, done, stale bool, err error) {
	switch err := change(&rec, rev); {
	case errors.Is(err, Unchanged):
		return rev, true, false, nil
	case errors.Is(err, ErrStale):
		return 0, false, true, nil
	case err != nil:
		return 0, true, false, err
	}
	written, err = s.Put(ctx, key, rec, rev)
	if errors.Is(err, ErrConflict) {
		return 0, false, false, nil
	}
	return written, true, false, err
}

// isConflict reports a write refused because the entry is not at the
// revision the writer read. A replicated bucket (R3) says so with error
// code 10164 where a single replica says 10071 (TestRecordsDoNotWaitOnAVanishedNode).
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant))
}
