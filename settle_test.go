package ghost

import (
	"context"
	"testing"
	"time"
)

// decideWrite makes v the unconfirmed write of key in partition 1 of s,
// as a primary deciding it does, and returns its version.
func decideWrite(s *store, key, v string) uint64 {
	version := s.versions.next()
	pt := s.lock(1)
	s.setLocked(pt, key, []byte(v), 0, version, false)
	pt.mu.Unlock()
	return version
}

// readInBackground starts a read of key with ctx and returns where its
// answer arrives.
func readInBackground(ctx context.Context, s *store, key string) <-chan string {
	got := make(chan string, 1)
	go func() {
		v, _ := s.getHashed(ctx, 1, hashKey(key), key)
		got <- string(v)
	}()
	return got
}

// A read on the primary that meets a write in flight answers once the
// write settles: the new value once confirmed, the old one once failed,
// and the old one when the reader's context ends first.
func TestReadsWaitForAWriteInFlight(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	s.settleWait = time.Hour // only the write's outcome, or ctx, ends a wait
	s.set(1, "k", []byte("old"), 0, false)

	version := decideWrite(s, "k", "new")
	got := readInBackground(context.Background(), s, "k")
	select {
	case v := <-got:
		t.Fatalf("the read answered %q while the write was in flight", v)
	case <-time.After(20 * time.Millisecond): // a wait that should not end: no timing is asserted
	}
	s.confirm(1, "k", version)
	if v := <-got; v != "new" {
		t.Fatalf("read %q once the write was confirmed, want new", v)
	}

	version = decideWrite(s, "k", "failed")
	got = readInBackground(context.Background(), s, "k")
	s.abandon(1, "k", version)
	if v := <-got; v != "new" {
		t.Fatalf("read %q once the write failed, want new", v)
	}
	if v, _ := s.get(1, "k"); v == nil || string(v) != "new" {
		t.Fatalf("a read after the failed write: %q, want new without waiting", v)
	}

	decideWrite(s, "k", "pending")
	ctx, cancel := context.WithCancel(context.Background())
	got = readInBackground(ctx, s, "k")
	cancel()
	if v := <-got; v != "new" {
		t.Fatalf("read %q once its context ended, want new", v)
	}
}

// A write decided again past a copy's newer version (restamp) wakes the
// readers of the first decision, who then wait for the second.
func TestReadsFollowARestampedWrite(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	s.settleWait = time.Hour
	s.set(1, "k", []byte("old"), 0, false)
	first := decideWrite(s, "k", "new")
	got := readInBackground(context.Background(), s, "k")
	pt := s.lock(1)
	again := s.versions.next()
	if !s.restampLocked(pt, pairCopy{key: "k", value: []byte("new"), version: first}, again) {
		t.Fatal("restamp refused")
	}
	pt.mu.Unlock()
	s.confirm(1, "k", again)
	if v := <-got; v != "new" && v != "old" {
		t.Fatalf("read %q", v)
	}
	if v, _ := s.get(1, "k"); string(v) != "new" {
		t.Fatalf("read %q after the restamped write was confirmed", v)
	}
}
