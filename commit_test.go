package ghost

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// applyCopy applies v as a write's copy to partition 1 of s, as a backup
// does, and returns its version.
func applyCopy(s *store, key, v string) uint64 {
	version := s.versions.next()
	pt := s.lock(1)
	s.applyFromPrimary(pt, pairCopy{key: key, value: []byte(v), version: version}, 0, true)
	pt.mu.Unlock()
	return version
}

// A backup's reader waits for its primary's commit of a copy, then reads
// it; the copy of a write still in flight is never read before.
func TestCopiesAreReadOnceCommitted(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	s.settleWait = time.Hour
	s.set(1, "k", []byte("old"), 0, false)
	version := applyCopy(s, "k", "new")
	got := readInBackground(context.Background(), s, "k")
	stillWaiting(t, got, "while its copy was not committed")
	pt := s.lock(1)
	committed := commitLocked(pt, "k", version)
	pt.mu.Unlock()
	if !committed {
		t.Fatal("the commit found no pending copy")
	}
	if v := <-got; v != "new" {
		t.Fatalf("read %q once committed, want new", v)
	}
}

// A copy whose commit never comes is read after settleWait, as a backup's
// copy always was: its primary most likely acknowledged it and died.
func TestCopiesAreReadAfterSettleWaitWithoutCommit(t *testing.T) {
	s, _ := testStore(100, 1<<20)
	s.settleWait = 10 * time.Millisecond
	s.set(1, "k", []byte("old"), 0, false)
	applyCopy(s, "k", "new")
	if v, _ := s.get(1, "k"); string(v) != "new" {
		t.Fatalf("read %q after settleWait, want the copy", v)
	}
	if s.settleTimeouts.Load() != 1 {
		t.Fatalf("%d reads waited settleWait out, want 1", s.settleTimeouts.Load())
	}
}

// A backup made the primary finishes the copies it holds pending: they go
// to the partition's copies, are confirmed, and its readers get them.
func TestANewPrimaryFinishesItsPendingCopies(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := context.Background()
	primary := c.nodes[1]
	key := c.keyOwnedBy(primary, "adopt")
	p := primary.partitionOf(key)
	// A copy an earlier primary sent, whose commit never came.
	raw, err := primary.encodeValue(key, "adopted")
	if err != nil {
		t.Fatal(err)
	}
	version := primary.store.versions.next()
	pt := primary.store.lock(p)
	primary.store.applyFromPrimary(pt, pairCopy{key: key, value: raw, version: version}, 0, true)
	pt.mu.Unlock()
	primary.adoptPending(p)
	if v, err := GetAs[string](ctx, primary, key); err != nil || v != "adopted" {
		t.Fatalf("read %q, %v on the new primary, want adopted", v, err)
	}
	waitFor(t, 10*time.Second, func() error {
		for _, n := range c.nodes {
			tb := n.table.Load()
			if !tb.holds(p) {
				continue
			}
			raw, ok := n.store.get(p, key)
			if v, err := decodeValue(raw); !ok || err != nil || v != "adopted" {
				return fmt.Errorf("%s holds %v (%v)", n.Addr(), v, err)
			}
		}
		return nil
	})
}
