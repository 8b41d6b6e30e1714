package e2e

import (
	"fmt"
	"strings"
)

// rollout renders a demoapp Rollout listening on listen, with the given
// version, error rate and canary strategy body (indented under canary:).
func rollout(name, listen, version string, errorRate float64, replicas int, canary string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: %[1]s
  annotations:
    local.sluice.io/listen: %[2]s
spec:
  replicas: %[5]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
%[7]s
  strategy:
    canary:
%[6]s
`, name, listen, version, errorRate, replicas, indent(canary, "      "),
		indent(demoappContainers(fmt.Sprintf("{name: VERSION, value: %s}", version), fmt.Sprintf(`{name: ERROR_RATE, value: "%g"}`, errorRate)), "      "))
}

// demoappContainers is the containers field of a demoapp pod with env
// (one entry each, as YAML), ready through its /healthz.
func demoappContainers(env ...string) string {
	return `containers:
- name: app
  image: demoapp
  command: ["bin/demoapp"]
  env:
` + indent("- "+strings.Join(env, "\n- "), "  ") + `
  ports:
  - {name: http, containerPort: 8080}
  readinessProbe:
    httpGet: {path: /healthz, port: http}
    periodSeconds: 1`
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// routed is a canary with weighted routing (Istio's block; the local proxy
// plays the router).
func routed(steps string) string {
	return `canaryService: canary
stableService: stable
trafficRouting:
  istio:
    virtualService: {name: vs, routes: [primary]}
steps:
` + steps
}
