package cdevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Deps is what an Emitter needs from the service.
type Deps struct {
	// Client reads the rollouts and their history, and publishes on
	// Config.Subject.
	Client *events.Client
	// HTTPClient posts to Config.Sink; default a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Emitter sends the CDEvent of each status event it handles.
type Emitter struct {
	cfg  Config
	deps Deps

	mu     sync.Mutex
	reader *orchestrator.Reader
}

// New returns the Emitter of the configuration's cdevents value (JSON,
// secrets resolved), or nil when it is empty (no CDEvents configured).
func New(raw json.RawMessage, deps Deps) (*Emitter, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	return NewEmitter(cfg, deps)
}

// NewEmitter returns the Emitter cfg describes.
func NewEmitter(cfg Config, deps Deps) (*Emitter, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Client == nil {
		return nil, errors.New("cdevents: Deps.Client is required")
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	return &Emitter{cfg: cfg, deps: deps}, nil
}

// Handle is an events.Handler for the status stream: it sends the CDEvent
// of ev, if it has one. A rollout deleted since is skipped. Errors: a 429
// is retried after its Retry-After (events.RetryAfter), another 4xx
// dead-letters (events.Permanent), a network error or a 5xx is retried.
func (e *Emitter) Handle(ctx context.Context, d events.Delivery, ev events.Event) error {
	if ev.Type() != events.TypeRolloutCompleted && ev.Type() != events.TypeRolloutAborted {
		return nil
	}
	var data events.StatusData
	if err := events.DecodeData(ev, &data); err != nil {
		return events.Permanent(fmt.Errorf("read %s %s: %w", ev.Type(), ev.ID(), err))
	}
	ref, err := events.ParseRef(ev.Subject())
	if err != nil {
		return events.Permanent(err)
	}
	in := Input{Event: ev, Data: data}
	podHash := data.Status.PodHash
	if ev.Type() == events.TypeRolloutAborted {
		podHash = data.Status.StablePodHash
	}
	if in.Rollout, err = e.manifest(ctx, ref, podHash); err != nil {
		if errors.Is(err, orchestrator.ErrNoRollout) {
			e.deps.Logger.Info("no CDEvent: the rollout is gone", "rollout", ref.String(), "event", ev.ID())
			return nil
		}
		return err
	}
	if ev.Type() == events.TypeRolloutCompleted && data.Status.Revision > 1 {
		in.Undo = e.undone(ctx, ref, ev)
	}
	ce, ok := e.cfg.Of(in)
	if !ok {
		e.deps.Logger.Info("no CDEvent: no image", "rollout", ref.String(), "event", ev.ID())
		return nil
	}
	if err := e.send(ctx, ce); err != nil {
		return err
	}
	e.deps.Logger.Debug("CDEvent sent", "rollout", ref.String(), "type", ce.Type(), "id", ce.ID())
	return nil
}

// manifest reads ref's manifest with the template of podHash.
func (e *Emitter) manifest(ctx context.Context, ref events.Ref, podHash string) (*spec.Rollout, error) {
	e.mu.Lock()
	rd := e.reader
	e.mu.Unlock()
	if rd == nil {
		var err error
		if rd, err = orchestrator.NewReader(ctx, e.deps.Client); err != nil {
			return nil, err
		}
		e.mu.Lock()
		e.reader = rd
		e.mu.Unlock()
	}
	return rd.Manifest(ctx, ref, podHash)
}

// undone reports whether an undo command started the update ev completes:
// the command whose id is ev's correlationid, in the rollout's history.
// When the history cannot be read it says no (the event is then
// service.upgraded) and logs why.
func (e *Emitter) undone(ctx context.Context, ref events.Ref, ev events.Event) bool {
	corr := events.Extension(ev, events.ExtCorrelationID)
	if corr == "" {
		return false
	}
	hist, err := e.deps.Client.History(ctx, ref)
	if err != nil {
		e.deps.Logger.Warn("read the history to tell an undo; reported as an upgrade", "rollout", ref.String(), "err", err)
		return false
	}
	for _, h := range hist {
		if h.Err == nil && h.Event.ID() == corr {
			return h.Event.Type() == events.TypeRolloutUndo
		}
	}
	return false
}

// send delivers ce to the sink or the subject.
func (e *Emitter) send(ctx context.Context, ce cloudevents.Event) error {
	if e.cfg.Subject != "" {
		b, err := ce.MarshalJSON()
		if err != nil {
			return events.Permanent(err)
		}
		nc := e.deps.Client.Conn()
		if err := nc.Publish(e.cfg.Subject, b); err != nil {
			return fmt.Errorf("publish the CDEvent on %s: %w", e.cfg.Subject, err)
		}
		// The server has it once the flush returns: only then ack.
		if err := nc.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("publish the CDEvent on %s: %w", e.cfg.Subject, err)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.Sink, nil)
	if err != nil {
		return events.Permanent(fmt.Errorf("the CDEvents sink: %v", strings.ReplaceAll(err.Error(), e.cfg.Sink, redactURL(e.cfg.Sink))))
	}
	wctx := binding.WithForceBinary(ctx)
	if e.cfg.Mode == ModeStructured {
		wctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteRequest(wctx, binding.ToMessage(&ce), req); err != nil {
		return events.Permanent(fmt.Errorf("encode the CDEvent: %w", err))
	}
	for k, v := range e.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.deps.HTTPClient.Do(req)
	if err != nil {
		// The error quotes the URL, which may hold credentials.
		return fmt.Errorf("post the CDEvent to %s: %s", redactURL(e.cfg.Sink), strings.ReplaceAll(err.Error(), e.cfg.Sink, redactURL(e.cfg.Sink)))
	}
	defer resp.Body.Close()
	defer func() { _, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) }()
	return classify(notify.CheckResponse("cdevents sink", resp))
}

// classify turns a notify delivery error into the events package's: the
// Emitter is a consumer's handler, not a notification's sender.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case notify.IsPermanent(err):
		return events.Permanent(err)
	}
	if d, ok := notify.RetryDelay(err); ok {
		return events.RetryAfter(err, d)
	}
	return err
}

var _ events.Handler = (*Emitter)(nil).Handle
