package ghost

import (
	"math/bits"
	"sync/atomic"
)

// index maps a partition's keys to their entries. Readers take no lock and
// write nothing; writers hold the partition's lock.
//
// It is an open-addressing table of slots, each a key's hash and a pointer
// to its entry, probed linearly. A reader walks the slots from the key's
// home until an empty one: a hit costs the slot, the entry and the key's
// bytes, where a sync.Map costs a walk down its trie of nodes first. A
// writer changes one slot in place (a new entry, or the deleted marker), or
// builds a larger table and publishes it whole; a reader holding the old
// one sees the index as it was when its read began.
type index struct {
	table atomic.Pointer[slotTable]
}

type slotTable struct {
	slots []slot
	shift uint8 // 64 - log2(len(slots))
	used  int   // slots that are not empty: live and deleted
	live  int
}

type slot struct {
	hash  atomic.Uint64
	entry atomic.Pointer[entry] // nil: empty; deletedSlot: deleted
}

// deletedSlot marks a slot whose key was deleted: probes go on past it,
// and a write may reuse it.
var deletedSlot = &entry{}

const minSlots = 8

func newSlotTable(size int) *slotTable {
	size = max(size, minSlots)
	size = 1 << bits.Len(uint(size-1)) // a power of two
	return &slotTable{slots: make([]slot, size), shift: uint8(64 - bits.TrailingZeros(uint(size)))}
}

// home is where a probe for hash h starts: Fibonacci hashing, so that the
// keys of one partition, which agree on h modulo the partition count,
// spread over all slots.
func (t *slotTable) home(h uint64) int { return int((h * 0x9E3779B97F4A7C15) >> t.shift) }

// load returns key's entry, or nil.
func (ix *index) load(h uint64, key string) *entry {
	_, _, e := ix.find(h, key)
	return e
}

// find returns the table, the slot holding key and its entry, or nil for
// the slot and the entry.
func (ix *index) find(h uint64, key string) (*slotTable, *slot, *entry) {
	t := ix.table.Load()
	if t == nil {
		return nil, nil, nil
	}
	mask := len(t.slots) - 1
	for i, n := t.home(h), 0; n < len(t.slots); i, n = (i+1)&mask, n+1 {
		s := &t.slots[i]
		e := s.entry.Load()
		if e == nil {
			break
		}
		if e != deletedSlot && s.hash.Load() == h && e.key == key {
			return t, s, e
		}
	}
	return t, nil, nil
}

// store makes e the entry of its key. The partition's lock is held.
func (ix *index) store(h uint64, e *entry) {
	t := ix.table.Load()
	if t == nil || 4*(t.used+1) > 3*len(t.slots) {
		t = ix.grow(t)
	}
	mask := len(t.slots) - 1
	free := -1
	for i, n := t.home(h), 0; n < len(t.slots); i, n = (i+1)&mask, n+1 {
		s := &t.slots[i]
		old := s.entry.Load()
		if old == nil {
			if free < 0 {
				free = i
				t.used++
			}
			break
		}
		if old == deletedSlot {
			if free < 0 {
				free = i
			}
			continue
		}
		if s.hash.Load() == h && old.key == e.key {
			s.entry.Store(e) // a new version of the key, in place
			return
		}
	}
	s := &t.slots[free]
	// The hash before the entry: a reader that sees the entry sees its
	// hash.
	s.hash.Store(h)
	s.entry.Store(e)
	t.live++
}

// delete removes key's entry, if any. The partition's lock is held.
func (ix *index) delete(h uint64, key string) {
	if t, s, _ := ix.find(h, key); s != nil {
		s.entry.Store(deletedSlot)
		t.live--
	}
}

// grow publishes a table with room for twice the live entries (at least
// as many slots as now, less once deletes have left many markers), and
// returns it. The partition's lock is held.
func (ix *index) grow(old *slotTable) *slotTable {
	if old == nil {
		t := newSlotTable(minSlots)
		ix.table.Store(t)
		return t
	}
	t := newSlotTable(4 * (old.live + 1))
	mask := len(t.slots) - 1
	for i := range old.slots {
		s := &old.slots[i]
		e := s.entry.Load()
		if e == nil || e == deletedSlot {
			continue
		}
		h := s.hash.Load()
		j := t.home(h)
		for t.slots[j].entry.Load() != nil {
			j = (j + 1) & mask
		}
		t.slots[j].hash.Store(h)
		t.slots[j].entry.Store(e)
		t.used++
		t.live++
	}
	ix.table.Store(t)
	return t
}

// each calls f for every entry. The partition's lock is held; f may delete
// the entry it is given.
func (ix *index) each(f func(e *entry)) {
	t := ix.table.Load()
	if t == nil {
		return
	}
	for i := range t.slots {
		if e := t.slots[i].entry.Load(); e != nil && e != deletedSlot {
			f(e)
		}
	}
}

// clear empties the index. The partition's lock is held.
func (ix *index) clear() { ix.table.Store(nil) }
