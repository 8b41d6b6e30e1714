package spec

import (
	"fmt"
	"regexp"
	"strings"
)

// The variables of an experiment step's analysis arguments, as Argo
// Rollouts names them, written without braces: an argument value uses
// them as "{{templates.baseline.podTemplateHash}}", with or without spaces
// inside the braces.
const (
	// ExperimentAvailableAt is when every template's pods became
	// available, in RFC 3339.
	ExperimentAvailableAt = "experiment.availableAt"
)

// ExperimentPodTemplateHash is the variable of template's pod template hash.
func ExperimentPodTemplateHash(template string) string {
	return "templates." + template + ".podTemplateHash"
}

// ExperimentReplicaSetName is the variable of the name of template's
// ReplicaSet (its process name on the local platform).
func ExperimentReplicaSetName(template string) string {
	return "templates." + template + ".replicaset.name"
}

// experimentPlaceholder matches one {{...}} placeholder; group 1 is its
// text.
var experimentPlaceholder = regexp.MustCompile(`\{\{([^}]*)\}\}`)

// ExpandExperimentVariables replaces every placeholder in value with its
// variable's value in vars, keyed as above. As in Argo Rollouts, a
// placeholder that names no variable of vars is an error naming it (the
// value is returned with the others replaced); Validate refuses such
// placeholders, so for a valid rollout only a variable the caller left out
// of vars can be missing.
func ExpandExperimentVariables(value string, vars map[string]string) (string, error) {
	var missing []string
	out := experimentPlaceholder.ReplaceAllStringFunc(value, func(m string) string {
		name := strings.TrimSpace(experimentPlaceholder.FindStringSubmatch(m)[1])
		if v, ok := vars[name]; ok {
			return v
		}
		missing = append(missing, "{{"+name+"}}")
		return m
	})
	if len(missing) > 0 {
		return out, fmt.Errorf("no value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// experimentVariable parses the text of a placeholder. ok is false when it
// names no experiment variable; template is the template a template
// variable names.
func experimentVariable(name string) (template string, ok bool) {
	if name == ExperimentAvailableAt {
		return "", true
	}
	rest, ok := strings.CutPrefix(name, "templates.")
	if !ok {
		return "", false
	}
	for _, suffix := range []string{".podTemplateHash", ".replicaset.name"} {
		if t, ok := strings.CutSuffix(rest, suffix); ok && t != "" {
			return t, true
		}
	}
	return "", false
}
