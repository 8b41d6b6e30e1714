package events

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler handles one event, delivered as d describes. Its result decides the
// message's fate: nil acks, an error marked Permanent (or wrapping
// ErrMalformed or ErrUnknownType) dead-letters, any other error is retried
// with backoff until MaxDeliver. Handlers must be idempotent: delivery is
// at-least-once.
type Handler func(ctx context.Context, d Delivery, ev Event) error

// Mux routes events to handlers by exact CloudEvent type, version included.
// An event of a type without a handler fails with ErrUnknownType, so it is
// dead-lettered rather than silently dropped.
type Mux struct {
	handlers map[string]Handler
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{handlers: map[string]Handler{}} }

// Handle registers h for eventType. Registering a type twice panics: it is a
// programming error.
func (m *Mux) Handle(eventType string, h Handler) {
	if _, dup := m.handlers[eventType]; dup {
		panic("events: handler registered twice for " + eventType)
	}
	m.handlers[eventType] = h
}

// Types lists the registered types, sorted.
func (m *Mux) Types() []string {
	out := make([]string, 0, len(m.handlers))
	for t := range m.handlers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Dispatch is the Mux's Handler.
func (m *Mux) Dispatch(ctx context.Context, d Delivery, ev Event) error {
	h, ok := m.handlers[ev.Type()]
	if !ok {
		return fmt.Errorf("%w %q: this consumer handles %v", ErrUnknownType, ev.Type(), m.Types())
	}
	return h(ctx, d, ev)
}

// Delivery describes the message a handler is working on.
type Delivery struct {
	Subject  string
	Stream   string
	Consumer string
	// Sequence is the message's sequence in its stream.
	Sequence uint64
	// Attempt is 1 on first delivery and grows with each redelivery.
	Attempt    uint64
	MaxDeliver int
	// Published is when the stream stored the message.
	Published time.Time
	// PinID is, on a pinned consumer (ConsumerConfig.PinnedTTL), the pin
	// this process held when the message was delivered. The server gives
	// a new one each time it pins the consumer to a puller, so a PinID
	// other than the last one seen means the consumer may have been
	// pinned to another process in between.
	PinID string
}

// ConsumerConfig configures a durable pull consumer. All replicas of a
// service use the same Durable name and so share the work.
type ConsumerConfig struct {
	// Stream and Durable are required.
	Stream  string
	Durable string
	// FilterSubjects narrows the stream's subjects; empty means all.
	FilterSubjects []string
	// DeliverNew starts a new consumer at the stream's end instead of its
	// beginning (for status watchers that want only what comes next).
	DeliverNew bool
	// AckWait is how long the server waits for an ack before redelivering
	// (default: the client's WithAckWait, else 30s). Handlers in progress send heartbeats, so it bounds how
	// fast a crashed worker's message moves on, not how long a handler runs.
	AckWait time.Duration
	// MaxDeliver is how many times a message is tried before it is
	// dead-lettered (default 10).
	MaxDeliver int
	// MaxAckPending bounds messages delivered but not yet acknowledged across
	// all replicas: the back-pressure limit (default 256).
	MaxAckPending int
	// Workers is how many handlers run at once in this process (default 4).
	// Messages on one subject always go to the same worker, so first
	// deliveries on a subject are handled in order.
	Workers int
	// BackoffInitial and BackoffMax shape the delay before a retried message
	// comes back: BackoffInitial doubled per attempt, capped at BackoffMax,
	// with jitter (defaults 1s and 2m).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// Heartbeat is how often a message in progress tells the server it is
	// still being worked on (default AckWait/3).
	Heartbeat time.Duration
	// Prefetch is how many messages this process pulls ahead of its workers
	// (default 2*Workers, at most MaxAckPending). More raises throughput
	// with fast handlers; fewer spreads work more evenly across replicas,
	// and prefetched messages' ack-wait clocks run while they wait.
	Prefetch int
	// PinnedTTL, when not zero, gives the consumer one puller at a time:
	// the server pins it to the first process whose pull waits (priority
	// policy pinned, group PinnedGroup) and moves the pin to another only
	// when that process has sent no pull request for PinnedTTL. Pull
	// requests then expire within half of it, so a process that is not
	// pinned asks again, and learns that the pin is free, within the TTL.
	PinnedTTL time.Duration
	// Sourced says that the stream holds copies sourced from other
	// streams (with a subject transform, say): each Delivery then names
	// the original's subject, stream and sequence, from the copy's
	// Nats-Stream-Source header, so a handler reads a copy as the
	// message it copies. Acks go to the copy.
	Sourced bool
}

// PinnedGroup is the priority group of pinned consumers
// (ConsumerConfig.PinnedTTL).
const PinnedGroup = "owners"

// minPinnedTTL bounds ConsumerConfig.PinnedTTL from below: the pull
// requests expire within half of it, and nats.go's pull requests live at
// least 1 s.
const minPinnedTTL = 2 * time.Second

// Defaults fills unset fields with their documented defaults.
func (c *ConsumerConfig) Defaults() {
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 256
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.BackoffInitial == 0 {
		c.BackoffInitial = time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 2 * time.Minute
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = c.AckWait / 3
	}
	if c.Prefetch == 0 {
		c.Prefetch = min(2*c.Workers, c.MaxAckPending)
	}
}

// Validate reports every problem at once, each wrapping ErrInvalidConfig.
func (c ConsumerConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: consumer %q: %s", ErrInvalidConfig, c.Durable, fmt.Sprintf(format, args...)))
	}
	if c.Stream == "" {
		bad("stream is required")
	}
	if c.Durable == "" {
		bad("durable name is required")
	}
	if c.MaxDeliver < 1 {
		bad("MaxDeliver %d must be at least 1", c.MaxDeliver)
	}
	if c.MaxAckPending < 1 {
		bad("MaxAckPending %d must be at least 1", c.MaxAckPending)
	}
	if c.Workers < 1 {
		bad("Workers %d must be at least 1", c.Workers)
	}
	if c.Heartbeat <= 0 || c.Heartbeat >= c.AckWait {
		bad("Heartbeat %s must be positive and shorter than AckWait %s", c.Heartbeat, c.AckWait)
	}
	if c.Prefetch < 1 || c.Prefetch > c.MaxAckPending {
		bad("Prefetch %d must be between 1 and MaxAckPending %d", c.Prefetch, c.MaxAckPending)
	}
	if c.BackoffInitial <= 0 || c.BackoffMax < c.BackoffInitial {
		bad("backoff %s..%s must be positive and increasing", c.BackoffInitial, c.BackoffMax)
	}
	if c.PinnedTTL != 0 && c.PinnedTTL < minPinnedTTL {
		bad("PinnedTTL %s must be 0 (not pinned) or at least %s", c.PinnedTTL, minPinnedTTL)
	}
	return errors.Join(errs...)
}

// Subscription is a running consumer.
type Subscription struct {
	c        *Client
	cfg      ConsumerConfig
	iter     jetstream.MessagesContext
	advisory interface{ Unsubscribe() error }
	cancel   context.CancelFunc // cancels handler contexts
	loopDone chan struct{}
	workers  sync.WaitGroup
	stopOnce sync.Once
	// stopping is set before the iterator is drained on purpose, so the
	// loop can tell a requested stop from the iterator giving up.
	stopping atomic.Bool
}

// The pull iterator's request lifetime and idle heartbeat, set explicitly
// because the loop's recheck depends on them.
//
// A pull request lives at the consumer's leader only. When that leader
// dies or freezes (a node of a JetStream cluster killed or paused), the
// request is gone with it and nothing tells the client: it notices only
// when the server's idle heartbeats stop, after 2*pullHeartbeat, and then
// pulls again, which reaches the new leader once one is elected. nats.go's
// default heartbeat (15 s) made a promote wait 30 s and more after a
// leader change; 500 ms lets the consumer pull again within a second of
// the new leader taking over, for two small messages a second per idle
// consumer (issue 21, docs/reliability.md).
//
// A pull request also outlives a client that the network cut off: its
// leader keeps it, and hands it messages that go nowhere (their redelivery
// waits for the ack wait), until it expires. A short expiry bounds that,
// for one more request per consumer every pullExpiry (TestPartitions).
const (
	pullExpiry    = 5 * time.Second
	pullHeartbeat = 500 * time.Millisecond
	// missedSaid is how often missed heartbeats are said in the log.
	missedSaid = 30 * time.Second
	// pullRecheck bounds how long the loop lets the iterator wait for a
	// message while messages are flowing, before it asks again.
	pullRecheck = 250 * time.Millisecond
)

// Consume creates or updates the durable consumer cfg describes and starts
// handling its messages with h until Stop. A changed configuration updates the
// existing consumer. Messages that reach MaxDeliver without any ack (a worker
// that crashed on the last attempt) are dead-lettered from the server's
// advisory.
func (c *Client) Consume(ctx context.Context, cfg ConsumerConfig, h Handler) (*Subscription, error) {
	// Every message goes the same way: decoded, traced, guarded against
	// panics, handled, then settled from the result (see handle).
	h = Chain(h, Trace(c.tracer, cfg.Durable), Recover)
	return c.consume(ctx, cfg, func(ctx context.Context, s *Subscription, q <-chan queued) {
		for m := range q {
			s.handle(ctx, m, h)
		}
	})
}

// consume starts the consumer cfg describes, with each worker running work
// over its queue.
func (c *Client) consume(ctx context.Context, cfg ConsumerConfig, work func(context.Context, *Subscription, <-chan queued)) (*Subscription, error) {
	if cfg.AckWait == 0 {
		cfg.AckWait = c.ackWait
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	jcfg := jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		MaxAckPending:  cfg.MaxAckPending,
		FilterSubjects: cfg.FilterSubjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if cfg.DeliverNew {
		jcfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	pull := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(cfg.Prefetch),
		jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat)}
	if cfg.PinnedTTL > 0 {
		jcfg.PriorityPolicy, jcfg.PinnedTTL, jcfg.PriorityGroups = jetstream.PriorityPolicyPinned, cfg.PinnedTTL, []string{PinnedGroup}
		expiry := min(pullExpiry, cfg.PinnedTTL/2)
		pull = []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(cfg.Prefetch), jetstream.PullPriorityGroup(PinnedGroup),
			jetstream.PullExpiry(expiry), jetstream.PullHeartbeat(min(pullHeartbeat, expiry/2))}
	}
	cons, err := c.js.CreateOrUpdateConsumer(ctx, cfg.Stream, jcfg)
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s on %s: %w", cfg.Durable, cfg.Stream, err)
	}
	s := &Subscription{c: c, cfg: cfg, loopDone: make(chan struct{})}
	if s.advisory, err = c.watchMaxDeliveries(cfg); err != nil {
		return nil, err
	}
	s.iter, err = cons.Messages(pull...)
	if err != nil {
		_ = s.advisory.Unsubscribe()
		return nil, fmt.Errorf("start consumer %s: %w", cfg.Durable, err)
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	// Each worker's queue holds as many messages as the server lets this
	// consumer have unacknowledged (MaxAckPending), so the loop never waits
	// on a busy worker: a slow handler holds up its own rollouts' messages
	// only, not every other rollout's (head-of-line blocking). A queued
	// message's ack-wait clock runs, so it is kept in progress from the
	// moment it is queued (see queued).
	queues := make([]chan queued, cfg.Workers)
	for i := range queues {
		queues[i] = make(chan queued, cfg.MaxAckPending)
		s.workers.Add(1)
		go func(q chan queued) {
			defer s.workers.Done()
			work(hctx, s, q)
		}(queues[i])
	}
	go s.loop(queues)
	if c.obs != nil {
		go c.sampleLag(cons, cfg, s.loopDone)
	}
	go func() {
		select {
		case <-ctx.Done():
			s.stopping.Store(true)
			s.iter.Drain()
		case <-s.loopDone:
		}
	}()
	return s, nil
}

// loop hands the iterator's messages to the workers until the iterator
// closes.
//
// The iterator decides whether to send its next pull request only when Next
// is called, and skips it while its previous request is still being sent.
// Under load the messages of that previous request can arrive and be taken
// before the send is marked finished; Next then waits with nothing
// requested until its missed-heartbeat check fires after 2*pullHeartbeat,
// with messages waiting in the stream. So while messages flow, Next
// waits at most pullRecheck and is called again, which sends the skipped
// request. Once nothing was handed on for 2*pullHeartbeat the consumer is
// idle and Next waits without a limit, so the missed-heartbeat check (which
// a Next that returns early cancels) finds a pull request the server lost.
func (s *Subscription) loop(queues []chan queued) {
	defer close(s.loopDone)
	defer func() {
		for _, q := range queues {
			close(q)
		}
	}()
	lastMsg := time.Now()
	var (
		lastErr    error
		lastMissed time.Time
		misses     int // missed heartbeats in a row
	)
	for {
		var opts []jetstream.NextOpt
		if time.Since(lastMsg) < 2*pullHeartbeat {
			opts = append(opts, jetstream.NextMaxWait(pullRecheck))
		}
		msg, err := s.iter.Next(opts...)
		switch {
		case err == nil:
		case errors.Is(err, nats.ErrTimeout):
			continue
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			switch {
			case s.stopping.Load():
			case errors.Is(err, jetstream.ErrConnectionClosed) || s.c.nc.IsClosed() || s.c.nc.IsDraining():
				s.c.log.Info("consumer stopped: connection closed", "consumer", s.cfg.Durable)
			default:
				// The server ended the pull (the consumer was deleted,
				// say): nothing more arrives until the service restarts.
				s.c.log.Error("consumer stopped: the server ended its pull requests", "consumer", s.cfg.Durable, "error", lastErr)
			}
			return
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			// The iterator has already dropped its request and sends a new
			// one on the next call. While the consumer has no leader this
			// repeats every 2*pullHeartbeat: said at most every 30 s.
			if time.Since(lastMissed) > missedSaid {
				s.c.log.Warn("consumer missed heartbeats (its leader may have changed); pulling again", "consumer", s.cfg.Durable)
				lastMissed = time.Now()
			}
			lastErr = err
			misses++
			s.beforeRepull(misses)
			continue
		default:
			// Reported once per occurrence; the iterator either recovers by
			// itself or closes, so do not spin while it does.
			s.c.log.Warn("consumer fetch failed; retrying", "consumer", s.cfg.Durable, "error", err)
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// One rollout's events go to one worker, whatever the subject
		// (a result from each worker service, say), so they are handled
		// in order and never race each other for the rollout's state.
		h := fnv.New32a()
		h.Write([]byte(orderKey(s.subjectOf(msg))))
		queues[h.Sum32()%uint32(len(queues))] <- queued{msg: msg, stopBeat: s.heartbeat(msg)}
		lastMsg, lastErr, misses = time.Now(), nil, 0
	}
}

// maxRepullDelay bounds the wait between pull requests after heartbeats
// were missed several times in a row.
const maxRepullDelay = 8 * time.Second

// beforeRepull waits before the pull request that follows the misses-th
// missed heartbeat in a row. The first goes at once, so a consumer whose
// leader moved pulls from the new one within a second. Later ones back
// off (doubling up to maxRepullDelay), and none goes while the connection
// is down: a request the server may still hold (a slow or lossy link
// delays its heartbeats) is not joined by one more each second, and
// requests sent during a partition are not buffered by the client, to
// reach the server all at once at the heal and flood the client with
// their messages (issue 21, TestPartitions).
func (s *Subscription) beforeRepull(misses int) {
	delay := time.Duration(0)
	if misses > 1 {
		delay = min(pullHeartbeat<<(min(misses, 8)-1), maxRepullDelay)
	}
	deadline := time.Now().Add(delay)
	for !s.stopping.Load() && !s.c.nc.IsClosed() && (time.Now().Before(deadline) || !s.c.nc.IsConnected()) {
		time.Sleep(50 * time.Millisecond)
	}
}

// orderKey is what the messages that must be handled in order share: the
// rollout a subject is about, else the subject.
func orderKey(subject string) string {
	if r, err := RefFromSubject(subject); err == nil {
		return r.String()
	}
	return subject
}

// Stop stops fetching, lets handlers in progress finish and settle their
// messages, and returns. When ctx ends first, handler contexts are cancelled
// and Stop returns ctx's error once they return.
func (s *Subscription) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		_ = s.advisory.Unsubscribe()
		s.iter.Drain()
	})
	done := make(chan struct{})
	go func() {
		<-s.loopDone
		s.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		return ctx.Err()
	}
}

// queued is a message waiting for its worker, kept in progress at the
// server until stopBeat.
type queued struct {
	msg      jetstream.Msg
	stopBeat func()
}

// handle runs one message: decode turns it into a Delivery and an Event, h
// (the middleware chain Consume composed) handles them, and settle maps the
// result onto the message. A message that cannot be decoded skips the chain
// and is settled with the decode error. A message still queued when the
// subscription stops is handed back to the server at once (nak), for
// another replica, rather than handled late.
func (s *Subscription) handle(ctx context.Context, m queued, h Handler) {
	msg := m.msg
	defer m.stopBeat()
	d, err := s.delivery(msg)
	if err != nil {
		// Not a JetStream message; nothing to settle.
		s.c.log.Error("consumer received a message without JetStream metadata", "consumer", s.cfg.Durable, "subject", msg.Subject(), "error", err)
		return
	}
	if s.stopping.Load() {
		_ = msg.Nak()
		return
	}

	start := time.Now()
	typ := UnknownEventType
	ev, err := Decode(msg.Data(), msg.Headers())
	if err == nil {
		err = h(ctx, d, ev)
		if !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrMalformed) {
			typ = ev.Type()
		}
	}
	s.observe(typ, d, start, s.settle(ctx, msg, d, err))
}

// delivery describes msg as its handler sees it.
func (s *Subscription) delivery(msg jetstream.Msg) (Delivery, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return Delivery{}, err
	}
	d := Delivery{
		Subject: msg.Subject(), Stream: meta.Stream, Consumer: meta.Consumer,
		Sequence: meta.Sequence.Stream, Attempt: meta.NumDelivered,
		MaxDeliver: s.cfg.MaxDeliver, Published: meta.Timestamp,
	}
	if s.cfg.PinnedTTL > 0 {
		d.PinID = msg.Headers().Get(pinIDHeader)
	}
	// A copy without a readable header keeps its own subject, which its
	// handler then refuses as outside the contract (dead-lettered).
	if o, ok := sourceOf(msg.Headers()); ok && s.cfg.Sourced {
		d.Subject, d.Stream, d.Sequence = o.subject, o.stream, o.sequence
	}
	return d, nil
}

// Headers the server sets on pinned consumers' and sourced streams'
// messages.
const (
	pinIDHeader  = "Nats-Pin-Id"
	sourceHeader = "Nats-Stream-Source"
)

// origin is the message a sourced copy copies.
type origin struct {
	stream, subject string
	sequence        uint64
}

// sourceOf reads a copy's Nats-Stream-Source header: "<stream> <sequence>
// <filter> <transform> <original subject>", as nats-server writes it.
func sourceOf(h nats.Header) (origin, bool) {
	f := strings.Fields(h.Get(sourceHeader))
	if len(f) < 5 {
		return origin{}, false
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return origin{}, false
	}
	return origin{stream: f[0], sequence: seq, subject: f[4]}, true
}

// subjectOf is the subject msg's handler sees: the original's for a copy.
func (s *Subscription) subjectOf(msg jetstream.Msg) string {
	if s.cfg.Sourced {
		if o, ok := sourceOf(msg.Headers()); ok {
			return o.subject
		}
	}
	return msg.Subject()
}

// observe reports a settled delivery to the client's observer, if any.
func (s *Subscription) observe(eventType string, d Delivery, start time.Time, outcome string) {
	if s.c.obs == nil || outcome == "" {
		return
	}
	s.c.obs.Handled(s.cfg.Durable, eventType, outcome, d.Attempt, time.Since(start))
}

// heartbeat tells the server the message is in progress until stopped.
func (s *Subscription) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// settle maps a handler result onto the message: ack, nak with backoff, or
// dead-letter and terminate. It returns the Outcome* that happened.
func (s *Subscription) settle(ctx context.Context, msg jetstream.Msg, d Delivery, err error) string {
	log := s.c.log.With("consumer", s.cfg.Durable, "subject", d.Subject, "stream_seq", d.Sequence, "attempt", d.Attempt)
	switch {
	case err == nil:
		if aerr := msg.Ack(); aerr != nil {
			log.Warn("ack failed; the message will be redelivered", "error", aerr)
		}
		return OutcomeAcked
	case IsPermanent(err):
		return s.deadLetterAndTerm(ctx, log, msg, d, err.Error(), deadLetterClass(err, false))
	case d.Attempt >= uint64(s.cfg.MaxDeliver):
		return s.deadLetterAndTerm(ctx, log, msg, d, fmt.Sprintf("gave up after %d deliveries: %v", d.Attempt, err), deadLetterClass(err, true))
	default:
		delay, ok := retryDelay(err)
		if !ok {
			delay = backoffDelay(int(d.Attempt), s.cfg.BackoffInitial, s.cfg.BackoffMax)
		}
		log.Warn("handler failed; will retry", "error", err, "retry_in", delay)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log.Warn("nak failed; the message will be redelivered after the ack wait", "error", nerr)
		}
		return OutcomeRetried
	}
}

// deadLetterAndTerm dead-letters msg and terminates its delivery; if the
// dead letter cannot be stored the message is kept for a retry instead.
func (s *Subscription) deadLetterAndTerm(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d Delivery, reason, class string) string {
	err := s.c.deadLetter(ctx, deadLetterOf(msg.Subject(), msg.Data(), msg.Headers(), d, reason))
	if err != nil {
		// Keep the message rather than lose it: it comes back and is tried
		// again, dead-letter publish included.
		log.Error("dead-letter publish failed; keeping the message", "reason", reason, "error", err)
		_ = msg.NakWithDelay(backoffDelay(int(d.Attempt), s.cfg.BackoffInitial, s.cfg.BackoffMax))
		return OutcomeRetried
	}
	log.Error("event dead-lettered", "reason", reason, "reason_class", class)
	if s.c.obs != nil {
		s.c.obs.DeadLettered(s.cfg.Durable, class)
	}
	if terr := msg.TermWithReason(truncate(reason, 256)); terr != nil {
		log.Warn("term failed", "error", terr)
	}
	return OutcomeDeadLettered
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
