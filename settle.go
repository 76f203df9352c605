package ghost

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Writes in flight on their primary. A primary applies a write at once but
// serves it only once its copies confirm it: until then the entry is
// unconfirmed (store.go) and readers are served the confirmed entry before
// it, so a write that fails was never seen. A copy, though, serves a write
// as soon as it has applied it, when a reader reaches the copy (its
// primary suspected down, or the copy is the reader's own node). So that a
// reader of the primary never gets the older value after a reader of a
// copy got the newer one, a read on the primary that finds its key's
// newest entry unconfirmed waits until that write is confirmed, has
// failed, or is replaced (at most settleWait, or the reader's context),
// and then answers. Only readers of a key with a write in flight wait, for
// about one copy's round trip.

// settleSignal wakes the readers of a partition waiting for a write to
// settle.
type settleSignal struct {
	waiting atomic.Int32 // readers waiting: writers skip the lock when 0
	mu      sync.Mutex
	ch      chan struct{} // closed by wake; nil when no one waits
}

// channel returns the channel the next wake closes, counting the caller as
// a waiter until it calls done.
func (s *settleSignal) channel() <-chan struct{} {
	s.waiting.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *settleSignal) done() { s.waiting.Add(-1) }

// wake wakes every waiting reader: a write of the partition settled.
func (s *settleSignal) wake() {
	if s.waiting.Load() == 0 {
		return
	}
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// inFlightIn returns the write a reader of e's chain (e the key's entry in
// the index) must wait for, or nil: the newest entry of the chain that has
// not been abandoned, when its copies may still confirm it. A write
// abandoned on top of one still in flight (a newer write of the key that
// failed, a write decided again) must not make the reader skip both.
func inFlightIn(e *entry) *entry {
	for e != nil && e.unconfirmed.Load() && e.abandoned.Load() {
		e = e.prior.Load()
	}
	if e != nil && e.unconfirmed.Load() {
		return e
	}
	return nil
}

// awaitSettled waits, within ctx and the store's settleWait, until no
// write of key (of hash h) in pt is in flight, looking at the index afresh
// at every wake (the write waited for may have been replaced or decided
// again), and returns the key's entry to serve from.
func (s *store) awaitSettled(ctx context.Context, pt *partition, h uint64, key string) *entry {
	var timer *time.Timer
	for {
		head := pt.index.load(h, key)
		if inFlightIn(head) == nil {
			return head
		}
		ch := pt.settled.channel()
		if inFlightIn(pt.index.load(h, key)) == nil { // settled before the channel was taken
			pt.settled.done()
			continue
		}
		if timer == nil {
			timer = time.NewTimer(s.settleWait)
			defer timer.Stop()
		}
		select {
		case <-ch:
			pt.settled.done()
		case <-ctx.Done():
			pt.settled.done()
			return pt.index.load(h, key)
		case <-timer.C:
			pt.settled.done()
			s.settleTimeouts.Add(1)
			return pt.index.load(h, key)
		}
	}
}

// readMayWait reports whether a read of key here would wait: for a write
// of the key in flight, or for the node's read lease.
func (n *Node) readMayWait(key string) bool {
	if !n.servesOwnReads() {
		return true
	}
	h := hashKey(key)
	return inFlightIn(n.store.parts[n.partitionOfHash(h)].index.load(h, key)) != nil
}

// abandon records that the write of key at version failed: its copies may
// never confirm it, and readers waiting for it are served its prior.
func (s *store) abandon(p int, key string, version uint64) {
	pt := s.lock(p)
	defer pt.mu.Unlock()
	if e := unconfirmedAtLocked(pt, key, version); e != nil {
		e.abandoned.Store(true)
		pt.settled.wake()
	}
}

// unconfirmedAtLocked returns the unconfirmed write of key at version,
// wherever it is in the key's chain of unconfirmed writes (a newer write
// decided since may have replaced it in the index), or nil. pt.mu must be
// held.
func unconfirmedAtLocked(pt *partition, key string, version uint64) *entry {
	for e := pt.load(key); e != nil && e.unconfirmed.Load(); e = e.prior.Load() {
		if e.version == version {
			return e
		}
	}
	return nil
}

// visible is the entry a reader is served for e, the entry the index
// holds: the newest confirmed entry of e's chain of unconfirmed writes
// (nil when there is none).
func visible(e *entry) *entry {
	for e != nil && e.unconfirmed.Load() {
		prior := e.prior.Load()
		if !e.unconfirmed.Load() { // confirmed meanwhile: prior may be cleared
			return e
		}
		e = prior
	}
	return e
}

// unconfirmedLocked returns key's entry in pt, whose lock is held, as a
// copy when this node decided it as a primary and its copies have not
// confirmed it: an answer that rests on it (an Add's NOT_STORED, a
// delete's NOT_FOUND on its tombstone) is not the copies' answer yet.
func (s *store) unconfirmedLocked(pt *partition, key string) (pairCopy, bool) {
	e := pt.load(key)
	if e == nil || !e.unconfirmed.Load() {
		return pairCopy{}, false
	}
	return e.pair(), true
}

// entryLocked returns key's entry in pt, whose lock is held, as a copy,
// when there is one.
func (s *store) entryLocked(pt *partition, key string) (pairCopy, bool) {
	e := pt.load(key)
	if e == nil {
		return pairCopy{}, false
	}
	return e.pair(), true
}

// restampLocked decides c, the unconfirmed write of c.key at c.version,
// again at version: the same write, newer. It reports false when another
// write of the key has replaced it. pt.mu must be held.
func (s *store) restampLocked(pt *partition, c pairCopy, version uint64) bool {
	e := pt.load(c.key)
	if e == nil || e.version != c.version || !e.unconfirmed.Load() {
		return false
	}
	c.version = version
	e.abandoned.Store(true) // decided again: readers wait for the new entry
	s.putDecided(pt, e, c)
	return true
}

// confirm records that the copies confirmed the write of key at version.
func (s *store) confirm(p int, key string, version uint64) {
	pt := s.lock(p)
	s.confirmLocked(pt, key, version)
	pt.mu.Unlock()
}

// confirmLocked marks the write of key at version confirmed, wherever it
// is in the key's chain of unconfirmed writes: when a newer write has
// replaced it in the index, readers of that one are served this one until
// the newer is confirmed too. pt.mu must be held.
func (s *store) confirmLocked(pt *partition, key string, version uint64) {
	if e := unconfirmedAtLocked(pt, key, version); e != nil {
		e.unconfirmed.Store(false)
		e.prior.Store(nil) // after unconfirmed: see visible
		pt.settled.wake()
		return
	}
	if e := pt.load(key); e == nil || e.version < version {
		// Forgotten (expired, evicted) before its copies confirmed it, so
		// forget raised no watermark for it; acknowledged now, it has
		// been forgotten all the same (a pair of a 1 ms TTL crawled while
		// its copy was on the way: an older snapshot then brought the
		// value before it back).
		pt.forgotten = max(pt.forgotten, version)
	}
}
