package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadgenTalliesVersionsAndErrors(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.Header().Set("X-Version", "v2")
			w.WriteHeader(500)
			return
		}
		w.Header().Set("X-Version", "v1")
	}))
	defer srv.Close()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	run(ctx, srv.URL, 200, 0, &out)
	line := (&tally{versions: map[string]int{}}).take()
	if !strings.Contains(line, "0 requests") {
		t.Errorf("empty tally: %q", line)
	}
	tl := &tally{versions: map[string]int{}}
	tl.add("v1", true)
	tl.add("v1", true)
	tl.add("v2", true)
	tl.add("", false)
	if got := tl.take(); got != "   4 requests: v1  50%, v2  25%, errors  25%" {
		t.Errorf("take() = %q", got)
	}
	if n.Load() == 0 {
		t.Error("no request was sent")
	}
}
