package records

import "testing"

// Moved from services/orchestrator, whose record cache this was.
func TestCacheKeepsTheLatestRevisionOfTheMostRecent(t *testing.T) {
	type record struct{ Version int64 }
	c := newCache[record](2)
	rec := func(v int64) record { return record{Version: v} }
	c.put("a", 5, rec(5))
	c.put("a", 4, rec(4)) // a late put of an older revision changes nothing
	if got, ok := c.get("a", 5); !ok || got.Version != 5 {
		t.Fatalf("a@5 = %v, %v", got.Version, ok)
	}
	if _, ok := c.get("a", 6); ok {
		t.Fatal("a@6 served from a cache that holds a@5: another replica's write would be missed")
	}
	c.put("b", 1, rec(1))
	c.get("a", 5) // a is now the most recent
	c.put("c", 1, rec(1))
	if _, ok := c.get("b", 1); ok {
		t.Error("b, the least recently used, was kept past the limit")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok := c.get(k, map[string]uint64{"a": 5, "c": 1}[k]); !ok {
			t.Errorf("%s was evicted", k)
		}
	}
	var none *cache[record] = newCache[record](-1)
	none.put("a", 1, rec(1))
	if _, ok := none.get("a", 1); ok {
		t.Error("a disabled cache served a record")
	}
}
