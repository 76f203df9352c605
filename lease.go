package ghost

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Read leases. A node serves reads from its own copies only while it holds
// a lease: a majority of its table's members (itself included) answered a
// ping it sent less than the lease term ago. And the coordinator drops a
// member that holds partitions only once gossip has called it dead for a
// lease term (heldBack). So a node cut off from the majority, however its
// links fail (both ways, one way, its gossip slower than the others'),
// stops serving reads before the majority can acknowledge a write it does
// not see: a read anywhere after an acknowledged write returns it. A
// primary decides writes only while it holds its lease too (serveWrite):
// copies refuse writes sent under a table they have left, but not those
// of a node back with its old table before they have caught up.
//
// The cost: every node pings the other members of its table four times a
// term (a ping is one small frame each way, on connections the nodes
// already hold), and a dead member's partitions fail over one term later.
// Tables of one or two members need no lease, as they need no quorum.

// leaseState is a node's read lease.
type leaseState struct {
	// expires is when the lease ends, in nanoseconds of the monotonic
	// clock since base. Readers compare it with the clock, not a flag set
	// by a ticker: a process paused (SIGSTOP, a VM frozen) for longer
	// than its term must not serve the reads waiting in its sockets when
	// it resumes, before the ticker has run.
	expires atomic.Int64
	base    time.Time
	lapsed  atomic.Bool     // as last logged
	renewed broadcastSignal // the end moved
	kick    chan struct{}   // a ping round is wanted now (a read found the lease lapsed, the table changed)

	checkMu sync.Mutex // one checkLease at a time: an older end must not overwrite a newer

	mu       sync.Mutex
	answered map[string]time.Time // member name → when the newest ping it answered was sent
	inFlight map[string]bool      // member name → a ping is out
}

// init starts the lease held for ever: a node alone needs none. The first
// table of more than two members gives it an end.
func (l *leaseState) init() {
	l.base = time.Now()
	l.expires.Store(math.MaxInt64)
	l.kick = make(chan struct{}, 1)
}

// kickLease asks the lease loop for a ping round now.
func (n *Node) kickLease() {
	select {
	case n.lease.kick <- struct{}{}:
	default: // one is due already
	}
}

// leaseTerm is how long an answered ping vouches for the node: four gossip
// probe intervals (800 ms with FastGossip, 4 s with the LAN defaults).
func (n *Node) leaseTerm() time.Duration { return 4 * n.probeWait }

// leaseLoop renews the lease until the node closes: a round of pings every
// quarter term, or at once when kicked, and a check of the lease every
// eighth (and at every answer).
func (n *Node) leaseLoop() {
	term := n.leaseTerm()
	check := time.NewTicker(term / 8)
	defer check.Stop()
	var next time.Time
	for {
		if now := time.Now(); !now.Before(next) {
			n.pingForLease(term)
			next = now.Add(term / 4)
		}
		n.checkLease(term)
		select {
		case <-check.C:
		case <-n.lease.kick:
			next = time.Time{}
		case <-n.done:
			return
		}
	}
}

// pingForLease pings every other member of the table that has no ping
// out, each within half a term, and records the answers.
func (n *Node) pingForLease(term time.Duration) {
	t := n.table.Load()
	if len(t.members) <= 2 {
		return
	}
	l := &n.lease
	l.mu.Lock()
	if l.answered == nil {
		l.answered, l.inFlight = map[string]time.Time{}, map[string]bool{}
	}
	for name := range l.answered { // members gone for good
		if t.index(name) < 0 {
			delete(l.answered, name)
		}
	}
	var todo []member
	for _, m := range t.members {
		if m.name != n.self.name && !l.inFlight[m.name] {
			l.inFlight[m.name] = true
			todo = append(todo, m)
		}
	}
	l.mu.Unlock()
	for _, m := range todo {
		n.goBackground(func() {
			sent := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), term/2)
			resp, err := n.peers.get(m.addr).call(ctx, &request{op: OpPing, key: n.self.name})
			cancel()
			l.mu.Lock()
			// The answer must come from the member itself, not from a
			// process started since on its address, and from a member
			// that has not moved on to a newer table: a node back from a
			// split must not serve reads from its old copies, by its old
			// table, before it has caught up (found by ghostchaos
			// partcoord: a Delete answered NOT_FOUND by the former
			// coordinator, from its copy of before the split).
			answered := err == nil && resp.status == statusOK && resp.msg == m.name
			if answered && len(resp.value) > 0 { // not vouched for
				answered = false
			}
			if answered && resp.tver > n.table.Load().version {
				n.learnVersion(resp.tver)
				answered = false
			}
			renewed := answered && sent.After(l.answered[m.name])
			if renewed {
				l.answered[m.name] = sent
			}
			delete(l.inFlight, m.name)
			l.mu.Unlock()
			if renewed {
				n.checkLease(term)
			}
		})
	}
}

// checkLease sets the lease's end: a term after the newest ping that a
// majority of the table's members (this node counted) answered.
func (n *Node) checkLease(term time.Duration) {
	n.lease.checkMu.Lock()
	defer n.lease.checkMu.Unlock()
	t := n.table.Load()
	if len(t.members) <= 2 {
		n.setLease(time.Time{}, true, false)
		return
	}
	l := &n.lease
	l.mu.Lock()
	var sent []time.Time
	for _, m := range t.members {
		if at, ok := l.answered[m.name]; ok && m.name != n.self.name {
			sent = append(sent, at)
		}
	}
	l.mu.Unlock()
	need := len(t.members)/2 + 1 - 1 // a majority, this node counted
	if len(sent) < need {
		// No answer at all yet is a table that has just grown past two
		// members: not worth a warning.
		n.setLease(time.Time{}, false, len(sent) == 0)
		return
	}
	slices.SortFunc(sent, func(a, b time.Time) int { return b.Compare(a) })
	n.setLease(sent[need-1].Add(term), false, false)
}

// setLease sets the lease to end at expires, or to hold for ever; quiet
// logs a lapse at debug level only.
func (n *Node) setLease(expires time.Time, forever, quiet bool) {
	l := &n.lease
	end := int64(math.MaxInt64)
	if !forever {
		end = int64(expires.Sub(l.base))
	}
	if l.expires.Swap(end) != end {
		l.renewed.signal()
	}
	lapsed := !l.holds()
	if l.lapsed.Swap(lapsed) != lapsed {
		switch {
		case lapsed && quiet:
			n.log.Debug("ghost: read lease waits for the first answers of new members")
		case lapsed:
			n.log.Warn("ghost: read lease lapsed: a majority of the cluster has not answered lately; reads go to other copies")
		default:
			n.log.Info("ghost: read lease held again")
		}
	}
}

// holds reports whether the lease holds now.
func (l *leaseState) holds() bool {
	e := l.expires.Load()
	return e == math.MaxInt64 || int64(time.Since(l.base)) < e
}

// servesOwnReads reports whether the node may answer a read from its own
// copies: it holds its lease, or Config.StaleReads allows any copy.
func (n *Node) servesOwnReads() bool { return n.cfg.StaleReads || n.lease.holds() }

// notVouched is a lease ping's answer from a member that does not count
// toward the sender's lease (vouchesFor).
const notVouched = "not vouched"

// vouchesFor reports whether this node counts toward the read lease of
// the member called name: that member is in this node's table, gossip
// calls it alive, and it has not come back from the dead less than a
// lease term ago. The last is the fence of a member paused past its death
// (SIGSTOP, a frozen VM): resumed while the coordinator waits out its old
// lease (heldBack), it must not win a fresh one from members that have not
// heard of its fall yet, and then serve reads from its old copies once the
// table that drops it is out (found by ghostchaos pausecoord: a read that
// missed a write acknowledged under the new table). Within a term of its
// return, the coordinator either sees it alive and keeps it, or has
// published the table without it, which its peers then hold.
func (n *Node) vouchesFor(name string) bool {
	if n.table.Load().index(name) < 0 {
		return false
	}
	n.gossipMu.Lock()
	defer n.gossipMu.Unlock()
	if _, alive := n.gossipPeers[name]; !alive {
		return false
	}
	back, ok := n.backAt[name]
	if ok && time.Since(back) >= n.leaseTerm() {
		delete(n.backAt, name)
		ok = false
	}
	return !ok
}

// awaitLease is servesOwnReads for a read that may wait: when the lease
// has lapsed it asks for a ping round and waits for the answers, at most
// a quarter term or until ctx ends. A node whose table has just grown has
// not heard from the new members yet; one cut off waits in vain.
func (n *Node) awaitLease(ctx context.Context) bool {
	if n.servesOwnReads() {
		return true
	}
	n.kickLease()
	timer := time.NewTimer(n.leaseTerm() / 4)
	defer timer.Stop()
	for {
		renewed := n.lease.renewed.wait()
		if n.lease.holds() {
			return true
		}
		select {
		case <-renewed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		case <-n.done:
			return false
		}
	}
}

// heldBack reports whether a member of t that holds partitions left the
// live view less than a lease term ago: a table that drops it must wait
// until its lease has surely lapsed, lest it still serve reads.
func (n *Node) heldBack(t *table, live []member) bool {
	term := n.leaseTerm()
	now := time.Now()
	n.gossipMu.Lock()
	defer n.gossipMu.Unlock()
	for name := range n.goneAt { // members the table has dropped since
		if t.index(name) < 0 {
			delete(n.goneAt, name)
		}
	}
	for i, m := range t.members {
		if !t.holdsAny(i) || slices.ContainsFunc(live, func(l member) bool { return l.name == m.name }) {
			continue
		}
		if gone, ok := n.goneAt[m.name]; !ok || now.Sub(gone) < term {
			if !ok {
				// Never seen to go (gone before this node joined, or
				// before it took over): from now.
				n.goneAt[m.name] = now
			}
			return true
		}
	}
	return false
}
