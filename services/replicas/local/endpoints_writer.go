package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/pkg/events"
)

// revKey names one endpoints entry: a revision's or an experiment
// template's (entry is entryName's).
type revKey struct {
	ref   events.Ref
	entry string
}

// writeTimeout bounds one write to the endpoints bucket.
const writeTimeout = 5 * time.Second

// endpointsWriter keeps the endpoints bucket in step with the processes:
// readiness changes mark a revision dirty, and one goroutine writes the
// revision's current entry (coalescing bursts, retrying failures).
type endpointsWriter struct {
	b     *Backend
	store endpoints.Store

	wmu  sync.Mutex        // serialises writes
	last map[revKey]string // what the bucket holds, as last written

	dmu   sync.Mutex
	dirty map[revKey]bool
	kick  chan struct{}
}

func newEndpointsWriter(b *Backend, store endpoints.Store) *endpointsWriter {
	return &endpointsWriter{b: b, store: store, last: map[revKey]string{}, dirty: map[revKey]bool{}, kick: make(chan struct{}, 1)}
}

// mark schedules k's entry for writing. It never blocks.
func (p *endpointsWriter) mark(k revKey) {
	p.dmu.Lock()
	p.dirty[k] = true
	p.dmu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// markBucket schedules every entry in the bucket and every revision the
// backend runs, so that entries of revisions it does not run are removed.
func (p *endpointsWriter) markBucket(ctx context.Context) error {
	lister, err := p.store.KV.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list bucket %s: %w", endpoints.Bucket, err)
	}
	for k := range lister.Keys() {
		if rev, err := endpoints.ParseKey(k); err == nil {
			p.mark(revKey{rev.Ref, rev.Name()})
		}
	}
	_ = lister.Stop()
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	for _, ro := range p.b.rollouts {
		for key := range ro.revisions {
			p.mark(revKey{ro.ref, key})
		}
	}
	return nil
}

// loop writes dirty entries until ctx ends, retrying failures every second.
func (p *endpointsWriter) loop(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-retry:
		}
		retry = nil
		if err := p.flush(ctx); err != nil && ctx.Err() == nil {
			p.b.log.Warn("endpoints not written; retrying", "error", err)
			retry = time.After(time.Second)
		}
	}
}

// flush writes every dirty entry; those that fail stay dirty.
func (p *endpointsWriter) flush(ctx context.Context) error {
	p.dmu.Lock()
	keys := make([]revKey, 0, len(p.dirty))
	for k := range p.dirty {
		keys = append(keys, k)
	}
	clear(p.dirty)
	p.dmu.Unlock()
	var errs []error
	for _, k := range keys {
		if err := p.write(ctx, k); err != nil {
			p.dmu.Lock()
			p.dirty[k] = true
			p.dmu.Unlock()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sync writes the entries of keys now.
func (p *endpointsWriter) sync(ctx context.Context, keys ...revKey) error {
	var errs []error
	for _, k := range keys {
		errs = append(errs, p.write(ctx, k))
	}
	return errors.Join(errs...)
}

// write writes k's current entry, or deletes it when the revision has no
// process, unless the bucket already holds it.
func (p *endpointsWriter) write(ctx context.Context, k revKey) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	entry, ok := p.b.entry(k)
	fp := ""
	if ok {
		fp = strconv.FormatInt(entry.Revision, 10) + "|" + strings.Join(entry.Ready, ",") + "|" + entry.MetricsPath
	}
	if last, seen := p.last[k]; seen && last == fp {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var err error
	if ok {
		entry.UpdatedAt = time.Now().UTC()
		err = p.store.Put(ctx, entry)
	} else {
		err = p.store.Delete(ctx, k.ref, k.entry)
	}
	if err != nil {
		return fmt.Errorf("endpoints entry %s: %w", endpoints.Key(k.ref, k.entry), err)
	}
	p.last[k] = fp
	return nil
}

// entry is k's endpoints entry now; false when the revision has no process.
func (b *Backend) entry(k revKey) (endpoints.Revision, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ro := b.rollouts[k.ref]
	if ro == nil {
		return endpoints.Revision{}, false
	}
	rev := ro.revisions[k.entry]
	if rev == nil || len(rev.procs) == 0 {
		return endpoints.Revision{}, false
	}
	e := endpoints.Revision{Ref: k.ref, Revision: rev.spec.Revision, PodHash: rev.spec.PodHash, Ready: []string{}, MetricsPath: defaultMetricsPath}
	if x := rev.spec.Experiment; x != nil {
		e.Experiment, e.Template = x.Name, x.Template
	}
	if v := rev.spec.Template.Annotations[metricsPathAnnotation]; v != "" {
		e.MetricsPath = v
	}
	for _, p := range rev.procs {
		if p.ready && !p.stopping && p.h != nil {
			e.Ready = append(e.Ready, net.JoinHostPort(b.cfg.Host, strconv.Itoa(p.h.port)))
		}
	}
	sort.Strings(e.Ready)
	return e, true
}
