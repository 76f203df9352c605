package ghost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestVersionClockNeverGoesBack(t *testing.T) {
	wall := int64(1000)
	c := newVersionClock(func() int64 { return wall })
	a := c.next()
	wall = 10 // the wall clock steps back
	if b := c.next(); b <= a {
		t.Fatalf("version %d after %d", b, a)
	}
	c.observe(5000) // a peer ahead
	if d := c.next(); d <= 5000 {
		t.Fatalf("version %d after observing 5000", d)
	}
}

func TestTTLTravelsAsTimeLeft(t *testing.T) {
	if ttlLeft(0, 100) != 0 || expiryAt(0, 100) != 0 {
		t.Error("no expiry became one")
	}
	if left := ttlLeft(150, 100); expiryAt(left, 1_000_000) != 1_000_050 {
		t.Errorf("50 ns left arrived as %d", expiryAt(left, 1_000_000)-1_000_000)
	}
	if ttlLeft(90, 100) != 1 {
		t.Error("an expired pair traveled as never expiring")
	}
}

// skewed is a node clock minutes ahead of the others'.
func skewed(by time.Duration) func(*Config) {
	return func(cfg *Config) { cfg.Clock = func() time.Time { return time.Now().Add(by) } }
}

// A node whose clock is 5 minutes ahead changes nothing a user sees: its
// pairs under a TTL expire on their copies when they expire on it, a write
// acknowledged after it crashed wins over the ones it made, and writers on
// every node lose nothing through its crash.
func TestNodeMinutesAheadLosesNothing(t *testing.T) {
	c := newCluster(t, 2, false, fastFailureDetection)
	ahead := c.add(fastFailureDetection, skewed(5*time.Minute))
	c.waitConverged()
	ctx := context.Background()
	l := newLedger()
	c.preload(l, "pre", 300)
	w := c.startWriters(l, 3, 100)
	short := c.keyOwnedBy(ahead, "ttl")
	if err := c.nodes[0].Put(ctx, short, "short-lived", time.Second); err != nil {
		t.Fatal(err)
	}
	rewritten := c.keyOwnedBy(ahead, "rewritten")
	if err := c.nodes[0].Put(ctx, rewritten, 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	w.waitOps(t, 100)
	ahead.halt()
	c.waitConverged()
	if err := c.nodes[1].Put(ctx, rewritten, 2, NoExpiry); err != nil {
		t.Fatal(err)
	}
	w.waitOps(t, 100)
	w.halt()
	for _, n := range c.live() {
		if it, err := n.Get(ctx, rewritten); err != nil || it.Value != int64(2) {
			t.Errorf("Get(%s) via %s = %v, %v; want the write after the crash", rewritten, n.Addr(), it.Value, err)
		}
	}
	checkLedger(t, c, l, w)
	waitFor(t, 20*time.Second, func() error {
		for _, n := range c.live() {
			if it, err := n.Get(ctx, short); !errors.Is(err, ErrCacheMiss) {
				return fmt.Errorf("Get(%s) via %s %v after its 1 s TTL: %v, %v", short, n.Addr(), time.Since(written).Round(time.Millisecond), it.Value, err)
			}
		}
		return nil
	})
	if d := time.Since(written); d > 15*time.Second {
		t.Logf("the short-lived pair took %v to expire", d)
	}
}
