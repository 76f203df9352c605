package ghost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A cluster that loses a majority at once (2 of 3 processes killed) is
// degraded: the survivor cannot change the table. Processes started again
// on the lost members' addresses restore their slots, and the cluster
// recovers with every pair: before slots, the survivor waited forever for
// the dead incarnations and no node was ever Safe again.
func TestLostMajorityRecoversOnTheSameAddresses(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection, func(cfg *Config) { cfg.Replicas = 3 })
	l := newLedger()
	c.preload(l, "pre", 300)
	survivor := c.nodes[0]
	addrs := []string{c.nodes[1].Addr(), c.nodes[2].Addr()}
	c.nodes[1].halt()
	c.nodes[2].halt()
	waitFor(t, 20*time.Second, func() error {
		if !survivor.Degraded() {
			return errors.New("the survivor of a lost majority is not degraded")
		}
		return nil
	})
	if got := len(survivor.table.Load().members); got != 3 {
		t.Fatalf("the survivor changed its table to %d members without a majority", got)
	}
	for i, addr := range addrs {
		c.startAt(i+1, addr, fastFailureDetection, func(cfg *Config) { cfg.Replicas = 3 })
	}
	c.waitConverged()
	if survivor.Degraded() {
		t.Error("the survivor is still degraded")
	}
	checked, lost, stale := l.verify(t, c)
	if lost != 0 || stale != 0 {
		t.Fatalf("%d keys checked: %d lost, %d stale", checked, lost, stale)
	}
}

// When the lost members are gone for good, an operator lets the survivors
// carry on with ForceQuorum, called on their coordinator.
func TestForceQuorumCarriesOnWithoutTheLost(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection, func(cfg *Config) { cfg.Replicas = 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.nodes[0].Put(ctx, "kept", 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	// Four nodes, two lost: the two left are no majority.
	c.add(fastFailureDetection, func(cfg *Config) { cfg.Replicas = 3 })
	c.waitConverged()
	c.nodes[2].halt()
	c.nodes[3].halt()
	survivors := c.nodes[:2]
	waitFor(t, 20*time.Second, func() error {
		for _, n := range survivors {
			if !n.Degraded() {
				return fmt.Errorf("%s is not degraded", n.Addr())
			}
		}
		return nil
	})
	younger := survivors[1]
	if coordinatorOf([]member{survivors[0].self, younger.self}).name == younger.self.name {
		younger = survivors[0]
	}
	if err := younger.ForceQuorum(ctx); !errors.Is(err, ErrNotCoordinator) {
		t.Errorf("ForceQuorum on the younger survivor: %v; want ErrNotCoordinator", err)
	}
	coord := survivors[0]
	if coord == younger {
		coord = survivors[1]
	}
	if err := coord.ForceQuorum(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	for _, n := range survivors {
		if n.Degraded() {
			t.Errorf("%s is still degraded", n.Addr())
		}
		if err := n.Put(ctx, "after", 2, NoExpiry); err != nil {
			t.Errorf("Put via %s: %v", n.Addr(), err)
		}
		if it, err := n.Get(ctx, "kept"); err != nil || it.Value != int64(1) {
			t.Errorf("Get via %s: %v, %v", n.Addr(), it.Value, err)
		}
	}
}

// A node cut off from the majority refuses reads and writes once gossip
// tells it (ErrNoQuorum) instead of serving its copies however old they
// grow; with Config.StaleReads it serves them; healed, it serves again.
func TestCutOffNodeRefusesCalls(t *testing.T) {
	for _, stale := range []bool{false, true} {
		t.Run(fmt.Sprint("StaleReads=", stale), func(t *testing.T) {
			c := newCluster(t, 3, false, fastFailureDetection, func(cfg *Config) { cfg.StaleReads = stale })
			ctx := context.Background()
			cut := c.nodes[2]
			key := c.keyOwnedBy(cut, "cut")
			if err := c.nodes[0].Put(ctx, key, 1, NoExpiry); err != nil {
				t.Fatal(err)
			}
			c.net.Isolate(cut.Addr())
			waitFor(t, 20*time.Second, func() error {
				if !cut.Degraded() {
					return errors.New("the cut-off node does not know it")
				}
				return nil
			})
			it, err := cut.Get(ctx, key)
			switch {
			case stale && (err != nil || it.Value != int64(1)):
				t.Errorf("Get with StaleReads: %v, %v; want 1", it.Value, err)
			case !stale && (!errors.Is(err, ErrNoQuorum) || !errors.Is(err, ErrNoMoreServers)):
				t.Errorf("Get on the cut-off node: %v, %v; want ErrNoQuorum", it.Value, err)
			}
			if err := cut.Put(ctx, key, 2, NoExpiry); err == nil {
				t.Error("a write on the cut-off node was acknowledged")
			}
			c.net.Heal(cut.Addr())
			c.waitConverged()
			if it, err := cut.Get(ctx, key); err != nil || it.Value != int64(1) {
				t.Errorf("Get after healing: %v, %v; want 1", it.Value, err)
			}
		})
	}
}
