package spec

import "k8s.io/apimachinery/pkg/util/intstr"

// Defaults, all Argo Rollouts' own except DefaultNamespace, which is what
// kubectl uses when neither the manifest nor the command names one.
const (
	DefaultNamespace                         = "default"
	DefaultReplicas                    int32 = 1
	DefaultRevisionHistoryLimit        int32 = 10
	DefaultProgressDeadlineSeconds     int32 = 600
	DefaultSuccessfulRunHistoryLimit   int32 = 5
	DefaultUnsuccessfulRunHistoryLimit int32 = 5
	DefaultMaxSurge                          = "25%"
	DefaultMaxUnavailable                    = "25%"
	DefaultScaleDownDelaySeconds       int32 = 30
	DefaultAbortScaleDownDelaySeconds  int32 = 30
	DefaultAutoPromotionEnabled              = true
	DefaultMaxTrafficWeight            int32 = 100
	DefaultConsecutiveErrorLimit       int32 = 4
	DefaultWebMetricMethod                   = WebMetricMethodGet
	DefaultWebMetricTimeoutSeconds     int64 = 10
	DefaultWebMetricJSONPath                 = "{$}"
)

// SetDefaults fills the fields r leaves unset:
//
//	metadata.namespace                      "default"
//	spec.replicas                           1
//	spec.revisionHistoryLimit               10
//	spec.progressDeadlineSeconds            600
//	spec.analysis.successfulRunHistoryLimit 5, unsuccessfulRunHistoryLimit 5
//	canary.maxSurge, canary.maxUnavailable  "25%"
//	canary.scaleDownDelaySeconds            30, with trafficRouting and without dynamicStableScale
//	canary.abortScaleDownDelaySeconds       30, with trafficRouting
//	blueGreen.autoPromotionEnabled          true
//	blueGreen.maxUnavailable                "25%"
//	blueGreen.scaleDownDelaySeconds         30
//	blueGreen.abortScaleDownDelaySeconds    30
//
// Fields set explicitly, to zero or false included, are kept. Defaults that
// depend on other fields (the pause of a step without a duration, the
// effective count of a metric) are not written: they are properties of the
// reading code, documented on the fields. maxTrafficWeight stays unset
// because Argo forbids it with most routers; TrafficRouting.MaxWeight
// returns its default.
func (r *Rollout) SetDefaults() {
	if r.Namespace == "" {
		r.Namespace = DefaultNamespace
	}
	s := &r.Spec
	setInt32(&s.Replicas, DefaultReplicas)
	setInt32(&s.RevisionHistoryLimit, DefaultRevisionHistoryLimit)
	setInt32(&s.ProgressDeadlineSeconds, DefaultProgressDeadlineSeconds)
	if s.Analysis == nil {
		s.Analysis = &AnalysisRunStrategy{}
	}
	setInt32(&s.Analysis.SuccessfulRunHistoryLimit, DefaultSuccessfulRunHistoryLimit)
	setInt32(&s.Analysis.UnsuccessfulRunHistoryLimit, DefaultUnsuccessfulRunHistoryLimit)

	if c := s.Strategy.Canary; c != nil {
		setIntOrString(&c.MaxSurge, DefaultMaxSurge)
		setIntOrString(&c.MaxUnavailable, DefaultMaxUnavailable)
		// Without traffic routing Argo ignores both delays and rejects them
		// when set, and it rejects scaleDownDelaySeconds next to
		// dynamicStableScale; defaulting them there would make a valid
		// rollout invalid.
		if c.TrafficRouting != nil {
			if !c.DynamicStableScale {
				setInt32(&c.ScaleDownDelaySeconds, DefaultScaleDownDelaySeconds)
			}
			setInt32(&c.AbortScaleDownDelaySeconds, DefaultAbortScaleDownDelaySeconds)
		}
	}
	if b := s.Strategy.BlueGreen; b != nil {
		if b.AutoPromotionEnabled == nil {
			v := DefaultAutoPromotionEnabled
			b.AutoPromotionEnabled = &v
		}
		setIntOrString(&b.MaxUnavailable, DefaultMaxUnavailable)
		setInt32(&b.ScaleDownDelaySeconds, DefaultScaleDownDelaySeconds)
		setInt32(&b.AbortScaleDownDelaySeconds, DefaultAbortScaleDownDelaySeconds)
	}
}

// SetDefaults sets metadata.namespace to "default" when empty and fills
// each metric's defaults (see Metric.SetDefaults).
func (t *AnalysisTemplate) SetDefaults() {
	if t.Namespace == "" {
		t.Namespace = DefaultNamespace
	}
	setMetricDefaults(t.Spec.Metrics)
}

// SetDefaults fills each metric's defaults (see Metric.SetDefaults). The
// namespace is left alone: the kind is cluster-scoped.
func (t *ClusterAnalysisTemplate) SetDefaults() {
	setMetricDefaults(t.Spec.Metrics)
}

// SetDefaults sets metadata.namespace to "default" when empty and fills
// each metric's defaults (see Metric.SetDefaults).
func (r *AnalysisRun) SetDefaults() {
	if r.Namespace == "" {
		r.Namespace = DefaultNamespace
	}
	setMetricDefaults(r.Spec.Metrics)
}

// SetDefaults sets metadata.namespace to "default" when empty and fills
// Argo's defaults: replicas 1 per template, progressDeadlineSeconds 600,
// scaleDownDelaySeconds 30.
func (e *Experiment) SetDefaults() {
	if e.Namespace == "" {
		e.Namespace = DefaultNamespace
	}
	s := &e.Spec
	for i := range s.Templates {
		setInt32(&s.Templates[i].Replicas, DefaultReplicas)
	}
	setInt32(&s.ProgressDeadlineSeconds, DefaultExperimentProgressDeadlineSeconds)
	setInt32(&s.ScaleDownDelaySeconds, DefaultExperimentScaleDownDelaySeconds)
}

// SetDefaults fills the fields m leaves unset: consecutiveErrorLimit 4 and,
// for a web provider, method GET, timeoutSeconds 10 and jsonPath "{$}".
// failureLimit, inconclusiveLimit and consecutiveSuccessLimit stay unset,
// which means 0; count stays unset because its default depends on interval.
func (m *Metric) SetDefaults() {
	if m.ConsecutiveErrorLimit == nil {
		v := intstr.FromInt32(DefaultConsecutiveErrorLimit)
		m.ConsecutiveErrorLimit = &v
	}
	if w := m.Provider.Web; w != nil {
		if w.Method == "" {
			w.Method = DefaultWebMetricMethod
		}
		if w.TimeoutSeconds == 0 {
			w.TimeoutSeconds = DefaultWebMetricTimeoutSeconds
		}
		if w.JSONPath == "" {
			w.JSONPath = DefaultWebMetricJSONPath
		}
	}
}

func setMetricDefaults(metrics []Metric) {
	for i := range metrics {
		metrics[i].SetDefaults()
	}
}

func setInt32(p **int32, v int32) {
	if *p == nil {
		*p = &v
	}
}

func setIntOrString(p **intstr.IntOrString, v string) {
	if *p == nil {
		s := intstr.FromString(v)
		*p = &s
	}
}
