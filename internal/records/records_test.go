package records

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// counter is a record with a derived field, as records with a wakeup have.
type counter struct {
	Double int `json:"double"` // filled by Prepare
	N      int `json:"n"`
}

func prepareCounter(c *counter) { c.Double = 2 * c.N }

// bucket returns a fresh bucket on a real embedded server.
func bucket(t *testing.T, name string) jetstream.KeyValue {
	t.Helper()
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	kv, err := c.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

var errBroken = errors.New("broken")

func TestUpdate(t *testing.T) {
	kv := bucket(t, "records")
	ctx := context.Background()
	// rival writes the entry behind the store's back, as another replica
	// would between its read and its write.
	rival := func(t *testing.T, key string) {
		t.Helper()
		if _, err := kv.Put(ctx, key, []byte(`{"n":100}`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name      string
		seed      string // raw entry before the update; "" for none
		overwrite bool   // Config.OverwriteUnreadable
		// change is called with the attempt number (from 1).
		change    func(t *testing.T, key string, attempt int, rec *counter, rev uint64) error
		wantN     int // N stored afterwards (-1: no entry)
		wantCalls int
		wantErr   error
		permanent bool
	}{
		{
			name: "creates a missing record",
			change: func(t *testing.T, _ string, _ int, rec *counter, rev uint64) error {
				if rev != 0 || rec.N != 0 {
					t.Errorf("a missing record is %+v at revision %d, want the zero record at 0", rec, rev)
				}
				rec.N = 1
				return nil
			},
			wantN: 1, wantCalls: 1,
		},
		{
			name: "changes an existing record",
			seed: `{"n":4}`,
			change: func(_ *testing.T, _ string, _ int, rec *counter, _ uint64) error {
				rec.N++
				return nil
			},
			wantN: 5, wantCalls: 1,
		},
		{
			name: "writes nothing when unchanged",
			seed: `{"n":4}`,
			change: func(_ *testing.T, _ string, _ int, rec *counter, _ uint64) error {
				rec.N = 99 // dropped
				return Unchanged
			},
			wantN: 4, wantCalls: 1,
		},
		{
			name: "returns the change's error and writes nothing",
			seed: `{"n":4}`,
			change: func(_ *testing.T, _ string, _ int, rec *counter, _ uint64) error {
				rec.N = 99
				return fmt.Errorf("deciding: %w", errBroken)
			},
			wantN: 4, wantCalls: 1, wantErr: errBroken,
		},
		{
			name: "retries a conflict on the record the rival wrote",
			seed: `{"n":4}`,
			change: func(t *testing.T, key string, attempt int, rec *counter, _ uint64) error {
				if attempt == 1 {
					rival(t, key)
				} else if rec.N != 100 {
					t.Errorf("attempt %d sees n=%d, want the rival's 100", attempt, rec.N)
				}
				rec.N++
				return nil
			},
			wantN: 101, wantCalls: 2,
		},
		{
			name: "retries a conflict on create",
			change: func(t *testing.T, key string, attempt int, rec *counter, rev uint64) error {
				if attempt == 1 {
					rival(t, key)
				} else if rev == 0 {
					t.Errorf("attempt %d does not see the rival's entry", attempt)
				}
				rec.N++
				return nil
			},
			wantN: 101, wantCalls: 2,
		},
		{
			name: "gives up after MaxAttempts conflicts in a row",
			seed: `{"n":4}`,
			change: func(t *testing.T, key string, _ int, rec *counter, _ uint64) error {
				rival(t, key)
				rec.N = 7
				return nil
			},
			wantN: 100, wantCalls: MaxAttempts, wantErr: ErrConflict,
		},
		{
			name: "an unreadable entry is a permanent error",
			seed: `not json`,
			change: func(t *testing.T, _ string, _ int, _ *counter, _ uint64) error {
				t.Error("change called on an unreadable entry")
				return nil
			},
			wantN: -1, wantCalls: 0, wantErr: ErrUnreadable, permanent: true,
		},
		{
			name:      "an unreadable entry is replaced when so configured",
			seed:      `not json`,
			overwrite: true,
			change: func(t *testing.T, _ string, _ int, rec *counter, rev uint64) error {
				if rev == 0 || rec.N != 0 {
					t.Errorf("an unreadable entry is %+v at revision %d, want the zero record at its revision", rec, rev)
				}
				rec.N = 3
				return nil
			},
			wantN: 3, wantCalls: 1,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := fmt.Sprintf("k%d", time.Now().UnixNano())
			if c.seed != "" {
				if _, err := kv.Put(ctx, key, []byte(c.seed)); err != nil {
					t.Fatal(err)
				}
			}
			s := New(kv, Config[counter]{Name: "counter", Prepare: prepareCounter, OverwriteUnreadable: c.overwrite})
			calls := 0
			_, err := s.Update(ctx, key, func(rec *counter, rev uint64) error {
				calls++
				return c.change(t, key, calls, rec, rev)
			})
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			if events.IsPermanent(err) != c.permanent {
				t.Errorf("error %v permanent: %v, want %v", err, !c.permanent, c.permanent)
			}
			if calls != c.wantCalls {
				t.Errorf("change called %d times, want %d", calls, c.wantCalls)
			}
			if c.wantN < 0 {
				return
			}
			got, _, err := s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if got.N != c.wantN {
				t.Errorf("stored n=%d, want %d", got.N, c.wantN)
			}
		})
	}
}

func TestPutPreparesAndGetServesTheCache(t *testing.T) {
	kv := bucket(t, "records")
	ctx := context.Background()
	s := New(kv, Config[counter]{Prepare: prepareCounter, Cache: 4})
	rev, err := s.Put(ctx, "a", counter{N: 21}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value()) != `{"double":42,"n":21}` {
		t.Errorf("stored %s, want the prepared record", e.Value())
	}
	if rec, at, ok := s.Recent("a"); !ok || at != rev || rec.N != 21 {
		t.Errorf("Recent = %+v@%d %v, want n=21@%d", rec, at, ok, rev)
	}
	if _, err := s.Put(ctx, "a", counter{N: 1}, 0); !errors.Is(err, ErrConflict) {
		t.Errorf("creating an existing entry: %v, want ErrConflict", err)
	}
	if _, err := s.Put(ctx, "a", counter{N: 1}, rev+7); !errors.Is(err, ErrConflict) {
		t.Errorf("updating at a wrong revision: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, "a", rev+7); !errors.Is(err, ErrConflict) {
		t.Errorf("deleting at a wrong revision: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, "a", rev); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Recent("a"); ok {
		t.Error("a deleted record is still recent")
	}
	if rec, at, err := s.Get(ctx, "a"); err != nil || at != 0 || rec.N != 0 {
		t.Errorf("a deleted record reads %+v@%d %v, want the zero record at 0", rec, at, err)
	}
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) != 0 {
		t.Errorf("keys %v %v, want none", keys, err)
	}
}

func TestUpdateFrom(t *testing.T) {
	kv := bucket(t, "records")
	ctx := context.Background()
	s := New(kv, Config[counter]{Cache: 4})
	for _, c := range []struct {
		name string
		// first is the answer of the first call, on the given record.
		first     error
		stale     bool // the given record is older than the bucket's
		wantN     int
		wantCalls int
	}{
		{name: "writes on the given record", wantN: 11, wantCalls: 1},
		{name: "a conflict reads the bucket", stale: true, wantN: 21, wantCalls: 2},
		{name: "ErrStale reads the bucket", first: ErrStale, wantN: 11, wantCalls: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := fmt.Sprintf("k%d", time.Now().UnixNano())
			rev, err := s.Put(ctx, key, counter{N: 10}, 0)
			if err != nil {
				t.Fatal(err)
			}
			given := counter{N: 10}
			if c.stale {
				if _, err := s.Put(ctx, key, counter{N: 20}, rev); err != nil {
					t.Fatal(err)
				}
			}
			calls := 0
			_, err = s.UpdateFrom(ctx, key, given, rev, func(rec *counter, _ uint64) error {
				calls++
				if calls == 1 && c.first != nil {
					return c.first
				}
				rec.N++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls != c.wantCalls {
				t.Errorf("change called %d times, want %d", calls, c.wantCalls)
			}
			if got, _, _ := s.Get(ctx, key); got.N != c.wantN {
				t.Errorf("stored n=%d, want %d", got.N, c.wantN)
			}
		})
	}

	// The attempt on the given record is not counted among MaxAttempts.
	key := "contended"
	rev, err := s.Put(ctx, key, counter{N: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	_, err = s.UpdateFrom(ctx, key, counter{N: 1}, rev, func(rec *counter, _ uint64) error {
		calls++
		if _, err := kv.Put(ctx, key, []byte(`{"n":100}`)); err != nil {
			t.Fatal(err)
		}
		return nil
	})
	if !errors.Is(err, ErrConflict) || calls != MaxAttempts+1 {
		t.Errorf("error %v after %d calls, want ErrConflict after %d", err, calls, MaxAttempts+1)
	}
}
