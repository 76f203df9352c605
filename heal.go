package ghost

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Healing a split. A node that the others went on without (it was cut off,
// or stalled long enough to be declared dead) finds, when it hears from
// them again, a table in which it holds nothing: the partitions it held
// have other holders now. Those holders may lack pairs only it has: the
// partitions whose every copy was on its side of the split were started
// afresh on the other side. So instead of dropping its copies, it hands them
// back to each partition's primary, which keeps what is newer than its own
// (a pair deleted or rewritten meanwhile stays as the primary has it) and
// sends them to its other holders as it does writes.

// handBackAttempts bounds how often a hand-back is tried when the primary
// refuses or cannot be reached (the table may still be settling).
const handBackAttempts = 20

// offering is a partition's pairs offered to its primary by a node that
// is not its in-sync copy: a hand-back after a split, or a snapshot read
// back at Join (snapshot.go).
type offering struct {
	partition int
	pairs     []pairCopy
	// taken is the snapshot's version clock when it was written; 0 for a
	// hand-back. forgotten is a restore's watermark, when the snapshot
	// held an in-sync copy: the primary drops what it has at or below it
	// that the snapshot lacks, and refuses such pairs from then on.
	taken, forgotten uint64
}

// handBack copies partition p's pairs and tombstones and sends them, in
// the background, to p's primary. Writes this node decided as a primary
// that its copies never confirmed stay behind: they were not acknowledged,
// and a stalled node may have decided them under a table long gone.
func (n *Node) handBack(p int) {
	pairs := n.store.copies(p, n.store.keysOf(p), true)
	if len(pairs) == 0 {
		return
	}
	n.offer(offering{partition: p, pairs: pairs}, handBackAttempts)
}

// offer sends o to its partition's primary in the background, trying up
// to attempts times. It counts as a transfer: the node is not Safe until
// it is done.
func (n *Node) offer(o offering, attempts int) {
	n.transfers.count.Add(1)
	n.goBackground(func() {
		defer n.transfers.count.Add(-1)
		what := "a partition held across a split"
		if o.taken != 0 {
			what = "a partition restored from the snapshot"
		}
		pace := backoff{pause: 10 * time.Millisecond, longest: time.Second}
		for range attempts {
			err := n.sendOffering(&o)
			if err == nil {
				n.log.Info("ghost: handed back "+what, "partition", o.partition, "pairs", len(o.pairs))
				return
			}
			n.log.Debug("ghost: hand-back refused; retrying", "partition", o.partition, "err", err)
			if pace.wait(context.Background(), n.done, nil) != nil {
				return
			}
		}
		n.log.Warn("ghost: gave up handing back "+what, "partition", o.partition, "pairs", len(o.pairs))
	})
}

// sendOffering sends o to its partition's primary under this node's
// table, in chunks.
func (n *Node) sendOffering(o *offering) error {
	t := n.table.Load()
	to := t.members[t.primary(o.partition)]
	pairs := o.pairs
	for start := 0; start == 0 || start < len(pairs); {
		end, size := start, 0
		for end < len(pairs) && end-start < chunkKeys && (end == start || size+len(pairs[end].key)+len(pairs[end].value) <= chunkBytes) {
			size += len(pairs[end].key) + len(pairs[end].value)
			end++
		}
		c := chunk{partition: o.partition, sender: n.self.name, merge: true, start: o.taken, forgotten: o.forgotten,
			first: start == 0, last: end == len(pairs), pairs: pairs[start:end]}
		if to.name == n.self.name { // the partition is ours again
			if resp := n.serveMerge(&request{tver: t.version}, &c); resp.status != statusOK {
				return fmt.Errorf("merging locally: status %d", resp.status)
			}
		} else if err := n.sendChunk(to, t.version, &c); err != nil {
			return err
		}
		if end == len(pairs) {
			return nil
		}
		start = end
	}
	return nil
}

// serveMerge takes pairs handed back to this node, the partition's
// primary: it keeps those newer than its own (by their versions: a pair
// rewritten or deleted since stays as the primary has it) and than what
// the partition forgot. A restore's last chunk then applies its
// watermark (see offering). Then the primary's copy of every key handed
// back is sent to the partition's other holders, as a write is, so that a
// hand-back tried again after a failure completes what the first try
// began.
func (n *Node) serveMerge(req *request, c *chunk) response {
	// A pair handed back may be newer than the one near copies were
	// granted of: their holders drop them first.
	for _, pc := range c.pairs {
		n.tellNear(c.partition, pc.key, pc.version)
	}
	for _, pc := range c.pairs {
		n.awaitTelling(c.partition, pc.key)
	}
	pt := n.store.lock(c.partition)
	t := n.table.Load()
	if req.tver > t.version || !t.isPrimary(c.partition) {
		pt.mu.Unlock()
		return n.refuse(req, t, "pairs handed back")
	}
	keys := make([]string, 0, len(c.pairs))
	for _, pc := range c.pairs {
		if n.partitionOf(pc.key) == c.partition {
			n.store.mergeLocked(pt, pc)
			keys = append(keys, pc.key)
		}
	}
	var dropped []pairCopy
	if c.start != 0 && c.forgotten != 0 {
		if offered := n.merges.note(c, keys); offered != nil {
			dropped = n.store.dropForgottenLocked(pt, c.forgotten, offered)
		}
	}
	pt.mu.Unlock()
	n.store.evict()
	for _, d := range dropped {
		n.noteEviction(c.partition, d.key, d.version)
	}
	if len(t.copiesOf(c.partition)) == 0 {
		return response{id: req.id, tver: t.version}
	}
	var g errgroup.Group
	g.SetLimit(mergeCopiers)
	for _, pc := range n.store.copies(c.partition, keys, false) {
		replica := request{op: opReplicate, key: pc.key, value: pc.value, ttl: pc.expires, tver: t.version, ver: pc.version}
		if pc.tombstone {
			replica.flags = flagTombstone
		}
		g.Go(func() error { return n.replicateWrite(context.Background(), c.partition, t, &replica) })
	}
	if err := g.Wait(); err != nil {
		return response{id: req.id, status: statusReplicaFailed, msg: err.Error(), tver: n.table.Load().version}
	}
	return response{id: req.id, tver: t.version}
}

// mergeCopiers bounds the copies of merged pairs in flight at once.
const mergeCopiers = 32

// mergeSessions gathers the keys of a restore offered in several chunks,
// so that its last chunk knows every key the snapshot held.
type mergeSessions struct {
	mu   sync.Mutex
	keys map[mergeSession]map[string]struct{}
}

type mergeSession struct {
	partition int
	sender    string
	taken     uint64
}

// note adds keys, the keys of chunk c, to c's session, and returns every
// key of the offering on its last chunk (nil before).
func (ms *mergeSessions) note(c *chunk, keys []string) map[string]struct{} {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	id := mergeSession{c.partition, c.sender, c.start}
	if ms.keys == nil || len(ms.keys) > 4096 { // sessions abandoned by senders that went away
		ms.keys = map[mergeSession]map[string]struct{}{}
	}
	seen := ms.keys[id]
	if c.first || seen == nil {
		seen = map[string]struct{}{}
		ms.keys[id] = seen
	}
	for _, k := range keys {
		seen[k] = struct{}{}
	}
	if !c.last {
		return nil
	}
	delete(ms.keys, id)
	return seen
}
