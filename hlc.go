package ghost

import (
	"sync/atomic"
)

// The version clock. Every write a partition's owner applies gets a version
// from it, and every copy keeps the version with the pair, so that copies
// that meet (a backup, a transfer, anti-entropy, a healed split) keep the
// newer of two writes. It is a hybrid logical clock: wall-clock nanoseconds
// when the clock moves forward, one more than the last version otherwise,
// and never behind a version this node has seen from a peer. Versions are
// therefore unique per node, increase on each node, and order writes across
// nodes by time as far as their clocks agree.

type versionClock struct {
	last atomic.Uint64
	wall func() int64 // unix nanoseconds; a field so tests can move time
}

func newVersionClock(wall func() int64) *versionClock { return &versionClock{wall: wall} }

// next returns a version greater than any returned or observed before.
func (c *versionClock) next() uint64 {
	for {
		last := c.last.Load()
		v := max(uint64(c.wall()), last+1)
		if c.last.CompareAndSwap(last, v) {
			return v
		}
	}
}

// Expiry travels between nodes as the time left, not as a deadline, so
// that a copy on a node whose clock disagrees with the sender's expires
// when the sender's does: a deadline from a primary minutes ahead would
// keep its copies alive minutes too long after a failover.

// ttlLeft is what travels for an expiry (unix nanoseconds, 0 for never)
// at now: the nanoseconds left, at least 1, or 0 for never.
func ttlLeft(expires, now int64) int64 {
	if expires == 0 {
		return 0
	}
	return max(expires-now, 1)
}

// expiryAt turns a time left that arrived (see ttlLeft) into a deadline
// on this node's clock.
func expiryAt(left, now int64) int64 {
	if left == 0 {
		return 0
	}
	return now + left
}

// observe moves the clock past a version seen from a peer.
func (c *versionClock) observe(v uint64) {
	for {
		last := c.last.Load()
		if v <= last || c.last.CompareAndSwap(last, v) {
			return
		}
	}
}
