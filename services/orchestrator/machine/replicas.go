package machine

import (
	"math"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
)

// rs is one revision's pods as the replica math sees them: the count asked
// for and the count available.
type rs struct {
	Spec      int32
	Available int32
}

// fenceposts resolves maxSurge (rounded up) and maxUnavailable (rounded
// down) against replicas. When both come to 0, maxUnavailable is 1 so that
// an update can always move.
func fenceposts(surge, unavailable *intstr.IntOrString, replicas int32) (int32, int32) {
	resolve := func(v *intstr.IntOrString, def string, up bool) int32 {
		x := intstr.FromString(def)
		if v != nil {
			x = *v
		}
		n, err := intstr.GetScaledValueFromIntOrPercent(&x, int(replicas), up)
		if err != nil || n < 0 {
			return 0
		}
		return int32(n)
	}
	s := resolve(surge, spec.DefaultMaxSurge, true)
	u := resolve(unavailable, spec.DefaultMaxUnavailable, false)
	if s == 0 && u == 0 {
		u = 1
	}
	if replicas == 0 {
		u = 0
	}
	return s, min(u, replicas)
}

// approximateCanary picks the canary and stable counts whose ratio comes
// closest to weight percent, with a total of replicas, or replicas+1 when
// surging is allowed. A weight strictly between 0 and 100 keeps at least one
// pod on each side, unless there is a single replica and no surge. On a tie
// the larger canary wins. (Argo's approximateWeightedCanaryStableReplicaCounts.)
func approximateCanary(replicas, weight, surge int32) (canary, stable int32) {
	if replicas == 0 {
		return 0, 0
	}
	type option struct{ canary, total int32 }
	exact := float64(replicas*weight) / 100
	ceil, floor := int32(math.Ceil(exact)), int32(math.Floor(exact))
	tied := func(total int32) bool {
		_, frac := math.Modf(float64(total) * float64(weight) / 100)
		return frac == 0.5
	}
	zeroOK := weight == 0 || weight == 100 || (replicas == 1 && surge == 0)
	var options []option
	if ceil < replicas || zeroOK {
		options = append(options, option{ceil, replicas})
	}
	if !tied(replicas) && (floor != 0 || zeroOK) {
		options = append(options, option{floor, replicas})
	}
	if surge > 0 {
		options = append(options, option{ceil, replicas + 1})
		if !tied(replicas+1) && (floor != 0 || zeroOK) {
			options = append(options, option{floor, replicas + 1})
		}
	}
	if len(options) == 0 {
		return 0, replicas
	}
	delta := func(o option) float64 {
		return math.Abs(float64(o.canary*100)/float64(o.total) - float64(weight))
	}
	best := options[0]
	for _, o := range options[1:] {
		if delta(o) < delta(best) {
			best = o
		}
	}
	return best.canary, best.total - best.canary
}

// basicInput is what the basic canary's replica math reads.
type basicInput struct {
	Replicas, Weight   int32
	Surge, Unavailable int32
	Canary             rs
	Stable             *rs // nil when the canary is the stable revision
	Old                []rs
}

// basicCanaryCounts returns the next canary and stable counts of a canary
// without traffic routing, where the weight is the ratio of pods. It moves
// towards approximateCanary's counts without going above replicas+maxSurge
// pods, nor below replicas-maxUnavailable available pods, scaling the
// stable up before the canary and, once no older revision has pods, down
// whichever side is moving away from its target. Called again with the
// availability it reported, it returns the same counts (a fixed point).
// This is Argo's CalculateReplicaCountsForBasicCanary.
func basicCanaryCounts(in basicInput) (canary, stable int32) {
	wantC, wantS := approximateCanary(in.Replicas, in.Weight, in.Surge)
	canary = in.Canary.Spec
	if in.Stable == nil {
		wantC, wantS = in.Replicas, 0
	} else {
		stable = in.Stable.Spec
	}
	maxTotal := in.Replicas + in.Surge
	var oldSpec int32
	for _, o := range in.Old {
		oldSpec += o.Spec
	}
	total := oldSpec + in.Canary.Spec
	if in.Stable != nil {
		total += in.Stable.Spec
	}
	up := maxTotal - total
	if in.Stable != nil && in.Stable.Spec < wantS && up > 0 {
		grow := min(up, wantS-in.Stable.Spec)
		stable = in.Stable.Spec + grow
		up -= grow
	}
	if in.Canary.Spec < wantC && up > 0 {
		canary = in.Canary.Spec + min(up, wantC-in.Canary.Spec)
	}
	if oldSpec > 0 {
		// Older revisions are scaled down first.
		return canary, stable
	}
	minAvailable := in.Replicas - in.Unavailable
	increasing := wantC >= in.Canary.Spec
	removable := scaleDownBase(&in.Canary, !increasing) + scaleDownBase(in.Stable, increasing)
	if removable <= minAvailable {
		return canary, stable
	}
	excess := removable - minAvailable
	switch {
	case !increasing:
		canary = shrink(&in.Canary, wantC, excess, canary)
		canary, stable = keepWithinLimits(&in.Canary, in.Stable, canary, stable, maxTotal, minAvailable)
	case in.Stable != nil:
		stable = shrink(in.Stable, wantS, excess, stable)
		stable, canary = keepWithinLimits(in.Stable, &in.Canary, stable, canary, maxTotal, minAvailable)
	}
	return canary, stable
}

// scaleDownBase is how many of a revision's pods count as removable: its
// spec when fewer than are available or when availability may be ignored,
// its available pods otherwise.
func scaleDownBase(r *rs, ignoreAvailability bool) int32 {
	if r == nil {
		return 0
	}
	if r.Spec < r.Available || ignoreAvailability {
		return r.Spec
	}
	return r.Available
}

// shrink lowers a revision towards want by at most excess pods.
func shrink(r *rs, want, excess, current int32) int32 {
	if r != nil && r.Spec > want {
		return max(want, r.Spec-excess)
	}
	return current
}

// keepWithinLimits takes back pods of the adjusted side that would exceed
// maxSurge, gives back what that costs in availability, and takes the rest
// from the draining side.
func keepWithinLimits(drain, adjust *rs, drainCount, adjustCount, maxTotal, minAvailable int32) (int32, int32) {
	over := max(0, adjustCount+drainCount-maxTotal)
	var available int32
	if drain != nil {
		available += min(drain.Available, drainCount)
	}
	if adjust == nil {
		return drainCount, adjustCount
	}
	adjustCount -= over
	available += min(adjust.Available, adjustCount)
	lost := max(0, adjust.Available-adjustCount)
	need := max(0, minAvailable-available)
	adjustCount += min(lost, need)
	over = max(0, adjustCount+drainCount-maxTotal)
	drainCount -= over
	return drainCount, adjustCount
}

// scaleDownOld scales older revisions of a basic canary down, newest first,
// as far as availability allows: their unavailable pods at once, then no
// more than the available pods above replicas-maxUnavailable. (Argo's
// scaleDownOldReplicaSetsForCanary.) old must be ordered newest first;
// allAvailable counts every revision's available pods.
func scaleDownOld(old []rs, allAvailable, replicas, unavailable int32) []int32 {
	out := make([]int32, len(old))
	budget := allAvailable - (replicas - unavailable)
	for i, o := range old {
		n := min(o.Spec, max(o.Available, 0))
		if budget > 0 && n > 0 {
			cut := min(n, budget)
			n -= cut
			budget -= cut
		}
		out[i] = n
	}
	return out
}

// trafficReplicas is the number of pods that serves weight out of
// maxWeight of traffic, rounded up.
func trafficReplicas(replicas, weight, maxWeight int32) int32 {
	if maxWeight <= 0 {
		maxWeight = 100
	}
	return int32(math.Ceil(float64(weight) * float64(replicas) / float64(maxWeight)))
}

// minPods raises a non-zero count to canary.minPodsPerReplicaSet.
func (s *State) minPods(n int32) int32 {
	c := s.canary()
	if n == 0 || c == nil || c.TrafficRouting == nil || c.MinPodsPerReplicaSet == nil {
		return n
	}
	return max(n, *c.MinPodsPerReplicaSet)
}

func (s *State) pod(hash string) *PodRecord {
	for i := range s.Pods {
		if s.Pods[i].Hash == hash {
			return &s.Pods[i]
		}
	}
	return nil
}

// podsOf returns hash's pods as the replica math sees them.
func (s *State) podsOf(hash string) rs {
	if p := s.pod(hash); p != nil {
		return rs{Spec: p.Replicas, Available: p.Available}
	}
	return rs{}
}

// revisionOf returns the revision number of hash.
func (s *State) revisionOf(hash string) int64 {
	for _, h := range s.History {
		if h.Hash == hash {
			return h.Number
		}
	}
	if p := s.pod(hash); p != nil {
		return p.Revision
	}
	return 0
}

// desiredScale returns the replicas every revision should run now, without
// templates (the current revision first, then the stable one, then older
// revisions newest first).
func (d *decision) desiredScale() []tasks.RevisionScale {
	s := d.s
	if s.isExperiment() {
		return d.experimentScale()
	}
	hashes := []string{s.PodHash}
	if s.StableHash != s.PodHash {
		hashes = append(hashes, s.StableHash)
	}
	old := make([]PodRecord, 0, len(s.Pods))
	for _, p := range s.Pods {
		if p.Hash != s.PodHash && p.Hash != s.StableHash {
			old = append(old, p)
		}
	}
	sort.SliceStable(old, func(i, j int) bool { return old[i].Revision > old[j].Revision })
	for _, p := range old {
		hashes = append(hashes, p.Hash)
	}

	var counts map[string]int32
	switch {
	case s.Deleting:
		counts = map[string]int32{}
	case s.canary() != nil && s.canary().TrafficRouting == nil:
		counts = d.basicCanaryScale(old)
	case s.canary() != nil:
		counts = d.routedCanaryScale(old)
	default:
		counts = d.blueGreenScale(old)
	}
	out := make([]tasks.RevisionScale, 0, len(hashes))
	for _, h := range hashes {
		n := counts[h]
		if n == 0 && s.pod(h) == nil {
			continue
		}
		role, md := d.role(h)
		rv := tasks.RevisionScale{Revision: s.revisionOf(h), PodHash: h, Role: role, Replicas: n, Metadata: md}
		if h == s.StableHash {
			rv.RestartAt, rv.MaxUnavailable = d.restartFields(n)
		}
		out = append(out, rv)
	}
	return append(out, d.experimentScale()...)
}

func (d *decision) basicCanaryScale(old []PodRecord) map[string]int32 {
	s := d.s
	c := s.canary()
	R := s.replicas()
	surge, unavailable := fenceposts(c.MaxSurge, c.MaxUnavailable, R)
	var weight int32
	switch {
	case !s.inProgress(), s.PromoteFull, s.Step >= s.planLen() && !s.Aborted:
		weight = 100
	case s.Aborted:
		weight = 0
	default:
		weight = s.setWeight(s.Step)
	}
	in := basicInput{Replicas: R, Weight: weight, Surge: surge, Unavailable: unavailable, Canary: s.podsOf(s.PodHash)}
	if s.inProgress() {
		st := s.podsOf(s.StableHash)
		in.Stable = &st
	}
	olds := make([]rs, len(old))
	for i, p := range old {
		olds[i] = s.podsOf(p.Hash)
	}
	in.Old = olds
	canary, stable := basicCanaryCounts(in)
	counts := map[string]int32{s.PodHash: canary}
	if s.inProgress() {
		counts[s.StableHash] = stable
	}
	moved := canary != in.Canary.Spec || in.Stable != nil && stable != in.Stable.Spec
	for i, p := range old {
		counts[p.Hash] = olds[i].Spec
	}
	if !moved {
		available := in.Canary.Available
		if in.Stable != nil {
			available += in.Stable.Available
		}
		for _, o := range olds {
			available += o.Available
		}
		for i, n := range scaleDownOld(olds, available, R, unavailable) {
			counts[old[i].Hash] = n
		}
	}
	return counts
}

func (d *decision) routedCanaryScale(old []PodRecord) map[string]int32 {
	s := d.s
	c := s.canary()
	R := s.replicas()
	maxW := s.maxWeight()
	counts := map[string]int32{}
	d.oldScale(old, counts)
	if !s.inProgress() {
		counts[s.PodHash] = R
		return counts
	}
	counts[s.StableHash] = R
	if s.Aborted {
		counts[s.PodHash] = d.abortedCount()
		return counts
	}
	w := d.targetWeight()
	canary := s.minPods(trafficReplicas(R, w, maxW))
	if sc := s.canaryScale(s.Step); sc != nil && !s.PromoteFull {
		switch {
		case sc.Replicas != nil:
			canary = *sc.Replicas
		case sc.Weight != nil:
			canary = s.minPods(trafficReplicas(R, *sc.Weight, 100))
		}
	}
	counts[s.PodHash] = canary
	if c.DynamicStableScale {
		// The stable keeps the pods for the traffic it has now until the
		// router has moved it away.
		inEffect := maxW
		if rt := s.Routing; rt != nil && rt.CanaryHash != rt.StableHash {
			inEffect = maxW - rt.CanaryWeight
		}
		counts[s.StableHash] = s.minPods(max(trafficReplicas(R, maxW-w, maxW), trafficReplicas(R, inEffect, maxW)))
	}
	return counts
}

// targetWeight is the canary weight the plan asks for now.
func (d *decision) targetWeight() int32 {
	s := d.s
	if s.PromoteFull || s.Step >= s.planLen() {
		return s.maxWeight()
	}
	return s.setWeight(s.Step)
}

// abortedCount is the size of an aborted canary or preview: unchanged while
// it still receives traffic or until its abort scale-down delay passes
// (forever with abortScaleDownDelaySeconds: 0), then 0.
func (d *decision) abortedCount() int32 {
	s := d.s
	n := s.podsOf(s.PodHash).Spec
	if d.carriesTraffic(s.PodHash) {
		return n
	}
	if _, ok := d.abortScaleDownDelay(); !ok || d.now.Before(s.AbortScaleDownAt) {
		return n
	}
	return 0
}

func (d *decision) blueGreenScale(old []PodRecord) map[string]int32 {
	s := d.s
	b := s.blueGreen()
	R := s.replicas()
	counts := map[string]int32{}
	d.oldScale(old, counts)
	if !s.inProgress() {
		counts[s.PodHash] = R
		return counts
	}
	counts[s.StableHash] = R
	switch {
	case s.Aborted:
		counts[s.PodHash] = d.abortedCount()
	case s.Step == 0 && !s.PromoteFull && b.PreviewReplicaCount != nil:
		counts[s.PodHash] = *b.PreviewReplicaCount
	default:
		counts[s.PodHash] = R
	}
	return counts
}

// oldScale sizes revisions that are neither current nor stable (traffic
// routing and blue/green): kept while traffic reaches them or their
// scale-down delay runs (within scaleDownDelayRevisionLimit), 0 otherwise.
func (d *decision) oldScale(old []PodRecord, counts map[string]int32) {
	s := d.s
	limit := int32(math.MaxInt32)
	if c := s.canary(); c != nil && c.ScaleDownDelayRevisionLimit != nil {
		limit = *c.ScaleDownDelayRevisionLimit
	}
	if b := s.blueGreen(); b != nil && b.ScaleDownDelayRevisionLimit != nil {
		limit = *b.ScaleDownDelayRevisionLimit
	}
	var delayed int32
	for _, p := range old { // newest first
		switch {
		case d.carriesTraffic(p.Hash):
			counts[p.Hash] = p.Replicas
		case !p.ScaleDownAt.IsZero() && d.now.Before(p.ScaleDownAt) && delayed < limit:
			delayed++
			counts[p.Hash] = p.Replicas
		default:
			counts[p.Hash] = 0
		}
	}
}

// carriesTraffic reports whether the routing in effect sends requests to
// hash.
func (d *decision) carriesTraffic(hash string) bool {
	rt := d.s.Routing
	if rt == nil || hash == "" {
		return false
	}
	switch hash {
	case rt.StableHash, rt.ActiveHash, rt.PreviewHash:
		return true
	case rt.CanaryHash:
		return rt.CanaryWeight > 0 || len(rt.HeaderRoutes) > 0 || len(rt.MirrorRoutes) > 0
	}
	return false
}

// role returns hash's role and the ephemeral metadata that goes with it.
func (d *decision) role(hash string) (spec.Role, *spec.PodTemplateMetadata) {
	s := d.s
	if c := s.canary(); c != nil {
		switch {
		case hash == s.StableHash:
			return spec.RoleStable, c.StableMetadata
		case hash == s.PodHash:
			return spec.RoleCanary, c.CanaryMetadata
		}
		return spec.RoleOld, nil
	}
	b := s.blueGreen()
	if b == nil {
		return spec.RoleOld, nil
	}
	active := s.StableHash
	if rt := s.Routing; rt != nil && rt.ActiveHash != "" {
		active = rt.ActiveHash
	}
	switch hash {
	case active:
		return spec.RoleActive, b.ActiveMetadata
	case s.PodHash:
		return spec.RolePreview, b.PreviewMetadata
	}
	return spec.RoleOld, nil
}

// sameScale reports whether two desired scales ask for the same thing: the
// same revisions with pods, in any order, each with the same role, replica
// count and metadata. Revisions asked to run no pods are left out: once
// gone, they are no longer listed. Templates are left out too: a scale
// task record keeps none. An entry is identified by its pod hash and its
// experiment template (a revision's own pods have none).
func sameScale(a, b []tasks.RevisionScale) bool {
	n := 0
	for i := range a {
		x := &a[i]
		if x.Replicas <= 0 {
			continue
		}
		n++
		j := slices.IndexFunc(b, func(y tasks.RevisionScale) bool { return sameEntry(x, &y) })
		if j < 0 {
			return false
		}
		y := &b[j]
		if y.Replicas != x.Replicas || y.Revision != x.Revision || y.Role != x.Role || !sameEncoding(x.Metadata, y.Metadata) ||
			!sameEncoding(x.Experiment, y.Experiment) ||
			!y.RestartAt.Equal(x.RestartAt) || y.MaxUnavailable != x.MaxUnavailable {
			return false
		}
	}
	for i := range b {
		if b[i].Replicas > 0 {
			n--
		}
	}
	return n == 0
}

// sameEntry reports whether two scale entries are of the same pods: the
// same pod hash and the same experiment template, or both a revision's own.
func sameEntry(a, b *tasks.RevisionScale) bool {
	if a.PodHash != b.PodHash || (a.Experiment == nil) != (b.Experiment == nil) {
		return false
	}
	return a.Experiment == nil || a.Experiment.Name == b.Experiment.Name && a.Experiment.Template == b.Experiment.Template
}
