package kube_test

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/sluicehq/sluice/internal/kubetest"
)

// One canary update of a Rollout object (4 replicas, nginx routing, 25%
// and 50%), counted at Sluice's clients: the Rollout, its ReplicaSets and
// its AnalysisRuns are read from the informers' caches, not from the API
// server, so that what an update costs is its writes. Before the caches,
// every status event read the Rollout and listed its ReplicaSets, and
// every scale task read the Rollout and each ReplicaSet before writing: at
// least as many reads as writes. Then a spec change listed the
// ReplicaSets (is it an undo?), and the end of the update read the
// Rollout and listed its AnalysisRuns to prune them (4 Rollout reads and
// 3 lists per update): now the one list left is the pruning's of the
// ReplicaSets, and a Rollout is read only to confirm a request its cached
// status seems to show, or after a conflict.
//
// The traffic router reads the stable Ingress from an informer and writes
// a Service only when its selector changes, besides the stable Service,
// which anchors each route's seq: one Service write per route (as many as
// the canary Ingress's) and one for the canary Service's new revision.
// Before, it read the stable Ingress on every route (6 reads) and wrote both
// Services on every route (10 writes for 5 routes).
func TestUpdateReadsFromCaches(t *testing.T) {
	t.Parallel()
	cp := controlPlane(t)
	cfg := rest.CopyConfig(cp.Config)
	counter := kubetest.CountRequests(cfg)
	s := startWith(t, cp, cp.Namespace(t), stackOptions{config: cfg})
	s.service(t, "web-stable", "web")
	s.service(t, "web-canary", "web")
	s.apply(t, stableIngress)
	s.apply(t, rollout("web", "1", 4, benchStrategy("web", false)))
	first := s.waitPhase(t, "web", "Healthy", 2)["stableRS"]

	before := counter.Requests()
	s.setImage(t, "web", "web:2")
	eventually(t, "the Rollout Healthy at its new revision", func() error {
		st := s.rolloutStatus(t, "web")
		if st["phase"] != "Healthy" || st["stableRS"] == first || st["stableRS"] != st["currentPodHash"] || st["availableReplicas"] != int64(4) {
			return fmt.Errorf("phase %v stableRS %v currentPodHash %v available %v", st["phase"], st["stableRS"], st["currentPodHash"], st["availableReplicas"])
		}
		return nil
	})
	update := counter.Requests().Sub(before)

	var reads, writes, rolloutReads int
	for k, n := range update {
		switch {
		case k.Verb == "WATCH":
		case (k.Verb == "GET" || k.Verb == "LIST") && (k.Resource == "rollouts" || k.Resource == "replicasets" || k.Resource == "analysisruns"):
			reads += n
			if k.Resource == "rollouts" {
				rolloutReads += n
			}
		case k.Verb != "GET" && k.Verb != "LIST":
			writes += n
		}
	}
	t.Logf("one update: %d requests: %s", update.Total(), update)
	if writes == 0 {
		t.Fatalf("no writes counted during the update: %s", update)
	}
	for _, c := range []struct {
		verb, resource, why string
		most                int
	}{
		{"LIST", "analysisruns", "the runs to prune come from the AnalysisRun informer's cache", 0},
		{"LIST", "replicasets", "only the pruning of AnalysisRuns lists ReplicaSets; the undo check reads Counts' cache", 1},
	} {
		n := 0
		for k, m := range update {
			if k.Verb == c.verb && k.Resource == c.resource {
				n += m
			}
		}
		if n > c.most {
			t.Errorf("%s %s %d times, want at most %d: %s", c.verb, c.resource, n, c.most, c.why)
		}
	}
	// A Rollout is read only to confirm a request its cached status seems
	// to show (the cache behind the record of Sluice's own write), or
	// after a conflict: the exception, not once per event or task.
	if rolloutReads > 3 {
		t.Errorf("%d reads of the Rollout; want it from the watcher's cache: %s", rolloutReads, strings.TrimSpace(update.String()))
	}
	if reads*4 > writes {
		t.Errorf("%d reads of Rollouts, ReplicaSets and AnalysisRuns for %d writes; want them from the caches: %s", reads, writes, strings.TrimSpace(update.String()))
	}
	routes := update[kubetest.Request{Verb: "UPDATE", Resource: "ingresses"}]
	if routes == 0 {
		t.Fatalf("no canary Ingress written during the update: %s", update)
	}
	if services := update[kubetest.Request{Verb: "UPDATE", Resource: "services"}]; services > routes+1 {
		t.Errorf("%d Service writes for %d routes; want the stable Service once per route and the canary Service once for its new revision (%d): %s",
			services, routes, routes+1, strings.TrimSpace(update.String()))
	}
	for _, resource := range []string{"ingresses", "services"} {
		if n := update[kubetest.Request{Verb: "GET", Resource: resource}]; n != 0 {
			t.Errorf("%d GET %s; want the stable Ingress from the informer and the Services the router wrote from its memory: %s",
				n, resource, strings.TrimSpace(update.String()))
		}
	}
}
