package ghost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Renewing near leases. A near copy read within the last nearIdle leases
// is renewed before its lease ends, in one call per owner for all such
// keys: the owner records the holder again for each key whose pair is
// still the version the copy holds, and says which. Without it, every key
// would cross the network once per lease per node that reads it, and the
// long tail of a skewed load (keys read every few seconds) would never be
// near at all. A renewal is kept, as a first grant is, only if no
// invalidation of the key reached the holder since it was sent.

// nearIdle is how many leases a near copy stays renewed without a hit.
const nearIdle = 30

// nearRenewBatch bounds the keys of one renewal call.
const nearRenewBatch = 512

// nearRenewal is one key to renew: its hash, name and version.
type nearRenewal struct {
	h       uint64
	key     string
	version uint64
}

// nearRenewLoop renews the near leases every quarter lease until the node
// closes.
func (n *Node) nearRenewLoop() {
	n.every(n.near.lease/4, n.renewNear)
}

// renewNear drops near copies whose leases ended, and renews those that
// end within half a lease and were read lately, by owner.
func (n *Node) renewNear() {
	c := n.near
	t := n.table.Load()
	now := c.now()
	byOwner := map[string][]nearRenewal{}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, e := range sh.entries {
			switch until := e.until.Load(); {
			case until <= now:
				c.removeLocked(sh, k, e)
				sh.seen[k] = struct{}{} // read again, it asks for a lease at once
			case until-now < int64(c.lease/2) && now-e.used.Load() < nearIdle*int64(c.lease):
				h := hashKey(k)
				if t.self >= 0 || t.version > 0 {
					owner := t.members[t.owners[n.partitionOfHash(h)][0]].addr
					byOwner[owner] = append(byOwner[owner], nearRenewal{h, k, e.version})
				}
			}
		}
		sh.mu.Unlock()
	}
	for owner, keys := range byOwner {
		if owner == n.addr {
			continue // this node's own keys are read in place
		}
		for len(keys) > 0 {
			batch := keys[:min(len(keys), nearRenewBatch)]
			keys = keys[len(batch):]
			if err := n.renewAt(owner, t.version, batch); err != nil {
				n.log.Debug("ghost: could not renew near leases; they end", "owner", owner, "err", err)
			}
		}
	}
}

// renewAt asks owner to renew batch, under table version tver, and extends
// the leases it renews.
func (n *Node) renewAt(owner string, tver uint64, batch []nearRenewal) error {
	c := n.near
	ctx, cancel := context.WithTimeout(context.Background(), c.lease/2)
	defer cancel()
	seq, sent := c.seq.Load(), c.now()
	resp, err := n.peers.get(owner).call(ctx, &request{op: opNearRenew, tver: tver, value: appendNearRenewals(nil, n.addr, batch)})
	if err != nil {
		return err
	}
	if resp.status != statusOK {
		return fmt.Errorf("status %d", resp.status)
	}
	lease, lefts, err := decodeNearRenewed(resp.value, len(batch))
	if err != nil {
		return err
	}
	for i, r := range batch {
		if lefts[i] >= 0 {
			c.extend(r.h, r.key, r.version, seq, sent, lease, time.Duration(lefts[i]))
		}
	}
	return nil
}

// extend moves the end of key's lease, when its copy is still version and
// no invalidation or clear since seq came; see keep.
func (c *nearCache) extend(h uint64, key string, version, seq uint64, sent int64, lease, left time.Duration) {
	until := c.leaseEnd(sent, lease, left)
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.entries[key]
	if e == nil || e.version != version || c.clearedAt.Load() > seq {
		return
	}
	if d, ok := sh.dropped[key]; ok && d.seq > seq {
		return
	}
	if until > e.until.Load() {
		e.until.Store(until)
	}
}

// serveNearRenew renews the near leases of a holder for the keys whose
// pairs are still the versions it holds, on the partitions this node is
// the primary of by the holder's table.
func (n *Node) serveNearRenew(_ context.Context, req *request) response {
	holder, keys, err := decodeNearRenewals(req.value)
	if err != nil {
		return response{id: req.id, status: statusError, msg: err.Error()}
	}
	t := n.table.Load()
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(keys)*2), uint64(n.nearGrants.lease))
	now := n.store.now()
	for _, r := range keys {
		p := n.partitionOfHash(hashKey(r.key))
		left := int64(-1)
		if n.grantsNear(t, p, req.tver, holder) {
			// Recorded before the version is looked at, as a grant is
			// before its read: a write decided since finds the record.
			n.nearGrants.grant(p, r.key, holder)
			e := n.store.parts[p].load(r.key)
			switch {
			case e == nil || e.tombstone || e.version != r.version || e.unconfirmed.Load():
			case e.expires == 0:
				left = 0
			case e.expires > now:
				left = e.expires - now
			}
		}
		out = binary.AppendVarint(out, left)
	}
	return response{id: req.id, tver: t.version, value: out}
}

// appendNearRenewals encodes a renewal request: the holder's address, then
// each key and the version its copy holds.
func appendNearRenewals(b []byte, holder string, keys []nearRenewal) []byte {
	b = binary.AppendUvarint(b, uint64(len(holder)))
	b = append(b, holder...)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, r := range keys {
		b = binary.AppendUvarint(b, uint64(len(r.key)))
		b = append(b, r.key...)
		b = binary.AppendUvarint(b, r.version)
	}
	return b
}

var errBadNearRenewal = errors.New("ghost: malformed near lease renewal")

// decodeNearRenewals reads what appendNearRenewals wrote; keys are checked
// as any key is.
func decodeNearRenewals(b []byte) (holder string, keys []nearRenewal, err error) {
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) || l > 1024 {
			return "", false
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, true
	}
	var ok bool
	if holder, ok = str(); !ok {
		return "", nil, errBadNearRenewal
	}
	count, k := binary.Uvarint(b)
	if k <= 0 || count > nearRenewBatch {
		return "", nil, errBadNearRenewal
	}
	b = b[k:]
	keys = make([]nearRenewal, 0, count)
	for range count {
		key, ok := str()
		if !ok || checkKey(key) != nil {
			return "", nil, errBadNearRenewal
		}
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return "", nil, errBadNearRenewal
		}
		b = b[k:]
		keys = append(keys, nearRenewal{key: key, version: v})
	}
	if len(b) != 0 {
		return "", nil, errBadNearRenewal
	}
	return holder, keys, nil
}

// decodeNearRenewed reads a renewal's reply for count keys: the lease, and
// per key the pair's time left (0: no expiry; -1: not renewed).
func decodeNearRenewed(b []byte, count int) (time.Duration, []int64, error) {
	if len(b) < 8 {
		return 0, nil, errBadNearRenewal
	}
	lease := time.Duration(binary.BigEndian.Uint64(b))
	b = b[8:]
	lefts := make([]int64, count)
	for i := range lefts {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, nil, errBadNearRenewal
		}
		lefts[i], b = v, b[k:]
	}
	return lease, lefts, nil
}
