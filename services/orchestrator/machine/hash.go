package machine

import (
	"encoding/json"
	"hash/fnv"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// PodTemplateHash returns a stable hash of t, rendered as Kubernetes renders
// its pod-template-hash label: the FNV-32a sum of a canonical encoding of
// the template, as a decimal string encoded with rand.SafeEncodeString (no
// vowels, so no accidental words). The canonical encoding is the template's
// JSON, whose field order is fixed and whose map keys are sorted; two
// templates that mean the same thing when decoded hash alike. The value
// differs from the one the Kubernetes deployment controller computes, which
// hashes a debug dump of the Go value.
func PodTemplateHash(t corev1.PodTemplateSpec) string {
	h := fnv.New32a()
	b, err := json.Marshal(t)
	if err != nil {
		// A PodTemplateSpec always encodes; keep the function total anyway.
		b = []byte(err.Error())
	}
	h.Write(b)
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}
