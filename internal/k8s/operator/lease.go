package operator

import (
	"time"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// LeaseDecision is what the operator must do with one dynamic lease now.
type LeaseDecision struct {
	// Renew: renew the lease (sys/leases/renew) now.
	Renew bool
	// Rotate: a current lease must be replaced by new credentials now.
	Rotate bool
	// Revoke: a previous lease must be revoked now.
	Revoke bool
	// After is the wait until the next decision is due; 0 when nothing
	// is due later (a lease with nothing left to do).
	After time.Duration
}

// Lease timing: a lease is renewed when two thirds of its duration have
// passed, and replaced when two thirds of its max TTL have passed, so the
// last third is the margin in which the new credentials roll out while
// the old ones still work.
const (
	renewFraction  = 2.0 / 3
	rotateFraction = 2.0 / 3
)

// DecideLease decides for one lease at now. A current lease (previous
// false) is renewed at two thirds of its lease_duration since it was last
// renewed, and rotated at two thirds of its max TTL (of its lease_duration
// when it is not renewable) or when it has expired. A previous lease
// (replaced by a rotation) is revoked once rolledOut (every annotated
// workload runs the new credentials) or when its max TTL or lease has
// ended, and renewed until then, so running pods keep working credentials
// during the rollout.
func DecideLease(l v1alpha1.DynamicLease, now time.Time, previous, rolledOut bool) LeaseDecision {
	renewed := l.RenewTime.Time
	if renewed.IsZero() {
		renewed = l.IssueTime.Time
	}
	dur := time.Duration(l.LeaseDuration) * time.Second
	expire := renewed.Add(dur)
	var maxEnd time.Time
	if l.MaxTTL > 0 {
		maxEnd = l.IssueTime.Add(time.Duration(l.MaxTTL) * time.Second)
	}
	renewAt := renewed.Add(time.Duration(float64(dur) * renewFraction))
	if !l.Renewable || (!maxEnd.IsZero() && !expire.Before(maxEnd)) {
		renewAt = time.Time{} // nothing to gain from renewing
	}
	if previous {
		if rolledOut || !now.Before(expire) || (!maxEnd.IsZero() && !now.Before(maxEnd)) {
			return LeaseDecision{Revoke: true}
		}
		next := expire
		if !maxEnd.IsZero() && maxEnd.Before(next) {
			next = maxEnd
		}
		if !renewAt.IsZero() {
			if !now.Before(renewAt) {
				return LeaseDecision{Renew: true}
			}
			next = renewAt
		}
		return LeaseDecision{After: next.Sub(now)}
	}
	var rotateAt time.Time
	switch {
	case !l.Renewable:
		rotateAt = l.IssueTime.Add(time.Duration(float64(dur) * rotateFraction))
	case !maxEnd.IsZero():
		rotateAt = l.IssueTime.Add(time.Duration(float64(time.Duration(l.MaxTTL)*time.Second) * rotateFraction))
	}
	if !now.Before(expire) || (!rotateAt.IsZero() && !now.Before(rotateAt)) {
		return LeaseDecision{Rotate: true}
	}
	if !renewAt.IsZero() && (rotateAt.IsZero() || renewAt.Before(rotateAt)) {
		if !now.Before(renewAt) {
			return LeaseDecision{Renew: true}
		}
		return LeaseDecision{After: renewAt.Sub(now)}
	}
	if rotateAt.IsZero() || expire.Before(rotateAt) {
		return LeaseDecision{After: expire.Sub(now)}
	}
	return LeaseDecision{After: rotateAt.Sub(now)}
}
