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

// memberView lists the live members, sorted by address.
func (n *Node) memberView() []memberInfo {
	live, _ := n.liveView()
	out := make([]memberInfo, 0, len(live))
	for _, m := range live {
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
	Owner   string   `json:"owner"`   // the primary: it decides writes and serves reads
	Backups []string `json:"backups"` // the members that hold copies: in sync, then being filled
	Moving  bool     `json:"moving"`  // a copy is being filled
}

// partitionView returns the partition map of this node's table, indexed by
// partition.
func (n *Node) partitionView() []partitionInfo {
	t := n.table.Load()
	out := make([]partitionInfo, len(t.owners))
	for p, owners := range t.owners {
		out[p].Owner = t.members[owners[0]].addr
		out[p].Backups = []string{}
		for _, i := range owners[1:] {
			out[p].Backups = append(out[p].Backups, t.members[i].addr)
		}
		for _, i := range t.pending[p] {
			out[p].Backups = append(out[p].Backups, t.members[i].addr)
		}
		out[p].Moving = len(t.pending[p]) > 0
	}
	return out
}

// transfersInFlight is how many partition transfers this node is sending.
func (n *Node) transfersInFlight() int { return int(n.transfers.inFlight()) }

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

// pairCount is the pairs this node holds, expired ones the crawler has not
// reached yet included: the original protocol's nodeSize.
func (n *Node) pairCount() int64 { return n.store.len() }
