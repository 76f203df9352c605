package ghost

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The partition table's life: one coordinator, the oldest live member,
// plans each new table from the last one and the live members, and pushes
// it to every member; a node applies only tables newer than its own. A node
// that hears of a newer table (a reply, a request, a push) fetches it.
//
// A coordinator changes the table only while it sees a majority of the
// members of its current table (or the table has two members or fewer), so
// that a node cut off from the rest cannot declare them dead, take their
// partitions and accept writes the others never see. Before it publishes a
// change it asks the members directly too: a majority must answer, and it
// leaves out only members that fail to answer, not those that gossip
// reports dead on another's word (membership.go reach, withAnswering).

// tableTick is how often the table loop re-pushes the table to members
// that have not confirmed it, and retries transfers and fetches.
const tableTick = 250 * time.Millisecond

// readyBatch is how long the coordinator gathers transfer reports before
// it publishes the table that makes them in sync.
const readyBatch = 10 * time.Millisecond

// coordinatorState is the table loop's own state; only the loop touches it.
type coordinatorState struct {
	active    bool                      // this node was the coordinator at the last step
	readies   []readyReport             // transfers done, to fold into the next table
	known     map[string]bool           // the live members at the last step
	noQuorum  bool                      // the last step found no quorum (logged once)
	unreached bool                      // the last change found no majority answering (logged once)
	unfetched map[string]unfetchedTable // members in view whose table could not be fetched
}

// readyReport says that member's copy of partition is filled.
type readyReport struct {
	partition int
	member    string
}

// tableLoop runs the coordinator's steps and the table's upkeep until the
// node shuts down.
func (n *Node) tableLoop() {
	st := &coordinatorState{}
	tick := time.NewTicker(tableTick)
	defer tick.Stop()
	var batch <-chan time.Time // ready reports are gathered briefly, to publish fewer tables
	for {
		select {
		case <-n.ringDue:
			n.coordinate(st)
		case r := <-n.readies:
			st.readies = append(st.readies, r)
			if batch == nil {
				batch = time.After(readyBatch)
			}
		case <-batch:
			batch = nil
			n.drainReadies(st)
			n.coordinate(st)
		case v := <-n.fetchDue:
			n.fetchNewer(v)
		case <-tick.C:
			n.coordinate(st)
			n.startTransfers()
		case <-n.done:
			return
		}
	}
}

func (n *Node) drainReadies(st *coordinatorState) {
	for {
		select {
		case r := <-n.readies:
			st.readies = append(st.readies, r)
		default:
			return
		}
	}
}

// coordinate is one step of the coordinator: when this node is the oldest
// live member, plan the next table and publish it if it differs.
func (n *Node) coordinate(st *coordinatorState) {
	live, leaving := n.liveView()
	if coordinatorOf(live).name != n.self.name {
		st.active, st.readies = false, nil
		return
	}
	if !st.active {
		// Taking over: start from the newest table any member holds.
		st.known = nil
		st.active = true
		n.pushes.mu.Lock()
		clear(n.pushes.acked)
		n.pushes.mu.Unlock()
	}
	if live = n.knownMembers(st, live); live == nil {
		return // the next step asks the others again
	}
	cur := n.table.Load()
	forced := n.forceQuorum.Load()
	if !hasQuorum(cur, live) && !forced {
		if !st.noQuorum {
			n.log.Warn("ghost: degraded: the coordinator sees too few members of the table to change it; start processes on the lost members' addresses, or call ForceQuorum if they are gone for good", "live", len(live), "table", len(cur.members))
		}
		st.noQuorum = true
		return
	}
	st.noQuorum = false
	if n.heldBack(cur, live) {
		n.pushTable()
		return // the next step plans again, once the gone member's lease is over
	}
	next := n.nextTable(cur, live, leaving, st.readies)
	if !next.sameLayout(cur) {
		// Before a change goes out, the members of the table are asked
		// directly (reach): a majority of them must answer, and those that
		// answer count as live whatever gossip says (see withAnswering).
		// Gossip alone would let a coordinator cut off from the rest drop
		// them one at a time as it declares each dead (each step keeping a
		// majority of the table before it), until it held every partition
		// alone and acknowledged writes that no other node saw.
		answered, newest := n.reach(cur)
		if newest > cur.version {
			// A member holds a newer table than the one this plan starts
			// from: another coordinator went on while this one was paused
			// or cut off. Publishing now would fork the line with a second
			// table of the next version; fetch theirs and plan again.
			n.log.Info("ghost: a member holds a newer table than the coordinator; fetching it before planning", "ours", cur.version, "theirs", newest)
			n.learnVersion(newest)
			return
		}
		if !reachesQuorum(cur, answered) && !forced {
			if !st.unreached {
				n.log.Warn("ghost: degraded: the coordinator reaches too few members of the table to change it", "table", len(cur.members))
			}
			st.unreached = true
			return
		}
		if forced {
			n.log.Warn("ghost: ForceQuorum: changing the table without a majority; the partitions only the lost members held start afresh", "live", len(live), "table", len(cur.members))
		}
		st.unreached = false
		if more := withAnswering(cur, live, answered); len(more) > len(live) {
			if live = more; coordinatorOf(live).name != n.self.name {
				st.active, st.readies = false, nil
				return
			}
			next = n.nextTable(cur, live, leaving, st.readies)
		}
	}
	st.readies = nil
	n.forceQuorum.Store(false)
	if !next.sameLayout(cur) {
		next.version = cur.version + 1
		next.coordinator = n.self.name
		next.line = cur.following()
		n.applyTable(next)
		n.logMoves(cur, next)
	}
	n.pushTable()
}

// knownMembers fetches the tables of the live members whose table the
// coordinator has not had yet, and returns the live members it may plan
// with, or nil while it must wait for more tables.
//
// Members that come into view may hold a newer table than ours: the other
// side of a healed split, which went on without us. Until their tables are
// in, planning from ours could undo what they did. But a member whose table
// cannot be fetched for longer than unfetchedBound (gossip reaches it, the
// cache protocol does not: a TLS mistake, a firewall open only to UDP, its
// MaxConnections) is planned without, as if it did not answer, and asked
// again once per unfetchedBound: it must not freeze every table change.
func (n *Node) knownMembers(st *coordinatorState, live []member) []member {
	now := time.Now()
	bound := n.unfetchedBound()
	var ask []member
	for _, m := range live {
		f, failed := st.unfetched[m.name]
		if !st.known[m.name] && (!failed || now.Sub(f.since) < bound || now.Sub(f.asked) >= bound) {
			ask = append(ask, m)
		}
	}
	got := n.adoptNewest(ask)
	known := map[string]bool{}
	unfetched := map[string]unfetchedTable{}
	usable := make([]member, 0, len(live))
	waiting := false
	for _, m := range live {
		if st.known[m.name] || got[m.name] {
			known[m.name] = true
			usable = append(usable, m)
			continue
		}
		f, failed := st.unfetched[m.name]
		if !failed {
			f.since = now
		}
		if slices.ContainsFunc(ask, func(a member) bool { return a.name == m.name }) {
			f.asked = now
		}
		unfetched[m.name] = f
		switch age := now.Sub(f.since); {
		case age < bound:
			waiting = true
		case !f.logged:
			n.log.Warn("ghost: a member's partition table cannot be fetched; planning without it", "member", m.addr, "for", age.Round(time.Millisecond))
			f.logged = true
			unfetched[m.name] = f
		}
	}
	st.known, st.unfetched = known, unfetched
	if waiting {
		return nil
	}
	return usable
}

// unfetchedTable is a member in view whose table the coordinator failed to
// fetch: since when, when it last asked, and whether it said so.
type unfetchedTable struct {
	since, asked time.Time
	logged       bool
}

// unfetchedBound is how long a member in view may fail to give its table
// before the coordinator plans without it.
func (n *Node) unfetchedBound() time.Duration { return 2 * n.cfg.RequestTimeout }

// nextTable plans the table after cur for the live members (plan), with
// the copies reported ready in sync.
func (n *Node) nextTable(cur *table, live []member, leaving map[string]bool, readies []readyReport) *table {
	next, targets := plan(cur, live, leaving, n.cfg.Replicas)
	for _, r := range readies {
		m := next.index(r.member)
		if m >= 0 && slices.Contains(next.pending[r.partition], m) {
			next = next.promote(r.partition, m, targets)
		}
	}
	return n.holdDrops(cur, next)
}

// holdDrops returns next with the holders of each partition as cur has
// them, wherever next drops a live member that has not confirmed cur yet:
// a node that does not know it no longer holds a partition may serve it
// by its older table (as its primary, reads of values rewritten since). A
// later step drops it, once its confirmation is in.
func (n *Node) holdDrops(cur, next *table) *table {
	confirmed := func(name string) bool {
		if name == n.self.name {
			return true
		}
		n.pushes.mu.Lock()
		defer n.pushes.mu.Unlock()
		return n.pushes.acked[name] >= cur.version
	}
	var held *table
	for p := range next.owners {
		for _, i := range slices.Concat(cur.owners[p], cur.pending[p]) {
			name := cur.members[i].name
			j := next.index(name)
			if j < 0 || slices.Contains(next.owners[p], j) || slices.Contains(next.pending[p], j) || confirmed(name) {
				continue
			}
			owners := remap(cur, next, cur.owners[p])
			if len(owners) == 0 {
				break // every in-sync copy is gone: nothing to hold
			}
			if held == nil {
				c := *next
				c.owners, c.pending = slices.Clone(next.owners), slices.Clone(next.pending)
				held = &c
			}
			held.owners[p], held.pending[p] = owners, remap(cur, next, cur.pending[p])
			break
		}
	}
	if held == nil {
		return next
	}
	return held
}

// remap returns the members at indices of from as indices of to, leaving
// out those to has not.
func remap(from, to *table, indices []int) []int {
	out := make([]int, 0, len(indices))
	for _, i := range indices {
		if j := to.index(from.members[i].name); j >= 0 {
			out = append(out, j)
		}
	}
	return out
}

// logMoves logs how many partition copies a new table adds and drops.
func (n *Node) logMoves(cur, next *table) {
	added, dropped := 0, 0
	for p := range next.owners {
		was, is := holderNames(cur, p), holderNames(next, p)
		for _, m := range is {
			if !slices.Contains(was, m) {
				added++
			}
		}
		for _, m := range was {
			if !slices.Contains(is, m) {
				dropped++
			}
		}
	}
	n.log.Info("ghost: published a partition table", "version", next.version, "members", len(next.members), "copies_added", added, "copies_dropped", dropped)
}

func holderNames(t *table, p int) []string {
	var out []string
	for _, i := range t.owners[p] {
		out = append(out, t.members[i].name)
	}
	for _, i := range t.pending[p] {
		out = append(out, t.members[i].name)
	}
	return out
}

// pushTable sends the current table to every member that has not
// confirmed it, without waiting: a frozen member must not hold up the
// coordinator. A push still under way is not repeated.
func (n *Node) pushTable() {
	t := n.table.Load()
	body := encodeTable(t)
	ps := &n.pushes
	for _, m := range t.members {
		ps.mu.Lock()
		skip := m.name == n.self.name || ps.acked[m.name] >= t.version || ps.inflight[m.name]
		if !skip {
			ps.inflight[m.name] = true
		}
		ps.mu.Unlock()
		if skip {
			continue
		}
		n.goBackground(func() {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			defer cancel()
			n.tableCalls.pushes.Add(1)
			n.tableCalls.pushBytes.Add(int64(len(body)))
			resp, err := n.peers.get(m.addr).call(ctx, &request{op: opTablePush, value: body, tver: t.version})
			switch {
			case err == nil && resp.status == statusStale && resp.tver == t.version:
				// The member holds another table of our version: the one
				// that wins by newerThan must be ours too.
				n.fetchTable(m.addr)
			case err == nil:
				n.learnVersion(resp.tver) // a member ahead of its coordinator: fetch its table
			}
			ps.mu.Lock()
			delete(ps.inflight, m.name)
			if err == nil && resp.status == statusOK {
				ps.acked[m.name] = max(ps.acked[m.name], resp.tver)
			}
			ps.mu.Unlock()
			if err == nil && resp.status == statusOK {
				n.ringChanged() // a drop held for this confirmation may go out (holdDrops)
			}
		})
	}
}

// tableCalls counts the table traffic a node sends, for the scale test
// (scale_test.go): table pushes (opTablePush) and their encoded tables'
// bytes, table fetches (opTableGet) and the bytes of the tables they got,
// and the coordinator's ping rounds before a table change (reach) and the
// pings in them.
type tableCalls struct {
	pushes, pushBytes   atomic.Int64
	fetches, fetchBytes atomic.Int64
	pingRounds, pings   atomic.Int64
}

// pushState tracks which members confirmed which table version.
type pushState struct {
	mu       sync.Mutex
	acked    map[string]uint64 // member name → table version it confirmed
	inflight map[string]bool
}

// adoptNewest fetches the table of each of members and applies the
// newest. It returns the names of the members whose table it got.
func (n *Node) adoptNewest(members []member) map[string]bool {
	var mu sync.Mutex
	got := map[string]bool{n.self.name: true}
	var wg sync.WaitGroup
	for _, m := range members {
		if m.name == n.self.name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n.fetchTable(m.addr) {
				mu.Lock()
				got[m.name] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// learnVersion notes that a peer holds table version v; when it is newer
// than ours, the table loop fetches it.
func (n *Node) learnVersion(v uint64) {
	if v <= n.table.Load().version {
		return
	}
	select {
	case n.fetchDue <- v:
	default:
	}
}

// fetchNewer fetches a table of version v or newer, from the coordinator
// first, then from any live member.
func (n *Node) fetchNewer(v uint64) {
	live, _ := n.liveView()
	c := coordinatorOf(live)
	slices.SortFunc(live, func(a, b member) int {
		switch {
		case a.name == c.name:
			return -1
		case b.name == c.name:
			return 1
		}
		return 0
	})
	for _, m := range live {
		if n.table.Load().version >= v {
			return
		}
		if m.name != n.self.name {
			n.fetchTable(m.addr)
		}
	}
}

// fetchTable asks the member at addr for its table and applies it when it
// is newer.
func (n *Node) fetchTable(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	n.tableCalls.fetches.Add(1)
	resp, err := n.peers.get(addr).call(ctx, &request{op: opTableGet})
	if err != nil || resp.status != statusOK {
		return false
	}
	n.tableCalls.fetchBytes.Add(int64(len(resp.value)))
	t, err := decodeTable(resp.value, n.cfg.PartitionCount)
	if err != nil {
		n.log.Warn("ghost: refused a partition table", "from", addr, "err", err)
		return false
	}
	n.applyTable(t)
	return true
}

// applyTable makes t this node's table when it is newer, drops the
// partitions this node no longer keeps a copy of, and starts the transfers
// it now owes. It reports whether t was applied.
func (n *Node) applyTable(t *table) bool {
	n.tableMu.Lock()
	cur := n.table.Load()
	if !t.newerThan(cur) {
		n.tableMu.Unlock()
		return false
	}
	t = t.withSelf(n.self.name)
	n.nearTableChange(cur, t) // before any write can be decided under t
	n.table.Store(t)
	n.markPrimaries(t)
	// A node the others went on without (the far side of a split, a pause
	// taken for a crash) was dropped from the table and maybe added again:
	// its copies count for nothing in the new table, yet they may hold pairs
	// no other node has (partitions started afresh without it). So may a
	// node whose line of tables lost to another coordinator's. It hands
	// them back to each partition's primary.
	handBackAll := t.self < 0 || t.members[t.self].since > cur.version || t.abandons(cur)
	for p := range t.owners {
		if handBackAll && cur.holds(p) {
			n.handBack(p)
		}
		if cur.holds(p) && !t.holds(p) {
			n.store.dropPartition(p)
		}
	}
	n.tableApplied(t, handBackAll)
	n.peers.retain(t.members)
	n.tableMu.Unlock()
	n.noteQuorum()
	n.tableChanged.signal()
	n.kickLease() // new members: ask them at once
	n.startTransfers()
	return true
}

// broadcastSignal wakes every waiter each time it is signalled.
type broadcastSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcastSignal) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcastSignal) signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
