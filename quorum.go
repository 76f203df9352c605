package ghost

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// The quorum: when a side of the cluster may change the partition table.
//
// A table changes only while its coordinator sees a majority of the
// table's members (tables of one or two members excepted), so that a node
// cut off from the rest cannot declare them dead, take their partitions
// and accept writes the others never see. Members are counted by slot,
// their address, not by incarnation: a process started again on a dead
// member's address (a crash replaced, a redeploy) restores its slot. Two
// processes never hold one address at once, so two sides of a split
// cannot both count one slot. Without it, a cluster that lost a majority
// at once (2 of 3 killed, then replaced) could never change its table
// again: the survivors would wait forever for incarnations that are gone.
//
// When a majority can never answer again (the lost members are gone for
// good), the side that is left is degraded (Node.Degraded, the log, the
// metrics) until an operator accepts the loss with Node.ForceQuorum
// (ghostctl force-quorum): the pairs only the lost members held are gone,
// and should the lost members come back after all, their writes since the
// split yield to the newer ones of the side that carried on.

// ErrNotCoordinator: ForceQuorum was called on a node that does not
// coordinate its side of the cluster; the error names the one that does.
var ErrNotCoordinator = errors.New("ghost: this node is not the coordinator")

// quorate reports whether the members of t answering in slots (one entry
// per member, true when its address answered) are a majority of t.
func quorate(t *table, answering func(i int) bool) bool {
	if len(t.members) <= 2 {
		return true
	}
	count := 0
	for i := range t.members {
		if answering(i) {
			count++
		}
	}
	return 2*count > len(t.members)
}

// hasQuorum reports whether the live members hold a majority of t's slots:
// a member counts when a live member has its address, itself or a process
// started since on its address.
func hasQuorum(t *table, live []member) bool {
	return quorate(t, func(i int) bool {
		return slices.ContainsFunc(live, func(m member) bool { return m.addr == t.members[i].addr })
	})
}

// reach pings every other member of t at once, each within probeWait, and
// returns per member the name of the process that answered at its address
// ("" when none did; this node answers for itself), and the newest table
// version an answer named.
func (n *Node) reach(t *table) (names []string, newest uint64) {
	names = make([]string, len(t.members))
	versions := make([]uint64, len(t.members))
	n.tableCalls.pingRounds.Add(1)
	n.tableCalls.pings.Add(int64(len(t.members) - 1))
	var wg sync.WaitGroup
	for i, m := range t.members {
		if m.name == n.self.name {
			names[i] = m.name
			continue
		}
		wg.Go(func() { names[i], versions[i] = n.answerer(m.addr) })
	}
	wg.Wait()
	return names, slices.Max(versions)
}

// reachesQuorum reports whether the answers of reach are a majority of t's
// slots.
func reachesQuorum(t *table, names []string) bool {
	return quorate(t, func(i int) bool { return names[i] != "" })
}

// answerer pings addr within probeWait and returns the name the node
// there answers with, or "", and the version of its table.
func (n *Node) answerer(addr string) (name string, tver uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), n.probeWait)
	defer cancel()
	resp, err := n.peers.get(addr).call(ctx, &request{op: OpPing})
	if err != nil || resp.status != statusOK {
		return "", 0
	}
	return resp.msg, resp.tver
}

// answers reports whether m answers a ping within probeWait, as itself
// (not a process started since on its address).
func (n *Node) answers(m member) bool {
	name, _ := n.answerer(m.addr)
	return name == m.name
}

// withAnswering returns live with the members of t added that gossip
// reports gone but that answered a direct ping as themselves (names, from
// reach). Gossip can report a death on another member's word: a node
// coming back from a partition repeats the deaths it declared while cut
// off, and the others believe them until the member named refutes them, a
// gossip round later. A coordinator acting in that window plans tables
// without a live member (or takes over from a live coordinator), racing
// the true coordinator's tables with tables of the same versions, and the
// writes acknowledged under the tables that lose the race are lost. So a
// member is left out only once it fails to answer too.
func withAnswering(t *table, live []member, names []string) []member {
	out := live
	for i, m := range t.members {
		if names[i] == m.name && !slices.ContainsFunc(live, func(l member) bool { return l.name == m.name }) {
			out = append(slices.Clip(out), m)
		}
	}
	if len(out) > len(live) { // live is sorted by name already
		slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.name, b.name) })
	}
	return out
}

// coordinatorOf is the oldest of the live members.
func coordinatorOf(live []member) member {
	c := live[0]
	for _, m := range live[1:] {
		if older(m, c) {
			c = m
		}
	}
	return c
}

// Degraded reports whether this node sees fewer than a majority of the
// members of its partition table (by address, see ForceQuorum): its side
// of the cluster cannot change the table, so a dead member's partitions
// are not failed over and writes that need it fail, until the members
// return, processes are started again on their addresses, or an operator
// calls ForceQuorum. While degraded, the node also refuses reads it
// cannot vouch for (see Config.StaleReads).
func (n *Node) Degraded() bool {
	live, _ := n.liveView()
	return !hasQuorum(n.table.Load(), live)
}

// noteQuorum records whether this node sees a majority of its table, for
// the data path: a node that does not refuses calls (Config.StaleReads).
// Gossip tells it within the failure detection time.
//
// A node that was cut off goes on refusing once the majority is in view
// again, until it has fetched the members' tables: the majority may have
// gone on without it, and by the table it still holds it would serve as
// the primary of partitions it no longer holds, their values as they were
// before the split.
func (n *Node) noteQuorum() {
	cut := n.Degraded()
	if cut {
		n.tableBehind.Store(true)
	} else if n.tableBehind.Load() {
		n.catchUp()
	}
	cut = cut || n.tableBehind.Load()
	if n.cutOff.Swap(cut) != cut {
		if cut {
			n.log.Warn("ghost: cut off from a majority of the cluster; refusing calls until it returns", "stale_reads", n.cfg.StaleReads)
		} else {
			n.log.Info("ghost: a majority of the cluster is in view again, and its table")
		}
	}
}

// catchUp fetches, in the background, the tables of the live members until
// it has those of a majority of them, applies the newest, and lets the
// node serve again. One runs at a time.
func (n *Node) catchUp() {
	if !n.catchingUp.CompareAndSwap(false, true) {
		return
	}
	n.goBackground(func() {
		defer n.catchingUp.Store(false)
		pace := backoff{pause: 10 * time.Millisecond, longest: time.Second}
		for {
			live, _ := n.liveView()
			got := n.adoptNewest(live)
			if 2*len(got) > len(live) {
				break
			}
			if pace.wait(context.Background(), n.done, nil) != nil {
				return
			}
		}
		n.tableBehind.Store(false)
		n.noteQuorum()
	})
}

// refuses reports whether this node, cut off from a majority, must not
// serve op: no write, and no read unless stale reads are allowed.
func (n *Node) refuses(op Op) bool {
	return n.cutOff.Load() && (op != OpGet || !n.cfg.StaleReads)
}

// ForceQuorum lets the coordinator of a degraded side of the cluster (see
// Degraded) change the table without a majority, once: the members it
// cannot reach are left out, and the partitions only they held start
// afresh on the members it sees. It is for an operator who knows the lost
// members are gone for good (the hosts were lost, not cut off): should
// they be alive on the far side of a split, both sides then take writes,
// and on healing the newer write of each key wins. Call it on the oldest
// member of the side that is left (the coordinator); elsewhere it returns
// ErrNotCoordinator, naming it. It returns once the new table is
// published, or when ctx ends.
func (n *Node) ForceQuorum(ctx context.Context) error {
	if n.closed.Load() {
		return ErrClosed
	}
	live, _ := n.liveView()
	if c := coordinatorOf(live); c.name != n.self.name {
		return fmt.Errorf("%w: %s (%s) is", ErrNotCoordinator, c.addr, c.name)
	}
	before := n.table.Load().version
	n.forceQuorum.Store(true)
	n.ringChanged()
	for {
		changed := n.tableChanged.wait()
		if n.table.Load().version > before || !n.forceQuorum.Load() {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(tableTick):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
