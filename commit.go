package ghost

import (
	"context"
	"sync"
)

// Commits: a backup serves a write's copy only once its primary says every
// copy has it. A backup applies a copy at once (it must hold it before the
// primary acknowledges), but marks it pending: until the primary's commit
// arrives, its readers wait, as readers of the primary wait for the
// copies. Otherwise a reader that reached the backup (the primary
// suspected down) could see a write its primary then drops (a copy
// refused it, the primary lost the partition), and a later reader the
// value before it. The primary sends its commits after it confirms the
// writes, in batches per copy, off the writes' path. A commit that does
// not arrive (the primary died just after acknowledging) leaves the copy
// pending: a backup made the primary finishes the writes it holds
// pending (finish.go), so they are confirmed on the new copies and then
// served, and a reader that waited settleWait in vain is served the copy,
// as backups always were.

// commitQueue holds the commits a primary has yet to send, by copy.
type commitQueue struct {
	mu     sync.Mutex
	byPeer map[string][]keyVersion
	kick   chan struct{} // capacity 1: a commit was queued
}

// commitQueueBound bounds the commits waiting for one copy: past it the
// oldest go, and their copies wait settleWait before they are served.
const commitQueueBound = 1 << 16

func (q *commitQueue) init() {
	q.byPeer = map[string][]keyVersion{}
	q.kick = make(chan struct{}, 1)
}

// commit queues the commit of the write of key at version, of partition p,
// for the partition's copies by this node's table.
func (n *Node) commit(p int, key string, version uint64) {
	copies := n.table.Load().copiesOf(p)
	if len(copies) == 0 {
		return
	}
	q := &n.commits
	q.mu.Lock()
	for _, m := range copies {
		list := append(q.byPeer[m.addr], keyVersion{key: key, version: version})
		if len(list) > commitQueueBound {
			list = list[len(list)-commitQueueBound:]
		}
		q.byPeer[m.addr] = list
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// commitLoop sends the queued commits until the node shuts down: every
// copy's at once, in lists of keyVersionBatch.
func (n *Node) commitLoop() {
	q := &n.commits
	for {
		select {
		case <-q.kick:
		case <-n.done:
			return
		}
		q.mu.Lock()
		byPeer := q.byPeer
		q.byPeer = map[string][]keyVersion{}
		q.mu.Unlock()
		var wg sync.WaitGroup
		for addr, list := range byPeer {
			wg.Go(func() {
				for len(list) > 0 {
					batch := list[:min(len(list), keyVersionBatch)]
					list = list[len(batch):]
					n.sendCommits(addr, batch)
				}
			})
		}
		wg.Wait()
	}
}

// sendCommits sends one list of commits to the copy at addr. A commit that
// does not arrive is not sent again: its copy is finished by whichever
// node is the primary next, or served after settleWait.
func (n *Node) sendCommits(addr string, batch []keyVersion) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	req := request{op: opCommit, value: appendKeyVersions(nil, n.addr, batch)}
	if resp, err := n.peers.get(addr).call(ctx, &req); err != nil || resp.status != statusOK {
		n.log.Debug("ghost: commits did not reach a copy; it waits for them", "peer", addr, "err", err, "status", resp.status)
	}
}

// serveCommit clears the pending marks of the writes its primary commits.
func (n *Node) serveCommit(_ context.Context, req *request) response {
	_, keys, err := decodeKeyVersions(req.value)
	if err != nil {
		return response{id: req.id, status: statusError, msg: err.Error()}
	}
	for _, kv := range keys {
		pt := n.store.lock(n.partitionOf(kv.key))
		commitLocked(pt, kv.key, kv.version)
		pt.mu.Unlock()
	}
	return response{id: req.id, tver: n.table.Load().version}
}

// commitLocked clears the pending mark of key's copy at version, wherever
// it is in the key's chain of writes not yet settled. pt.mu must be held.
func commitLocked(pt *partition, key string, version uint64) bool {
	for e := pt.load(key); e != nil && e.unsettled(); e = e.prior.Load() {
		if e.version == version && e.pending.Load() {
			e.pending.Store(false)
			if !e.unconfirmed.Load() {
				e.prior.Store(nil) // after pending: see visible
			}
			pt.settled.wake()
			return true
		}
	}
	return false
}

// adoptPending makes this node, the new primary of partition p, the
// decider of the copies it holds pending: each becomes a write of its own
// not yet confirmed, which finish sends to the partition's copies and
// confirms. Readers keep waiting for them meanwhile.
func (n *Node) adoptPending(p int) {
	pt := n.store.lock(p)
	var adopted []finishWrite
	pt.each(func(e *entry) {
		if !e.pending.Load() {
			return
		}
		e.unconfirmed.Store(true) // before pending is cleared: readers never see it settled
		e.pending.Store(false)
		replica := request{op: opReplicate, key: e.key, value: e.value, ttl: e.expires, ver: e.version, flags: flagDone}
		if e.tombstone {
			replica.value, replica.flags = nil, flagTombstone|flagDone
		}
		adopted = append(adopted, finishWrite{p: p, replica: replica})
	})
	pt.mu.Unlock()
	for _, w := range adopted {
		n.finishing.add(w.p, w.replica)
	}
}

// newlyPrimary lists the partitions this node is the primary of by t and
// was not by cur.
func newlyPrimary(cur, t *table) []int {
	var out []int
	for p := range t.owners {
		if t.isPrimary(p) && !cur.isPrimary(p) {
			out = append(out, p)
		}
	}
	return out
}
