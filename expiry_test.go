package ghost

import (
	"testing"
	"time"
)

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

// Within the grace of StaleWhileRevalidate an expired pair is gone for
// reads and for the crawler keeps; stale returns it; past the grace it is
// gone for all.
func TestStoreKeepsExpiredPairsForTheirGrace(t *testing.T) {
	s, clock := testStore(100, 1<<20)
	s.grace = 50
	s.set(1, "k", []byte("v"), 100, false)
	clock.Store(120)
	if _, ok := s.get(1, "k"); ok {
		t.Fatal("an expired pair was read")
	}
	if v, ok := s.stale(1, "k"); !ok || string(v) != "v" {
		t.Fatalf("stale within the grace: %q, %v", v, ok)
	}
	if n := s.crawl(int64(time.Hour)); n != 0 || s.len() != 1 {
		t.Fatalf("the crawler removed %d within the grace (%d left)", n, s.len())
	}
	clock.Store(150)
	if _, ok := s.stale(1, "k"); ok {
		t.Fatal("stale past the grace")
	}
	if n := s.crawl(int64(time.Hour)); n != 1 || s.len() != 0 {
		t.Fatalf("the crawler removed %d past the grace (%d left)", n, s.len())
	}
}
