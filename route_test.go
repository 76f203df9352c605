package ghost

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A crashed primary's process started again on its address, before it has
// joined and before the table drops the old one, answers "wrong owner": a
// read goes on to the in-sync backup instead of failing until the table
// changes (the failure detection time and more).
func TestReadFailsOverPastAReplacedPrimary(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) { cfg.RequestTimeout = time.Second })
	ctx := context.Background()
	key := c.keyOwnedBy(c.nodes[1], "replaced")
	if err := c.nodes[0].Put(ctx, key, 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	before := c.nodes[0].table.Load().version
	cfg := testConfig(c.net)
	cfg.Addr = c.nodes[1].Addr()
	c.nodes[1].halt()
	replacement, err := Join(ctx, cfg) // not joined yet: no seeds
	if err != nil {
		t.Fatal(err)
	}
	defer replacement.Close()
	reader := c.nodes[2]
	if reader.table.Load().isPrimary(reader.partitionOf(key)) {
		reader = c.nodes[0]
	}
	it, err := reader.Get(ctx, key)
	if v := reader.table.Load().version; v != before {
		t.Skipf("the table changed (%d to %d) before the read: nothing to fail over", before, v)
	}
	if err != nil || it.Value != int64(1) {
		t.Fatalf("Get past the replaced primary: %v, %v", it.Value, err)
	}
}

// A call with a cancelled context fails with the context's error, even
// when this node serves the key itself and nothing would wait on it.
func TestCancelledContextFailsLocalCalls(t *testing.T) {
	c := newCluster(t, 1, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := c.nodes[0]
	if _, err := n.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v", err)
	}
	if err := n.Put(ctx, "k", 1, NoExpiry); !errors.Is(err, context.Canceled) {
		t.Errorf("Put: %v", err)
	}
	if err := n.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v", err)
	}
}
