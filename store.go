package ghost

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// store is the local shard of the cache: the pairs this node holds, as a
// partition's owner or as one of its copies.
//
// It is organised by partition (one index and one LRU line per partition),
// so that a whole partition can be streamed to another node or dropped in
// one piece, and writers of different partitions never contend.
//
// A read takes no lock and writes nothing that other readers write: the
// index (index.go) is read without locks, and entries are never changed
// once published (a write publishes a new entry). Writers take their
// partition's lock.
//
// Recency is approximate in the way memcached's and Redis's are, and exact
// LRU while no two reads fall between the same two writes. Every write
// takes a stamp from one clock (even numbers) and puts its pair at the head
// of its partition's line; a read marks its pair with the clock's value
// plus one, once per write that came between: a store to the pair's own
// entry, seen only by readers of that pair. Each partition publishes the
// stamp of its line's tail, and eviction looks at the tail with the
// smallest: a pair read since it was placed goes back to the head, ranked
// by its last read, and the others are evicted in order.
//
// Every pair carries the version of the write that made it (versionClock).
// A delete leaves a tombstone with its version for a while, so that an older
// copy of the pair arriving later (from a transfer or a healed split) cannot
// bring it back. Tombstones are not pairs (they are not read, listed or
// counted as pairs), but they take their place in the line and count
// toward MaxKeys and MaxBytes, so a flood of deletes cannot outgrow the
// node; the crawler removes them once they are old.
//
// What a partition forgets, it forgets for good: when a tombstone is
// collected, or a pair expires or is evicted, the partition raises its
// watermark to that entry's version, and refuses copies handed back to it
// (a node back from a split) at or below the watermark. Without it, a
// node back from a split longer than TombstoneTTL, or one that held a
// value since overwritten under a TTL, would bring the older value back:
// the partition has no entry left to say it is older.
type store struct {
	parts     []partition
	clock     atomic.Uint64 // recency stamp of the last write; even
	keys      atomic.Int64  // pairs held, across partitions
	bytes     atomic.Int64  // key+value bytes of the pairs held, across partitions
	tombs     atomic.Int64  // tombstones held, across partitions
	tombBytes atomic.Int64  // key bytes of the tombstones held
	maxKeys   int64
	maxBytes  int64
	flushedAt atomic.Uint64 // version of the last flush: older pairs are refused
	versions  *versionClock
	stats     *watchdog
	now       func() int64 // unix nanoseconds; a field so tests can move time
	// settleWait bounds how long a read waits for a write in flight
	// (settle.go): RequestTimeout.
	settleWait time.Duration
	// settleTimeouts counts reads that waited settleWait in vain: a write
	// in flight for that long is a fault, or a stall.
	settleTimeouts atomic.Int64
	// grace keeps a pair this many nanoseconds past its expiry, for
	// GetOrLoad to serve while it reloads it (Config.StaleWhileRevalidate);
	// every other read sees it gone at its expiry.
	grace int64

	// evicted, when set, is told of each pair or tombstone evicted from a
	// partition this node is the primary of, after the lock is released,
	// so that the copies drop it too (evict.go).
	evicted func(p int, key string, version uint64)
}

type partition struct {
	mu        sync.Mutex    // held by writers; readers take no lock
	index     index         // key → *entry, pairs and tombstones
	head      *entry        // most recently placed
	tail      *entry        // least recently placed
	tailStamp atomic.Uint64 // tail's placed stamp, math.MaxUint64 when empty
	forgotten uint64        // watermark: the newest version forgotten; guarded by mu
	primary   atomic.Bool   // this node is the partition's primary: its pairs are evicted first
	settled   settleSignal  // wakes readers waiting for a write in flight (settle.go)
	_         [64]byte      // keep neighbouring partitions off one cache line
}

type entry struct {
	// Readers see these, so they never change once the entry is in the
	// index.
	key       string
	value     []byte // encoded value
	expires   int64  // unix nanoseconds; 0 never expires
	version   uint64 // of the write that made this pair or tombstone
	tombstone bool   // deleted: kept only to refuse older copies

	// unconfirmed: this node decided the write as its partition's primary
	// and its copies have not confirmed it (yet, or ever): it is not
	// acknowledged, so readers are served prior instead, a node handing
	// its copies back keeps it to itself, and a copy from the partition's
	// primary replaces it (applyFromPrimary). Set before the entry is
	// published; cleared, under the partition's lock, once confirmed.
	unconfirmed atomic.Bool
	// abandoned: unconfirmed, and its write failed or was decided again:
	// readers do not wait for it (settle.go).
	abandoned atomic.Bool
	// prior: while unconfirmed, the entry it replaced (nil: none), itself
	// maybe unconfirmed: readers are served the newest confirmed entry down
	// this chain (visible), since a read must not return a write that may
	// never be acknowledged (its copies cut off, the primary dying before
	// they confirm) and that a failover would take back. Cleared once
	// confirmed: readers stop there.
	prior atomic.Pointer[entry]

	// The partition's lock guards the rest; readers only set used.
	placed     uint64        // stamp of its place in the line
	used       atomic.Uint64 // stamp of its last read, or placed
	prev, next *entry
}

// pairCopy is a pair or tombstone as it travels between copies.
type pairCopy struct {
	key       string
	value     []byte
	expires   int64
	version   uint64
	tombstone bool
}

func (e *entry) size() int64 { return int64(len(e.key) + len(e.value)) }

// pair is e as it travels to another copy.
func (e *entry) pair() pairCopy {
	return pairCopy{key: e.key, value: e.value, expires: e.expires, version: e.version, tombstone: e.tombstone}
}

func newStore(partitions int, maxKeys, maxBytes int64, stats *watchdog, now func() int64) *store {
	s := &store{
		parts:    make([]partition, partitions),
		maxKeys:  maxKeys,
		maxBytes: maxBytes,
		versions: newVersionClock(now),
		stats:    stats,
		now:      now,
		// Node sets RequestTimeout.
		settleWait: time.Second,
	}
	for i := range s.parts {
		s.parts[i].tailStamp.Store(math.MaxUint64)
	}
	return s
}

// load returns key's entry in pt, or nil.
func (pt *partition) load(key string) *entry { return pt.index.load(hashKey(key), key) }

// each calls f for every entry of pt, pairs and tombstones. pt.mu must be
// held.
func (pt *partition) each(f func(e *entry)) { pt.index.each(f) }

// get returns the value of key in partition p, or false when it is absent
// or expired; see getHashed.
func (s *store) get(p int, key string) ([]byte, bool) {
	return s.getHashed(context.Background(), p, hashKey(key), key)
}

// getHashed returns the value of key, of hash h, in partition p. It takes
// no lock; it waits, within ctx, while the key's newest write is in flight
// (settle.go).
func (s *store) getHashed(ctx context.Context, p int, h uint64, key string) ([]byte, bool) {
	if e := s.liveHashed(ctx, p, h, key); e != nil {
		return e.value, true
	}
	return nil, false
}

// liveHashed is getHashed's pair, or nil: its version and expiry too.
func (s *store) liveHashed(ctx context.Context, p int, h uint64, key string) *entry {
	pt := &s.parts[p]
	head := pt.index.load(h, key)
	if head != nil && head.unconfirmed.Load() {
		head = s.awaitSettled(ctx, pt, h, key)
	}
	e := visible(head)
	if e == nil || e.tombstone {
		return nil
	}
	if s.expiredNow(e) {
		if e.expired(s.now() - s.grace) {
			s.expire(pt, e)
		}
		return nil
	}
	if read := s.clock.Load() + 1; e.used.Load() < read {
		e.used.Store(read)
	}
	return e
}

// lock locks partition p for a caller that decides a write and must see
// the partition table of that moment under the same lock (replicate.go).
func (s *store) lock(p int) *partition {
	pt := &s.parts[p]
	pt.mu.Lock()
	return pt
}

// setLocked stores a new version of key in pt, whose lock is held. With
// onlyIfAbsent it stores only when no live pair holds the key, and reports
// whether it stored. The caller runs evict once the lock is released.
func (s *store) setLocked(pt *partition, key string, value []byte, expires int64, version uint64, onlyIfAbsent bool) bool {
	e := pt.load(key)
	if e != nil && !e.tombstone && s.expiredNow(e) {
		s.forget(pt, e)
		s.stats.expired.Add(1)
		e = nil
	}
	if e != nil && !e.tombstone && onlyIfAbsent {
		return false
	}
	s.putDecided(pt, e, pairCopy{key: key, value: value, expires: expires, version: version})
	return true
}

// newerThanLocked reports whether pt, whose lock is held, holds an entry
// of key (a pair or a tombstone) newer than version.
func (s *store) newerThanLocked(pt *partition, key string, version uint64) bool {
	e := pt.load(key)
	return e != nil && e.version > version
}

// deleteLocked replaces key's pair in pt, whose lock is held, with a
// tombstone of the given version, and reports whether a live pair was
// there, and whether it wrote a tombstone. A key with no pair gets one too:
// the caller is told NOT_FOUND, and an older copy of the key arriving
// later (a node handing back what it held across a split) must not make a
// liar of that answer. A key that has a tombstone already keeps it.
func (s *store) deleteLocked(pt *partition, key string, version uint64) (wasLive, wrote bool) {
	e := pt.load(key)
	if e != nil && e.tombstone {
		return false, false
	}
	wasLive = e != nil && !s.expiredNow(e)
	if e != nil && !wasLive {
		s.stats.expired.Add(1)
	}
	s.putDecided(pt, e, pairCopy{key: key, version: version, tombstone: true})
	return wasLive, true
}

// set stores value under key with a fresh version, confirmed; see
// setLocked.
func (s *store) set(p int, key string, value []byte, expires int64, onlyIfAbsent bool) bool {
	version := s.versions.next()
	pt := s.lock(p)
	ok := s.setLocked(pt, key, value, expires, version, onlyIfAbsent)
	s.confirmLocked(pt, key, version)
	pt.mu.Unlock()
	s.evict()
	return ok
}

// del deletes key with a fresh version, confirmed; see deleteLocked.
func (s *store) del(p int, key string) bool {
	version := s.versions.next()
	pt := s.lock(p)
	ok, _ := s.deleteLocked(pt, key, version)
	s.confirmLocked(pt, key, version)
	pt.mu.Unlock()
	s.evict()
	return ok
}

// mergeLocked merges into pt, whose lock is held, a copy of a pair that
// did not come from the partition's primary (a node handing back what it
// held across a split): it is kept when it is newer than what the
// partition holds for its key, than the last flush, and than what the
// partition has forgotten. It reports whether it was kept; the caller runs
// evict once the lock is released.
func (s *store) mergeLocked(pt *partition, c pairCopy) bool {
	s.versions.observe(c.version)
	if c.version <= pt.forgotten {
		return false
	}
	return s.newerLocked(pt, c)
}

// newerLocked keeps c when it is newer than pt's entry for its key and
// than the last flush.
func (s *store) newerLocked(pt *partition, c pairCopy) bool {
	if c.version <= s.flushedAt.Load() {
		return false
	}
	e := pt.load(c.key)
	if e != nil && c.version <= e.version {
		return false
	}
	s.put(pt, e, c)
	return true
}

// applyFromPrimary applies a copy sent by the partition's primary: a
// write's copy (start 0), or a pair of a stream of the whole partition
// begun at version start. The primary's copy replaces, whatever its
// version, what this node held from before the stream began, and any write
// this node decided as a primary that its copies never confirmed: such a
// write was never acknowledged, and a stalled primary deciding it under a
// table long gone may have given it a version above the writes the new
// primary acknowledged since. Only what has been written through the
// primary since the stream began is newer. The partition's watermark does
// not apply: the primary's content is the partition, and the primary
// refuses what it has forgotten itself.
//
// It reports whether the copy was kept, and the version of the newer
// entry that refused it (0 when it was kept, or when it repeats the
// entry this node holds: a copy sent again).
func (s *store) applyFromPrimary(pt *partition, c pairCopy, start uint64) (kept bool, newer uint64) {
	s.versions.observe(c.version)
	e := pt.load(c.key)
	if e != nil && (e.unconfirmed.Load() || e.version < start) && c.version > s.flushedAt.Load() {
		s.put(pt, e, c)
		return true, 0
	}
	if s.newerLocked(pt, c) {
		return true, 0
	}
	if e != nil && e.version > c.version {
		return false, e.version
	}
	return false, 0
}

// put makes c the content of its key in pt, replacing old (which may be
// nil), and returns its new entry. pt.mu must be held.
func (s *store) put(pt *partition, old *entry, c pairCopy) *entry {
	return s.publish(pt, old, newEntry(c))
}

// putDecided is put for a write this node decided as the partition's
// primary: unconfirmed until its copies confirm it, readers are served
// the confirmed pair it replaces.
func (s *store) putDecided(pt *partition, old *entry, c pairCopy) *entry {
	e := newEntry(c)
	e.unconfirmed.Store(true)
	if old != nil {
		e.prior.Store(old)
	}
	return s.publish(pt, old, e)
}

func newEntry(c pairCopy) *entry {
	e := &entry{key: c.key, value: c.value, expires: c.expires, version: c.version, tombstone: c.tombstone}
	if c.tombstone {
		e.value = nil
	}
	return e
}

// publish puts e in the index and the line in old's place. pt.mu must be
// held.
func (s *store) publish(pt *partition, old, e *entry) *entry {
	if old != nil {
		unlink(pt, old)
		s.count(old, -1)
	}
	pt.index.store(hashKey(e.key), e)
	s.count(e, 1)
	s.place(pt, e, s.clock.Add(2))
	pt.settled.wake() // a reader waiting for old waits no more
	return e
}

// count adds e, a pair or a tombstone, to the store's totals (sign 1) or
// takes it out of them (sign -1).
func (s *store) count(e *entry, sign int64) {
	if e.tombstone {
		s.tombs.Add(sign)
		s.tombBytes.Add(sign * e.size())
	} else {
		s.keys.Add(sign)
		s.bytes.Add(sign * e.size())
	}
}

// keysOf returns the keys of partition p, tombstones included: the list a
// transfer walks, a chunk at a time, without holding the lock meanwhile.
func (s *store) keysOf(p int) []string {
	pt := s.lock(p)
	defer pt.mu.Unlock()
	var out []string
	pt.each(func(e *entry) { out = append(out, e.key) })
	return out
}

// copies returns the current content of keys in partition p: pairs and
// tombstones, skipping keys that are gone or expired, and with
// confirmedOnly the writes the copies have not confirmed.
func (s *store) copies(p int, keys []string, confirmedOnly bool) []pairCopy {
	pt := s.lock(p)
	defer pt.mu.Unlock()
	now := s.now()
	out := make([]pairCopy, 0, len(keys))
	for _, k := range keys {
		e := pt.load(k)
		if e == nil || (!e.tombstone && e.expired(now)) || (confirmedOnly && e.unconfirmed.Load()) {
			continue
		}
		out = append(out, e.pair())
	}
	return out
}

// dropOlderLocked removes from pt, whose lock is held, the pairs and
// tombstones older than version that are not in keep: what a full copy
// from the owner, begun at version, did not contain. Writes this node
// decided that were never confirmed go too, whatever their version (see
// applyFromPrimary).
func (s *store) dropOlderLocked(pt *partition, version uint64, keep map[string]struct{}) (dropped int) {
	pt.each(func(e *entry) {
		if _, ok := keep[e.key]; !ok && (e.version < version || e.unconfirmed.Load()) {
			s.remove(pt, e)
			dropped++
		}
	})
	return dropped
}

// dropForgottenLocked applies to pt, whose lock is held, the watermark of
// an in-sync copy's snapshot that offered the keys in offered (a restore,
// snapshot.go): the pairs and tombstones at or below forgotten that the
// snapshot lacks are ones that copy forgot, and go; the watermark is
// raised to it, so that no older snapshot brings them back later. Writes
// this node decided and its copies have not confirmed stay. It returns
// what it dropped, for the copies to drop too.
func (s *store) dropForgottenLocked(pt *partition, forgotten uint64, offered map[string]struct{}) (dropped []pairCopy) {
	pt.each(func(e *entry) {
		if _, ok := offered[e.key]; !ok && e.version <= forgotten && !e.unconfirmed.Load() {
			dropped = append(dropped, e.pair())
			s.remove(pt, e)
		}
	})
	s.learnForgottenLocked(pt, forgotten)
	return dropped
}

// dropPartition removes everything partition p holds: this node no longer
// keeps a copy of it. What it had forgotten goes too: should it hold the
// partition again, it is streamed the primary's content and watermark.
func (s *store) dropPartition(p int) {
	pt := s.lock(p)
	defer pt.mu.Unlock()
	s.clearLocked(pt)
	pt.forgotten = 0
}

// forgottenOf returns partition p's watermark, for a stream of it.
func (s *store) forgottenOf(p int) uint64 {
	pt := s.lock(p)
	defer pt.mu.Unlock()
	return pt.forgotten
}

// learnForgottenLocked raises pt's watermark to the primary's, sent with
// a stream of the partition. pt.mu must be held.
func (s *store) learnForgottenLocked(pt *partition, version uint64) {
	pt.forgotten = max(pt.forgotten, version)
}

// digest summarises partition p's live pairs and their versions, for
// anti-entropy: copies with equal content have equal digests.
func (s *store) digest(p int) (sum uint64, count int) {
	pt := s.lock(p)
	defer pt.mu.Unlock()
	now := s.now()
	pt.each(func(e *entry) {
		if !e.tombstone && !e.expired(now) {
			sum ^= mix64(hashKey(e.key) ^ e.version)
			count++
		}
	})
	return sum, count
}

// flush removes every pair, one partition at a time, and refuses copies of
// pairs older than version from then on.
func (s *store) flush(version uint64) {
	s.versions.observe(version)
	for {
		old := s.flushedAt.Load()
		if version <= old || s.flushedAt.CompareAndSwap(old, version) {
			break
		}
	}
	for i := range s.parts {
		pt := &s.parts[i]
		pt.mu.Lock()
		s.clearLocked(pt)
		pt.mu.Unlock()
	}
}

func (s *store) clearLocked(pt *partition) {
	pt.each(func(e *entry) { s.count(e, -1) })
	pt.index.clear()
	pt.head, pt.tail = nil, nil
	pt.tailStamp.Store(math.MaxUint64)
	pt.settled.wake()
}

// len is the number of pairs held, expired ones the crawler has not reached
// yet included.
func (s *store) len() int64 { return s.keys.Load() }

// tombstones is the number of tombstones held.
func (s *store) tombstones() int64 { return s.tombs.Load() }

// size is the key and value bytes held.
func (s *store) size() int64 { return s.bytes.Load() }

// remove drops e, a pair or a tombstone, from pt. pt.mu must be held.
func (s *store) remove(pt *partition, e *entry) {
	pt.index.delete(hashKey(e.key), e.key)
	unlink(pt, e)
	s.count(e, -1)
	s.publishTail(pt)
	pt.settled.wake()
}

// forget removes e, a pair or tombstone that expired, aged or was evicted,
// and raises pt's watermark to its version, so that no older copy of its
// key is taken back in its place. A write this node decided as a primary
// and its copies never confirmed raises nothing: it was never
// acknowledged, and a stalled primary may have given it a version from a
// table long gone (see applyFromPrimary). pt.mu must be held.
func (s *store) forget(pt *partition, e *entry) {
	s.remove(pt, e)
	if !e.unconfirmed.Load() {
		pt.forgotten = max(pt.forgotten, e.version)
	}
}
