package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
)

// The transport suite: every test runs against a real embedded NATS server
// with JetStream on disk.

func cmdSubject(name string) string { return CommandSubject(Ref{Namespace: "default", Name: name}) }

func TestPerSubjectOrdering(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	const perSubject = 100
	subjects := []string{cmdSubject("a"), cmdSubject("b"), cmdSubject("c")}
	for i := 0; i < perSubject; i++ {
		for _, s := range subjects {
			publish(t, c, s, mustEvent(t, TypeRolloutPause, s, map[string]int{"n": i}))
		}
	}
	var mu sync.Mutex
	seen := map[string][]int{}
	done := make(chan struct{})
	var total atomic.Int32
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "ordered", Workers: 4}, func(ctx context.Context, del Delivery, ev Event) error {
		var d struct{ N int }
		if err := DecodeData(ev, &d); err != nil {
			return err
		}
		mu.Lock()
		seen[del.Subject] = append(seen[del.Subject], d.N)
		mu.Unlock()
		if total.Add(1) == int32(perSubject*len(subjects)) {
			close(done)
		}
		return nil
	})
	recv(t, done, "all events")
	for _, s := range subjects {
		got := seen[s]
		if len(got) != perSubject {
			t.Fatalf("%s: got %d events, want %d", s, len(got), perSubject)
		}
		for i, n := range got {
			if n != i {
				t.Fatalf("%s: event %d arrived at position %d: order %v", s, n, i, got)
			}
		}
	}
}

func TestRedeliveryWhenConsumerDiesBeforeAck(t *testing.T) {
	srv := startServer(t)
	publisher := provisioned(t, srv.ClientURL())
	cfg := ConsumerConfig{Stream: StreamCommands, Durable: "worker", AckWait: time.Second, Heartbeat: 300 * time.Millisecond}

	// Worker A takes the event and dies (its connection goes away) without
	// acknowledging it.
	a := connect(t, srv.ClientURL())
	gotA := make(chan Delivery, 1)
	release := make(chan struct{})
	defer close(release)
	consume(t, a, cfg, func(ctx context.Context, d Delivery, ev Event) error {
		gotA <- d
		<-release
		return nil
	})
	ev := mustEvent(t, TypeRolloutAbort, "default/web", nil)
	publish(t, publisher, cmdSubject("web"), ev)
	if d := recv(t, gotA, "first delivery"); d.Attempt != 1 {
		t.Fatalf("first delivery attempt = %d", d.Attempt)
	}
	a.Conn().Close()

	// Worker B shares the durable consumer and gets the same event again.
	b := connect(t, srv.ClientURL())
	gotB := make(chan Event, 1)
	var attemptB atomic.Uint64
	consume(t, b, cfg, func(ctx context.Context, d Delivery, e Event) error {
		attemptB.Store(d.Attempt)
		gotB <- e
		return nil
	})
	redelivered := recv(t, gotB, "redelivery to the surviving worker")
	if redelivered.ID() != ev.ID() {
		t.Fatalf("redelivered %s, want %s", redelivered.ID(), ev.ID())
	}
	if attemptB.Load() != 2 {
		t.Errorf("redelivery attempt = %d, want 2", attemptB.Load())
	}
}

func TestRepeatedPublishIsStoredOnce(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	ev := mustEvent(t, TypeRolloutRetry, "default/web", nil)
	first := publish(t, c, cmdSubject("web"), ev)
	second := publish(t, c, cmdSubject("web"), ev)
	if first.Duplicate || !second.Duplicate {
		t.Errorf("duplicate flags = %v, %v; want false, true", first.Duplicate, second.Duplicate)
	}
	if first.Sequence != second.Sequence {
		t.Errorf("sequences %d and %d; the repeat should point at the stored event", first.Sequence, second.Sequence)
	}
	other := publish(t, c, cmdSubject("web"), mustEvent(t, TypeRolloutRetry, "default/web", nil))
	info, err := c.JetStream().Stream(context.Background(), StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := info.CachedInfo().State.Msgs; msgs != 2 || other.Duplicate {
		t.Errorf("stream holds %d events (want 2: one per distinct id)", msgs)
	}
}

func TestPoisonMessagesAreDeadLetteredWhileGoodOnesFlow(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	js := c.JetStream()
	ctx := context.Background()

	const good = 20
	var handled atomic.Int32
	allGood := make(chan struct{})
	mux := NewMux()
	mux.Handle(TypeRolloutPause, func(ctx context.Context, _ Delivery, ev Event) error {
		if handled.Add(1) == good {
			close(allGood)
		}
		return nil
	})
	mux.Handle(TypeRolloutAbort, func(ctx context.Context, _ Delivery, ev Event) error {
		return Permanent(errors.New("rollout default/broken does not exist"))
	})
	mux.Handle(TypeRolloutResume, func(ctx context.Context, _ Delivery, ev Event) error {
		return errors.New("router unreachable")
	})

	// Poison first, so good events queue up behind it on the same subject.
	garbage := nats.NewMsg(cmdSubject("web"))
	garbage.Data = []byte("\x00not an event")
	garbage.Header.Set("X-Origin", "fuzzer")
	if _, err := js.PublishMsg(ctx, garbage); err != nil {
		t.Fatal(err)
	}
	publish(t, c, cmdSubject("web"), mustEvent(t, "io.sluice.rollout.promote.v9", "default/web", nil))
	publish(t, c, cmdSubject("broken"), mustEvent(t, TypeRolloutAbort, "default/broken", nil))
	publish(t, c, cmdSubject("flaky"), mustEvent(t, TypeRolloutResume, "default/flaky", nil))
	for i := 0; i < good; i++ {
		publish(t, c, cmdSubject("web"), mustEvent(t, TypeRolloutPause, "default/web", nil))
	}
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "orchestrator", MaxDeliver: 3,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond}, mux.Dispatch)

	recv(t, allGood, "good events")
	var dls []DeadLetter
	poll.True(t, "four dead letters", func() bool { dls = deadLetters(t, c); return len(dls) == 4 })

	bySubject := map[string][]DeadLetter{}
	for _, dl := range dls {
		bySubject[dl.Subject] = append(bySubject[dl.Subject], dl)
		if dl.Stream != StreamCommands || dl.Consumer != "orchestrator" || dl.Sequence == 0 {
			t.Errorf("dead letter lacks its origin: %+v", dl)
		}
	}
	webDLs := bySubject[cmdSubject("web")]
	if len(webDLs) != 2 {
		t.Fatalf("dead letters for web: %+v", webDLs)
	}
	for _, dl := range webDLs {
		switch {
		case strings.Contains(dl.Reason, "not a CloudEvent"):
			if string(dl.Data) != "\x00not an event" || dl.Header.Get("X-Origin") != "fuzzer" {
				t.Errorf("poison dead letter lost the original bytes or headers: %q %v", dl.Data, dl.Header)
			}
		case strings.Contains(dl.Reason, `unknown event type "io.sluice.rollout.promote.v9"`):
			if dl.Header.Get("ce-type") != "io.sluice.rollout.promote.v9" {
				t.Errorf("unknown-type dead letter lost its headers: %v", dl.Header)
			}
		default:
			t.Errorf("unexpected reason %q", dl.Reason)
		}
	}
	if dl := bySubject[cmdSubject("broken")]; len(dl) != 1 || dl[0].Reason != "rollout default/broken does not exist" || dl[0].Deliveries != 1 {
		t.Errorf("permanent failure dead letter: %+v", dl)
	}
	if dl := bySubject[cmdSubject("flaky")]; len(dl) != 1 || dl[0].Deliveries != 3 || !strings.Contains(dl[0].Reason, "gave up after 3 deliveries: router unreachable") {
		t.Errorf("retried-out dead letter: %+v", dl)
	}
}

func TestMessagePastMaxDeliverWithoutAckIsDeadLettered(t *testing.T) {
	srv := startServer(t)
	publisher := provisioned(t, srv.ClientURL())
	cfg := ConsumerConfig{Stream: StreamCommands, Durable: "fragile", MaxDeliver: 1, AckWait: time.Second, Heartbeat: 300 * time.Millisecond}

	// Two replicas; whichever takes the event dies holding it. The other
	// one's advisory watcher must dead-letter it.
	type taken struct{ c *Client }
	got := make(chan taken, 2)
	release := make(chan struct{})
	defer close(release)
	replicas := []*Client{connect(t, srv.ClientURL()), connect(t, srv.ClientURL())}
	for _, r := range replicas {
		consume(t, r, cfg, func(ctx context.Context, _ Delivery, ev Event) error {
			got <- taken{r}
			<-release
			return nil
		})
	}
	ev := mustEvent(t, TypeRolloutAbort, "default/web", map[string]string{"why": "crash"})
	publish(t, publisher, cmdSubject("web"), ev)
	holder := recv(t, got, "delivery")
	holder.c.Conn().Close()

	var dls []DeadLetter
	poll.True(t, "the message is dead-lettered", func() bool { dls = deadLetters(t, publisher); return len(dls) == 1 })
	dl := dls[0]
	if !strings.Contains(dl.Reason, "without being acknowledged") || dl.Header.Get("ce-id") != ev.ID() || string(dl.Data) != `{"why":"crash"}` {
		t.Errorf("dead letter = %+v", dl)
	}
}

func TestBackPressureBoundsUnacknowledgedMessages(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	const total, limit = 30, 3
	for i := 0; i < total; i++ {
		publish(t, c, cmdSubject(fmt.Sprintf("r%d", i)), mustEvent(t, TypeRolloutPause, "default/r", nil))
	}
	var running, maxRunning, done atomic.Int32
	release := make(chan struct{})
	allDone := make(chan struct{})
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "slow", MaxAckPending: limit, Workers: 8}, func(ctx context.Context, _ Delivery, ev Event) error {
		n := running.Add(1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		if done.Add(1) == total {
			close(allDone)
		}
		return nil
	})
	poll.True(t, "the slow consumer holds its limit", func() bool { return running.Load() == limit })
	cons, err := c.JetStream().Consumer(context.Background(), StreamCommands, "slow")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != limit || info.NumPending != total-limit {
		t.Errorf("ack pending %d, pending %d; want %d and %d", info.NumAckPending, info.NumPending, limit, total-limit)
	}
	close(release)
	recv(t, allDone, "every event handled")
	if m := maxRunning.Load(); m > limit {
		t.Errorf("%d handlers ran at once with MaxAckPending %d", m, limit)
	}
}

func TestNoEventLostAcrossServerRestart(t *testing.T) {
	srv := startServer(t)
	c := provisioned(t, srv.ClientURL())
	const before, during = 50, 50
	var mu sync.Mutex
	seen := map[string]int{}
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "survivor", AckWait: 2 * time.Second, Heartbeat: 500 * time.Millisecond}, func(ctx context.Context, _ Delivery, ev Event) error {
		mu.Lock()
		seen[ev.ID()]++
		mu.Unlock()
		return nil
	})
	var ids []string
	for i := 0; i < before; i++ {
		ev := mustEvent(t, TypeRolloutPause, "default/web", nil)
		ids = append(ids, ev.ID())
		publish(t, c, cmdSubject("web"), ev)
	}

	// Restart the server while a publisher keeps going; its publishes
	// retry through the outage.
	pubDone := make(chan error, 1)
	var pubIDs []string
	for i := 0; i < during; i++ {
		pubIDs = append(pubIDs, "")
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		for i := range pubIDs {
			ev, _ := New("/sluice/test", TypeRolloutPause, "default/web", nil)
			pubIDs[i] = ev.ID()
			if _, err := c.Publish(ctx, cmdSubject("web"), ev); err != nil {
				pubDone <- err
				return
			}
		}
		pubDone <- nil
	}()
	restarted, err := srv.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restarted.Shutdown)
	if err := recv(t, pubDone, "publishing through the restart"); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, pubIDs...)
	poll.True(t, "every event is handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	st, err := c.JetStream().Stream(context.Background(), StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != before+during {
		t.Errorf("stream holds %d events after the restart, want %d", n, before+during)
	}
}

func TestInProgressHeartbeatPreventsRedelivery(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	var deliveries atomic.Int32
	done := make(chan struct{})
	// Heartbeats ten times per ack wait: a loaded machine may delay a few
	// of them without the message being redelivered.
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "long", AckWait: time.Second, Heartbeat: 100 * time.Millisecond, Workers: 2}, func(ctx context.Context, _ Delivery, ev Event) error {
		if deliveries.Add(1) == 1 {
			// Work for more than two ack-wait periods.
			time.Sleep(2500 * time.Millisecond)
			close(done)
		}
		return nil
	})
	publish(t, c, cmdSubject("web"), mustEvent(t, TypeRolloutPause, "default/web", nil))
	recv(t, done, "the long handler")
	// Once the message is acked no redelivery can come; the server's count
	// of deliveries says whether one came before.
	cons, err := c.JetStream().Consumer(context.Background(), StreamCommands, "long")
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.ConsumerInfo
	poll.Until(t, "the long handler's message acked", func() error {
		if info, err = cons.Info(context.Background()); err != nil {
			return err
		}
		if info.NumAckPending != 0 {
			return fmt.Errorf("%d pending acks", info.NumAckPending)
		}
		return nil
	})
	if info.Delivered.Consumer != 1 {
		t.Errorf("the server delivered the message %d times; heartbeats should keep it at 1", info.Delivered.Consumer)
	}
	if n := deliveries.Load(); n != 1 {
		t.Errorf("a handler outliving the ack wait was delivered %d times; heartbeats should keep it at 1", n)
	}
}

func TestRetryableErrorsAndPanicsAreRetried(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	var attempts atomic.Int32
	done := make(chan uint64, 1)
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "retry", BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}, func(ctx context.Context, d Delivery, ev Event) error {
		switch attempts.Add(1) {
		case 1:
			return errors.New("transient")
		case 2:
			panic("boom")
		case 3:
			return RetryAfter(errors.New("busy"), 10*time.Millisecond)
		}
		done <- d.Attempt
		return nil
	})
	publish(t, c, cmdSubject("web"), mustEvent(t, TypeRolloutPause, "default/web", nil))
	if attempt := recv(t, done, "success after retries"); attempt != 4 {
		t.Errorf("succeeded on delivery %d, want 4", attempt)
	}
	if dls := deadLetters(t, c); len(dls) != 0 {
		t.Errorf("retried event was dead-lettered: %+v", dls)
	}
}

func TestStructuredModeInput(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	got := make(chan Event, 1)
	mux := NewMux()
	mux.Handle(TypeRolloutPromote, func(ctx context.Context, _ Delivery, ev Event) error { got <- ev; return nil })
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "structured"}, mux.Dispatch)
	// What `nats pub sluice.cmd.default.web '<json>'` sends: a body, no headers.
	body := `{"specversion":"1.0","id":"cli-1","source":"/nats-cli","type":"io.sluice.rollout.promote.v1","subject":"default/web","datacontenttype":"application/json","data":{"full":true}}`
	if _, err := c.JetStream().Publish(context.Background(), cmdSubject("web"), []byte(body)); err != nil {
		t.Fatal(err)
	}
	ev := recv(t, got, "structured event")
	var d PromoteData
	if err := DecodeData(ev, &d); err != nil || !d.Full || ev.ID() != "cli-1" {
		t.Errorf("got %v data %+v err %v", ev, d, err)
	}
}

func TestProvisionIsIdempotentAndAppliesChanges(t *testing.T) {
	c := connect(t, startServer(t).ClientURL())
	ctx := context.Background()
	bus := BusConfig{MaxAge: time.Hour}
	bucket := BusConfig{}.Bucket("sluice-test", "test bucket", 1)
	for i := 0; i < 2; i++ {
		if err := c.Provision(ctx, bus, bucket); err != nil {
			t.Fatalf("provision #%d: %v", i+1, err)
		}
	}
	bus.MaxAge, bus.DuplicateWindow = 2*time.Hour, 5*time.Minute
	if err := c.Provision(ctx, bus); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{StreamCommands, StreamStatus, StreamTasks, StreamResults} {
		s, err := c.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxAge != 2*time.Hour || cfg.Duplicates != 5*time.Minute {
			t.Errorf("%s: max age %s, duplicates %s; the changed configuration was not applied", name, cfg.MaxAge, cfg.Duplicates)
		}
	}
	if _, err := c.JetStream().KeyValue(ctx, "sluice-test"); err != nil {
		t.Errorf("bucket not provisioned: %v", err)
	}
	err := c.Provision(ctx, BusConfig{Storage: "memory"})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "storage cannot change in place") {
		t.Errorf("changing storage: err = %v", err)
	}
	err = c.Provision(ctx, BusConfig{Storage: "tape", Replicas: 2})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "tape") || !strings.Contains(err.Error(), "--bus-replicas 2") {
		t.Errorf("invalid bus config: err = %v", err)
	}
}

func TestConsumerConfigChangeUpdatesTheConsumer(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	ctx := context.Background()
	h := func(context.Context, Delivery, Event) error { return nil }
	sub, err := c.Consume(ctx, ConsumerConfig{Stream: StreamCommands, Durable: "svc", MaxAckPending: 10}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "svc", MaxAckPending: 20, FilterSubjects: []string{"sluice.cmd.prod.>"}}, h)
	cons, err := c.JetStream().Consumer(ctx, StreamCommands, "svc")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.MaxAckPending != 20 || len(cfg.FilterSubjects) != 1 || cfg.FilterSubjects[0] != "sluice.cmd.prod.>" {
		t.Errorf("consumer config not updated: max ack pending %d, filters %v", cfg.MaxAckPending, cfg.FilterSubjects)
	}
}

func TestConsumerConfigValidation(t *testing.T) {
	cfg := ConsumerConfig{MaxDeliver: -1, Workers: -2, AckWait: time.Second, Heartbeat: 2 * time.Second}
	cfg.Defaults()
	err := cfg.Validate()
	for _, want := range []string{"stream is required", "durable name is required", "MaxDeliver -1", "Workers -2", "Heartbeat 2s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to mention %q", err, want)
		}
	}
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("error does not wrap ErrInvalidConfig")
	}
}

func TestPublishWithoutStreamFailsWhenContextEnds(t *testing.T) {
	// Each attempt's "no responders" answer comes at once; the attempt's
	// timeout is long so that a slow machine does not turn an answer into
	// an attempt that timed out (which may have been stored).
	c := connect(t, startServer(t).ClientURL(), WithPublishTimeout(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err := c.Publish(ctx, cmdSubject("web"), mustEvent(t, TypeRolloutAbort, "default/web", nil))
	if !errors.Is(err, ErrPublish) || !strings.Contains(err.Error(), cmdSubject("web")) {
		t.Errorf("publish with no stream: err = %v, want ErrPublish naming the subject", err)
	}
	// No stream leader took any attempt (as in a cluster without a
	// quorum): the error must say that nothing was stored, and why.
	if !errors.Is(err, ErrNotStored) || !strings.Contains(err.Error(), "no JetStream leader") {
		t.Errorf("publish no leader took: err = %v, want ErrNotStored saying the stream has no JetStream leader", err)
	}
}

// A publish whose attempts were taken and not answered (a stream leader
// that lost its quorum takes a publish it cannot commit) may be stored
// later: its error must not say it was not.
func TestPublishUnansweredMayBeStored(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv.ClientURL(), WithPublishTimeout(100*time.Millisecond))
	taker, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer taker.Close()
	if _, err := taker.Subscribe(cmdSubject("web"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := taker.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = c.Publish(ctx, cmdSubject("web"), mustEvent(t, TypeRolloutAbort, "default/web", nil))
	if !errors.Is(err, ErrPublish) || errors.Is(err, ErrNotStored) || !strings.Contains(err.Error(), "may still be stored") {
		t.Errorf("publish taken and never answered: err = %v, want ErrPublish saying it may still be stored, without ErrNotStored", err)
	}
}

func TestEachConsumerDeadLettersItsOwnCopy(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	garbage := nats.NewMsg(cmdSubject("web"))
	garbage.Data = []byte("not an event")
	if _, err := c.JetStream().PublishMsg(context.Background(), garbage); err != nil {
		t.Fatal(err)
	}
	noop := func(context.Context, Delivery, Event) error { return nil }
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "orchestrator"}, noop)
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "analyzer"}, noop)
	var dls []DeadLetter
	poll.True(t, "a dead letter per consumer", func() bool { dls = deadLetters(t, c); return len(dls) == 2 })
	if dls[0].Consumer == dls[1].Consumer {
		t.Errorf("both dead letters name consumer %q", dls[0].Consumer)
	}
}

func TestClientAckWaitIsTheDefaultOfItsConsumers(t *testing.T) {
	srv := startServer(t)
	c := provisioned(t, srv.ClientURL(), WithAckWait(1500*time.Millisecond))
	nop := func(context.Context, Delivery, Event) error { return nil }
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "inherits"}, nop)
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "own", AckWait: 4 * time.Second}, nop)
	for durable, want := range map[string]time.Duration{"inherits": 1500 * time.Millisecond, "own": 4 * time.Second} {
		cons, err := c.JetStream().Consumer(context.Background(), StreamCommands, durable)
		if err != nil {
			t.Fatal(err)
		}
		if got := cons.CachedInfo().Config.AckWait; got != want {
			t.Errorf("consumer %s: server-side AckWait %s, want %s", durable, got, want)
		}
	}
	if _, err := Connect(context.Background(), ConnConfig{URLs: []string{srv.ClientURL()}}, WithAckWait(0)); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("WithAckWait(0): err = %v, want ErrInvalidConfig", err)
	}
}

// A batch is stored in the order given, once, however often it is sent.
func TestPublishAllStoresInOrderOnce(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	var batch []Outgoing
	var want []string
	for i := range 5 {
		subject := cmdSubject("web")
		if i%2 == 1 {
			subject = cmdSubject("api")
		}
		ev := mustEvent(t, TypeRolloutPause, "default/web", nil)
		batch = append(batch, Outgoing{Subject: subject, Event: ev})
		want = append(want, ev.ID())
	}
	for range 2 {
		if err := c.PublishAll(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.JetStream().Stream(context.Background(), StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Header.Get(jetstream.MsgIDHeader))
	}
	if !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v once, in order", got, want)
	}
	// An event no stream takes fails the batch, after the others are stored.
	lost := Outgoing{Subject: "nowhere.web", Event: mustEvent(t, TypeRolloutPause, "default/web", nil)}
	next := Outgoing{Subject: cmdSubject("web"), Event: mustEvent(t, TypeRolloutPause, "default/web", nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.PublishAll(ctx, []Outgoing{lost, next}); !errors.Is(err, ErrPublish) {
		t.Errorf("a batch with an event no stream takes: err %v, want ErrPublish", err)
	}
	if m, err := st.GetLastMsgForSubject(context.Background(), cmdSubject("web")); err != nil || m.Header.Get(jetstream.MsgIDHeader) != next.Event.ID() {
		t.Errorf("the event behind it was not stored: %v", err)
	}
	bad := append(slices.Clone(batch), Outgoing{Subject: cmdSubject("web"), Event: Event{}})
	if err := c.PublishAll(context.Background(), bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("a batch with an invalid event: err %v, want ErrMalformed", err)
	}
}

// A publish the stream's leader refuses (here a stream full with its
// discard policy set to new) stored nothing: its error must say so, and
// why, rather than that it may still be stored.
func TestPublishRefusedByTheStreamIsNotStored(t *testing.T) {
	c := connect(t, startServer(t).ClientURL(), WithPublishTimeout(time.Second))
	if _, err := c.JetStream().CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "FULL", Subjects: []string{cmdSubject("web")}, MaxMsgs: 1, Discard: jetstream.DiscardNew,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, cmdSubject("web"), mustEvent(t, TypeRolloutAbort, "default/web", nil)); err != nil {
		t.Fatalf("first publish: %v", err)
	}
	_, err := c.Publish(ctx, cmdSubject("web"), mustEvent(t, TypeRolloutAbort, "default/web", nil))
	if !errors.Is(err, ErrPublish) || !errors.Is(err, ErrNotStored) || !errors.Is(err, ErrRefused) ||
		!strings.Contains(err.Error(), "maximum messages exceeded") || strings.Contains(err.Error(), "may still be stored") {
		t.Errorf("publish to a full stream: err = %v, want ErrPublish, ErrNotStored and ErrRefused naming the stream's reason", err)
	}
	if ctx.Err() != nil {
		t.Errorf("a refused publish was retried until its context ended")
	}
}
