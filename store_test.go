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

func TestStoreExpiry(t *testing.T) {
	s, clock := testStore(100, 1<<20)
	s.set(0, "short", []byte("x"), 10, false)
	s.set(0, "forever", []byte("x"), 0, false)
	s.set(2, "later", []byte("x"), 100, false)
	clock.Store(10)
	if _, ok := s.get(0, "short"); ok {
		t.Fatal("expired pair returned")
	}
	if s.del(2, "short") {
		t.Fatal("delete of an expired pair reported REMOVED")
	}
	if s.set(2, "later", []byte("y"), 0, true) {
		t.Fatal("add over a live pair stored")
	}
	clock.Store(100)
	if !s.set(2, "later", []byte("y"), 0, true) {
		t.Fatal("add over an expired pair did not store")
	}
	s.set(3, "a", []byte("x"), 150, false)
	s.set(4, "b", []byte("x"), 150, false)
	clock.Store(200)
	if n := s.crawl(int64(time.Hour)); n != 2 {
		t.Fatalf("crawl removed %d, want 2", n)
	}
	if s.len() != 2 {
		t.Fatalf("len %d after crawl, want 2 (forever, later)", s.len())
	}
	if got := s.stats.expired.Load(); got != 4 { // short, later, a, b
		t.Fatalf("expired counter %d, want 4", got)
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

func TestStoreTombstones(t *testing.T) {
	s, now := testStore(100, 1<<20)
	s.set(1, "k", []byte("v1"), 0, false)
	if !s.del(1, "k") {
		t.Fatal("del of a live pair")
	}
	deleted := s.parts[1].load("k").version
	// An older copy arriving later does not bring the pair back; a newer
	// one does.
	if s.apply(1, pairCopy{key: "k", value: []byte("old"), version: deleted - 1}) {
		t.Fatal("an older copy revived a deleted pair")
	}
	if _, ok := s.get(1, "k"); ok || s.len() != 0 {
		t.Fatal("a tombstone reads as a pair")
	}
	if !s.apply(1, pairCopy{key: "k", value: []byte("new"), version: deleted + 1}) {
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
	if s.apply(2, pairCopy{key: "a", value: []byte("v"), version: older}) || s.len() != 0 {
		t.Fatal("a copy older than a flush was kept")
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
	if s.applyLocked(pt, pairCopy{key: "merged", value: []byte("older"), version: high - 1}) {
		t.Error("a merge replaced a newer write")
	}
	// The primary's copies replace them, a write's copy or a stream's.
	if !s.applyFromPrimary(pt, pairCopy{key: "copied", value: []byte("primary"), version: high - 2}, 0) {
		t.Error("a write's copy from the primary was refused")
	}
	start := high - 10
	if !s.applyFromPrimary(pt, pairCopy{key: "streamed", value: []byte("primary"), version: start - 1}, start) {
		t.Error("a streamed copy from the primary was refused")
	}
	// The end of the stream drops what the primary did not send.
	s.dropOlderLocked(pt, start, map[string]struct{}{"merged": {}, "copied": {}, "streamed": {}})
	pt.mu.Unlock()
	for key, want := range map[string]string{"merged": "undecided", "copied": "primary", "streamed": "primary", "absent": ""} {
		v, ok := s.get(1, key)
		if string(v) != want || ok != (want != "") {
			t.Errorf("%s = %q, %v; want %q", key, v, ok, want)
		}
	}
	// A confirmed pair newer than the stream's start stays.
	s.set(1, "confirmed", []byte("new"), 0, false)
	pt = s.lock(1)
	if s.applyFromPrimary(pt, pairCopy{key: "confirmed", value: []byte("old"), version: start}, start) {
		t.Error("a stream's older copy replaced a confirmed newer pair")
	}
	pt.mu.Unlock()
}
