package spec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// defaulted decodes one document, applies SetDefaults and returns it as
// generic JSON, so that tests can name fields by their manifest paths.
func defaulted(t *testing.T, manifest string) map[string]any {
	t.Helper()
	docs, err := Decode([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	docs[0].Object.SetDefaults()
	data, err := json.Marshal(docs[0].Object)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// at returns the value at a dotted path ("spec.strategy.canary.maxSurge";
// "metrics.0.name" indexes lists), or nil when there is none.
func at(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			var i int
			if err := json.Unmarshal([]byte(k), &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func TestSetDefaults(t *testing.T) {
	const absent = "<absent>"
	tests := []struct {
		name     string
		manifest string
		want     map[string]any // path -> value after SetDefaults; absent: not set
	}{
		{
			name:     "canary without traffic routing",
			manifest: rolloutWith("steps: [{setWeight: 10}]"),
			want: map[string]any{
				"metadata.namespace":                                   "default",
				"spec.replicas":                                        1.0,
				"spec.revisionHistoryLimit":                            10.0,
				"spec.progressDeadlineSeconds":                         600.0,
				"spec.analysis.successfulRunHistoryLimit":              5.0,
				"spec.analysis.unsuccessfulRunHistoryLimit":            5.0,
				"spec.strategy.canary.maxSurge":                        "25%",
				"spec.strategy.canary.maxUnavailable":                  "25%",
				"spec.strategy.canary.scaleDownDelaySeconds":           absent,
				"spec.strategy.canary.abortScaleDownDelaySeconds":      absent,
				"spec.strategy.canary.trafficRouting.maxTrafficWeight": absent,
			},
		},
		{
			name:     "canary with traffic routing gets its delays",
			manifest: rolloutWith("trafficRouting: {smi: {}}"),
			want: map[string]any{
				"spec.strategy.canary.scaleDownDelaySeconds":      30.0,
				"spec.strategy.canary.abortScaleDownDelaySeconds": 30.0,
			},
		},
		{
			name:     "dynamicStableScale excludes the scale-down delay",
			manifest: rolloutWith("trafficRouting: {smi: {}}\ndynamicStableScale: true"),
			want: map[string]any{
				"spec.strategy.canary.scaleDownDelaySeconds":      absent,
				"spec.strategy.canary.abortScaleDownDelaySeconds": 30.0,
			},
		},
		{
			name: "explicit zeros are kept",
			manifest: strings.Replace(rolloutWith("trafficRouting: {smi: {}}\nmaxSurge: 0\nmaxUnavailable: 10%\nscaleDownDelaySeconds: 0\nabortScaleDownDelaySeconds: 0"),
				"spec:\n", "spec:\n  replicas: 0\n  revisionHistoryLimit: 0\n  progressDeadlineSeconds: 60\n", 1),
			want: map[string]any{
				"spec.replicas":                                   0.0,
				"spec.revisionHistoryLimit":                       0.0,
				"spec.progressDeadlineSeconds":                    60.0,
				"spec.strategy.canary.maxSurge":                   0.0,
				"spec.strategy.canary.maxUnavailable":             "10%",
				"spec.strategy.canary.scaleDownDelaySeconds":      0.0,
				"spec.strategy.canary.abortScaleDownDelaySeconds": 0.0,
			},
		},
		{
			name:     "blue/green",
			manifest: blueGreenWith("activeService: a"),
			want: map[string]any{
				"metadata.namespace":                                  "shop",
				"spec.strategy.blueGreen.autoPromotionEnabled":        true,
				"spec.strategy.blueGreen.maxUnavailable":              "25%",
				"spec.strategy.blueGreen.scaleDownDelaySeconds":       30.0,
				"spec.strategy.blueGreen.abortScaleDownDelaySeconds":  30.0,
				"spec.strategy.blueGreen.previewReplicaCount":         absent,
				"spec.strategy.blueGreen.scaleDownDelayRevisionLimit": absent,
			},
		},
		{
			name:     "blue/green explicit values are kept",
			manifest: blueGreenWith("activeService: a\nautoPromotionEnabled: false\nmaxUnavailable: 1\nscaleDownDelaySeconds: 0\nabortScaleDownDelaySeconds: 0"),
			want: map[string]any{
				"spec.strategy.blueGreen.autoPromotionEnabled":       false,
				"spec.strategy.blueGreen.maxUnavailable":             1.0,
				"spec.strategy.blueGreen.scaleDownDelaySeconds":      0.0,
				"spec.strategy.blueGreen.abortScaleDownDelaySeconds": 0.0,
			},
		},
		{
			name: "metrics",
			manifest: `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
  - name: unset
    interval: 1m
    provider:
      web: {url: "http://w"}
  - name: explicit
    consecutiveErrorLimit: 0
    provider:
      web: {url: "http://w", method: POST, timeoutSeconds: 3, jsonPath: "{$.ok}"}
  - name: prometheus
    provider:
      prometheus: {address: "http://p", query: up}
`,
			want: map[string]any{
				"metadata.namespace":                         "default",
				"spec.metrics.0.consecutiveErrorLimit":       4.0,
				"spec.metrics.0.count":                       absent,
				"spec.metrics.0.failureLimit":                absent,
				"spec.metrics.0.provider.web.method":         "GET",
				"spec.metrics.0.provider.web.timeoutSeconds": 10.0,
				"spec.metrics.0.provider.web.jsonPath":       "{$}",
				"spec.metrics.1.consecutiveErrorLimit":       0.0,
				"spec.metrics.1.provider.web.method":         "POST",
				"spec.metrics.1.provider.web.timeoutSeconds": 3.0,
				"spec.metrics.1.provider.web.jsonPath":       "{$.ok}",
				"spec.metrics.2.consecutiveErrorLimit":       4.0,
				"spec.metrics.2.provider.prometheus.timeout": absent,
			},
		},
		{
			name:     "cluster-scoped template keeps an empty namespace",
			manifest: "apiVersion: argoproj.io/v1alpha1\nkind: ClusterAnalysisTemplate\nmetadata: {name: c}\nspec:\n  metrics: [{name: m, provider: {web: {url: 'http://w'}}}]\n",
			want: map[string]any{
				"metadata.namespace":                   absent,
				"spec.metrics.0.consecutiveErrorLimit": 4.0,
			},
		},
		{
			name:     "analysis run",
			manifest: "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisRun\nmetadata: {name: r}\nspec:\n  metrics: [{name: m, provider: {web: {url: 'http://w'}}}]\n",
			want: map[string]any{
				"metadata.namespace":                   "default",
				"spec.metrics.0.consecutiveErrorLimit": 4.0,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := defaulted(t, tt.manifest)
			for path, want := range tt.want {
				got := at(m, path)
				if want == absent {
					if got != nil {
						t.Errorf("%s = %v, want it unset", path, got)
					}
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
		})
	}
}

func TestSetDefaultsIsIdempotent(t *testing.T) {
	once := defaulted(t, rolloutWith("trafficRouting: {smi: {}}"))
	docs, err := Decode([]byte(rolloutWith("trafficRouting: {smi: {}}")))
	if err != nil {
		t.Fatal(err)
	}
	docs[0].Object.SetDefaults()
	docs[0].Object.SetDefaults()
	data, _ := json.Marshal(docs[0].Object)
	var twice map[string]any
	if err := json.Unmarshal(data, &twice); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(once, twice) {
		t.Errorf("SetDefaults twice differs from once:\n%v\n%v", once, twice)
	}
}

func blueGreenWith(blueGreen string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
  strategy:
    blueGreen:
`)
	for _, line := range strings.Split(blueGreen, "\n") {
		b.WriteString("      " + line + "\n")
	}
	return b.String()
}
