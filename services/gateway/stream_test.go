package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// sseEvent is one event the stream sent.
type sseEvent struct {
	id    uint64
	typ   string
	event events.Event
}

// sseClient reads an event stream as a browser's EventSource does.
type sseClient struct {
	mu       sync.Mutex
	events   []sseEvent
	comments []string
	err      error
	cancel   context.CancelFunc
	done     chan struct{}
}

// openStream opens GET /api/v1/stream?query, resuming after lastID when
// it is not "", and reads it until close.
func (a *api) openStream(query, lastID string) *sseClient {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", a.base+"/api/v1/stream?"+query, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		a.t.Fatalf("stream: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	c := &sseClient{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		var cur sseEvent
		var data string
		for sc.Scan() {
			line := sc.Text()
			field, value, _ := strings.Cut(line, ": ")
			c.mu.Lock()
			switch {
			case line == "":
				if data != "" {
					if err := json.Unmarshal([]byte(data), &cur.event); err != nil && c.err == nil {
						c.err = fmt.Errorf("data %q: %v", data, err)
					}
					c.events = append(c.events, cur)
				}
				cur, data = sseEvent{}, ""
			case strings.HasPrefix(line, ":"):
				c.comments = append(c.comments, strings.TrimSpace(strings.TrimPrefix(line, ":")))
			case field == "id":
				cur.id, _ = strconv.ParseUint(value, 10, 64)
			case field == "event":
				cur.typ = value
			case field == "data":
				data = value
			}
			c.mu.Unlock()
		}
	}()
	a.t.Cleanup(c.close)
	// The stream is open once its first comment came.
	poll.True(a.t, "the stream's opening comment", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.comments) > 0 })
	return c
}

func (c *sseClient) close() { c.cancel(); <-c.done }

// got returns the events read so far.
func (c *sseClient) got() []sseEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// waitN waits until n events came and returns them.
func (c *sseClient) waitN(t *testing.T, n int) []sseEvent {
	t.Helper()
	var got []sseEvent
	poll.Until(t, fmt.Sprintf("%d events on the stream", n), func() error {
		got = c.got()
		if c.err != nil {
			t.Fatal(c.err)
		}
		if len(got) < n {
			return fmt.Errorf("%d so far", len(got))
		}
		return nil
	})
	return got
}

// statusSeqs returns the status stream sequences of r's status events, as
// its history says.
func (a *api) statusSeqs(r events.Ref) []uint64 {
	a.t.Helper()
	var seqs []uint64
	for _, it := range decode[struct{ Items []HistoryItem }](a.t, a.get("/api/v1/namespaces/"+r.Namespace+"/rollouts/"+r.Name+"/history")).Items {
		if it.Stream == events.StreamStatus {
			seqs = append(seqs, it.Seq)
		}
	}
	return seqs
}

func ids(evs []sseEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.id
	}
	return out
}

// A client that disconnects after a few events and reconnects with
// Last-Event-ID gets exactly the rest, then what happens next, with no gap
// and no duplicate; each event is the structured CloudEvent with its type.
func TestStreamResumesWithLastEventID(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleAdmin, "user:dev", func(c *Config) { c.Heartbeat = 20 * time.Millisecond })
	sys.leavesNoConsumer()
	web := events.Ref{Namespace: "shop", Name: "web"}
	site := events.Ref{Namespace: "blog", Name: "site"}
	blog := a.openStream("namespace=blog", "")

	sys.Request(web, "web:1")
	a.waitPhase(web, 1, events.PhaseHealthy)
	sys.Request(web, "web:2")
	a.waitPhase(web, 2, events.PhasePaused)
	want := a.statusSeqs(web)
	if len(want) < 5 {
		t.Fatalf("only %d status events", len(want))
	}

	first := a.openStream("namespace=shop&rollout=web&lastEventId=0", "")
	head := first.waitN(t, 3)[:3]
	first.close()
	if !slices.Equal(ids(head), want[:3]) {
		t.Fatalf("first events %v, want %v", ids(head), want[:3])
	}
	for _, e := range head {
		if e.typ != e.event.Type() || e.event.Subject() != web.String() {
			t.Fatalf("event %d: %q carries %s of %s", e.id, e.typ, e.event.Type(), e.event.Subject())
		}
	}

	again := a.openStream("namespace=shop&rollout=web", strconv.FormatUint(head[2].id, 10))
	rest := again.waitN(t, len(want)-3)
	if !slices.Equal(ids(rest), want[3:]) {
		t.Fatalf("after reconnecting: %v, want %v", ids(rest), want[3:])
	}

	// What happens next comes on the same stream.
	if res := a.call("POST", "/api/v1/namespaces/shop/rollouts/web/promote", `{"full":true}`); res.code != http.StatusOK {
		t.Fatal(res)
	}
	sys.Request(site, "site:1")
	a.waitPhase(web, 2, events.PhaseHealthy)
	a.waitPhase(site, 1, events.PhaseHealthy)
	want = a.statusSeqs(web)
	all := append(head, again.waitN(t, len(want)-3)...)
	if !slices.Equal(ids(all), want) {
		t.Fatalf("the whole stream %v, want %v", ids(all), want)
	}
	if all[len(all)-1].typ != events.TypeRolloutCompleted {
		t.Fatalf("last event %s, want completed", all[len(all)-1].typ)
	}

	// The namespace stream carries its namespace only; idle, it beats.
	siteSeqs := a.statusSeqs(site)
	if got := ids(blog.waitN(t, len(siteSeqs))); !slices.Equal(got, siteSeqs) {
		t.Fatalf("namespace blog's stream: %v, want %v", got, siteSeqs)
	}
	poll.True(t, "a heartbeat", func() bool {
		blog.mu.Lock()
		defer blog.mu.Unlock()
		return slices.Contains(blog.comments, "heartbeat")
	})
}

// A viewer of every namespace may stream; a bad filter or Last-Event-ID is
// 400.
func TestStreamRefusesBadFilters(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleViewer, "user:visitor")
	for _, q := range []string{"rollout=web", "namespace=Shop", "namespace=shop&rollout=web_1", "lastEventId=yesterday"} {
		if res := a.get("/api/v1/stream?" + q); res.code != http.StatusBadRequest || res.json["error"] == nil {
			t.Errorf("stream?%s: %s, want 400 with an error", q, res)
		}
	}
}
