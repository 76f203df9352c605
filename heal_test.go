package ghost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A split longer than TombstoneTTL undoes no delete and no overwrite: a
// node cut off while the majority deletes keys (their tombstones collected
// since), overwrites others under a short TTL (expired since) and evicts
// others (a full cache), hands its copies back on healing, and none of the
// old values is served again. Before the partitions kept a watermark of
// what they forgot, 78–90 of 200 deleted keys came back.
func TestLongSplitBringsNothingBack(t *testing.T) {
	const keys = 200
	c := newCluster(t, 5, false, fastFailureDetection, func(cfg *Config) {
		cfg.TombstoneTTL = 200 * time.Millisecond
		cfg.CrawlerInterval = 50 * time.Millisecond
	})
	ctx := context.Background()
	for _, prefix := range []string{"deleted", "expired"} {
		for i := range keys {
			if err := c.nodes[0].Put(ctx, fmt.Sprintf("%s-%d", prefix, i), "before the split", NoExpiry); err != nil {
				t.Fatal(err)
			}
		}
	}
	cut := c.nodes[4]
	majority := c.nodes[:4]
	held := 0
	for i := range keys {
		if _, ok := cut.store.get(cut.partitionOf(fmt.Sprint("deleted-", i)), fmt.Sprint("deleted-", i)); ok {
			held++
		}
	}
	t.Logf("the node cut off holds copies of %d of the %d keys to delete", held, keys)
	c.net.Isolate(cut.Addr())
	waitFor(t, 20*time.Second, func() error {
		for _, n := range majority {
			if m := n.table.Load().members; len(m) != 4 {
				return fmt.Errorf("%s's table has %d members", n.Addr(), len(m))
			}
		}
		return nil
	})
	c.waitConvergedAmong(majority)
	for i := range keys {
		via := majority[i%4]
		if err := via.Delete(ctx, fmt.Sprint("deleted-", i)); err != nil {
			t.Fatal(err)
		}
		if err := via.Put(ctx, fmt.Sprint("expired-", i), "overwritten", 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	// The majority forgets: tombstones collected, overwritten pairs expired.
	waitFor(t, 20*time.Second, func() error {
		for _, n := range majority {
			if tombs := n.store.tombstones(); tombs != 0 {
				return fmt.Errorf("%s holds %d tombstones", n.Addr(), tombs)
			}
			if pairs := n.store.len(); pairs != 0 {
				return fmt.Errorf("%s holds %d pairs", n.Addr(), pairs)
			}
		}
		return nil
	})
	c.net.Heal(cut.Addr())
	c.waitConverged()
	for _, n := range c.nodes {
		for i := range keys {
			for _, key := range []string{fmt.Sprint("deleted-", i), fmt.Sprint("expired-", i)} {
				if it, err := n.Get(ctx, key); !errors.Is(err, ErrCacheMiss) {
					t.Errorf("Get(%s) via %s = %v, %v; want a miss", key, n.Addr(), it.Value, err)
				}
			}
		}
	}
}
