package ghost

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// The near cache (Config.NearCacheKeys): values this node reads often from
// other owners, kept here and served at local-hit speed. A key read twice
// from its owner within a while is asked for with a near lease (opNearGet):
// the owner, the key's primary, records this node as a holder of the key
// until the lease ends and returns the value with its version. Before any
// write of the key becomes visible on its primary (nearlease.go), the
// primary tells every holder to drop it (opNearInvalidate) and waits for
// each to confirm, or for its lease to end when it cannot be reached. So a
// near copy is never served once a newer write could have been read
// anywhere: reads stay linearizable.
//
// An invalidation may overtake the reply of a read that was already on its
// way (they travel on different connections), and it ends the primary's
// record of the holder, whatever value the reply carries: the holder
// numbers its invalidations, remembers each key's last for a lease, and
// keeps no reply to a read sent before it. A holder computes a lease's end
// from when it sent the read, so its copy ends no later than the primary's
// record of it. A flush empties the near cache, and so does every new
// partition table (the primary may have changed), both refusing the
// replies to reads sent before; a primary newly in charge of a partition
// holds its first writes back for a lease (nearlease.go), so that leases
// an earlier primary granted have ended first.

// nearShards spreads the near cache over locks.
const nearShards = 16

// nearCache is a node's near cache.
type nearCache struct {
	maxKeys  int64
	maxBytes int64
	lease    time.Duration
	base     time.Time // leases end in nanoseconds since base, on the monotonic clock

	keys, bytes atomic.Int64
	seq         atomic.Uint64 // numbers invalidations and clears
	clearedAt   atomic.Uint64 // the last clear's number: replies to reads sent before are not kept
	shards      [nearShards]nearShard
	stats       *watchdog
}

type nearShard struct {
	mu      sync.RWMutex
	entries map[string]*nearEntry
	dropped map[string]nearDrop      // invalidated keys: replies to reads sent before are not kept
	seen    map[string]struct{}      // keys read once from their owner, lately
	flights map[string]chan struct{} // near reads on their way, closed when answered
}

type nearEntry struct {
	value   []byte
	version uint64       // the pair's, as its owner granted it
	until   atomic.Int64 // since base: the lease's end (nearrenew.go extends it)
	used    atomic.Int64 // since base: the last hit, to a lease/8
}

type nearDrop struct {
	seq   uint64 // the invalidation's number
	until int64  // since base: then no reply to a read sent before it can be kept
}

func newNearCache(maxKeys int, maxBytes int64, lease time.Duration, stats *watchdog) *nearCache {
	c := &nearCache{maxKeys: int64(maxKeys), maxBytes: maxBytes, lease: lease, base: time.Now(), stats: stats}
	for i := range c.shards {
		c.shards[i] = nearShard{entries: map[string]*nearEntry{}, dropped: map[string]nearDrop{}, seen: map[string]struct{}{}, flights: map[string]chan struct{}{}}
	}
	return c
}

func (c *nearCache) now() int64 { return int64(time.Since(c.base)) }

func (c *nearCache) shard(h uint64) *nearShard { return &c.shards[h%nearShards] }

// get returns key's near copy while its lease lasts.
func (c *nearCache) get(h uint64, key string) ([]byte, bool) {
	sh := c.shard(h)
	sh.mu.RLock()
	e := sh.entries[key]
	sh.mu.RUnlock()
	if e == nil {
		return nil, false
	}
	now := c.now()
	if now >= e.until.Load() {
		return nil, false
	}
	if now-e.used.Load() > int64(c.lease/8) { // a store per hit would be contended
		e.used.Store(now)
	}
	c.stats.nearHits.Add(1)
	return e.value, true
}

// admit reports whether a read of key from its owner should ask for a
// near lease: the second read within a while does, and any read of a key
// whose lease ended. Keys read once (most of a long tail) cost their
// owners no holder records and their writers no invalidations.
func (c *nearCache) admit(h uint64, key string) bool {
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.entries[key] != nil || sh.flights[key] != nil {
		return true
	}
	if _, ok := sh.seen[key]; ok {
		delete(sh.seen, key)
		return true
	}
	if int64(len(sh.seen)) >= max(c.maxKeys/nearShards, 64) {
		clear(sh.seen) // forget the old reads; the hot keys come back at once
	}
	sh.seen[key] = struct{}{}
	return false
}

// keep stores a near copy of key granted for lease (and ending with its
// pair's TTL, left, when not 0) to a read sent at sent, when c's
// invalidation number was seq.
func (c *nearCache) keep(h uint64, key string, value []byte, version, seq uint64, sent int64, lease, left time.Duration) {
	until := c.leaseEnd(sent, lease, left)
	now := c.now()
	size := int64(len(key) + len(value))
	if until <= now || size > c.maxBytes/nearShards { // one value would crowd out a shard
		return
	}
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c.clearedAt.Load() > seq {
		return // cleared since (checked under the lock: clear takes it after)
	}
	if d, ok := sh.dropped[key]; ok && d.seq > seq {
		return // its owner forgot this holder since: a write is under way
	}
	if old := sh.entries[key]; old != nil {
		c.removeLocked(sh, key, old)
	}
	for c.keys.Load() >= c.maxKeys || c.bytes.Load()+size > c.maxBytes {
		if !c.evictOneLocked(sh) {
			return // this shard is empty; the others hold the room
		}
	}
	e := &nearEntry{value: value, version: version}
	e.until.Store(until)
	e.used.Store(now)
	sh.entries[key] = e
	c.keys.Add(1)
	c.bytes.Add(size)
	c.stats.nearKept.Add(1)
}

// leaseEnd is when a near copy granted for lease to a read sent at sent
// ends: the shorter of the grantor's lease and this cache's, and no later
// than its pair's expiry, left after it (0: none).
func (c *nearCache) leaseEnd(sent int64, lease, left time.Duration) int64 {
	until := sent + int64(min(lease, c.lease))
	if left > 0 {
		until = min(until, sent+int64(left))
	}
	return until
}

// evictOneLocked drops one entry of sh, at random (the map's order): hot
// keys, read back at once, stay in proportion to their reads.
func (c *nearCache) evictOneLocked(sh *nearShard) bool {
	for k, e := range sh.entries {
		c.removeLocked(sh, k, e)
		return true
	}
	return false
}

func (c *nearCache) removeLocked(sh *nearShard, key string, e *nearEntry) {
	delete(sh.entries, key)
	c.keys.Add(-1)
	c.bytes.Add(-int64(len(key) + len(e.value)))
}

// invalidate drops key's near copy: its owner is about to write it, and
// has forgotten this node as a holder.
func (c *nearCache) invalidate(h uint64, key string) {
	sh := c.shard(h)
	now := c.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.entries[key]; e != nil {
		c.removeLocked(sh, key, e)
		c.stats.nearDropped.Add(1)
		sh.seen[key] = struct{}{} // still hot: its next read asks for a lease again
	}
	sh.dropped[key] = nearDrop{seq: c.seq.Add(1), until: now + int64(c.lease)}
	if len(sh.dropped) > 1024 {
		for k, d := range sh.dropped {
			if d.until <= now {
				delete(sh.dropped, k)
			}
		}
	}
}

// clear drops every near copy (a flush, a new table), and the replies to
// reads sent before are not kept.
func (c *nearCache) clear() {
	c.clearedAt.Store(c.seq.Add(1))
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.entries {
			c.removeLocked(sh, k, e)
		}
		sh.mu.Unlock()
	}
}

// nearGrant is the value of a statusNearGrant reply: the pair's version,
// the lease and the pair's time left (0: none), in nanoseconds, 8 bytes
// big-endian each, then the value.
const nearGrantHeader = 24

func appendNearGrant(b []byte, version uint64, lease, left time.Duration, value []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, version)
	b = binary.BigEndian.AppendUint64(b, uint64(lease))
	b = binary.BigEndian.AppendUint64(b, uint64(left))
	return append(b, value...)
}

// flight returns, when a near read of key is on its way, a channel closed
// when it is answered; otherwise it records one for the caller and returns
// the function that ends it.
func (c *nearCache) flight(h uint64, key string) (wait <-chan struct{}, done func()) {
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ch := sh.flights[key]; ch != nil {
		return ch, nil
	}
	ch := make(chan struct{})
	sh.flights[key] = ch
	return nil, func() {
		sh.mu.Lock()
		delete(sh.flights, key)
		sh.mu.Unlock()
		close(ch)
	}
}

// readNear reads key, of hash h and partition p, from its owner with a
// near lease, and keeps the value it returns. Callers that miss while
// another's near read of the key is on its way wait for it and then look
// again: a copy it brought is served as any near copy is (a value it
// brought is not, as that was read before they called).
func (n *Node) readNear(ctx context.Context, p int, h uint64, key string) ([]byte, error) {
	c := n.near
	wait, done := c.flight(h, key)
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if v, ok := c.get(h, key); ok {
			return v, nil
		}
	} else {
		defer done()
	}
	c.stats.nearReads.Add(1)
	seq, sent := c.seq.Load(), c.now()
	resp, err := n.routeTo(ctx, p, &request{op: opNearGet, key: key, value: []byte(n.addr)})
	if errors.Is(err, errNearGrant) {
		if len(resp.value) < nearGrantHeader {
			return nil, errors.New("ghost: a near lease without its header")
		}
		b := resp.value
		version := binary.BigEndian.Uint64(b)
		lease := time.Duration(binary.BigEndian.Uint64(b[8:]))
		left := time.Duration(binary.BigEndian.Uint64(b[16:]))
		value := b[nearGrantHeader:]
		c.keep(h, key, value, version, seq, sent, lease, left)
		return value, nil
	}
	return resp.value, err
}

// errNearGrant: the reply carries the value with a near lease.
var errNearGrant = errors.New("ghost: near lease granted")

// serveNearInvalidate drops a near copy its owner is about to replace,
// or, without a key, every near copy (a flush).
func (n *Node) serveNearInvalidate(_ context.Context, req *request) response {
	switch {
	case n.near == nil:
	case req.key == "":
		n.near.clear()
	case checkKey(req.key) == nil:
		n.near.invalidate(hashKey(req.key), req.key)
	}
	return response{id: req.id, tver: n.table.Load().version}
}
