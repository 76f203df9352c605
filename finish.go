package ghost

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Writes that failed but may be on a copy. A copy serves a write as soon
// as it applies it (settle.go), so a write its primary could not get every
// copy to confirm may have been read already, from the copy that took it.
// Taking it back then (the primary serving the value before it again)
// would show a reader the write and then undo it. So such a write stays in
// flight on its primary, readers of its key waiting as for any write in
// flight, and is sent to the copies again in the background until they
// all confirm it, a newer write of the key replaces it, or the node is no
// longer the partition's primary. Its caller was told ErrReplication,
// which says the write may or may not be applied: it is applied. A write
// every copy refused for sure (errCopyRefused) is on none, and is simply
// abandoned.

// finishing holds the writes of a node waiting to be finished.
type finishing struct {
	mu      sync.Mutex
	pending map[finishKey]finishWrite
	kick    chan struct{} // capacity 1: a write was added
}

type finishKey struct {
	key     string
	version uint64
}

// finishWrite is a write to send again: its partition and its replica op.
type finishWrite struct {
	p       int
	replica request
}

func (f *finishing) init() {
	f.pending = map[finishKey]finishWrite{}
	f.kick = make(chan struct{}, 1)
}

// add queues replica, the copy of a write of partition p, to be sent again.
func (f *finishing) add(p int, replica request) {
	f.mu.Lock()
	f.pending[finishKey{replica.key, replica.ver}] = finishWrite{p: p, replica: replica}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// len reports how many writes wait to be finished.
func (f *finishing) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

// take removes and returns every queued write.
func (f *finishing) take() []finishWrite {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]finishWrite, 0, len(f.pending))
	for k, w := range f.pending {
		out = append(out, w)
		delete(f.pending, k)
	}
	return out
}

// finishLoop sends the queued writes again until the node shuts down: at
// once when one is queued, and again after a pause (1 ms doubling to a
// second) or a table change while any is left.
func (n *Node) finishLoop() {
	ctx := context.Background() // each send is bounded (replicateWrite); Close ends the pauses
	pace := backoff{pause: time.Millisecond, longest: time.Second}
	for {
		select {
		case <-n.finishing.kick:
		case <-n.done:
			return
		}
		for {
			left := false
			for _, w := range n.finishing.take() {
				if !n.finish(ctx, w) {
					n.finishing.add(w.p, w.replica)
					left = true
				}
			}
			if !left {
				pace.pause = time.Millisecond
				break
			}
			// Drain the kick our own adds made: the pause below is the
			// next try.
			select {
			case <-n.finishing.kick:
			default:
			}
			if pace.wait(ctx, n.done, n.tableChanged.wait()) != nil {
				return
			}
		}
	}
}

// finish sends w again and reports whether it is settled: confirmed by
// every copy, or no longer this node's to finish.
func (n *Node) finish(ctx context.Context, w finishWrite) bool {
	pt := n.store.lock(w.p)
	e := unconfirmedAtLocked(pt, w.replica.key, w.replica.ver)
	t := n.table.Load()
	switch {
	case e == nil || e.abandoned.Load():
		// Confirmed (a retry of its request sent it again), or replaced
		// by a newer write, or decided again (restamp): nothing to do.
		pt.mu.Unlock()
		return true
	case !t.isPrimary(w.p):
		// The partition moved on: its new primary, a former copy, holds
		// the write or not, and the copies follow it.
		pt.mu.Unlock()
		n.store.abandon(w.p, w.replica.key, w.replica.ver)
		return true
	}
	pt.mu.Unlock()
	replica := w.replica
	replica.tver = t.version
	err := n.replicateWrite(ctx, w.p, t, &replica)
	if errors.Is(err, errCopyHoldsNewer) {
		// A copy holds a newer version no primary acknowledged
		// (serveWrite): this write is decided again past it, and waits
		// under its new version.
		if v, _ := n.restamp(w.p, e.pair()); v != 0 {
			replica.ver = v
			n.finishing.add(w.p, replica)
		}
		return true
	}
	if err != nil {
		n.log.Debug("ghost: a write that may be on a copy is not confirmed yet", "key", w.replica.key, "err", err)
		return false
	}
	n.settleNear(w.p, w.replica.key, w.replica.ver)
	n.store.confirm(w.p, w.replica.key, w.replica.ver)
	return true
}
