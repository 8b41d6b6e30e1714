package records

import (
	"container/list"
	"sync"
)

// cache holds up to max decoded records, the least recently used going
// first. A record that is busy is read again and again, and decoding it
// each time can cost more than what is done with it. It is safe for
// concurrent use; a nil cache holds nothing.
type cache[T any] struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *cached[T], most recent first
	entries map[string]*list.Element
}

type cached[T any] struct {
	key string
	rev uint64
	rec T
}

func newCache[T any](max int) *cache[T] {
	if max <= 0 {
		return nil
	}
	return &cache[T]{max: max, order: list.New(), entries: map[string]*list.Element{}}
}

// get returns the record of key at revision rev, if the cache has that one.
func (c *cache[T]) get(key string, rev uint64) (T, bool) {
	var zero T
	if c == nil {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok || el.Value.(*cached[T]).rev != rev {
		return zero, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cached[T]).rec, true
}

// latest returns the newest record the cache holds for key.
func (c *cache[T]) latest(key string) (rec T, rev uint64, ok bool) {
	if c == nil {
		return rec, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return rec, 0, false
	}
	c.order.MoveToFront(el)
	e := el.Value.(*cached[T])
	return e.rec, e.rev, true
}

// put remembers the record of key at revision rev, unless a later
// revision is already there.
func (c *cache[T]) put(key string, rev uint64, rec T) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		if e := el.Value.(*cached[T]); e.rev <= rev {
			e.rev, e.rec = rev, rec
		}
		c.order.MoveToFront(el)
		return
	}
	c.entries[key] = c.order.PushFront(&cached[T]{key: key, rev: rev, rec: rec})
	if c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cached[T]).key)
	}
}

// forget drops key's record.
func (c *cache[T]) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.order.Remove(el)
		delete(c.entries, key)
	}
}
