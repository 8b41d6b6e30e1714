// Command loadgen sends steady HTTP traffic to a URL and prints, every
// interval, how many responses came from each version (the X-Version
// header) and how many failed: the demo's view of where traffic goes.
//
//	loadgen --url http://127.0.0.1:8080/ --rate 50 --report 2s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/", "where to send requests")
	rate := flag.Int("rate", 50, "requests per second")
	report := flag.Duration("report", 2*time.Second, "how often to print the tally (0: never)")
	duration := flag.Duration("duration", 0, "stop after this long (0: until interrupted)")
	flag.Parse()
	if *rate < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: --rate must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	run(ctx, *url, *rate, *report, os.Stdout)
}

// tally counts responses by version and failures.
type tally struct {
	mu       sync.Mutex
	versions map[string]int
	failed   int
}

func (t *tally) add(version string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok {
		t.failed++
		return
	}
	t.versions[version]++
}

// take returns the tally as one line and resets it.
func (t *tally) take() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var keys []string
	total := t.failed
	for k, n := range t.versions {
		keys = append(keys, k)
		total += n
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %3.0f%%", k, 100*float64(t.versions[k])/float64(max(total, 1))))
	}
	line := fmt.Sprintf("%4d requests: %s, errors %3.0f%%", total, strings.Join(parts, ", "), 100*float64(t.failed)/float64(max(total, 1)))
	t.versions, t.failed = map[string]int{}, 0
	return line
}

func run(ctx context.Context, url string, rate int, report time.Duration, out io.Writer) {
	t := &tally{versions: map[string]int{}}
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var reports <-chan time.Time
	if report > 0 {
		rt := time.NewTicker(report)
		defer rt.Stop()
		reports = rt.C
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reports:
			fmt.Fprintf(out, "%s  load: %s\n", time.Now().Format(time.TimeOnly), t.take())
		case <-tick.C:
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(url)
				if err != nil {
					t.add("", false)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				t.add(resp.Header.Get("X-Version"), resp.StatusCode < 500)
			}()
		}
	}
}
