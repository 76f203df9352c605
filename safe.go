package ghost

import (
	"context"
	"time"
)

// Safe: whether every partition has its copies on live members, as this
// node sees the cluster. A rolling restart stops the next node only once
// it is Safe, and a deploy gates on WaitSafe; readiness probes must not
// (one crash elsewhere would take every node out of its service).

// Safe reports whether every partition has its full set of in-sync copies
// on live members and no transfer is under way, as this node sees the
// cluster: the moment a rolling restart may stop the next node.
func (n *Node) Safe() bool {
	return n.settled() && n.transfers.inFlight() == 0
}

// settled is Safe but for the transfers under way: the table lists the
// live members and gives every partition its copies.
func (n *Node) settled() bool {
	if n.closed.Load() {
		return false
	}
	live, leaving := n.liveView()
	t := n.table.Load()
	if len(t.members) != len(live) {
		return false
	}
	for i, m := range live {
		if !t.members[i].same(m) {
			return false
		}
	}
	want := min(n.cfg.Replicas, max(len(live)-len(leaving), 1))
	for p := range t.owners {
		// More copies than wanted: a former primary kept for one table
		// (settledOwners), still to be dropped.
		if len(t.pending[p]) > 0 || len(t.owners[p]) != want {
			return false
		}
		for _, i := range t.owners[p] {
			if leaving[t.members[i].name] {
				return false
			}
		}
	}
	return true
}

// WaitSafe blocks until Safe reports true or ctx ends: at start-up before
// a node reports ready, and between the steps of a rolling restart. Safe
// is cluster-wide, so do not wire it into a readiness probe: one crash
// elsewhere would take every node out of its service
// (docs/operations.md).
func (n *Node) WaitSafe(ctx context.Context) error {
	for {
		changed := n.tableChanged.wait()
		if n.Safe() {
			return nil
		}
		if n.closed.Load() {
			return ErrClosed
		}
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond): // gossip and transfers change Safe too
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
