package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// hookSender is the test service type "hook": it POSTs the message's text
// to the URL in its options, with the message ID as a header, and
// classifies the answer as every sender does (notify.CheckResponse).
type hookSender struct {
	url    string
	client *http.Client
}

func newHookSender(sc notify.ServiceConfig) (notify.Sender, error) {
	var opts struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(sc.Options, &opts); err != nil || opts.URL == "" {
		return nil, fmt.Errorf("url: want the hook's URL")
	}
	return &hookSender{url: opts.URL, client: sc.HTTPClient}, nil
}

func (h *hookSender) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, strings.NewReader(m.Notification.Message))
	if err != nil {
		return notify.Receipt{}, notify.Permanent(err)
	}
	req.Header.Set("X-Message-Id", m.ID)
	req.Header.Set("X-Thread", m.Thread)
	resp, err := h.client.Do(req)
	if err != nil {
		return notify.Receipt{}, err
	}
	defer resp.Body.Close()
	if err := notify.CheckResponse("hook", resp); err != nil {
		return notify.Receipt{}, err
	}
	return notify.Receipt{Thread: resp.Header.Get("X-Thread")}, nil
}

// hook is a webhook endpoint that answers each request as its script says
// (in order; the last answer repeats) and records what it received.
type hook struct {
	*httptest.Server
	mu     sync.Mutex
	script []func(w http.ResponseWriter, r *http.Request)
	got    []received
}

type received struct {
	ID, Thread, Body string
	At               time.Time
	// Code is the answer the hook gave.
	Code int
}

func newHook(t *testing.T, script ...func(w http.ResponseWriter, r *http.Request)) *hook {
	h := &hook{script: script}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		n := len(h.got)
		h.got = append(h.got, received{ID: r.Header.Get("X-Message-Id"), Thread: r.Header.Get("X-Thread"), Body: string(body), At: time.Now()})
		answer := func(w http.ResponseWriter, r *http.Request) {}
		if len(h.script) > 0 {
			answer = h.script[min(n, len(h.script)-1)]
		}
		h.mu.Unlock()
		cw := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		answer(cw, r)
		h.mu.Lock()
		h.got[n].Code = cw.code
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }

func (h *hook) requests() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.got...)
}

// delivered returns the bodies the hook accepted (2xx), in order.
func (h *hook) delivered() []string {
	var out []string
	for _, r := range h.requests() {
		if r.Code < 300 {
			out = append(out, r.Body)
		}
	}
	return out
}

func status(code int, retryAfter string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "answer %d", code)
	}
}

// everyEvent plans one message per status event for destination: its
// text is "<event type> <rollout>", its ID derives from the event's.
func everyEvent(dest notify.Destination) Planner {
	return PlannerFunc(func(_ context.Context, ev events.Event, data events.StatusData, _ *events.Snapshot) ([]notify.Message, error) {
		ref := events.Ref{Namespace: data.Status.Namespace, Name: data.Status.Name}
		return []notify.Message{{
			ID: Hash(ev.ID(), "test", dest.String()), Rollout: ref, Trigger: "on-" + ev.Type(),
			Destination:  dest,
			Notification: notify.Notification{Message: ev.Type() + " " + ref.String()},
			Event:        notify.EventRef{ID: ev.ID(), Type: ev.Type(), Time: ev.Time()},
		}}, nil
	})
}

// bus is an embedded NATS server and what a test publishes and reads with.
type bus struct {
	url    string
	client *events.Client
}

func newBus(t *testing.T) *bus {
	srv := eventstest.StartServer(t)
	return &bus{url: srv.ClientURL(), client: eventstest.Connect(t, srv.ClientURL())}
}

// notifier runs a notifier on its own connection until the test ends or
// stop is called; stop closes the connection first, as a killed process
// would, and waits for Run to return.
type notifierRun struct {
	svc     *Service
	metrics *telemetry.Metrics
	reg     *prometheus.Registry
	client  *events.Client
	stop    func()
}

func startNotifier(t *testing.T, b *bus, setup *Setup, tune func(*Config)) *notifierRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	client, err := events.Connect(ctx, events.ConnConfig{URLs: []string{b.url}, Name: t.Name() + "-notifier"}, events.WithLogger(eventstest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := telemetry.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Config: Fixed{setup}, Listen: "127.0.0.1:0", Metrics: m, Logger: eventstest.Quiet(),
		Delivery:    events.ConsumerConfig{BackoffInitial: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		StopTimeout: 2 * time.Second,
	}
	if tune != nil {
		tune(&cfg)
	}
	svc, err := New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = client.Close()
			stopRun()
			if err := <-done; err != nil {
				t.Errorf("notifier Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	poll.True(t, "the notifier ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("notifier exited: %v", err)
		default:
		}
		return svc.Ready()
	})
	return &notifierRun{svc: svc, metrics: m, reg: reg, client: client, stop: stop}
}

func (n *notifierRun) count(service, trigger, outcome string) float64 {
	return testutil.ToFloat64(n.metrics.NotificationCounter(service, trigger, outcome))
}

var shop = events.Ref{Namespace: "prod", Name: "shop"}

// publishStatus publishes a status event of typ for ref and returns it.
func (b *bus) publishStatus(t *testing.T, ref events.Ref, typ string) events.Event {
	t.Helper()
	ev, err := events.New("/sluice/orchestrator", typ, ref.String(), events.StatusData{Status: events.Snapshot{
		Namespace: ref.Namespace, Name: ref.Name, Phase: events.PhaseHealthy, UpdatedAt: time.Now().UTC(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Publish(context.Background(), events.StatusSubject(ref), ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// deadLetter waits for the delivery consumer's dead letter and returns it.
func (b *bus) deadLetter(t *testing.T) events.DeadLetter {
	t.Helper()
	var dl events.DeadLetter
	poll.Until(t, "a dead letter from "+DurableDelivery, func() error {
		st, err := b.client.JetStream().Stream(context.Background(), events.StreamDeadLetter)
		if err != nil {
			return err
		}
		msg, err := st.GetLastMsgForSubject(context.Background(), events.DeadLetterSubject(events.StreamTasks, DurableDelivery))
		if err != nil {
			return err
		}
		dl, err = events.ParseDeadLetter(msg.Subject, msg.Data, msg.Header)
		return err
	})
	return dl
}

func hookSetup(t *testing.T, h *hook) *Setup {
	t.Helper()
	opts, _ := json.Marshal(map[string]string{"url": h.URL})
	senders, err := BuildSenders([]notify.ServiceConfig{{Name: "ops", Type: "hook", Options: opts}},
		map[string]notify.Factory{"hook": newHookSender}, http.DefaultClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Setup{Planner: everyEvent(notify.Destination{Service: "ops"}), Senders: senders}
}

func waitDelivered(t *testing.T, h *hook, want ...string) {
	t.Helper()
	poll.Until(t, fmt.Sprintf("the hook to receive %q", want), func() error {
		got := h.delivered()
		if len(got) < len(want) {
			return fmt.Errorf("received %q", got)
		}
		for i := range want {
			if got[i] != want[i] {
				return fmt.Errorf("received %q", got)
			}
		}
		return nil
	})
}

func TestAStatusEventIsDeliveredOnceEvenWhenHandledAgain(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	startNotifier(t, b, hookSetup(t, h), nil)

	ev := b.publishStatus(t, shop, events.TypeRolloutCompleted)
	waitDelivered(t, h, events.TypeRolloutCompleted+" prod/shop")

	// The same status event again, past the status stream's duplicate
	// check (as when a notifier died before acknowledging it): the
	// notifier handles it a second time.
	msg, err := events.Encode(events.StatusSubject(shop), ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.JetStream().PublishMsg(context.Background(), msg, jetstream.WithMsgID(ev.ID()+"-again")); err != nil {
		t.Fatal(err)
	}
	// A later event must come after the repeat on the same rollout.
	b.publishStatus(t, shop, events.TypeRolloutAborted)
	waitDelivered(t, h, events.TypeRolloutCompleted+" prod/shop", events.TypeRolloutAborted+" prod/shop")
	if got := h.delivered(); len(got) != 2 {
		t.Errorf("the hook received %q; want each notification once", got)
	}
}

func TestANewNotifierStartsAtTheEndOfTheStatusStream(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	b.publishStatus(t, shop, events.TypeRolloutCompleted) // before any notifier
	startNotifier(t, b, hookSetup(t, h), nil)
	b.publishStatus(t, shop, events.TypeRolloutAborted)
	waitDelivered(t, h, events.TypeRolloutAborted+" prod/shop")
	if got := h.delivered(); len(got) != 1 {
		t.Errorf("the hook received %q; want only what came after the notifier started", got)
	}
}

func TestASentMessageQueuedAgainIsNotSentAgain(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	n := startNotifier(t, b, hookSetup(t, h), nil)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	waitDelivered(t, h, events.TypeRolloutCompleted+" prod/shop")

	// The same message queued again past the stream's duplicate window
	// (another event id, the same message ID).
	reqs := h.requests()
	m := notify.Message{ID: reqs[0].ID, Rollout: shop, Trigger: "on-" + events.TypeRolloutCompleted, Destination: notify.Destination{Service: "ops"}, Notification: notify.Notification{Message: "again"}}
	again, err := events.New(Source, TypeNotification, shop.String(), m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Publish(context.Background(), events.TaskSubject(TaskService, shop), again); err != nil {
		t.Fatal(err)
	}
	poll.True(t, "the repeat skipped", func() bool { return n.count("ops", m.Trigger, OutcomeSkipped) == 1 })
	if got := h.delivered(); len(got) != 1 {
		t.Errorf("the hook received %q; want the message once", got)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	b := newBus(t)
	h := newHook(t, status(http.StatusTooManyRequests, "2"), status(http.StatusOK, ""))
	n := startNotifier(t, b, hookSetup(t, h), nil)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	waitDelivered(t, h, events.TypeRolloutCompleted+" prod/shop")

	reqs := h.requests()
	if len(reqs) != 2 || reqs[0].Code != http.StatusTooManyRequests || reqs[1].Code != http.StatusOK {
		t.Fatalf("requests %+v; want a 429 then a 200", reqs)
	}
	// The consumer's backoff is 50ms; only the server's Retry-After makes
	// the second attempt wait 2s. The bus never redelivers earlier than
	// asked, so this bound holds however loaded the machine is.
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 2*time.Second {
		t.Errorf("the second attempt came %s after the first; the server asked for 2s", gap)
	}
	trigger := "on-" + events.TypeRolloutCompleted
	if r, s := n.count("ops", trigger, OutcomeRetried), n.count("ops", trigger, OutcomeSent); r != 1 || s != 1 {
		t.Errorf("retried %v, sent %v; want 1 and 1", r, s)
	}
}

func TestServerErrorsAreRetriedUntilDelivered(t *testing.T) {
	b := newBus(t)
	h := newHook(t, status(http.StatusServiceUnavailable, ""), status(http.StatusBadGateway, ""), status(http.StatusOK, ""))
	startNotifier(t, b, hookSetup(t, h), nil)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	waitDelivered(t, h, events.TypeRolloutCompleted+" prod/shop")
	if reqs := h.requests(); len(reqs) != 3 {
		t.Errorf("%d requests, want 3 (503, 502, 200)", len(reqs))
	}
}

func TestARefusedMessageIsDeadLetteredWithTheReason(t *testing.T) {
	b := newBus(t)
	h := newHook(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "no such hook")
	})
	n := startNotifier(t, b, hookSetup(t, h), nil)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)

	dl := b.deadLetter(t)
	if !strings.Contains(dl.Reason, "404") || !strings.Contains(dl.Reason, "no such hook") || !strings.Contains(dl.Reason, "ops:") {
		t.Errorf("dead letter reason %q; want the hook's answer and the destination", dl.Reason)
	}
	if len(h.requests()) != 1 {
		t.Errorf("%d requests; a 404 is not retried", len(h.requests()))
	}
	if f := n.count("ops", "on-"+events.TypeRolloutCompleted, OutcomeFailed); f != 1 {
		t.Errorf("failed = %v, want 1", f)
	}
}

func TestTheLastAttemptDeadLetters(t *testing.T) {
	b := newBus(t)
	h := newHook(t, status(http.StatusInternalServerError, ""))
	startNotifier(t, b, hookSetup(t, h), func(c *Config) { c.MaxAttempts = 3 })
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	dl := b.deadLetter(t)
	if !strings.Contains(dl.Reason, "gave up after 3") || !strings.Contains(dl.Reason, "500") {
		t.Errorf("dead letter reason %q; want it to give up after 3 attempts with the last answer", dl.Reason)
	}
	if n := len(h.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestADestinationWithoutItsServiceIsDeadLettered(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	setup := hookSetup(t, h)
	setup.Planner = everyEvent(notify.Destination{Service: "pager", Recipient: "oncall"})
	startNotifier(t, b, setup, nil)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	dl := b.deadLetter(t)
	if !strings.Contains(dl.Reason, `"pager"`) || !strings.Contains(dl.Reason, "ops") {
		t.Errorf("dead letter reason %q; want it to name the missing service and the configured ones", dl.Reason)
	}
}

func TestANotifierKilledMidDeliveryLosesNothing(t *testing.T) {
	b := newBus(t)
	held := make(chan struct{})
	release := make(chan struct{})
	var holdOnce sync.Once
	h := newHook(t, func(w http.ResponseWriter, r *http.Request) {
		// The first request hangs until the test is over: the notifier
		// that sent it dies waiting.
		holdOnce.Do(func() { close(held) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}, status(http.StatusOK, ""))
	t.Cleanup(func() { close(release) })
	fast := func(c *Config) { c.Delivery.AckWait = 2 * time.Second }

	first := startNotifier(t, b, hookSetup(t, h), fast)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	select {
	case <-held:
	case <-time.After(poll.Default):
		t.Fatal("the first notifier never sent")
	}
	first.stop()

	startNotifier(t, b, hookSetup(t, h), fast)
	waitDelivered(t, h, events.TypeRolloutCompleted+" prod/shop")
}

func TestMessagesOfAGroupingKeyShareTheFirstThread(t *testing.T) {
	b := newBus(t)
	h := newHook(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Thread", "C1:"+r.Header.Get("X-Message-Id"))
	})
	setup := hookSetup(t, h)
	inner := setup.Planner
	setup.Planner = PlannerFunc(func(ctx context.Context, ev events.Event, data events.StatusData, prev *events.Snapshot) ([]notify.Message, error) {
		msgs, err := inner.Plan(ctx, ev, data, prev)
		for i := range msgs {
			msgs[i].Notification.Slack = &notify.Slack{GroupingKey: "shop-rev"}
		}
		return msgs, err
	})
	startNotifier(t, b, setup, nil)
	b.publishStatus(t, shop, events.TypeRolloutStepCompleted)
	waitDelivered(t, h, events.TypeRolloutStepCompleted+" prod/shop")
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	waitDelivered(t, h, events.TypeRolloutStepCompleted+" prod/shop", events.TypeRolloutCompleted+" prod/shop")
	reqs := h.requests()
	if reqs[0].Thread != "" || reqs[1].Thread != "C1:"+reqs[0].ID {
		t.Errorf("threads %q, %q; want none for the first and the first's for the second", reqs[0].Thread, reqs[1].Thread)
	}
}

func TestOncePerValueIsNotifiedOnce(t *testing.T) {
	b := newBus(t)
	h := newHook(t)
	setup := hookSetup(t, h)
	inner := setup.Planner
	setup.Planner = PlannerFunc(func(ctx context.Context, ev events.Event, data events.StatusData, prev *events.Snapshot) ([]notify.Message, error) {
		msgs, err := inner.Plan(ctx, ev, data, prev)
		for i := range msgs {
			if ev.Type() == events.TypeRolloutPaused {
				msgs[i].Once = Hash("prod", "shop", "on-rollout-paused", "0", "ops:", "revision 2")
			}
		}
		return msgs, err
	})
	n := startNotifier(t, b, setup, nil)
	b.publishStatus(t, shop, events.TypeRolloutPaused)
	b.publishStatus(t, shop, events.TypeRolloutPaused)
	b.publishStatus(t, shop, events.TypeRolloutCompleted)
	waitDelivered(t, h, events.TypeRolloutPaused+" prod/shop", events.TypeRolloutCompleted+" prod/shop")
	if got := h.delivered(); len(got) != 2 {
		t.Errorf("the hook received %q; want the pause once", got)
	}
	if s := n.count("ops", "on-"+events.TypeRolloutPaused, OutcomeSkipped); s != 1 {
		t.Errorf("skipped %v, want 1", s)
	}
}
