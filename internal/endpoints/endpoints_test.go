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
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Open(ctx, c.JetStream(), events.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
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
	if _, _, err := ParseKey("default.web"); err == nil {
		t.Error("ParseKey accepted a two-part key")
	}
}
