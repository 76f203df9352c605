package ghost

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testStore returns a store with a clock the test moves by hand.
func testStore(maxKeys, maxBytes int64) (*store, *atomic.Int64) {
	var clock atomic.Int64
	clock.Store(1)
	return newStore(7, maxKeys, maxBytes, &watchdog{}, clock.Load), &clock
}

func TestStoreGetSetDelete(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	if _, ok := s.get(1, "k"); ok {
		t.Fatal("empty store hit")
	}
	if !s.set(1, "k", []byte("v1"), 0, false) {
		t.Fatal("put did not store")
	}
	if s.set(1, "k", []byte("v2"), 0, true) {
		t.Fatal("add overwrote a live pair")
	}
	if v, ok := s.get(1, "k"); !ok || string(v) != "v1" {
		t.Fatalf("get = %q, %v", v, ok)
	}
	if !s.set(1, "k", []byte("v22"), 0, false) {
		t.Fatal("put did not overwrite")
	}
	if v, _ := s.get(1, "k"); string(v) != "v22" {
		t.Fatalf("get after overwrite = %q", v)
	}
	if s.len() != 1 || s.size() != int64(len("k")+len("v22")) {
		t.Fatalf("len %d size %d", s.len(), s.size())
	}
	if !s.del(1, "k") || s.del(1, "k") {
		t.Fatal("delete should succeed once")
	}
	if s.len() != 0 || s.size() != 0 {
		t.Fatalf("after delete: len %d size %d", s.len(), s.size())
	}
}

func TestStoreLRUByKeys(t *testing.T) {
	s, _ := testStore(10, 1<<20)
	for i := range 10 {
		s.set(i%7, fmt.Sprint(i), []byte("v"), 0, false)
	}
	s.get(0, "0") // 0 is now the most recent; 1 the least
	s.set(10%7, "10", []byte("v"), 0, false)
	if _, ok := s.get(1, "1"); ok {
		t.Fatal("least recently used pair survived")
	}
	for _, k := range []int{0, 2, 3, 9, 10} {
		if _, ok := s.get(k%7, fmt.Sprint(k)); !ok {
			t.Fatalf("pair %d evicted out of order", k)
		}
	}
	if s.len() != 10 || s.stats.evicted.Load() != 1 {
		t.Fatalf("len %d evicted %d", s.len(), s.stats.evicted.Load())
	}
}

func TestStoreLRUByBytes(t *testing.T) {
	s, _ := testStore(1000, 100)
	for i := range 5 {
		s.set(i, fmt.Sprint(i), make([]byte, 19), 0, false) // 20 bytes each
	}
	s.set(5, "5", make([]byte, 39), 0, false)
	if s.size() > 100 {
		t.Fatalf("size %d over the limit", s.size())
	}
	for _, k := range []int{0, 1} {
		if _, ok := s.get(k, fmt.Sprint(k)); ok {
			t.Fatalf("pair %d should have been evicted", k)
		}
	}
}

func TestStoreConcurrent(t *testing.T) {
	s, _ := testStore(500, 1<<20)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := fmt.Sprint((g*7919 + i) % 1000)
				p := i % 7
				switch i % 4 {
				case 0:
					s.set(p, k, []byte(k), 0, false)
				case 1:
					s.set(p, k, []byte(k), 0, true)
				case 2:
					s.get(p, k)
				case 3:
					s.del(p, k)
				}
			}
		}()
	}
	wg.Wait()
	if s.len() > 500 {
		t.Fatalf("len %d over MaxKeys", s.len())
	}
	var n, b int64
	for i := range s.parts {
		s.parts[i].each(func(e *entry) {
			if !e.tombstone {
				n++
				b += e.size()
			}
		})
	}
	if n != s.len() || b != s.size() {
		t.Fatalf("counters len %d size %d, actual %d %d", s.len(), s.size(), n, b)
	}
}

func TestStoreFlush(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	for i := range 50 {
		s.set(i%7, fmt.Sprint(i), []byte("v"), 0, false)
	}
	s.flush(s.versions.next())
	if s.len() != 0 || s.size() != 0 {
		t.Fatalf("len %d size %d after flush", s.len(), s.size())
	}
	s.set(0, "again", []byte("v"), 0, false)
	if _, ok := s.get(0, "again"); !ok {
		t.Fatal("store unusable after flush")
	}
}

// merge hands a copy to partition p as a node back from a split does.
func merge(s *store, p int, c pairCopy) bool {
	pt := s.lock(p)
	kept := s.mergeLocked(pt, c)
	pt.mu.Unlock()
	s.evict()
	return kept
}

func TestStoreTombstones(t *testing.T) {
	s, now := testStore(100, 1<<20)
	s.set(1, "k", []byte("v1"), 0, false)
	if !s.del(1, "k") {
		t.Fatal("del of a live pair")
	}
	deleted := s.parts[1].load("k").version
	// An older copy arriving later does not bring the pair back; a newer
	// one does.
	if merge(s, 1, pairCopy{key: "k", value: []byte("old"), version: deleted - 1}) {
		t.Fatal("an older copy revived a deleted pair")
	}
	if _, ok := s.get(1, "k"); ok || s.len() != 0 {
		t.Fatal("a tombstone reads as a pair")
	}
	if !merge(s, 1, pairCopy{key: "k", value: []byte("new"), version: deleted + 1}) {
		t.Fatal("a newer copy was refused")
	}
	s.del(1, "k")
	// The crawler removes tombstones once they are older than the TTL.
	s.crawl(int64(time.Hour))
	if s.parts[1].load("k") == nil {
		t.Fatal("a young tombstone was removed")
	}
	now.Add(int64(2 * time.Hour))
	s.crawl(int64(time.Hour))
	if s.parts[1].load("k") != nil {
		t.Fatal("an old tombstone was kept")
	}
	// A flush refuses copies older than itself.
	s.set(2, "a", []byte("v"), 0, false)
	older := s.parts[2].load("a").version
	s.flush(s.versions.next())
	if merge(s, 2, pairCopy{key: "a", value: []byte("v"), version: older}) || s.len() != 0 {
		t.Fatal("a copy older than a flush was kept")
	}
}

// A write the primary decided is not read until its copies confirm it:
// readers get the confirmed pair it replaced (a write that fails is never
// seen), then the write once confirmed.
func TestStoreReadsNoUnconfirmedWrite(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	s.set(1, "k", []byte("confirmed"), 0, false)
	for _, decided := range []pairCopy{
		{key: "k", value: []byte("undecided"), version: s.versions.next()},
		{key: "k", version: s.versions.next(), tombstone: true},
		{key: "k", value: []byte("again"), version: s.versions.next()},
	} {
		pt := s.lock(1)
		if decided.tombstone {
			s.deleteLocked(pt, decided.key, decided.version)
		} else {
			s.setLocked(pt, decided.key, decided.value, 0, decided.version, false)
		}
		pt.mu.Unlock()
		if v, ok := s.get(1, "k"); !ok || string(v) != "confirmed" {
			t.Fatalf("with %+v undecided, read %q, %v; want the confirmed pair", decided, v, ok)
		}
	}
	// The delete is confirmed after a newer write replaced it: readers of
	// that write see the delete, not the pair it deleted.
	var deleted uint64
	for e := s.parts[1].load("k"); e != nil; e = e.prior.Load() {
		if e.tombstone {
			deleted = e.version
		}
	}
	s.confirm(1, "k", deleted)
	if v, ok := s.get(1, "k"); ok {
		t.Fatalf("after the delete's confirmation read %q; want a miss", v)
	}
	s.confirm(1, "k", s.parts[1].load("k").version)
	if v, ok := s.get(1, "k"); !ok || string(v) != "again" {
		t.Fatalf("after the confirmation read %q, %v", v, ok)
	}
	pt := s.lock(1)
	s.setLocked(pt, "new", []byte("v"), 0, s.versions.next(), false)
	pt.mu.Unlock()
	if _, ok := s.get(1, "new"); ok {
		t.Fatal("an unconfirmed first write of a key was read")
	}
}

// What a partition forgets stays forgotten: once a tombstone is collected,
// or a newer pair expires or is evicted, an older copy of the key handed
// back (a node back from a long split) is refused, though no entry is left
// to say it is older. Copies newer than the forgetting, and the
// partition's other keys written since, are taken.
func TestStoreForgettingStaysForgotten(t *testing.T) {
	s, now := testStore(3, 1<<20)
	old := s.versions.next() // the version a node cut off long ago holds
	s.set(1, "deleted", []byte("v"), 0, false)
	s.del(1, "deleted")
	now.Add(int64(2 * time.Hour))
	s.crawl(int64(time.Hour)) // the tombstone is collected
	if merge(s, 1, pairCopy{key: "deleted", value: []byte("old"), version: old}) {
		t.Error("a copy older than a collected tombstone was taken")
	}
	s.set(2, "expired", []byte("new"), now.Load()+int64(time.Second), false)
	now.Add(int64(2 * time.Second))
	if _, ok := s.get(2, "expired"); ok {
		t.Fatal("an expired pair was read")
	}
	if merge(s, 2, pairCopy{key: "expired", value: []byte("old"), version: old}) {
		t.Error("a copy older than an expired pair was taken")
	}
	s.set(0, "evicted", []byte("new"), 0, false)
	for _, k := range []string{"a", "b", "c"} {
		s.set(0, k, []byte("v"), 0, false)
	}
	if _, ok := s.get(0, "evicted"); ok {
		t.Fatal("the least recently used pair was not evicted")
	}
	if merge(s, 0, pairCopy{key: "evicted", value: []byte("old"), version: old}) {
		t.Error("a copy older than an evicted pair was taken")
	}
	if !merge(s, 0, pairCopy{key: "fresh", value: []byte("new"), version: s.versions.next()}) {
		t.Error("a copy newer than what the partition forgot was refused")
	}
	// The primary's own copies are the partition: its watermark does not
	// apply to them.
	pt := s.lock(2)
	kept, _ := s.applyFromPrimary(pt, pairCopy{key: "streamed", value: []byte("v"), version: old}, 0)
	pt.mu.Unlock()
	if !kept {
		t.Error("a copy from the primary was refused for the watermark")
	}
	// Dropping a partition forgets its watermark with it: a stream brings
	// the primary's.
	s.dropPartition(1)
	if s.forgottenOf(1) != 0 {
		t.Error("a dropped partition kept its watermark")
	}
}

// Tombstones count toward MaxKeys and MaxBytes: deleting a million absent
// keys leaves the store within its bounds, and the tombstones evicted
// still refuse older copies (the watermark).
func TestStoreTombstonesAreBounded(t *testing.T) {
	s, _ := testStore(1000, 1<<20)
	old := s.versions.next()
	for i := range 100_000 { // a hundred times MaxKeys
		s.del(i%4, fmt.Sprintf("absent-%d", i))
		if i%1000 == 0 {
			if held := s.len() + s.tombstones(); held > 1000 {
				t.Fatalf("after %d deletes the store holds %d entries, over MaxKeys 1000", i, held)
			}
		}
	}
	if got := s.tombstones(); got != 1000 {
		t.Errorf("%d tombstones held; want MaxKeys, 1000", got)
	}
	if merge(s, 0, pairCopy{key: "absent-0", value: []byte("old"), version: old}) {
		t.Error("a copy older than an evicted tombstone was taken")
	}
	// Pairs written after the flood take the tombstones' place.
	for i := range 1000 {
		s.set(i%4, fmt.Sprintf("pair-%d", i), []byte("v"), 0, false)
	}
	if s.len() != 1000 || s.tombstones() != 0 {
		t.Errorf("%d pairs and %d tombstones; want 1000 and 0", s.len(), s.tombstones())
	}
}

// A read ranks its pair after every pair written before it, whichever
// partitions they are in.
func TestStoreReadRanksAfterEarlierWrites(t *testing.T) {
	for _, parts := range [][3]int{{0, 1, 2}, {2, 1, 0}, {3, 3, 3}} {
		s, _ := testStore(2, 1<<20)
		s.set(parts[0], "a", []byte("v"), 0, false)
		s.set(parts[1], "b", []byte("v"), 0, false)
		s.get(parts[0], "a")
		s.set(parts[2], "c", []byte("v"), 0, false)
		if _, ok := s.get(parts[1], "b"); ok {
			t.Fatalf("partitions %v: b, written before a was read, survived", parts)
		}
		_, okA := s.get(parts[0], "a")
		_, okC := s.get(parts[2], "c")
		if !okA || !okC {
			t.Fatalf("partitions %v: a kept %v, c kept %v", parts, okA, okC)
		}
	}
}

func TestStoreUnconfirmedYieldsToThePrimary(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	decide := func(key string, version uint64) {
		pt := s.lock(1)
		s.setLocked(pt, key, []byte("undecided"), 0, version, false)
		pt.mu.Unlock()
	}
	// Writes this node decided as a primary, never confirmed, with versions
	// above anything the new primary sends (a stalled node's).
	high := s.versions.next() + uint64(time.Minute)
	decide("merged", high)
	decide("copied", high)
	decide("streamed", high)
	decide("absent", high)
	// A hand-back merge keeps the newer: the primary's own write may still
	// be on its way to its copies.
	pt := s.lock(1)
	if s.mergeLocked(pt, pairCopy{key: "merged", value: []byte("older"), version: high - 1}) {
		t.Error("a merge replaced a newer write")
	}
	// The primary's copies replace them, a write's copy or a stream's.
	if kept, _ := s.applyFromPrimary(pt, pairCopy{key: "copied", value: []byte("primary"), version: high - 2}, 0); !kept {
		t.Error("a write's copy from the primary was refused")
	}
	start := high - 10
	if kept, _ := s.applyFromPrimary(pt, pairCopy{key: "streamed", value: []byte("primary"), version: start - 1}, start); !kept {
		t.Error("a streamed copy from the primary was refused")
	}
	// The end of the stream drops what the primary did not send.
	s.dropOlderLocked(pt, start, map[string]struct{}{"merged": {}, "copied": {}, "streamed": {}})
	pt.mu.Unlock()
	// The merged key keeps the undecided write, which readers do not see:
	// it was never confirmed.
	if pt := s.lock(1); pt.load("merged") == nil || string(pt.load("merged").value) != "undecided" {
		t.Error("the undecided write was dropped")
	}
	s.parts[1].mu.Unlock()
	for key, want := range map[string]string{"merged": "", "copied": "primary", "streamed": "primary", "absent": ""} {
		v, ok := s.get(1, key)
		if string(v) != want || ok != (want != "") {
			t.Errorf("%s = %q, %v; want %q", key, v, ok, want)
		}
	}
	// A confirmed pair newer than the stream's start stays.
	s.set(1, "confirmed", []byte("new"), 0, false)
	pt = s.lock(1)
	if kept, _ := s.applyFromPrimary(pt, pairCopy{key: "confirmed", value: []byte("old"), version: start}, start); kept {
		t.Error("a stream's older copy replaced a confirmed newer pair")
	}
	pt.mu.Unlock()
}
