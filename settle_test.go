package ghost

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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

// stillWaiting fails t if the read whose answer arrives on got answers
// within a short while: it should be waiting, while what.
func stillWaiting(t *testing.T, got <-chan string, what string) {
	t.Helper()
	select {
	case v := <-got:
		t.Fatalf("the read answered %q %s", v, what)
	case <-time.After(20 * time.Millisecond): // a wait that should not end: no timing is asserted
	}
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
	stillWaiting(t, got, "while the write was in flight")
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
	stillWaiting(t, got, "while the write, decided again, was in flight")
	s.confirm(1, "k", again)
	if v := <-got; v != "new" {
		t.Fatalf("read %q, want the write it waited for", v)
	}
	if v, _ := s.get(1, "k"); string(v) != "new" {
		t.Fatalf("read %q after the restamped write was confirmed", v)
	}
}

// A newer write of the key that fails on top of one still in flight does
// not make a waiting reader skip both: it waits for the first, and reads
// it once confirmed. (A reader served the value before both, after a copy
// had served the first: TestManyWritersPerKeyAreLinearizable.)
func TestReadsWaitPastAFailedWriteForTheOneBelow(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	s.settleWait = time.Hour
	s.set(1, "k", []byte("old"), 0, false)
	first := decideWrite(s, "k", "first")
	second := decideWrite(s, "k", "second")
	got := readInBackground(context.Background(), s, "k")
	s.abandon(1, "k", second)
	stillWaiting(t, got, "while the first write was in flight")
	s.confirm(1, "k", first)
	if v := <-got; v != "first" {
		t.Fatalf("read %q, want the first write, confirmed", v)
	}
	if v, _ := s.get(1, "k"); string(v) != "first" {
		t.Fatalf("read %q afterwards, want first", v)
	}
}

// Two nodes that each read keys the other writes, and write keys the other
// reads, do not stall: a read that waits for a write in flight is served
// off its connection's line, so the copy that settles the write, queued
// behind it, is not stuck there. (Served in line, two such reads on the
// two nodes waited for each other until settleWait ran out: ghostbench's
// cluster row saw no op complete for a second, and copies time out.)
func TestContendedReadsAndWritesDoNotStall(t *testing.T) {
	c := newCluster(t, 2, false)
	ctx := context.Background()
	keys := make([]string, 32)
	for i := range keys {
		keys[i] = fmt.Sprint("contended-", i)
		if err := c.nodes[0].Put(ctx, keys[i], 0, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		for g := range 8 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for i := range 300 {
					k := keys[rng.IntN(len(keys))]
					var err error
					if i%3 == 0 {
						err = n.Put(ctx, k, i, NoExpiry)
					} else if _, err = n.Get(ctx, k); errors.Is(err, ErrCacheMiss) {
						err = nil
					}
					if err != nil {
						t.Errorf("%s on %s: %v", k, n.Addr(), err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for _, n := range c.nodes {
		if got := n.store.settleTimeouts.Load(); got != 0 {
			t.Errorf("%s: %d reads waited the whole settleWait for a write in flight", n.Addr(), got)
		}
	}
}
