package orchestrator

import (
	"bytes"
	"crypto/sha256"
	"time"
)

// A rollout's record remembers every command applied to it (requests
// included) for as long as the commands stream can deliver that command
// again, so a copy delivered late changes nothing however many newer
// commands came between.
//
// Why not a watermark (the stream sequence of the last applied command):
// a copy of a command is a new message (a publisher's retry outside the
// duplicate window, a re-published event) with a new sequence and the
// same CloudEvent id, and a command whose first delivery failed before its
// decision was stored comes back after newer ones were applied; a
// watermark would act on the first and drop the second. Only the ids say
// what was applied.
//
// How long: a message stays in the commands stream for --bus-max-age
// (retention) after it was stored, so it can be redelivered or replayed
// (a new consumer, `sluice history`) only until then, and it was stored
// before it was applied. An id kept for retention after its command was
// applied therefore outlives every delivery of that message; a copy
// published later is recognised when it arrives within retention of the
// application.
//
// Size: ids are kept as 8-byte digests in groups that expire together,
// so a rollout's record grows by about 11 bytes per command. At most
// maxApplied are kept: a rollout that takes more commands than that
// within retention forgets the oldest (logged), the one way this memory
// forgets before retention.

// maxApplied bounds the command digests one rollout's record keeps
// (about 11 KB of the record at the bound).
const maxApplied = 1024

// appliedGroups is how many expiry groups retention is cut into: an id is
// kept until the end of the group it falls in, at most retention/
// appliedGroups longer than retention.
const appliedGroups = 24

// digestSize is the bytes of an id's digest. Two different ids of one
// rollout's commands share a digest with a probability under 2^-44 at
// maxApplied ids.
const digestSize = 8

// appliedSet is the commands applied to one rollout within retention,
// oldest group first. It is a value: add returns a new set and never
// changes the one it was called on, which may be shared with the store's
// cache.
type appliedSet []appliedGroup

// appliedGroup is the digests of commands applied in one slice of time,
// kept until Until (Unix seconds).
type appliedGroup struct {
	Until int64 `json:"until"`
	// IDs are digestSize-byte digests, concatenated (base64 in JSON).
	IDs []byte `json:"ids"`
}

func digest(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return sum[:digestSize]
}

// has reports whether the command with event id id was applied.
func (a appliedSet) has(id string) bool {
	d := digest(id)
	for _, g := range a {
		for i := 0; i+digestSize <= len(g.IDs); i += digestSize {
			if bytes.Equal(g.IDs[i:i+digestSize], d) {
				return true
			}
		}
	}
	return false
}

// len is how many ids the set holds.
func (a appliedSet) len() int {
	n := 0
	for _, g := range a {
		n += len(g.IDs) / digestSize
	}
	return n
}

// add returns the set with id added as applied at now, kept for at least
// retention; groups expired at now are dropped, and past maxApplied the
// oldest ids. forgotten counts the ids dropped before they expired.
func (a appliedSet) add(id string, now time.Time, retention time.Duration) (out appliedSet, forgotten int) {
	step := max(int64((retention/appliedGroups)/time.Second), 1)
	until := now.Add(retention).Unix()
	until += (step - until%step) % step // the end of its group
	out = make(appliedSet, 0, len(a)+1)
	for _, g := range a {
		if g.Until >= now.Unix() {
			out = append(out, g)
		}
	}
	if last := len(out) - 1; last >= 0 && out[last].Until == until {
		ids := make([]byte, 0, len(out[last].IDs)+digestSize)
		out[last] = appliedGroup{Until: until, IDs: append(append(ids, out[last].IDs...), digest(id)...)}
	} else {
		out = append(out, appliedGroup{Until: until, IDs: digest(id)})
	}
	for over := out.len() - maxApplied; over > 0; over = out.len() - maxApplied {
		first := &out[0]
		if drop := over * digestSize; drop < len(first.IDs) {
			*first = appliedGroup{Until: first.Until, IDs: first.IDs[drop:]}
			forgotten += over
			break
		}
		forgotten += len(first.IDs) / digestSize
		out = out[1:]
	}
	return out, forgotten
}
