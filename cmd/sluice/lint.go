package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
	"github.com/sluicehq/sluice/services/replicas/local"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

// Platforms --platform accepts.
const (
	platformAny   = ""
	platformLocal = "local"
	platformKube  = "kube"
)

func newLintCmd(conn *events.ConnConfig) *cobra.Command {
	var files []string
	var strict, remote bool
	var platform, ns string
	cmd := &cobra.Command{
		Use:   "lint -f FILE [-f FILE...]",
		Short: "Check Rollout, Experiment and AnalysisTemplate manifests",
		Long: `Check Rollout, Experiment, AnalysisTemplate and ClusterAnalysisTemplate
manifests (argoproj.io/v1alpha1, multi-document YAML or JSON) as Sluice
would on apply. Prints every problem, as FILE: OBJECT: FIELD: DETAIL, and
exits 1, or prints "valid".

Every -f is read: a file, a directory (its *.yaml, *.yml and *.json files),
or "-" for standard input. Besides each object's own validation, lint
checks:
  - templates as the analyzer does when they are applied: conditions
    (successCondition, failureCondition) compile, limits are possible,
    a provider can measure every metric;
  - template references (templateName in steps, background and blue/green
    analyses, and an Experiment's analyses) name a template in the files
    given or, with --remote or an explicit --nats-url, one already applied
    on the bus;
  - with --platform local, what the local platform needs: a container
    command it can find (for every template of an Experiment), and for a
    Rollout the annotation local.sluice.io/listen and a listen address
    free on this machine.
Unknown fields are warnings (errors with --strict); a known field at the
wrong level says where it belongs. A success-rate query that returns no
data when every request fails gets a warning.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageError{errors.New("-f FILE is required")}
			}
			if err := checkPlatform(platform); err != nil {
				return err
			}
			srcs, err := readSources(cmd.InOrStdin(), files)
			if err != nil {
				return err
			}
			cfg := lintConfig{Strict: strict, Platform: platform, Namespace: ns}
			if remote || cmd.Flags().Changed("nats-url") {
				client, err := connect(cmd.Context(), *conn)
				if err != nil {
					return err
				}
				defer client.Close()
				if cfg.Applied, err = appliedTemplates(cmd.Context(), client); err != nil {
					return err
				}
			}
			report, err := lintManifests(cmd.Context(), srcs, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), report.String())
			if !report.Valid() {
				return errSilentFailure
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory, or - for standard input; repeatable")
	cmd.Flags().BoolVar(&strict, "strict", false, "unknown fields are errors, not warnings")
	cmd.Flags().StringVar(&platform, "platform", platformAny, "also check what this platform needs: local (kube adds no checks)")
	cmd.Flags().BoolVar(&remote, "remote", false, "resolve template references against the templates applied on the bus too (implied by --nats-url)")
	cmd.Flags().StringVarP(&ns, "namespace", "n", spec.DefaultNamespace, "namespace for manifests that name none")
	return cmd
}

func checkPlatform(p string) error {
	switch p {
	case platformAny, platformLocal, platformKube:
		return nil
	}
	return usageError{fmt.Errorf("--platform %q: want %s or %s", p, platformLocal, platformKube)}
}

// readSources reads every file; a directory stands for its manifest files
// and "-" for stdin.
func readSources(stdin io.Reader, files []string) ([]spec.Source, error) {
	var srcs []spec.Source
	for _, f := range files {
		if f == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			srcs = append(srcs, spec.Source{Name: f, Data: data})
			continue
		}
		names := []string{f}
		if fi, err := os.Stat(f); err == nil && fi.IsDir() {
			entries, err := os.ReadDir(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			names = names[:0]
			for _, e := range entries {
				if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					names = append(names, filepath.Join(f, e.Name()))
				}
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", f)
			}
		}
		for _, name := range names {
			data, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			srcs = append(srcs, spec.Source{Name: name, Data: data})
		}
	}
	return srcs, nil
}

// lintConfig is what lintManifests checks beyond each object's validation.
type lintConfig struct {
	Strict bool
	// Platform is platformLocal to check what the local platform needs.
	Platform string
	// Namespace is the namespace of manifests that name none.
	Namespace string
	// Applied finds templates applied on the bus; nil resolves template
	// references against the files only.
	Applied templateLookup
	// SkipReferences leaves template references unchecked (apply: the
	// operator identity cannot read the templates bucket, and a template
	// may be applied after its rollout).
	SkipReferences bool
}

// templateLookup reports whether a rollout in namespace finds the template
// ref names on the bus.
type templateLookup func(ctx context.Context, namespace string, ref spec.AnalysisTemplateRef) (bool, error)

// appliedTemplates reads the analyzer's templates bucket as a run does.
// Without the bucket no template was ever applied.
func appliedTemplates(ctx context.Context, client *events.Client) (templateLookup, error) {
	kv, err := client.JetStream().KeyValue(ctx, analyzer.BucketTemplates)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return func(context.Context, string, spec.AnalysisTemplateRef) (bool, error) { return false, nil }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the applied templates (bucket %s; the operator and viewer identities may not): %w", analyzer.BucketTemplates, err)
	}
	return func(ctx context.Context, namespace string, ref spec.AnalysisTemplateRef) (bool, error) {
		_, err := analyzer.LookupTemplate(ctx, kv, namespace, ref)
		if errors.Is(err, analyzer.ErrTemplateNotFound) {
			return false, nil
		}
		return err == nil, err
	}, nil
}

// lintManifests lints srcs as `sluice lint` does: spec.LintSources, then
// the checks of the services that will act on the objects (see
// newLintCmd). An error is a failure to check, not a finding.
func lintManifests(ctx context.Context, srcs []spec.Source, cfg lintConfig) (spec.Report, error) {
	r := spec.LintSources(srcs, spec.LintOptions{Strict: cfg.Strict})
	providers, err := analyzer.DefaultProviders(analyzer.ProviderConfig{})
	if err != nil {
		return r, err
	}
	type key struct{ namespace, name string } // namespace "" for a ClusterAnalysisTemplate
	inFiles := map[key]bool{}
	for _, d := range r.Documents {
		switch o := d.Object.(type) {
		case *spec.AnalysisTemplate:
			inFiles[key{valueOr(o.Namespace, cfg.Namespace), o.Name}] = true
		case *spec.ClusterAnalysisTemplate:
			inFiles[key{"", o.Name}] = true
		}
	}
	listens := map[string]string{} // local listen address -> rollout
	for _, d := range r.Documents {
		add := func(sev spec.Severity, msg string) {
			for _, f := range r.Findings {
				if f.File == d.File && f.Document == d.Number && f.Message == msg {
					return
				}
			}
			r.Add(d, sev, msg)
		}
		switch o := d.Object.(type) {
		case *spec.AnalysisTemplate, *spec.ClusterAnalysisTemplate:
			ob, err := toOutbound(d.Object, cfg.Namespace)
			if err != nil {
				return r, err
			}
			_, problems := analyzer.CheckTemplate(providers, ob.ref, ob.json)
			for _, p := range problems {
				add(spec.SeverityError, p)
			}
			for i, m := range templateSpec(o).Metrics {
				if pm := m.Provider.Prometheus; pm != nil {
					for _, h := range prometheus.Hints(pm.Query) {
						add(spec.SeverityWarning, fmt.Sprintf("spec.metrics[%d].provider.prometheus.query: %s", i, h))
					}
				}
			}
		case *spec.Rollout, *spec.Experiment:
			ns := valueOr(o.GetNamespace(), cfg.Namespace)
			for _, ref := range spec.AnalysisRefs(o) {
				if cfg.SkipReferences {
					break
				}
				k := key{ns, ref.Ref.TemplateName}
				what := fmt.Sprintf("analysis template %q not found in namespace %q", ref.Ref.TemplateName, ns)
				if ref.Ref.ClusterScope {
					k.namespace = ""
					what = fmt.Sprintf("cluster analysis template %q not found", ref.Ref.TemplateName)
				}
				if inFiles[k] {
					continue
				}
				where := "in the files given"
				if cfg.Applied != nil {
					found, err := cfg.Applied(ctx, ns, ref.Ref)
					if err != nil {
						return r, fmt.Errorf("look up %s: %w", ref.Ref.TemplateName, err)
					}
					if found {
						continue
					}
					where = "in the files given nor applied on the bus"
				} else {
					where += " (--remote also looks among the templates applied on the bus)"
				}
				add(spec.SeverityError, fmt.Sprintf("%s: %s %s", ref.Field, what, where))
			}
			if cfg.Platform != platformLocal {
				break
			}
			var problems []string
			switch o := o.(type) {
			case *spec.Rollout:
				problems = checkLocal(o, events.Ref{Namespace: ns, Name: o.Name}, listens)
			case *spec.Experiment:
				problems = checkLocalExperiment(o)
			}
			for _, p := range problems {
				add(spec.SeverityError, p)
			}
		}
	}
	return r, nil
}

func templateSpec(o spec.Object) spec.AnalysisTemplateSpec {
	switch t := o.(type) {
	case *spec.AnalysisTemplate:
		return t.Spec
	case *spec.ClusterAnalysisTemplate:
		return t.Spec
	}
	return spec.AnalysisTemplateSpec{}
}

// checkLocalExperiment returns what keeps the local platform from running
// the processes of o's templates: the replicas backend's checks of each
// pod template, at the template's path. A standalone Experiment has no
// proxy, so no listen address.
func checkLocalExperiment(o *spec.Experiment) []string {
	var problems []string
	for i, t := range o.Spec.Templates {
		for _, p := range local.CheckTemplate(t.Template, nil) {
			problems = append(problems, fmt.Sprintf("spec.templates[%d].%s", i, strings.TrimPrefix(p, "spec.")))
		}
	}
	return problems
}

// checkLocal returns what keeps the local platform from running o: the
// replicas backend's and the local proxy's own checks, and a listen
// address that another rollout in the files, or another program on this
// machine, already uses. listens maps the addresses seen so far to their
// rollout.
func checkLocal(o *spec.Rollout, ref events.Ref, listens map[string]string) []string {
	problems := local.CheckTemplate(o.Spec.Template, nil)
	route := tasks.Route{Strategy: o.Spec.Strategy.Name(), Annotations: o.Annotations, StableHash: "lint", ActiveHash: "lint"}
	if c := o.Spec.Strategy.Canary; c != nil {
		route.TrafficRouting = c.TrafficRouting
	}
	if err := localproxy.CheckRoute(ref, route); err != nil {
		return append(problems, "metadata.annotations: "+err.Error())
	}
	for _, a := range []string{localproxy.AnnotationListen, localproxy.AnnotationPreviewListen} {
		addr := o.Annotations[a]
		if _, port, _ := net.SplitHostPort(addr); addr == "" || port == "0" {
			continue
		}
		at := fmt.Sprintf("metadata.annotations[%s]", a)
		if other, ok := listens[addr]; ok {
			problems = append(problems, fmt.Sprintf("%s: %s is also the address of %s; give each rollout its own address", at, addr, other))
			continue
		}
		listens[addr] = ref.String()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: cannot listen on %s on this machine (%v): choose a free address, unless this rollout is already applied and its own proxy holds it", at, addr, errors.Unwrap(err)))
			continue
		}
		ln.Close()
	}
	return problems
}
