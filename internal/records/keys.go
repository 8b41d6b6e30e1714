package records

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/pkg/events"
)

// KeyOf is the bucket key of rollout r's record: <namespace>.<name>, both
// DNS-1123 labels, so valid key tokens.
func KeyOf(r events.Ref) string { return r.Namespace + "." + r.Name }

// RefOf is the rollout whose record is under key, as KeyOf made it.
func RefOf(key string) (events.Ref, error) {
	ns, name, ok := strings.Cut(key, ".")
	if !ok {
		return events.Ref{}, fmt.Errorf("key %q is not <namespace>.<name>", key)
	}
	r := events.Ref{Namespace: ns, Name: name}
	return r, r.Validate()
}
