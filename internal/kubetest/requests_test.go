package kubetest

import (
	"net/url"
	"strings"
	"testing"
)

func TestRequestOf(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         Request
	}{
		{"GET", "/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts/web", Request{"GET", "rollouts", ""}},
		{"GET", "/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts", Request{"LIST", "rollouts", ""}},
		{"GET", "/apis/apps/v1/namespaces/ns/replicasets?labelSelector=x&watch=true", Request{"WATCH", "replicasets", ""}},
		{"PUT", "/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts/web/status", Request{"UPDATE", "rollouts", "status"}},
		{"PATCH", "/api/v1/namespaces/ns/services/web-stable", Request{"PATCH", "services", ""}},
		{"POST", "/api/v1/namespaces/ns/pods", Request{"CREATE", "pods", ""}},
		{"DELETE", "/apis/apps/v1/namespaces/ns/replicasets/web-abc", Request{"DELETE", "replicasets", ""}},
		{"GET", "/api/v1/namespaces/ns", Request{"GET", "namespaces", ""}},
		{"GET", "/api/v1/nodes", Request{"LIST", "nodes", ""}},
	} {
		u, err := url.Parse(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := requestOf(tc.method, u); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestParseAuditAndMetrics(t *testing.T) {
	log := `{"verb":"update","userAgent":"sluice-bench","objectRef":{"resource":"rollouts","subresource":"status"},"requestURI":"/x"}
{"verb":"watch","userAgent":"rollouts-controller/v0.0.0 (linux/amd64) kubernetes/$Format","objectRef":{"resource":"pods"},"requestURI":"/api/v1/pods?watch=true"}
{"verb":"update","userAgent":"sluice-bench","objectRef":{"resource":"rollouts","subresource":"status"},"requestURI":"/x"}
{"verb":"get","userAgent":"sluice-bench","objectRef":{"reso`
	got, err := parseAudit(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if n := got["sluice-bench"][Request{"UPDATE", "rollouts", "status"}]; n != 2 || got["sluice-bench"].Total() != 2 {
		t.Errorf("sluice-bench: %v, want 2 status updates and nothing for the torn last line", got["sluice-bench"])
	}
	if n := got["rollouts-controller"][Request{"WATCH", "pods", ""}]; n != 1 {
		t.Errorf("rollouts-controller: %v, want one watch of pods", got["rollouts-controller"])
	}

	metrics := `# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps",resource="replicasets",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_total{code="404",component="apiserver",dry_run="",group="apps",resource="replicasets",scope="resource",subresource="",verb="GET",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="argoproj.io",resource="rollouts",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
`
	rs, err := parseRequestTotal([]byte(metrics))
	if err != nil {
		t.Fatal(err)
	}
	before := Requests{{"GET", "replicasets", ""}: 4}
	if d := rs.Sub(before); d[Request{"GET", "replicasets", ""}] != 5 || d[Request{"PATCH", "rollouts", "status"}] != 3 || d.Total() != 8 {
		t.Errorf("delta %v, want GET replicasets 5 (both codes), PATCH rollouts/status 3", d)
	}
}
