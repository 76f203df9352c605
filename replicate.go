package ghost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Writes and their copies. A partition's primary decides every write (Add
// stays atomic: one winner), gives it a version, and sends the result to
// every other holder of the partition (its backups and the members being
// filled) at once; it acknowledges only when all of them have applied it.
// A holder applies a copy only when it was sent under the table it holds
// itself, so that a primary that lost its partition cannot write to it.

// Replica op flags (flagEvict is evict.go's).
const (
	// flagTombstone: the copy carries a delete.
	flagTombstone = 1
	// flagDone: the write's request stored (or removed), for the copy's
	// record of the request (dedupe.go).
	flagDone = 4
)

// ErrReplication: the write reached the key's owner but not every copy
// confirmed it in time, so it is not acknowledged. It may or may not have
// been applied; the copies agree again once membership settles.
var ErrReplication = errors.New("ghost: a copy did not confirm the write")

// errCopyHoldsNewer: a copy refused a write's copy for holding a newer
// version of the key. Sending the same copy again cannot succeed.
var errCopyHoldsNewer = errors.New("the copy holds a newer version of the key")

// errCopyRefused: a copy answered that it did not apply a write's copy (it
// holds another table, or a newer version). Unlike a call that failed, it
// says for sure the copy does not hold the write.
var errCopyRefused = errors.New("the copy refused the write")

// errOnSomeCopy: a write not every copy confirmed may be on some of them
// all the same (one confirmed, or a call failed after its frame went out),
// where readers may already have been served it (finish.go).
var errOnSomeCopy = errors.New("the write may be on some copy")

// serveWrite runs a put, add or delete on the partition's primary.
func (n *Node) serveWrite(ctx context.Context, req *request) response {
	p := n.partitionOf(req.key)
	if t := n.table.Load(); req.tver > t.version {
		n.learnVersion(req.tver)
		return response{id: req.id, status: statusStale, tver: t.version}
	}
	if n.refuses(req.op) {
		return response{id: req.id, status: statusNoQuorum, tver: n.table.Load().version}
	}
	// A primary decides a write only while it holds its read lease
	// (lease.go), as it serves reads: one without it may be back from a
	// pause or a split with a table the others have left, and copies that
	// have not caught up yet would take its decision, made on its old
	// copy: a NOT_FOUND or NOT_STORED from a value long gone, or an old
	// value restamped over a newer one (ghostchaos partcoord, pause).
	if !n.awaitLease(ctx) {
		return response{id: req.id, status: statusNoQuorum, tver: n.table.Load().version}
	}
	var expires int64
	if req.op != OpDelete && req.ttl > 0 {
		expires = n.store.now() + req.ttl
	}
	pt := n.store.lock(p)
	// The table is read under the partition lock: a transfer that starts
	// after a table change sees this write in the store, or the write sees
	// the new table and copies itself to the new holder.
	t := n.table.Load()
	// A write routed under an older table is refused, even here at its
	// primary: it may be a request that spent a network partition in a
	// socket's queue and would undo the writes acknowledged since. The
	// caller fetches the table and sends it again.
	if !t.isPrimary(p) || req.tver != t.version {
		pt.mu.Unlock()
		return response{id: req.id, status: statusWrongOwner, tver: t.version}
	}
	version := n.store.versions.next()
	var done, wrote bool
	retry := false
	if done, retry = n.decided[p].lookup(req.rid); retry {
		// A retry of a write this node decided, or received a copy of
		// (its caller lost the reply, or ownership moved meanwhile): the
		// first try's outcome, once the key's entry is on the copies,
		// below.
	} else if req.op == OpDelete {
		done, wrote = n.store.deleteLocked(pt, req.key, version)
	} else if req.op == opLoadFill && n.store.newerThanLocked(pt, req.key, req.ver) {
		// A write of the key since the lease was granted wins over the
		// load (load.go).
	} else {
		// An Add, and a load's fill, store only where no pair is; a
		// refresh replaces the pair it refreshes.
		onlyIfAbsent := req.op == OpAdd || req.op == opLoadFill && req.flags&fillRefresh == 0
		done = n.store.setLocked(pt, req.key, req.value, expires, version, onlyIfAbsent)
		wrote = done
	}
	if !retry {
		n.decided[p].record(req.rid, done, time.Now(), n.dedupeRetention())
	}
	pair := pairCopy{key: req.key, value: req.value, expires: expires, version: version, tombstone: req.op == OpDelete}
	switch {
	case retry:
		// The first try reached this node, maybe as a copy from a primary
		// that lost the partition before its other copies confirmed it:
		// the key's entry goes to the copies again before the answer.
		pair, wrote = n.store.entryLocked(pt, req.key)
	case !wrote:
		// Nothing written: the answer (NOT_STORED, or NOT_FOUND on a
		// tombstone) rests on the key's entry. When that is a write of
		// ours the copies never confirmed (it failed: a copy was cut
		// off), the copies may not hold it, so it is sent again, and the
		// answer acknowledged only once they have it.
		pair, wrote = n.store.unconfirmedLocked(pt, req.key)
	}
	pt.mu.Unlock()
	n.store.evict()
	if !retry {
		n.countWrite(req.op, done)
	}
	resp := response{id: req.id, tver: t.version}
	if !done {
		resp.status = statusNotStored
		if req.op == OpDelete {
			resp.status = statusNotFound
		}
	}
	if !wrote {
		return resp
	}
	// The copy carries the request's id and outcome: a retry that finds a
	// copy promoted to primary is answered as the first try was.
	replica := request{op: opReplicate, key: pair.key, value: pair.value, ttl: pair.expires, tver: t.version, ver: pair.version, rid: req.rid}
	if pair.tombstone {
		replica.value, replica.flags = nil, flagTombstone
	}
	if done {
		replica.flags |= flagDone
	}
	near := n.tellNear(p, pair.key, pair.version) // while the copies are made
	err := n.replicateWrite(ctx, p, t, &replica)
	for tries := 0; errors.Is(err, errCopyHoldsNewer) && tries < restampTries; tries++ {
		// A copy holds a newer version than this write's, which this
		// node, the primary, never saw. Every write acknowledged before
		// this one passed through this node or its copies while it was
		// one, so that version is a write that was never acknowledged
		// (an old primary's, decided under an older table with a clock
		// ahead of ours): this write is newer, whatever the clocks say.
		// It is decided again past that version (the clock observed it)
		// and sent again.
		if pair.version, t = n.restamp(p, pair); pair.version == 0 {
			break
		}
		replica.ver, replica.tver = pair.version, t.version
		err = n.replicateWrite(ctx, p, t, &replica)
	}
	switch now := n.table.Load(); {
	case err == nil:
		n.settleNear(p, pair.key, pair.version)
		n.store.confirm(p, req.key, pair.version)
	case errors.Is(err, errOnSomeCopy) && now.isPrimary(p):
		if near != nil {
			<-near.done // its holders are told before the write is retried
		}
		// A copy may hold the write and serve it: it must not be taken
		// back here. Readers keep waiting for it while it is sent again
		// in the background (finish.go), or with this request's id.
		n.finishing.add(p, replica)
	default:
		n.store.abandon(p, req.key, pair.version)
	}
	if err != nil {
		resp.status, resp.msg = statusReplicaFailed, err.Error() // NOT_FOUND too: not acknowledged
		if now := n.table.Load(); !now.isPrimary(p) {
			// Ownership moved on while the write was being copied: the
			// caller sends it again, with its request id, to the new
			// primary, which answers as this try did when a copy of it
			// reached it, and decides it afresh, to the same outcome,
			// when none did.
			resp.status, resp.tver = statusWrongOwner, now.version
		}
	}
	return resp
}

// restampTries bounds how often one write is decided again past a copy's
// newer version (serveWrite).
const restampTries = 3

// restamp decides pair, a write of this node's that its copies have not
// confirmed, again with a fresh version, when it is still partition p's
// primary and the write is still the key's newest. It returns the new
// version and the table it was decided under, or 0.
func (n *Node) restamp(p int, pair pairCopy) (uint64, *table) {
	version := n.store.versions.next()
	pt := n.store.lock(p)
	defer pt.mu.Unlock()
	t := n.table.Load()
	if !t.isPrimary(p) || !n.store.restampLocked(pt, pair, version) {
		return 0, t
	}
	return version, t
}

// replicateWrite sends a decided write to the copies of partition p under
// table t. When a copy refuses it (it holds another table) or does not
// answer, the write is sent again under the next table, as long as this
// node is still the primary: the next table may have dropped a dead
// backup or added a member to fill. It gives up after three quarters of
// RequestTimeout, so that the caller hears back before its hop times out;
// the caller then sends the write again with the same request id while
// its context has time (routeTo), until the table drops the dead copy.
//
// Its error wraps errOnSomeCopy when some copy may hold the write.
func (n *Node) replicateWrite(ctx context.Context, p int, t *table, replica *request) (err error) {
	if len(t.owners[p]) == 1 && len(t.pending[p]) == 0 {
		return nil // no copy to make (Replicas 1, or a node alone)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout*3/4)
	defer cancel()
	onSomeCopy := false
	defer func() {
		if err != nil && onSomeCopy && !errors.Is(err, errOnSomeCopy) {
			err = fmt.Errorf("%w: %w", errOnSomeCopy, err)
		}
	}()
	pace := backoff{pause: time.Millisecond, longest: 50 * time.Millisecond}
	for {
		err := n.replicate(ctx, t.copiesOf(p), replica)
		if err != nil && errors.Is(err, errOnSomeCopy) {
			onSomeCopy = true
		}
		if err == nil || errors.Is(err, errCopyHoldsNewer) {
			return err
		}
		// Wait for a newer table (unless one came meanwhile), or for a
		// copy to fetch ours.
		changed := n.tableChanged.wait()
		if n.table.Load() == t && pace.wait(ctx, nil, changed) != nil || ctx.Err() != nil {
			return err
		}
		next := n.table.Load()
		if !next.isPrimary(p) {
			return err
		}
		if next.members[next.self].since != t.members[t.self].since {
			// Dropped and added again meanwhile: the partition was
			// streamed back from another primary, and this decision
			// belongs to an earlier term. It must not go out as new.
			return err
		}
		t = next
		replica.tver = t.version
	}
}

func (n *Node) countWrite(op Op, done bool) {
	switch op {
	case OpPut:
		n.stats.putRequests.Add(1)
	case OpAdd:
		n.stats.addRequests.Add(1)
	case OpDelete:
		n.stats.deleteRequests.Add(1)
		if done {
			n.stats.removed.Add(1)
		} else {
			n.stats.notFound.Add(1)
		}
		return
	}
	if done {
		n.stats.stored.Add(1)
	} else {
		n.stats.notStored.Add(1)
	}
}

// replicate sends a write to every copy at once and waits for all of them.
// Its error wraps errOnSomeCopy unless every copy refused the write.
func (n *Node) replicate(ctx context.Context, copies []member, req *request) error {
	switch len(copies) {
	case 0:
		return nil
	case 1: // the usual case, Replicas 2: no goroutine needed
		if err := n.replicateTo(ctx, copies[0], req); err != nil {
			if !errors.Is(err, errCopyRefused) {
				err = fmt.Errorf("%w: %w", errOnSomeCopy, err)
			}
			return fmt.Errorf("%w: %w", ErrReplication, err)
		}
		return nil
	}
	errs := make([]error, len(copies))
	done := make(chan struct{}, len(copies))
	for i, m := range copies {
		go func() {
			errs[i] = n.replicateTo(ctx, m, req)
			done <- struct{}{}
		}()
	}
	for range copies {
		<-done
	}
	if err := errors.Join(errs...); err != nil {
		for _, e := range errs {
			if e == nil || !errors.Is(e, errCopyRefused) {
				err = fmt.Errorf("%w: %w", errOnSomeCopy, err)
				break
			}
		}
		return fmt.Errorf("%w: %w", ErrReplication, err)
	}
	return nil
}

// replicateTo sends req, a replica op whose ttl is the pair's expiry on
// this node's clock, to m: the expiry travels as the time left.
func (n *Node) replicateTo(ctx context.Context, m member, req *request) error {
	r := *req
	r.ttl = ttlLeft(req.ttl, n.store.now())
	resp, err := n.peers.get(m.addr).call(ctx, &r)
	if err != nil {
		return fmt.Errorf("%s: %w", m.addr, err)
	}
	if resp.status == statusHoldsNewer && len(resp.value) == 8 {
		newer := binary.BigEndian.Uint64(resp.value)
		if e := n.store.parts[n.partitionOf(req.key)].load(req.key); e != nil && e.version >= newer {
			// A newer write this node decided since got there first:
			// copies of concurrent writes may arrive in any order.
			return nil
		}
		n.store.versions.observe(newer) // the next write of the key wins
		return fmt.Errorf("%s: %w: %w (%d, the write's %d)", m.addr, errCopyRefused, errCopyHoldsNewer, newer, req.ver)
	}
	if resp.status != statusOK {
		n.learnVersion(resp.tver)
		return fmt.Errorf("%s: %w (status %d, its table %d, ours %d)", m.addr, errCopyRefused, resp.status, resp.tver, req.tver)
	}
	return nil
}

// serveReplica applies a copy of a write its primary made.
func (n *Node) serveReplica(_ context.Context, req *request) response {
	p := n.partitionOf(req.key)
	pt := n.store.lock(p)
	t := n.table.Load()
	if req.tver != t.version || !t.holds(p) {
		pt.mu.Unlock()
		return n.refuse(req, t, "a copy of a write")
	}
	if req.flags&flagEvict != 0 {
		n.store.dropEvictedLocked(pt, req.key, req.ver)
		pt.mu.Unlock()
		return response{id: req.id, tver: t.version}
	}
	_, newer := n.store.applyFromPrimary(pt, pairCopy{key: req.key, value: req.value, expires: expiryAt(req.ttl, n.store.now()), version: req.ver, tombstone: req.flags&flagTombstone != 0}, 0)
	if newer == 0 {
		n.decided[p].record(req.rid, req.flags&flagDone != 0, time.Now(), n.dedupeRetention())
	}
	n.receiving.sent(p, req.key)
	pt.mu.Unlock()
	n.store.evict()
	if newer != 0 {
		// This copy holds a newer version of the key than the primary
		// decided (a clock behind, or a write it missed): the write is
		// not on this copy, and saying OK would acknowledge it.
		return response{id: req.id, status: statusHoldsNewer, value: binary.BigEndian.AppendUint64(nil, newer), tver: t.version}
	}
	return response{id: req.id, tver: t.version}
}

// refuse answers a request sent under another table than t: stale when the
// sender's is newer (this node fetches it), wrong owner otherwise.
func (n *Node) refuse(req *request, t *table, what string) response {
	if req.tver > t.version {
		n.learnVersion(req.tver)
		return response{id: req.id, status: statusStale, tver: t.version}
	}
	n.log.Debug("ghost: refused "+what+" sent under another table", "its_table", req.tver, "ours", t.version)
	return response{id: req.id, status: statusWrongOwner, tver: t.version}
}
