package ghost

import (
	"math"
	"sync"
	"sync/atomic"
)

// store is the local shard of the cache: the pairs this node owns.
//
// It is organised by partition (one map and one LRU list per partition, each
// under its own lock), so that lookups on different partitions never contend
// and a whole partition can later be handed to another node in one piece.
// Recency is global: every touch takes a stamp from one counter, each
// partition publishes the stamp of its least recently used entry, and
// eviction removes the entry with the smallest published stamp. That gives
// exact LRU order across the node without a global lock.
type store struct {
	parts    []partition
	clock    atomic.Uint64 // recency stamps
	keys     atomic.Int64  // pairs held, across partitions
	bytes    atomic.Int64  // key+value bytes held, across partitions
	maxKeys  int64
	maxBytes int64
	stats    *watchdog
	now      func() int64 // unix nanoseconds; a field so tests can move time
}

type partition struct {
	mu        sync.Mutex
	items     map[string]*entry
	head      *entry        // most recently used
	tail      *entry        // least recently used
	tailStamp atomic.Uint64 // tail's stamp, math.MaxUint64 when empty
	_         [40]byte      // keep neighbouring partitions off one cache line
}

type entry struct {
	key        string
	value      []byte // encoded value; never mutated after it is stored
	expires    int64  // unix nanoseconds; 0 never expires
	stamp      uint64
	prev, next *entry
}

func (e *entry) size() int64 { return int64(len(e.key) + len(e.value)) }

func (e *entry) expired(now int64) bool { return e.expires != 0 && now >= e.expires }

// expiredNow reads the clock only for pairs that can expire: most cache
// reads are of pairs that cannot, and the clock is not free.
func (s *store) expiredNow(e *entry) bool { return e.expires != 0 && e.expired(s.now()) }

func newStore(partitions int, maxKeys, maxBytes int64, stats *watchdog, now func() int64) *store {
	s := &store{
		parts:    make([]partition, partitions),
		maxKeys:  maxKeys,
		maxBytes: maxBytes,
		stats:    stats,
		now:      now,
	}
	for i := range s.parts {
		s.parts[i].items = make(map[string]*entry)
		s.parts[i].tailStamp.Store(math.MaxUint64)
	}
	return s
}

// get returns the value of key in partition p, or false when it is absent
// or expired.
func (s *store) get(p int, key string) ([]byte, bool) {
	pt := &s.parts[p]
	pt.mu.Lock()
	e := pt.items[key]
	if e == nil {
		pt.mu.Unlock()
		return nil, false
	}
	if s.expiredNow(e) {
		s.remove(pt, e)
		pt.mu.Unlock()
		s.stats.expired.Add(1)
		return nil, false
	}
	s.touch(pt, e)
	v := e.value
	pt.mu.Unlock()
	return v, true
}

// set stores value under key. With onlyIfAbsent it stores only when no live
// pair holds the key and reports whether it stored.
func (s *store) set(p int, key string, value []byte, expires int64, onlyIfAbsent bool) bool {
	pt := &s.parts[p]
	pt.mu.Lock()
	e := pt.items[key]
	if e != nil && s.expiredNow(e) {
		s.remove(pt, e)
		s.stats.expired.Add(1)
		e = nil
	}
	switch {
	case e != nil && onlyIfAbsent:
		pt.mu.Unlock()
		return false
	case e != nil:
		s.bytes.Add(int64(len(value) - len(e.value)))
		e.value, e.expires = value, expires
		s.touch(pt, e)
	default:
		e = &entry{key: key, value: value, expires: expires}
		pt.items[key] = e
		s.keys.Add(1)
		s.bytes.Add(e.size())
		s.touch(pt, e)
	}
	pt.mu.Unlock()
	s.evict()
	return true
}

// del removes key and reports whether a live pair was there.
func (s *store) del(p int, key string) bool {
	pt := &s.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	e := pt.items[key]
	if e == nil {
		return false
	}
	s.remove(pt, e)
	if s.expiredNow(e) {
		s.stats.expired.Add(1)
		return false
	}
	return true
}

// flush removes every pair, one partition at a time.
func (s *store) flush() {
	for i := range s.parts {
		pt := &s.parts[i]
		pt.mu.Lock()
		var n, b int64
		for _, e := range pt.items {
			n++
			b += e.size()
		}
		clear(pt.items)
		pt.head, pt.tail = nil, nil
		pt.tailStamp.Store(math.MaxUint64)
		s.keys.Add(-n)
		s.bytes.Add(-b)
		pt.mu.Unlock()
	}
}

// crawl removes expired pairs. It locks one partition at a time, so readers
// and writers of the others never wait for it.
func (s *store) crawl() (removed int) {
	for i := range s.parts {
		pt := &s.parts[i]
		pt.mu.Lock()
		now := s.now()
		for _, e := range pt.items {
			if e.expired(now) {
				s.remove(pt, e)
				removed++
			}
		}
		pt.mu.Unlock()
	}
	s.stats.expired.Add(uint64(removed))
	return removed
}

// len is the number of pairs held, expired ones the crawler has not reached
// yet included.
func (s *store) len() int64 { return s.keys.Load() }

// size is the key and value bytes held.
func (s *store) size() int64 { return s.bytes.Load() }

// evict removes least recently used pairs until the store is within both
// limits. It holds at most one partition lock at a time.
func (s *store) evict() {
	for s.keys.Load() > s.maxKeys || s.bytes.Load() > s.maxBytes {
		victim, oldest := -1, uint64(math.MaxUint64)
		for i := range s.parts {
			if st := s.parts[i].tailStamp.Load(); st < oldest {
				victim, oldest = i, st
			}
		}
		if victim < 0 {
			return
		}
		pt := &s.parts[victim]
		pt.mu.Lock()
		if e := pt.tail; e != nil && e.stamp == oldest {
			s.remove(pt, e)
			s.stats.evicted.Add(1)
		}
		pt.mu.Unlock()
	}
}

// touch makes e the most recently used entry of pt. pt.mu must be held.
func (s *store) touch(pt *partition, e *entry) {
	e.stamp = s.clock.Add(1)
	if pt.head != e {
		unlink(pt, e)
		e.next = pt.head
		if pt.head != nil {
			pt.head.prev = e
		}
		pt.head = e
		if pt.tail == nil {
			pt.tail = e
		}
	}
	pt.tailStamp.Store(pt.tail.stamp)
}

// remove drops e from pt. pt.mu must be held.
func (s *store) remove(pt *partition, e *entry) {
	delete(pt.items, e.key)
	unlink(pt, e)
	s.keys.Add(-1)
	s.bytes.Add(-e.size())
	if pt.tail == nil {
		pt.tailStamp.Store(math.MaxUint64)
	} else {
		pt.tailStamp.Store(pt.tail.stamp)
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
