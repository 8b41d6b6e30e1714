package machine

import (
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/pkg/spec"
)

// argoRevisionAnnotation is where Argo Rollouts' controller keeps, on the
// Rollout object, the revision number of its current pod template.
const argoRevisionAnnotation = "rollout.argoproj.io/revision"

// firstRevision is the revision number a rollout the machine does not know
// starts at, and what the accepted event says about it. It is 1, unless the
// Rollout is an object Argo Rollouts managed until now (its annotation
// rollout.argoproj.io/revision): then the takeover keeps Argo's number, so
// the ReplicaSets' revision annotations, the history and the next update
// (number+1) read as they did under Argo. As for any first revision, the
// current template is taken as stable without steps: Argo's pods of it are
// already running, and the replicas service adopts their ReplicaSet.
//
// An annotation that is not a positive number is not trusted: the rollout
// starts at 1, and the reason says why.
func firstRevision(ro *spec.Rollout) (n int64, reason string) {
	v, ok := ro.Annotations[argoRevisionAnnotation]
	if !ok {
		return 1, ""
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 1, fmt.Sprintf("annotation %s: %q is not a revision number; starting at revision 1", argoRevisionAnnotation, v)
	}
	return n, fmt.Sprintf("taken over at revision %d (annotation %s): the running pod template is the stable revision", n, argoRevisionAnnotation)
}
