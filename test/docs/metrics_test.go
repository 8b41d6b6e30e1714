package docs

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/telemetry"
)

// describer is a Registerer that keeps the names of the metrics
// registered on it.
type describer struct{ names []string }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names = append(d.names, m[1])
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return false }

// documentedMetrics returns the metric names of operations.md's metrics
// table and its alert rules, from the yaml block holding "groups:".
func documentedMetrics(t *testing.T) (table []string, rules string) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(sluice_[a-z_]+)` \\|")
	inRules := false
	var r strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			table = append(table, m[1])
		}
		switch {
		case line == "groups:":
			inRules = true
		case inRules && strings.HasPrefix(line, "```"):
			inRules = false
		}
		if inRules {
			r.WriteString(line + "\n")
		}
	}
	return table, r.String()
}

// Every metric the services register is in docs/operations.md's table.
func TestEveryMetricIsDocumented(t *testing.T) {
	d := &describer{}
	if _, err := telemetry.New(d); err != nil {
		t.Fatal(err)
	}
	table, _ := documentedMetrics(t)
	if len(d.names) < 10 {
		t.Fatalf("only %d metrics described by telemetry.New: %v", len(d.names), d.names)
	}
	for _, name := range d.names {
		if !slices.Contains(table, name) {
			t.Errorf("metric %s is registered by the services but not in docs/operations.md's metrics table", name)
		}
	}
}

// docs/operations.md's alert rules are valid PromQL over metrics that
// exist: an operator pastes them as they are.
func TestAlertRulesSelectDocumentedMetrics(t *testing.T) {
	table, rules := documentedMetrics(t)
	var doc struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict([]byte(rules), &doc); err != nil {
		t.Fatalf("alert rules in docs/operations.md: %v\n%s", err, rules)
	}
	n := 0
	for _, g := range doc.Groups {
		for _, rule := range g.Rules {
			n++
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(rule.Expr)
			if err != nil {
				t.Errorf("alert %s: expr %q: %v", rule.Alert, rule.Expr, err)
				continue
			}
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok && strings.HasPrefix(vs.Name, "sluice_") && !slices.Contains(table, vs.Name) {
					t.Errorf("alert %s selects %s, which docs/operations.md's metrics table does not list", rule.Alert, vs.Name)
				}
				return nil
			})
		}
	}
	if n < 5 {
		t.Errorf("found %d alert rules in docs/operations.md; the yaml block starting with groups: was not read", n)
	}
}
