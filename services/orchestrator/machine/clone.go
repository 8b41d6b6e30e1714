package machine

import (
	"maps"
	"slices"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
)

// clone returns a copy of s that Next may change without changing s. It
// copies every pointer, slice and map, except the read-only ones State
// documents: Spec, which the copy shares. Nil
// stays nil and empty stays empty, so the copy encodes exactly as s does.
//
// clone_test.go fills every field reachable from State by reflection and
// fails when a copy still shares one with its original: a field added to
// any of these types needs a line here.
func (s *State) clone() State {
	c := *s
	c.History = cloneSlice(s.History, cloneRevision)
	c.PauseConditions = slices.Clone(s.PauseConditions)
	c.Pods = slices.Clone(s.Pods)
	c.Scale = clonePtrWith(s.Scale, cloneTask)
	c.Route = clonePtrWith(s.Route, cloneTask)
	c.Routing = clonePtrWith(s.Routing, cloneRoute)
	c.Runs = cloneSlice(s.Runs, cloneRun)
	c.Experiments = cloneSlice(s.Experiments, cloneExperiment)
	c.LastAnalysis = clonePtr(s.LastAnalysis)
	return c
}

func cloneRevision(r RevisionRecord) RevisionRecord {
	out := r
	r.Template.DeepCopyInto(&out.Template)
	return out
}

func cloneRun(r RunRecord) RunRecord {
	r.Summary = clonePtr(r.Summary)
	r.Measured = maps.Clone(r.Measured)
	r.Task = cloneTask(r.Task)
	r.Stop = clonePtrWith(r.Stop, cloneTask)
	return r
}

func cloneExperiment(e ExperimentRecord) ExperimentRecord {
	e.Templates = cloneSlice(e.Templates, func(t ExperimentTemplateRecord) ExperimentTemplateRecord {
		t.Metadata = clonePtrWith(t.Metadata, clonePodMetadata)
		t.Selector = t.Selector.DeepCopy()
		return t
	})
	return e
}

func cloneTask(t TaskRecord) TaskRecord {
	t.Scale = clonePtrWith(t.Scale, cloneScale)
	t.Route = clonePtrWith(t.Route, cloneRoute)
	t.Analysis = clonePtrWith(t.Analysis, cloneAnalysis)
	return t
}

// Tasks.

func cloneScale(s tasks.Scale) tasks.Scale {
	w := &s.Workload
	w.Selector = w.Selector.DeepCopy()
	w.Labels = maps.Clone(w.Labels)
	w.Annotations = maps.Clone(w.Annotations)
	w.AntiAffinity = clonePtrWith(w.AntiAffinity, cloneAntiAffinity)
	w.RevisionHistoryLimit = clonePtr(w.RevisionHistoryLimit)
	s.Revisions = cloneSlice(s.Revisions, cloneRevisionScale)
	return s
}

func cloneRevisionScale(r tasks.RevisionScale) tasks.RevisionScale {
	out := r
	r.Template.DeepCopyInto(&out.Template)
	out.Metadata = clonePtrWith(r.Metadata, clonePodMetadata)
	out.Experiment = clonePtrWith(r.Experiment, cloneExperimentPods)
	return out
}

func cloneExperimentPods(p tasks.ExperimentPods) tasks.ExperimentPods {
	p.Selector = p.Selector.DeepCopy()
	return p
}

func cloneRoute(r tasks.Route) tasks.Route {
	r.TrafficRouting = clonePtrWith(r.TrafficRouting, cloneTrafficRouting)
	r.HeaderRoutes = cloneSlice(r.HeaderRoutes, cloneHeaderRoute)
	r.MirrorRoutes = cloneSlice(r.MirrorRoutes, cloneMirrorRoute)
	r.Experiments = cloneSlice(r.Experiments, func(e tasks.ExperimentRoute) tasks.ExperimentRoute {
		e.Pods = cloneExperimentPods(e.Pods)
		return e
	})
	r.Annotations = maps.Clone(r.Annotations)
	return r
}

func cloneAnalysis(a tasks.Analysis) tasks.Analysis {
	a.Spec = clonePtrWith(a.Spec, cloneRolloutAnalysis)
	a.Args = cloneSlice(a.Args, cloneArgument)
	return a
}

// The parts of the spec that tasks carry.

func cloneAntiAffinity(a spec.AntiAffinity) spec.AntiAffinity {
	a.PreferredDuringSchedulingIgnoredDuringExecution = clonePtr(a.PreferredDuringSchedulingIgnoredDuringExecution)
	a.RequiredDuringSchedulingIgnoredDuringExecution = clonePtr(a.RequiredDuringSchedulingIgnoredDuringExecution)
	return a
}

func clonePodMetadata(m spec.PodTemplateMetadata) spec.PodTemplateMetadata {
	m.Labels = maps.Clone(m.Labels)
	m.Annotations = maps.Clone(m.Annotations)
	return m
}

func cloneTrafficRouting(t spec.TrafficRouting) spec.TrafficRouting {
	t.Istio = clonePtrWith(t.Istio, cloneIstio)
	t.Nginx = clonePtrWith(t.Nginx, cloneNginx)
	t.ALB = clonePtrWith(t.ALB, cloneALB)
	t.SMI = clonePtr(t.SMI)
	t.Ambassador = slices.Clone(t.Ambassador)
	t.AppMesh = slices.Clone(t.AppMesh)
	t.Traefik = slices.Clone(t.Traefik)
	t.Apisix = slices.Clone(t.Apisix)
	t.ManagedRoutes = slices.Clone(t.ManagedRoutes)
	if t.Plugins != nil {
		plugins := make(spec.RouterPlugins, len(t.Plugins))
		for name, config := range t.Plugins {
			plugins[name] = slices.Clone(config)
		}
		t.Plugins = plugins
	}
	t.MaxTrafficWeight = clonePtr(t.MaxTrafficWeight)
	t.UnknownRouters = slices.Clone(t.UnknownRouters)
	return t
}

func cloneIstio(i spec.IstioTrafficRouting) spec.IstioTrafficRouting {
	i.VirtualService = clonePtrWith(i.VirtualService, cloneVirtualService)
	i.VirtualServices = cloneSlice(i.VirtualServices, cloneVirtualService)
	i.DestinationRule = clonePtr(i.DestinationRule)
	return i
}

func cloneVirtualService(v spec.IstioVirtualService) spec.IstioVirtualService {
	v.Routes = slices.Clone(v.Routes)
	v.TLSRoutes = cloneSlice(v.TLSRoutes, func(r spec.TLSRoute) spec.TLSRoute {
		r.SNIHosts = slices.Clone(r.SNIHosts)
		return r
	})
	v.TCPRoutes = slices.Clone(v.TCPRoutes)
	return v
}

func cloneNginx(n spec.NginxTrafficRouting) spec.NginxTrafficRouting {
	n.StableIngresses = slices.Clone(n.StableIngresses)
	n.AdditionalIngressAnnotations = maps.Clone(n.AdditionalIngressAnnotations)
	n.CanaryIngressAnnotations = maps.Clone(n.CanaryIngressAnnotations)
	return n
}

func cloneALB(a spec.ALBTrafficRouting) spec.ALBTrafficRouting {
	a.Ingresses = slices.Clone(a.Ingresses)
	a.StickinessConfig = clonePtr(a.StickinessConfig)
	return a
}

func cloneHeaderRoute(h spec.SetHeaderRoute) spec.SetHeaderRoute {
	h.Match = cloneSlice(h.Match, func(m spec.HeaderRoutingMatch) spec.HeaderRoutingMatch {
		m.HeaderValue = clonePtr(m.HeaderValue)
		return m
	})
	return h
}

func cloneMirrorRoute(m spec.SetMirrorRoute) spec.SetMirrorRoute {
	m.Match = cloneSlice(m.Match, func(r spec.RouteMatch) spec.RouteMatch {
		r.Method = clonePtr(r.Method)
		r.Path = clonePtr(r.Path)
		r.Headers = maps.Clone(r.Headers)
		return r
	})
	m.Percentage = clonePtr(m.Percentage)
	return m
}

func cloneRolloutAnalysis(a spec.RolloutAnalysis) spec.RolloutAnalysis {
	a.Templates = slices.Clone(a.Templates)
	a.Args = cloneSlice(a.Args, cloneArgument)
	a.DryRun = slices.Clone(a.DryRun)
	a.MeasurementRetention = slices.Clone(a.MeasurementRetention)
	a.AnalysisRunMetadata.Labels = maps.Clone(a.AnalysisRunMetadata.Labels)
	a.AnalysisRunMetadata.Annotations = maps.Clone(a.AnalysisRunMetadata.Annotations)
	return a
}

func cloneArgument(a spec.AnalysisRunArgument) spec.AnalysisRunArgument {
	a.ValueFrom = clonePtrWith(a.ValueFrom, func(v spec.ArgumentValueFrom) spec.ArgumentValueFrom {
		v.PodTemplateHashValue = clonePtr(v.PodTemplateHashValue)
		v.FieldRef = clonePtr(v.FieldRef)
		return v
	})
	return a
}

// Generic helpers.

// clonePtr copies *p, a value that holds no pointer, slice or map.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// clonePtrWith copies *p with clone.
func clonePtrWith[T any](p *T, clone func(T) T) *T {
	if p == nil {
		return nil
	}
	v := clone(*p)
	return &v
}

// cloneSlice copies xs, each element with clone.
func cloneSlice[T any](xs []T, clone func(T) T) []T {
	if xs == nil {
		return nil
	}
	out := make([]T, len(xs))
	for i, x := range xs {
		out[i] = clone(x)
	}
	return out
}
