package ghost

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestPartitionView(t *testing.T) {
	t.Run("one node", func(t *testing.T) {
		n := newCluster(t, 1, false).nodes[0]
		view := n.partitionView()
		if len(view) != n.cfg.PartitionCount {
			t.Fatalf("%d partitions, want %d", len(view), n.cfg.PartitionCount)
		}
		for p, pi := range view {
			if pi.Owner != n.Addr() || len(pi.Backups) != 0 || pi.Moving {
				t.Fatalf("partition %d: %+v; want owned here, no backup, not moving", p, pi)
			}
		}
		if owned, backedUp := partitionCounts(view, n.Addr()); owned != n.cfg.PartitionCount || backedUp != 0 {
			t.Errorf("owns %d, backs up %d", owned, backedUp)
		}
	})
	t.Run("three nodes", func(t *testing.T) {
		c := newCluster(t, 3, false)
		view := c.nodes[1].partitionView()
		totalOwned, totalBacked := 0, 0
		for _, n := range c.nodes {
			if !slices.Equal(n.partitionView()[0].Backups, view[0].Backups) {
				t.Errorf("%s sees another map", n.Addr())
			}
			owned, backedUp := partitionCounts(view, n.Addr())
			if owned == 0 || backedUp == 0 {
				t.Errorf("%s owns %d and backs up %d partitions", n.Addr(), owned, backedUp)
			}
			totalOwned += owned
			totalBacked += backedUp
		}
		if totalOwned != len(view) || totalBacked != len(view) {
			t.Errorf("%d owned and %d backed up of %d partitions", totalOwned, totalBacked, len(view))
		}
		for p, pi := range view {
			key := ""
			for i := 0; key == ""; i++ { // a key of partition p
				if k := "k" + strconv.Itoa(i); c.nodes[0].partitionOf(k) == p {
					key = k
				}
			}
			if pi.Owner != c.nodes[0].Owner(key) || len(pi.Backups) != 1 || pi.Backups[0] == pi.Owner {
				t.Fatalf("partition %d: %+v; the owner of %s is %s", p, pi, key, c.nodes[0].Owner(key))
			}
		}
		if n := c.nodes[0].transfersInFlight(); n != 0 {
			t.Errorf("%d transfers in flight", n)
		}
	})
}

func TestMemberView(t *testing.T) {
	c := newCluster(t, 3, false)
	n := c.nodes[0]
	view := n.memberView()
	if len(view) != 3 || !slices.IsSortedFunc(view, func(a, b memberInfo) int { return strings.Compare(a.Addr, b.Addr) }) {
		t.Fatalf("view %+v: want 3 members sorted by address", view)
	}
	for _, m := range view {
		if m.Self != (m.Addr == n.Addr()) || m.State != stateAlive || m.Name == "" {
			t.Errorf("member %+v", m)
		}
	}
	// A peer whose call failed is shown suspect until calls try it again.
	n.peers.get(c.nodes[1].Addr()).markSuspect()
	for _, m := range n.memberView() {
		if want := m.Addr == c.nodes[1].Addr(); (m.State == stateSuspect) != want {
			t.Errorf("member %s state %s", m.Addr, m.State)
		}
	}
}
