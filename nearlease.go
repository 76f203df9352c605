package ghost

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Near leases, on the primary's side (near.go has the holder's). A primary
// records which nodes hold a near copy of each key, and until when. A
// write of the key becomes visible on the primary (is confirmed) only once
// every holder recorded when the write was decided, or since, has dropped
// its copy or its lease has ended: the holders are told while the write's
// copies are being made, so it costs a write one round trip only when the
// key has holders. A primary grants leases only under the table a reader
// routed with, with no member being filled for the partition, and not
// while it leaves; a node that becomes a partition's primary confirms no
// write of it for one lease (the guard), so that leases the partition's
// earlier primary granted have ended. The guard applies only in a cluster
// where some node keeps a near cache (gossip says which).

// nearGrants are the near leases a node granted as a primary.
type nearGrants struct {
	lease time.Duration
	base  time.Time
	inUse atomic.Bool  // some member keeps a near cache: guards apply
	count atomic.Int64 // keys with holders: writes skip the locks when 0
	parts []nearGrantPart
	guard []atomic.Int64 // per partition: no write confirmed before it (since base)
	stats *watchdog
}

type nearGrantPart struct {
	mu      sync.Mutex
	holders map[string][]nearHolder
	telling map[string][]*nearInvalidation // invalidations of each key on their way
	grants  int                            // since the last sweep of ended leases
}

type nearHolder struct {
	addr  string
	until int64 // since base
}

func (g *nearGrants) init(partitions int, lease time.Duration, stats *watchdog) {
	g.lease, g.base, g.stats = lease, time.Now(), stats
	g.parts = make([]nearGrantPart, partitions)
	g.guard = make([]atomic.Int64, partitions)
}

func (g *nearGrants) now() int64 { return int64(time.Since(g.base)) }

// grant records addr as a holder of key, of partition p, for a lease.
func (g *nearGrants) grant(p int, key, addr string) {
	now := g.now()
	until := now + int64(g.lease)
	pt := &g.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.holders == nil {
		pt.holders = map[string][]nearHolder{}
	}
	hs := pt.holders[key]
	if len(hs) == 0 {
		g.count.Add(1)
	}
	// Drop ended leases and addr's older one.
	hs = slices.DeleteFunc(hs, func(h nearHolder) bool { return h.until <= now || h.addr == addr })
	pt.holders[key] = append(hs, nearHolder{addr: addr, until: until})
	g.stats.nearGranted.Add(1)
	if pt.grants++; pt.grants >= max(256, len(pt.holders)) {
		// Keys read near and never written keep records: sweep those
		// whose leases all ended, as often as there are records.
		pt.grants = 0
		for k, hs := range pt.holders {
			if !slices.ContainsFunc(hs, func(h nearHolder) bool { return h.until > now }) {
				delete(pt.holders, k)
				g.count.Add(-1)
			}
		}
	}
}

// take removes and returns key's holders whose leases have not ended.
func (g *nearGrants) take(p int, key string) []nearHolder {
	if g.count.Load() == 0 {
		return nil
	}
	pt := &g.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	hs, ok := pt.holders[key]
	if !ok {
		return nil
	}
	delete(pt.holders, key)
	g.count.Add(-1)
	now := g.now()
	return slices.DeleteFunc(hs, func(h nearHolder) bool { return h.until <= now })
}

// forget drops the records of partition p, which this node no longer
// grants leases of (the guard of its next primary covers them).
func (g *nearGrants) forget(p int) {
	pt := &g.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	g.count.Add(-int64(len(pt.holders)))
	pt.holders = nil
}

// guardFrom starts partition p's guard: this node has just become its
// primary.
func (g *nearGrants) guardFrom(p int) {
	if g.inUse.Load() {
		g.guard[p].Store(g.now() + int64(g.lease))
	}
}

// grantsNear reports whether this node may grant a near lease on key's
// partition p to a reader that routed with table version tver.
func (n *Node) grantsNear(t *table, p int, tver uint64, holder string) bool {
	if !t.isPrimary(p) || tver != t.version || len(t.pending[p]) != 0 || n.leaving.Load() || holder == n.addr {
		return false
	}
	return slices.ContainsFunc(t.members, func(m member) bool { return m.addr == holder })
}

// serveNearGet is serveGet with a near lease for the reader, when this
// node is the key's primary by the reader's table.
func (n *Node) serveNearGet(ctx context.Context, req *request) response {
	h, p, t, refusal := n.admitRead(ctx, req)
	if refusal != nil {
		return *refusal
	}
	grant := n.grantsNear(t, p, req.tver, string(req.value))
	if grant {
		// Recorded before the read: a write decided after the read
		// finds the record, and one decided before it is what the
		// read waits for and returns.
		n.nearGrants.grant(p, req.key, string(req.value))
	}
	n.stats.getRequests.Add(1)
	e := n.store.liveHashed(ctx, p, h, req.key)
	resp := response{id: req.id, tver: t.version}
	switch {
	case e == nil:
		n.stats.cacheMiss.Add(1)
		resp.status = statusMiss
	case grant:
		var left time.Duration
		if e.expires != 0 {
			left = time.Duration(max(e.expires-n.store.now(), 1))
		}
		resp.status = statusNearGrant
		resp.value = appendNearGrant(make([]byte, 0, nearGrantHeader+len(e.value)), e.version, n.nearGrants.lease, left, e.value)
	default:
		resp.value = e.value
	}
	return resp
}

// nearInvalidation tells the near holders of a write that it is coming.
type nearInvalidation struct {
	done chan struct{}
}

// tellNear starts telling the holders of key's near copies, of partition
// p, to drop them for the write at version. It starts nothing when the key
// has none. Every write of the key waits for it (settleNear), not only
// its own: a write decided meanwhile finds no holder left to tell, yet
// must not be confirmed while one may still serve the value before both.
func (n *Node) tellNear(p int, key string, version uint64) *nearInvalidation {
	g := &n.nearGrants
	if g.count.Load() == 0 {
		return nil
	}
	pt := &g.parts[p]
	hs := g.take(p, key)
	if len(hs) == 0 {
		return nil
	}
	inv := &nearInvalidation{done: make(chan struct{})}
	pt.mu.Lock()
	if pt.telling == nil {
		pt.telling = map[string][]*nearInvalidation{}
	}
	pt.telling[key] = append(pt.telling[key], inv)
	pt.mu.Unlock()
	n.goBackground(func() {
		n.invalidateHolders(hs, key, version)
		pt.mu.Lock()
		pt.telling[key] = slices.DeleteFunc(pt.telling[key], func(i *nearInvalidation) bool { return i == inv })
		if len(pt.telling[key]) == 0 {
			delete(pt.telling, key)
		}
		pt.mu.Unlock()
		close(inv.done)
	})
	return inv
}

// awaitTelling waits for every invalidation of key, of partition p, on
// its way when it is called.
func (n *Node) awaitTelling(p int, key string) {
	pt := &n.nearGrants.parts[p]
	pt.mu.Lock()
	pending := slices.Clone(pt.telling[key])
	pt.mu.Unlock()
	for _, inv := range pending {
		<-inv.done
	}
}

// invalidateHolders tells each holder at once and returns when each has
// confirmed or its lease has ended.
func (n *Node) invalidateHolders(hs []nearHolder, key string, version uint64) {
	g := &n.nearGrants
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() {
			left := time.Duration(h.until - g.now())
			ctx, cancel := context.WithTimeout(context.Background(), left)
			defer cancel()
			g.stats.nearTold.Add(1)
			resp, err := n.peers.get(h.addr).call(ctx, &request{op: opNearInvalidate, key: key, ver: version})
			if err == nil && resp.status == statusOK {
				return
			}
			// Not told: its copy ends with its lease.
			g.stats.nearWaitedOut.Add(1)
			t := time.NewTimer(time.Duration(h.until - g.now()))
			defer t.Stop()
			select {
			case <-t.C:
			case <-n.done:
			}
		})
	}
	wg.Wait()
}

// settleNear returns once no near copy older than the write of key at
// version, of partition p, can be served: every holder told of a write of
// the key (this one's, since tellNear, and any other's still on its way)
// and any recorded since has dropped its copy or seen its lease end, and
// the partition's guard has passed. The write may then be confirmed.
func (n *Node) settleNear(p int, key string, version uint64) {
	n.tellNear(p, key, version) // the holders recorded since inv began
	n.awaitTelling(p, key)      // this write's, theirs, and those of the key's other writes
	if wait := time.Duration(n.nearGrants.guard[p].Load() - n.nearGrants.now()); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-n.done:
		}
	}
}

// nearTableChange is applyTable's, before t replaces cur: partitions this
// node becomes the primary of start their guard, those it no longer is
// the primary of forget their holders, and near copies kept here go (the
// primaries that granted them may have changed).
func (n *Node) nearTableChange(cur, t *table) {
	for p := range t.owners {
		switch was, is := cur.isPrimary(p), t.isPrimary(p); {
		case is && !was:
			n.nearGrants.guardFrom(p)
		case was && !is:
			n.nearGrants.forget(p)
		}
	}
	if n.near != nil {
		n.near.clear()
	}
}
