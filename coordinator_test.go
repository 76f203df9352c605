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
