package endpoints

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func TestWatchSeesCurrentEntriesThenChanges(t *testing.T) {
	ctx, s := openStore(t)
	web := events.Ref{Namespace: "default", Name: "web"}
	if err := s.Put(ctx, Revision{Ref: web, Revision: 1, PodHash: "aaa", Ready: []string{"127.0.0.1:1001"}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string][]string{}
	if err := s.Watch(ctx, func(r Revision) {
		mu.Lock()
		seen[Key(r.Ref, r.PodHash)] = r.Ready
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if got := seen["default.web.aaa"]; len(got) != 1 {
		t.Errorf("existing entry not delivered before Watch returned: %v", seen)
	}
	mu.Unlock()
	if err := s.Put(ctx, Revision{Ref: web, Revision: 2, PodHash: "bbb", Ready: []string{"127.0.0.1:1002", "127.0.0.1:1003"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, web, "aaa"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the watch to see bbb put and aaa deleted", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen["default.web.bbb"]) != 2 || len(seen["default.web.aaa"]) != 0 {
			return fmt.Errorf("seen %v", seen)
		}
		return nil
	}, poll.Timeout(eventstest.Wait))
	if err := s.Delete(ctx, web, "never"); err != nil {
		t.Errorf("deleting a missing entry: %v", err)
	}
	if _, err := ParseKey("default.web"); err == nil {
		t.Error("ParseKey accepted a two-part key")
	}
}

// An experiment template's entry is apart from the revision with the same
// pod hash, and its deletion comes back with the template's name.
func TestExperimentEntryIsApartFromItsRevision(t *testing.T) {
	ctx, s := openStore(t)
	web := events.Ref{Namespace: "default", Name: "web"}
	stable := Revision{Ref: web, Revision: 1, PodHash: "aaa", Ready: []string{"127.0.0.1:1001"}}
	baseline := Revision{Ref: web, Revision: 1, PodHash: "aaa", Experiment: "web-bbb-2-1", Template: "baseline", Ready: []string{"127.0.0.1:1002"}}
	if stable.Key() == baseline.Key() {
		t.Fatalf("one key %q for the revision and the experiment template", stable.Key())
	}
	for _, r := range []Revision{stable, baseline} {
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]Revision{}
	if err := s.Watch(ctx, func(r Revision) {
		mu.Lock()
		seen[r.Key()] = r
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, web, baseline.Name()); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the watch to see the baseline's entry deleted and the stable's kept", func() error {
		mu.Lock()
		defer mu.Unlock()
		got := seen[baseline.Key()]
		if len(got.Ready) != 0 || got.Template != "baseline" || got.Experiment != "web-bbb-2-1" || got.PodHash != "aaa" {
			return fmt.Errorf("baseline entry: %+v", got)
		}
		if len(seen[stable.Key()].Ready) != 1 {
			return fmt.Errorf("stable entry: %+v", seen[stable.Key()])
		}
		return nil
	}, poll.Timeout(eventstest.Wait))
	if _, err := ParseKey("default.web.aaa.web-bbb-2-1"); err == nil {
		t.Error("ParseKey accepted a four-part key")
	}
}

// openStore opens the bucket on a fresh server; ctx ends with the test.
func openStore(t *testing.T) (context.Context, Store) {
	t.Helper()
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := Open(ctx, c.JetStream(), events.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, s
}
