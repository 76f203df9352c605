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

func TestCallsFallBackWhenOwnerUnreachable(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.RequestTimeout = 300 * time.Millisecond
	})
	ctx := context.Background()
	victim := c.nodes[2]
	k := c.keyOwnedBy(victim, "cut")
	c.net.Isolate(victim.Addr())
	// Before gossip notices, the call fails over to the next node of the
	// partition instead of failing.
	if err := c.nodes[0].Put(ctx, k, "v", NoExpiry); err != nil {
		t.Fatalf("Put with the owner cut off: %v", err)
	}
	if c.nodes[0].stats.forwardErrors.Load() == 0 {
		t.Fatal("the failed forward was not counted")
	}
	if _, err := c.nodes[0].Get(ctx, k); err != nil {
		t.Fatalf("Get from the fallback node: %v", err)
	}
}

func TestNoMoreServers(t *testing.T) {
	c := newCluster(t, 5, false, func(cfg *Config) { cfg.RequestTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	from := c.nodes[0]
	// Find a key none of whose three servers is the caller, and cut them.
	var k string
	r := from.ring.Load()
	for i := 0; k == ""; i++ {
		cand := fmt.Sprint("nms", i)
		if !slices.ContainsFunc(r.owners[from.partitionOf(cand)], func(j int) bool { return r.members[j].name == from.name }) {
			k = cand
		}
	}
	for _, j := range r.owners[from.partitionOf(k)] {
		c.net.Isolate(r.members[j].addr)
	}
	if _, err := from.Get(ctx, k); !errors.Is(err, ErrNoMoreServers) {
		t.Fatalf("Get with every server cut off: %v", err)
	}
}
