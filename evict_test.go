package ghost

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A full cache under writes: every node evicts, and the copies of each
// partition follow their primary's evictions, so anti-entropy finds them
// alike once the writes stop, and Safe holds. Before, each node's LRU
// evicted its own mix: filling 3 nodes of MaxKeys 300 with 3,000 keys ran
// 147 resyncs, and every resync made the node not Safe while it ran.
func TestFullCacheCopiesAgree(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.MaxKeys = 300
		cfg.AntiEntropyInterval = 100 * time.Millisecond
	})
	ctx := context.Background()
	for i := range 3000 {
		if err := c.nodes[i%3].Put(ctx, fmt.Sprint("full-", i), i, NoExpiry); err != nil {
			t.Fatal(err)
		}
		// Reads keep some old pairs: the primaries see them, their
		// copies do not.
		_, _ = c.nodes[i%3].Get(ctx, fmt.Sprint("full-", i%100))
	}
	resyncs := func() (total uint64) {
		for _, n := range c.nodes {
			total += n.stats.resyncs.Load()
		}
		return total
	}
	// The notices still queued go out; a round may still find one lost.
	waitFor(t, 10*time.Second, func() error {
		before := resyncs()
		for _, n := range c.nodes {
			n.antiEntropyRound()
		}
		if after := resyncs(); after != before {
			return fmt.Errorf("an anti-entropy round resynced %d partitions", after-before)
		}
		return nil
	})
	settled := resyncs()
	t.Logf("%d resyncs while filling", settled)
	if settled > 30 { // a notice still on its way when a round compares; 265 before
		t.Errorf("%d resyncs while filling: the copies do not follow their primary's evictions", settled)
	}
	for range 20 {
		for _, n := range c.nodes {
			n.antiEntropyRound()
			if !n.Safe() {
				t.Fatalf("%s is not Safe with the writes stopped", n.Addr())
			}
		}
	}
	if got := resyncs(); got != settled {
		t.Errorf("%d more resyncs with no writes", got-settled)
	}
	for _, n := range c.nodes {
		if held := n.store.len() + n.store.tombstones(); held > 300 {
			t.Errorf("%s holds %d entries, over MaxKeys", n.Addr(), held)
		}
	}
}
