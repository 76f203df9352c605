package ghost

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestNodeKilledWithoutLeave(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(fmt.Sprint("tcp=", tcp), func(t *testing.T) {
			c := newCluster(t, 3, tcp, fastFailureDetection)
			ctx := context.Background()
			victim := c.nodes[2]
			keys := make([]string, 5)
			for i := range keys {
				keys[i] = c.keyOwnedBy(victim, fmt.Sprint("doomed", i))
				if err := c.nodes[0].Put(ctx, keys[i], i, NoExpiry); err != nil {
					t.Fatal(err)
				}
			}
			victim.halt()
			want := []string{c.nodes[0].Addr(), c.nodes[1].Addr()}
			slices.Sort(want)
			waitFor(t, 10*time.Second, func() error {
				for _, n := range c.nodes[:2] {
					up, err := n.Ping(ctx)
					if err != nil || !slices.Equal(up, want) {
						return fmt.Errorf("Ping via %s = %v, %v", n.Addr(), up, err)
					}
				}
				return nil
			})
			c.waitConverged()
			// The keys the dead node owned have a new owner that serves them.
			for i, k := range keys {
				if _, err := c.nodes[1].Get(ctx, k); err != nil && !errors.Is(err, ErrCacheMiss) {
					t.Fatalf("Get of a key the dead node owned: %v", err)
				}
				if err := c.nodes[0].Put(ctx, k, i, NoExpiry); err != nil {
					t.Fatalf("Put after the owner died: %v", err)
				}
				if it, err := c.nodes[1].Get(ctx, k); err != nil || it.Value != int64(i) {
					t.Fatalf("Get after the owner died = %v, %v", it.Value, err)
				}
			}
		})
	}
}

func TestReadsFallBackWhenOwnerUnreachable(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.RequestTimeout = 300 * time.Millisecond
	})
	ctx := context.Background()
	victim := c.nodes[2]
	k := c.keyOwnedBy(victim, "cut")
	if err := c.nodes[0].Put(ctx, k, "v", NoExpiry); err != nil {
		t.Fatal(err)
	}
	c.net.Isolate(victim.Addr())
	// Before gossip notices, a read fails over to an in-sync backup.
	if it, err := c.nodes[0].Get(ctx, k); err != nil || it.Value != "v" {
		t.Fatalf("Get with the owner cut off = %v, %v", it.Value, err)
	}
	if c.nodes[0].stats.forwardErrors.Load() == 0 && c.nodes[1].stats.forwardErrors.Load() == 0 {
		t.Fatal("the failed forward was not counted")
	}
	// A write goes to the owner only: it fails until membership drops the
	// owner, rather than being acknowledged by a copy the owner never saw.
	if err := c.nodes[0].Put(ctx, k, "w", NoExpiry); !errors.Is(err, ErrNoMoreServers) {
		t.Fatalf("Put with the owner cut off: %v", err)
	}
}

func TestNoMoreServers(t *testing.T) {
	c := newCluster(t, 5, false, func(cfg *Config) { cfg.RequestTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	from := c.nodes[0]
	// Find a key none of whose copies is on the caller, and cut them off.
	var k string
	tb := from.table.Load()
	for i := 0; k == ""; i++ {
		cand := fmt.Sprint("nms", i)
		if !tb.holds(from.partitionOf(cand)) {
			k = cand
		}
	}
	for _, j := range tb.owners[from.partitionOf(k)] {
		c.net.Isolate(tb.members[j].addr)
	}
	if _, err := from.Get(ctx, k); !errors.Is(err, ErrNoMoreServers) {
		t.Fatalf("Get with every server cut off: %v", err)
	}
}
