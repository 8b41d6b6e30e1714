package spec

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// rolloutWith is a valid canary Rollout with extra YAML appended under
// spec.strategy.canary, indented to fit.
func rolloutWith(canary string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
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
    canary:`)
	if canary == "" {
		b.WriteString(" {}\n")
		return b.String()
	}
	b.WriteString("\n")
	for _, line := range strings.Split(strings.Trim(canary, "\n"), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return b.String()
}

func TestDecodeUnknownFieldWarnings(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "known fields only",
			yaml: rolloutWith("steps:\n- setWeight: 10"),
		},
		{
			name: "misspelt field with a suggestion",
			yaml: rolloutWith("stepz:\n- setWeight: 10"),
			want: []string{`spec.strategy.canary.stepz: unknown field (did you mean "steps"?)`},
		},
		{
			name: "field in a list element",
			yaml: rolloutWith("steps:\n- setWeight: 10\n- setWeigth: 20"),
			want: []string{`spec.strategy.canary.steps[1].setWeigth: unknown field (did you mean "setWeight"?)`},
		},
		{
			name: "field in a map value",
			yaml: rolloutWith("steps:\n- setMirrorRoute:\n    name: m\n    match:\n    - headers:\n        x-a: {exactly: b}"),
			want: []string{`spec.strategy.canary.steps[0].setMirrorRoute.match[0].headers[x-a].exactly: unknown field (did you mean "exact"?)`},
		},
		{
			name: "unrelated name gets no suggestion",
			yaml: rolloutWith("colour: blue"),
			want: []string{"spec.strategy.canary.colour: unknown field"},
		},
		{
			name: "field inside the Gateway API plugin configuration",
			yaml: rolloutWith("trafficRouting:\n  plugins:\n    argoproj-labs/gatewayAPI:\n      httpRoutez: web"),
			want: []string{`spec.strategy.canary.trafficRouting.plugins[argoproj-labs/gatewayAPI].httpRoutez: unknown field (did you mean "httpRoute"?)`},
		},
		{
			name: "unknown router is left to Validate, not warned twice",
			yaml: rolloutWith("trafficRouting:\n  linkerd: {}"),
		},
		{
			name: "raw configurations and status are not looked into",
			yaml: rolloutWith("steps:\n- plugin: {name: x/y, config: {anything: 1}}") + "status:\n  whatever: 1\n",
		},
		{
			name: "experiment step field",
			yaml: rolloutWith("steps:\n- experiment: {templates: [{name: b, specRef: stable, replica: 1}]}"),
			want: []string{`spec.strategy.canary.steps[0].experiment.templates[0].replica: unknown field (did you mean "replicas"?)`},
		},
		{
			name: "field of a Kubernetes type in the pod template",
			yaml: strings.Replace(rolloutWith(""), "      - name: web\n", "      - name: web\n        imagez: web:1\n", 1),
			want: []string{`spec.template.spec.containers[0].imagez: unknown field (did you mean "image"?)`},
		},
		{
			name: "keys are case-sensitive",
			yaml: strings.Replace(rolloutWith(""), "spec:\n", "spec:\n  Replicas: 3\n", 1),
			want: []string{`spec.Replicas: unknown field (did you mean "replicas"?)`},
		},
		{
			name: "analysis template provider field",
			yaml: `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
  - name: m
    provider:
      prometheus: {address: "http://p:9090", querry: up}
      kayenta: {notChecked: true}
`,
			want: []string{`spec.metrics[0].provider.prometheus.querry: unknown field (did you mean "query"?)`},
		},
		{
			name: "warnings are ordered by path",
			yaml: rolloutWith("zzz: 1\naaa: 2"),
			want: []string{"spec.strategy.canary.aaa: unknown field", "spec.strategy.canary.zzz: unknown field"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Decode([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) != 1 {
				t.Fatalf("got %d documents, want 1", len(docs))
			}
			var got []string
			for _, w := range docs[0].Warnings {
				got = append(got, w.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDecodeCaseSensitive(t *testing.T) {
	docs, err := Decode([]byte(strings.Replace(rolloutWith(""), "spec:\n", "spec:\n  Replicas: 3\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	// The warning says the key is ignored; it must really be ignored.
	if r := docs[0].Object.(*Rollout); r.Spec.Replicas != nil {
		t.Errorf("Replicas (wrong case) set spec.replicas to %d", *r.Spec.Replicas)
	}
}

func TestDecodeStream(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		wantKinds []string
		wantNums  []int
		wantErrs  []string // DocumentError messages, in order
	}{
		{
			name:      "empty documents and comments are skipped and not counted",
			input:     "---\n# only a comment\n---\n" + rolloutWith("") + "---\n\n---\napiVersion: argoproj.io/v1alpha1\nkind: ClusterAnalysisTemplate\nmetadata: {name: c}\nspec: {metrics: []}\n",
			wantKinds: []string{KindRollout, KindClusterAnalysisTemplate},
			wantNums:  []int{1, 2},
		},
		{
			name:      "an unsupported kind does not stop the documents after it",
			input:     rolloutWith("") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n" + rolloutWith(""),
			wantKinds: []string{KindRollout, KindRollout},
			wantNums:  []int{1, 3},
			wantErrs:  []string{`document 2: unsupported apiVersion/kind: kind "Service" of apiVersion "v1"; Sluice reads Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment of argoproj.io/v1alpha1`},
		},
		{
			name:      "missing kind",
			input:     "apiVersion: argoproj.io/v1alpha1\nmetadata: {name: x}\n",
			wantErrs:  []string{`document 1: unsupported apiVersion/kind: kind is missing (apiVersion "argoproj.io/v1alpha1"); Sluice reads Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment of argoproj.io/v1alpha1`},
			wantKinds: nil,
		},
		{
			name:      "YAML syntax error in one document",
			input:     "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\n  metadata: [\n---\n" + rolloutWith(""),
			wantKinds: []string{KindRollout},
			wantNums:  []int{2},
			wantErrs:  []string{"document 1: malformed: yaml: line 3: mapping values are not allowed in this context"},
		},
		{
			name:      "JSON stream",
			input:     `{"apiVersion":"argoproj.io/v1alpha1","kind":"AnalysisRun","metadata":{"name":"a"},"spec":{"metrics":[]}}` + "\n" + `{"apiVersion":"argoproj.io/v1alpha1","kind":"AnalysisTemplate","metadata":{"name":"t"},"spec":{"metrics":[]}}`,
			wantKinds: []string{KindAnalysisRun, KindAnalysisTemplate},
			wantNums:  []int{1, 2},
		},
		{
			name:      "JSON syntax error stops the stream",
			input:     `{"apiVersion":"argoproj.io/v1alpha1","kind":"AnalysisRun","metadata":{"name":"a"},"spec":{"metrics":[]}} {"kind": oops} {"kind":"Rollout"}`,
			wantKinds: []string{KindAnalysisRun},
			wantNums:  []int{1},
			wantErrs:  []string{"document 2: malformed: invalid character 'o' looking for beginning of value"},
		},
		{
			name:     "wrong type names the field",
			input:    strings.Replace(rolloutWith(""), "spec:\n", "spec:\n  paused: \"yes\"\n", 1),
			wantErrs: []string{"document 1: malformed: spec.paused: got string, want boolean"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Decode([]byte(tt.input))
			var kinds []string
			var nums []int
			for _, d := range docs {
				kinds = append(kinds, d.Object.GroupVersionKind().Kind)
				nums = append(nums, d.Number)
			}
			if !reflect.DeepEqual(kinds, tt.wantKinds) || !reflect.DeepEqual(nums, tt.wantNums) {
				t.Errorf("documents: got kinds %v numbers %v, want %v %v", kinds, nums, tt.wantKinds, tt.wantNums)
			}
			var gotErrs []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					gotErrs = append(gotErrs, e.Error())
				}
			}
			if !reflect.DeepEqual(gotErrs, tt.wantErrs) {
				t.Errorf("errors:\n got %q\nwant %q", gotErrs, tt.wantErrs)
			}
		})
	}
}

func TestDocumentError(t *testing.T) {
	_, err := Decode([]byte("apiVersion: apps/v1\nkind: Deployment\n---\nkind: Rollout\napiVersion: argoproj.io/v1alpha1\nspec: {replicas: many}\n"))
	var de *DocumentError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DocumentError", err)
	}
	if de.Number != 1 || de.Kind != "Deployment" || de.APIVersion != "apps/v1" || !errors.Is(de, ErrUnsupportedKind) {
		t.Errorf("got %+v, want document 1, apps/v1 Deployment, ErrUnsupportedKind", de)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("error %v does not report the malformed second document", err)
	}
}

func TestDecodeJSONEqualsYAML(t *testing.T) {
	yamlDoc := `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web-json
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ghcr.io/example/web:1.2.0
  strategy:
    canary:
      steps:
      - setWeight: 50
      - pause: {duration: 30s}
`
	jsonData, err := os.ReadFile("testdata/valid-json-stream.json")
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := Decode(jsonData)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := Decode([]byte(yamlDoc))
	if err != nil {
		t.Fatal(err)
	}
	if len(fromJSON) != 2 {
		t.Fatalf("JSON stream: got %d documents, want 2", len(fromJSON))
	}
	if !reflect.DeepEqual(fromJSON[0].Object, fromYAML[0].Object) {
		t.Errorf("JSON and YAML decode differently:\nJSON %+v\nYAML %+v", fromJSON[0].Object, fromYAML[0].Object)
	}
	if _, ok := fromJSON[1].Object.(*AnalysisTemplate); !ok {
		t.Errorf("second JSON document is a %T, want *AnalysisTemplate", fromJSON[1].Object)
	}
}

func TestGatewayAPI(t *testing.T) {
	docs, err := Decode([]byte(rolloutWith(`trafficRouting:
  plugins:
    argoproj-labs/gatewayAPI:
      httpRoutes:
      - name: web
        useHeaderRoutes: true
      namespace: edge`)))
	if err != nil {
		t.Fatal(err)
	}
	tr := docs[0].Object.(*Rollout).Spec.Strategy.Canary.TrafficRouting
	gw, err := tr.GatewayAPI()
	if err != nil {
		t.Fatal(err)
	}
	want := &GatewayAPITrafficRouting{HTTPRoutes: []GatewayAPIHTTPRoute{{Name: "web", UseHeaderRoutes: true}}, Namespace: "edge"}
	if !reflect.DeepEqual(gw, want) {
		t.Errorf("GatewayAPI() = %+v, want %+v", gw, want)
	}
	if gw, err := (&TrafficRouting{}).GatewayAPI(); gw != nil || err != nil {
		t.Errorf("GatewayAPI() without the plugin = %v, %v; want nil, nil", gw, err)
	}
}
