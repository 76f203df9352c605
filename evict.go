package ghost

import (
	"context"
)

// Evictions the primary decides. Under memory pressure each node evicts
// the least recently used pairs of the partitions it is the primary of
// (store.evict), and tells their copies to drop them too: the copies do
// not see the reads, so an LRU of their own would evict another mix, the
// copies of a partition would differ, and anti-entropy would resync them
// over and over. A notice that is lost (a full queue, a copy that does not
// answer) leaves a copy holding a pair its primary dropped, which the next
// anti-entropy round finds.

// evictionQueue bounds the notices waiting to be sent; past it they are
// dropped and anti-entropy repairs.
const evictionQueue = 4096

// evictionSenders bounds the notices in flight at once.
const evictionSenders = 16

// flagEvict marks a replica op that carries an eviction: the copy drops
// the key unless it holds a newer write of it.
const flagEvict = 2

type evictionNotice struct {
	partition int
	key       string
	version   uint64
}

// noteEviction queues a notice of a pair this node evicted as partition
// p's primary. It runs in the evicting goroutine, so it never blocks.
func (n *Node) noteEviction(p int, key string, version uint64) {
	select {
	case n.evictions <- evictionNotice{p, key, version}:
	default:
	}
}

// evictionLoop sends the queued notices to the copies until the node
// shuts down.
func (n *Node) evictionLoop() {
	senders := make(chan struct{}, evictionSenders)
	for {
		select {
		case e := <-n.evictions:
			t := n.table.Load()
			if !t.isPrimary(e.partition) {
				continue
			}
			if hs := n.nearGrants.take(e.partition, e.key); len(hs) > 0 {
				// Near copies of an evicted pair go too (a renewal would
				// not find it, so they end with their leases at the latest).
				n.goBackground(func() { n.invalidateHolders(hs, e.key, e.version) })
			}
			for _, m := range t.copiesOf(e.partition) {
				select {
				case senders <- struct{}{}:
				case <-n.done:
					return
				}
				n.goBackground(func() {
					defer func() { <-senders }()
					ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
					defer cancel()
					req := request{op: opReplicate, key: e.key, tver: t.version, ver: e.version, flags: flagEvict}
					_, _ = n.peers.get(m.addr).call(ctx, &req)
				})
			}
		case <-n.done:
			return
		}
	}
}

// markPrimaries tells the store which partitions this node is the primary
// of under t: their pairs are the ones it evicts.
func (n *Node) markPrimaries(t *table) {
	for p := range t.owners {
		n.store.parts[p].primary.Store(t.isPrimary(p))
	}
}
