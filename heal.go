package ghost

import (
	"context"
	"fmt"
	"time"
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

// handBack copies partition p's pairs and tombstones and sends them, in
// the background, to p's primary. Writes this node decided as a primary
// that its copies never confirmed stay behind: they were not acknowledged,
// and a stalled node may have decided them under a table long gone.
func (n *Node) handBack(p int) {
	pairs := n.store.copies(p, n.store.keysOf(p), true)
	if len(pairs) == 0 {
		return
	}
	// Counted as a transfer: the node is not Safe until it is done.
	n.transfers.count.Add(1)
	n.goBackground(func() {
		defer n.transfers.count.Add(-1)
		pace := backoff{pause: 10 * time.Millisecond, longest: time.Second}
		for range handBackAttempts {
			err := n.sendHandBack(p, pairs)
			if err == nil {
				n.log.Info("ghost: handed back a partition held across a split", "partition", p, "pairs", len(pairs))
				return
			}
			n.log.Debug("ghost: hand-back refused; retrying", "partition", p, "err", err)
			if pace.wait(context.Background(), n.done, nil) != nil {
				return
			}
		}
		n.log.Warn("ghost: gave up handing back a partition", "partition", p, "pairs", len(pairs))
	})
}

func (n *Node) sendHandBack(p int, pairs []pairCopy) error {
	t := n.table.Load()
	to := t.members[t.primary(p)]
	for start := 0; start < len(pairs); {
		end, size := start, 0
		for end < len(pairs) && end-start < chunkKeys && (end == start || size+len(pairs[end].key)+len(pairs[end].value) <= chunkBytes) {
			size += len(pairs[end].key) + len(pairs[end].value)
			end++
		}
		c := chunk{partition: p, sender: n.self.name, merge: true, last: end == len(pairs), pairs: pairs[start:end]}
		if to.name == n.self.name { // the partition is ours again
			if resp := n.serveMerge(&request{tver: t.version}, &c); resp.status != statusOK {
				return fmt.Errorf("merging locally: status %d", resp.status)
			}
		} else if err := n.sendChunk(to, t.version, &c); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// serveMerge takes pairs handed back to this node, the partition's
// primary: it keeps those newer than its own (by their versions: a pair
// rewritten or deleted since stays as the primary has it). Then the
// primary's copy of every key handed back is sent to the partition's other
// holders, as a write is, so that a hand-back tried again after a failure
// completes what the first try began.
func (n *Node) serveMerge(req *request, c *chunk) response {
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
	pt.mu.Unlock()
	n.store.evict()
	for _, pc := range n.store.copies(c.partition, keys, false) {
		replica := request{op: opReplicate, key: pc.key, value: pc.value, ttl: pc.expires, tver: t.version, ver: pc.version}
		if pc.tombstone {
			replica.flags = flagTombstone
		}
		if err := n.replicateWrite(context.Background(), c.partition, t, &replica); err != nil {
			return response{id: req.id, status: statusReplicaFailed, msg: err.Error(), tver: n.table.Load().version}
		}
	}
	return response{id: req.id, tver: t.version}
}
