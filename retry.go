package ghost

import (
	"context"
	"errors"
	"time"
)

// Retries. Whatever may succeed later (a call whose holder is down until
// the table drops it, a write whose copy is, a hand-back the new primary
// refuses while the table settles) tries again after a pause that doubles
// from a first to a longest one, cut short when a wake channel closes
// (usually the next table), until a deadline, the caller's context or the
// node's close.

// errRetriesSpent: the next try would start past the deadline.
var errRetriesSpent = errors.New("ghost: no time left to try again")

// backoff paces the tries of one thing. The zero deadline means none.
type backoff struct {
	pause, longest time.Duration
	deadline       time.Time
}

// callBackoff paces the tries of one call: 1 ms doubling to 50 ms, until
// the call's deadline (callDeadline).
func (n *Node) callBackoff(ctx context.Context, start time.Time) backoff {
	return backoff{pause: time.Millisecond, longest: 50 * time.Millisecond, deadline: n.callDeadline(ctx, start)}
}

// callDeadline is when a call started at start stops trying: its
// context's deadline when that leaves it longer than RequestTimeout, so
// that a call with time left waits out a member's death (gossip takes
// seconds to declare it) instead of failing; else RequestTimeout after
// start.
func (n *Node) callDeadline(ctx context.Context, start time.Time) time.Time {
	d := start.Add(n.cfg.RequestTimeout)
	if c, ok := ctx.Deadline(); ok && c.After(d) {
		return c
	}
	return d
}

// wait pauses before the next try. It returns nil to try again;
// errRetriesSpent when the pause would end past the deadline; ctx's error;
// or ErrClosed when closed closes. A wake channel that closes (or was
// closed already) ends the pause early.
func (b *backoff) wait(ctx context.Context, closed, wake <-chan struct{}) error {
	if !b.deadline.IsZero() && time.Now().Add(b.pause).After(b.deadline) {
		return errRetriesSpent
	}
	timer := time.NewTimer(b.pause)
	defer timer.Stop()
	b.pause = min(2*b.pause, b.longest)
	select {
	case <-timer.C:
		return nil
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return ErrClosed
	}
}
