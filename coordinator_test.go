package ghost

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A member that gossip reaches but connections do not (a firewall open
// only to UDP, a TLS mistake) must not freeze the table: the coordinator
// that takes over after a crash cannot fetch its table, and once that has
// lasted unfetchedBound it plans without it, so the crashed member's
// partitions fail over. Before, it waited for that table forever.
func TestUnreachableMemberFreezesNoTable(t *testing.T) {
	c := newCluster(t, 5, false, fastFailureDetection)
	ctx := context.Background()
	key := c.keyOwnedBy(c.nodes[0], "coord")
	if err := c.nodes[1].Put(ctx, key, 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	crashed, unreachable := c.nodes[0], c.nodes[4]
	c.net.blockConns(unreachable.Addr())
	crashed.halt()
	waitFor(t, 40*time.Second, func() error {
		for _, n := range c.nodes[1:4] {
			tb := n.table.Load()
			if tb.index(crashed.name) >= 0 || tb.index(unreachable.name) >= 0 {
				return fmt.Errorf("%s holds table %d of %d members", n.Addr(), tb.version, len(tb.members))
			}
		}
		return nil
	})
	for _, n := range c.nodes[1:4] {
		if err := n.Put(ctx, key, 2, NoExpiry); err != nil {
			t.Errorf("Put via %s: %v", n.Addr(), err)
		}
		if it, err := n.Get(ctx, key); err != nil || it.Value != int64(2) {
			t.Errorf("Get via %s: %v, %v", n.Addr(), it.Value, err)
		}
	}
}

// A coordinator that resumes from a pause with a change pending (here a
// member leaving) while another published the next table meanwhile must
// not fork the line with a second table of that version: the members it
// pings name the newer table, and it fetches it and plans from there.
// Before, it published its own table of the same version.
func TestResumedCoordinatorForksNoTable(t *testing.T) {
	c := newCluster(t, 4, false)
	coord, other, leaver := c.nodes[0], c.nodes[1], c.nodes[3]
	cur := coord.table.Load()
	// The table another coordinator published while this one was paused.
	meanwhile := *cur
	meanwhile.version, meanwhile.coordinator, meanwhile.line = cur.version+1, other.name, cur.following()
	for _, n := range c.nodes[1:] {
		if !n.applyTable(&meanwhile) {
			t.Fatalf("%s refused the table", n.Addr())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left := make(chan error, 1)
	go func() { left <- leaver.Leave(ctx) }()
	var next *table
	waitFor(t, 20*time.Second, func() error {
		if next = coord.table.Load(); next.version <= meanwhile.version {
			return fmt.Errorf("the coordinator holds table %d", next.version)
		}
		return nil
	})
	back := next.version - meanwhile.version // ≥ 1
	if back > uint64(len(next.line)) {
		t.Fatalf("the coordinator went from table %d to %d at once", meanwhile.version, next.version)
	}
	if got := next.line[back-1]; got != other.name {
		t.Errorf("table %d was published by %s, not by %s, who published it first: the line forked", meanwhile.version, got, other.name)
	}
	if err := <-left; err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
}
