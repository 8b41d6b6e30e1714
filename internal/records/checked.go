package records

import "errors"

// Checked returns change made to write nothing only on the leader's
// record. An Update reads the record from any replica of the bucket, and
// one that lags behind answers with an older record (see Latest); a
// change that finds nothing to do on that record would drop what its
// caller came to do. So the first time change returns Unchanged on a
// record a replica answered, the checked change returns ErrStale instead,
// and Update calls it again on the leader's record, whose Unchanged
// stands. Without Config.Leader the record is read again as Get does. A
// change that writes needs no check: the write's compare-and-swap
// refuses a stale revision. Each Update needs a Checked of its own.
func Checked[T any](change func(rec *T, rev uint64) error) func(rec *T, rev uint64) error {
	onLeader := false // the record given is the leader's: the last call returned ErrStale
	return func(rec *T, rev uint64) error {
		err := change(rec, rev)
		if errors.Is(err, Unchanged) && !onLeader {
			onLeader = true
			return ErrStale
		}
		onLeader = errors.Is(err, ErrStale)
		return err
	}
}
