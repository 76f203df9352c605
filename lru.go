package ghost

import "math"

// The LRU line of each partition and eviction. Every partition keeps its
// pairs and tombstones in a line, the most recently placed at its head,
// and publishes the stamp of its tail; eviction takes the tail with the
// oldest stamp, of the partitions this node is the primary of first (see
// store.go for how reads rank a pair, and evict.go for the copies).

// evict removes least recently used pairs and tombstones until the store
// is within both limits. It holds at most one partition lock at a time.
//
// It evicts from the partitions this node is the primary of, whose reads
// it sees, and tells their copies to drop what it evicted (evicted): the
// copies of a partition then hold what its primary holds, and
// anti-entropy finds nothing to resync. Only when those partitions are
// empty does it evict from the copies it keeps for other primaries.
func (s *store) evict() {
	for s.keys.Load()+s.tombs.Load() > s.maxKeys || s.bytes.Load()+s.tombBytes.Load() > s.maxBytes {
		victim, oldest := s.oldestTail(true)
		if victim < 0 {
			victim, oldest = s.oldestTail(false)
		}
		if victim < 0 {
			return
		}
		pt := &s.parts[victim]
		var gone *entry
		pt.mu.Lock()
		if e := pt.tail; e != nil && e.placed == oldest {
			if used := e.used.Load(); used > e.placed {
				// Read since it was placed: back to the head, ranked
				// by its last read (or after the head, when that was
				// placed later), and the next tail is looked at.
				unlink(pt, e)
				if pt.head != nil {
					used = max(used, pt.head.placed)
				}
				s.place(pt, e, used)
			} else {
				s.forget(pt, e)
				if !e.tombstone {
					s.stats.evicted.Add(1)
				}
				gone = e
			}
		}
		pt.mu.Unlock()
		if gone != nil && s.evicted != nil && pt.primary.Load() {
			s.evicted(victim, gone.key, gone.version)
		}
	}
}

// oldestTail returns the partition whose line's tail was placed first, of
// the partitions this node is the primary of (primaries) or of all, and
// that tail's stamp; -1 when they are all empty.
func (s *store) oldestTail(primaries bool) (victim int, oldest uint64) {
	victim, oldest = -1, uint64(math.MaxUint64)
	for i := range s.parts {
		if primaries && !s.parts[i].primary.Load() {
			continue
		}
		if st := s.parts[i].tailStamp.Load(); st < oldest {
			victim, oldest = i, st
		}
	}
	return victim, oldest
}

// dropEvictedLocked drops key from pt, whose lock is held, when the
// partition's primary evicted it at version: a copy follows its primary's
// evictions. A newer write of the key stays.
func (s *store) dropEvictedLocked(pt *partition, key string, version uint64) {
	if e := pt.load(key); e != nil && e.version <= version && !e.unconfirmed.Load() {
		s.forget(pt, e)
	}
}

// place puts e, unlinked, at the head of pt's line with the given stamp.
// pt.mu must be held.
func (s *store) place(pt *partition, e *entry, stamp uint64) {
	e.placed = stamp
	e.used.Store(stamp)
	e.next = pt.head
	if pt.head != nil {
		pt.head.prev = e
	}
	pt.head = e
	if pt.tail == nil {
		pt.tail = e
	}
	s.publishTail(pt)
}

func (s *store) publishTail(pt *partition) {
	if pt.tail == nil {
		pt.tailStamp.Store(math.MaxUint64)
	} else {
		pt.tailStamp.Store(pt.tail.placed)
	}
}

func unlink(pt *partition, e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if pt.head == e {
		pt.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if pt.tail == e {
		pt.tail = e.prev
	}
	e.prev, e.next = nil, nil
}
