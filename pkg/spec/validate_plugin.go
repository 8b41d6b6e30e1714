package spec

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validatePlugin returns every problem of a plugin provider block at p.
// Whether the named plugin is configured is the analyzer's to say.
func validatePlugin(m map[string]json.RawMessage, p *field.Path) field.ErrorList {
	return nil
}
