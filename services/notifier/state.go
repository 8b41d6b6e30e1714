package notifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// state is the notifier's memory in BucketState, shared by its replicas.
// Every write that two replicas could race on is a create (compare and
// swap against "absent"), so the first writer wins and the other sees it.
// What is read to decide (was it sent, which thread, the previous
// snapshot) is read from the leader of the bucket's stream: a replica
// that lags behind answers with an older entry, or none, and the message
// would be sent twice, start a thread of its own, or be planned against
// an older snapshot.
//
// Keys:
//
//	sent.<message id>            a delivered message (its delivery is not repeated)
//	thread.<hash>                the thread of a destination and Slack grouping key
//	once.<hash>                  the message that claimed a oncePer value
//	prev.<namespace>.<rollout>   the rollout's snapshot in the last status event planned
//	chat.<hash>                  a chat request accepted (chatReplays)
type state struct {
	sent    *records.Store[sentMark]
	threads *records.Store[threadMark]
	once    *records.Store[onceMark]
	prev    *records.Store[events.Snapshot]
}

type sentMark struct {
	At time.Time `json:"at"`
}

type threadMark struct {
	Thread string `json:"thread"`
}

type onceMark struct {
	// Message is the ID of the message that claimed the value.
	Message string `json:"message"`
}

// newState returns the state in kv, BucketState; leader is the
// connection through which it reads the leader's entries.
func newState(kv jetstream.KeyValue, leader records.Requester) *state {
	return &state{
		sent:    records.New(kv, records.Config[sentMark]{Name: "sent mark", Leader: leader}),
		threads: records.New(kv, records.Config[threadMark]{Name: "thread", Leader: leader}),
		once:    records.New(kv, records.Config[onceMark]{Name: "oncePer mark", OverwriteUnreadable: true}),
		prev:    records.New(kv, records.Config[events.Snapshot]{Name: "previous snapshot", OverwriteUnreadable: true, Leader: leader}),
	}
}

// Hash is a key-safe digest of parts, for message ids and state keys.
func Hash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

func sentKey(id string) string { return "sent." + Hash(id) }

// wasSent reports whether message id was delivered.
func (s *state) wasSent(ctx context.Context, id string) (bool, error) {
	_, rev, err := s.sent.Latest(ctx, sentKey(id))
	return rev != 0, err
}

// markSent records that message id was delivered.
func (s *state) markSent(ctx context.Context, id string, at time.Time) error {
	_, err := s.sent.Put(ctx, sentKey(id), sentMark{At: at}, 0)
	if errors.Is(err, records.ErrConflict) {
		return nil // delivered twice, recorded once
	}
	return err
}

// threadKey is where the thread of m's destination and grouping key is
// kept; "" when m is not threaded (no Slack grouping key).
func threadKey(m notify.Message) string {
	if m.Notification.Slack == nil || m.Notification.Slack.GroupingKey == "" {
		return ""
	}
	return "thread." + Hash(m.Destination.Service, m.Destination.Recipient, m.Notification.Slack.GroupingKey)
}

// thread returns the thread an earlier message of m's destination and
// grouping key started, or "".
func (s *state) thread(ctx context.Context, m notify.Message) (string, error) {
	key := threadKey(m)
	if key == "" {
		return "", nil
	}
	t, _, err := s.threads.Latest(ctx, key)
	return t.Thread, err
}

// keepThread keeps the first thread of m's destination and grouping key.
func (s *state) keepThread(ctx context.Context, m notify.Message, thread string) error {
	key := threadKey(m)
	if key == "" || thread == "" {
		return nil
	}
	_, err := s.threads.Put(ctx, key, threadMark{Thread: thread}, 0)
	if errors.Is(err, records.ErrConflict) {
		return nil // another message started it first; that one stays
	}
	return err
}

// claimOnce claims m's oncePer key for m. It reports false when another
// message claimed it first: that value was already notified. A message
// claiming again (its status event redelivered) keeps its claim.
func (s *state) claimOnce(ctx context.Context, m notify.Message) (bool, error) {
	if m.Once == "" {
		return true, nil
	}
	key := "once." + Hash(m.Once)
	mine := true
	_, err := s.once.Update(ctx, key, func(rec *onceMark, rev uint64) error {
		if rev != 0 && rec.Message != "" {
			mine = rec.Message == m.ID
			return records.Unchanged
		}
		rec.Message = m.ID
		return nil
	})
	return mine, err
}

func prevKey(r events.Ref) string { return "prev." + r.Namespace + "." + r.Name }

// previous returns the snapshot of the rollout's last planned status
// event, nil when there was none.
func (s *state) previous(ctx context.Context, r events.Ref) (*events.Snapshot, error) {
	snap, rev, err := s.prev.Latest(ctx, prevKey(r))
	if err != nil || rev == 0 {
		return nil, ignoreUnreadable(err)
	}
	return &snap, nil
}

// remember keeps snap as the rollout's previous snapshot, unless a later
// one is already kept (an older event redelivered late).
func (s *state) remember(ctx context.Context, snap events.Snapshot) error {
	r := events.Ref{Namespace: snap.Namespace, Name: snap.Name}
	_, err := s.prev.Update(ctx, prevKey(r), func(rec *events.Snapshot, rev uint64) error {
		if rev != 0 && rec.UpdatedAt.After(snap.UpdatedAt) {
			return records.Unchanged
		}
		*rec = snap
		return nil
	})
	return err
}

// ignoreUnreadable drops an unreadable previous snapshot: it is only a
// hint for on-scaling-replica-set, and is overwritten on the next event.
func ignoreUnreadable(err error) error {
	if errors.Is(err, records.ErrUnreadable) {
		return nil
	}
	return err
}

// chatReplays is chat.Replays over BucketState: a chat request accepted by
// one notifier replica is refused when it is sent again to any replica
// behind the same URL, and after a reload. It creates the request's key,
// so the first replica to accept it wins. The bucket is opened on first
// use and kept.
type chatReplays struct {
	client *events.Client

	mu sync.Mutex
	kv jetstream.KeyValue
}

func (r *chatReplays) First(ctx context.Context, sig string, _ time.Time) (bool, error) {
	kv, err := r.bucket(ctx)
	if err != nil {
		return false, err
	}
	_, err = kv.Create(ctx, "chat."+Hash(sig), []byte{'1'})
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record the request in %s: %w", BucketState, err)
	}
	return true, nil
}

func (r *chatReplays) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv == nil {
		kv, err := r.client.JetStream().KeyValue(ctx, BucketState)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", BucketState, err)
		}
		r.kv = kv
	}
	return r.kv, nil
}
