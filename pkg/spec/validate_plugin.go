package spec

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// pluginNameRE is Argo Rollouts' rule for plugin names (utils/config):
// <namespace>/<name>, as a GitHub owner and repository.
var pluginNameRE = regexp.MustCompile(`^[a-zA-Z0-9\-]+/[a-zA-Z0-9_\-.]+$`)

// validatePlugin returns every problem of a plugin provider block at p:
// it must name exactly one plugin, by a name Argo Rollouts can configure.
// Whether the named plugin is configured is the analyzer's to say; the
// configuration of the built-in judge (JudgePlugin) is checked here.
func validatePlugin(m map[string]json.RawMessage, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range m {
			if !yield(name) {
				return
			}
		}
	})
	if len(names) > 1 {
		errs = append(errs, field.Invalid(p, strings.Join(names, ", "), "must name exactly one plugin"))
	}
	for _, name := range names {
		if name == JudgePlugin {
			errs = append(errs, validateJudge(m[name], p.Child(name))...)
			continue
		}
		if !pluginNameRE.MatchString(name) && !isPlaceholder(name) {
			errs = append(errs, field.Invalid(p.Key(name), name, "must be a plugin name of the form <namespace>/<name>, as in Argo Rollouts' metricProviderPlugins"))
		}
	}
	return errs
}
