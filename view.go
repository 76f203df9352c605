package ghost

import (
	"slices"
	"strings"
)

// What operators see of the cluster from one node: its members with their
// state, and the partition map. The Prometheus exporter, the dashboard and
// the gateway's /members command read the cluster only through these
// functions, so that they follow the ring as it changes.

// The states a member is shown in.
const (
	stateAlive       = "alive"       // a member that answers
	stateSuspect     = "suspect"     // a member whose last call failed; calls skip it for a while
	stateUnreachable = "unreachable" // a member that did not answer the dashboard's last query
	stateLeft        = "left"        // no longer a member: left, or declared dead
)

// memberInfo is one member as operators see it.
type memberInfo struct {
	Addr  string `json:"addr"`
	Name  string `json:"name"`
	Self  bool   `json:"self"` // the node answering
	State string `json:"state"`
}

// memberView lists the members of this node's ring, sorted by address.
func (n *Node) memberView() []memberInfo {
	r := n.ring.Load()
	out := make([]memberInfo, 0, len(r.members))
	for _, m := range r.members {
		mi := memberInfo{Addr: m.addr, Name: m.name, Self: m.name == n.name, State: stateAlive}
		if !mi.Self && n.peers.get(m.addr).suspect() {
			mi.State = stateSuspect
		}
		out = append(out, mi)
	}
	slices.SortFunc(out, func(a, b memberInfo) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// partitionInfo is where one partition lives.
type partitionInfo struct {
	Owner   string   `json:"owner"`   // the member that serves it
	Backups []string `json:"backups"` // the members that hold copies, in order
	Moving  bool     `json:"moving"`  // being handed to a new owner
}

// partitionView returns the partition map, indexed by partition.
//
// Until replication lands, a partition's backup is the member a call falls
// back to first, nothing moves, and no transfer is ever in flight.
func (n *Node) partitionView() []partitionInfo {
	r := n.ring.Load()
	out := make([]partitionInfo, len(r.owners))
	for p, owners := range r.owners {
		out[p].Owner = r.members[owners[0]].addr
		out[p].Backups = []string{}
		if len(owners) > 1 {
			out[p].Backups = append(out[p].Backups, r.members[owners[1]].addr)
		}
	}
	return out
}

// transfersInFlight is how many partition transfers this node is sending
// or receiving.
func (n *Node) transfersInFlight() int { return 0 }

// partitionCounts counts the partitions addr owns and backs up in view.
func partitionCounts(view []partitionInfo, addr string) (owned, backedUp int) {
	for _, p := range view {
		if p.Owner == addr {
			owned++
		}
		if slices.Contains(p.Backups, addr) {
			backedUp++
		}
	}
	return owned, backedUp
}
