package ghost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Moving partitions. When a table makes a member a pending holder of a
// partition (a join, a repair after a crash, a hand-off before a leave),
// the partition's primary streams the partition to it in chunks, a few
// partitions at a time, never holding a partition lock across a network
// call. Writes reach the pending member meanwhile (replicate.go), and every
// pair carries its version, so a pair from a chunk never overwrites a newer
// write or revives a newer delete. When the last chunk is in, the receiver
// drops what it held of the partition that the stream did not contain and
// that is older than the stream's start, and the primary tells the
// coordinator, which makes the copy in sync in the next table.
// Anti-entropy (antientropy.go) uses the same stream to resync a backup.

const (
	// maxTransfers is how many partitions one node streams at once.
	maxTransfers = 4
	// chunkKeys and chunkBytes bound one chunk of a transfer.
	chunkKeys  = 512
	chunkBytes = 256 << 10
)

var errTransferStopped = errors.New("ghost: transfer no longer wanted")

type transferKey struct {
	partition int
	to        string // member name
}

// transferSet tracks this node's outgoing transfers.
type transferSet struct {
	mu      sync.Mutex
	running map[transferKey]bool
	done    map[transferKey]bool // streamed, waiting for the table to say so
	slots   chan struct{}        // maxTransfers tokens
	count   atomic.Int64         // running, for Safe and the metrics
}

func (ts *transferSet) init() {
	ts.running = map[transferKey]bool{}
	ts.done = map[transferKey]bool{}
	ts.slots = make(chan struct{}, maxTransfers)
}

func (ts *transferSet) inFlight() int64 { return ts.count.Load() }

// startTransfers starts the transfers this node owes as primary under its
// current table, and repeats the ready reports of those already streamed.
func (n *Node) startTransfers() {
	t := n.table.Load()
	ts := &n.transfers
	ts.mu.Lock()
	defer ts.mu.Unlock()
	owed := map[transferKey]bool{}
	for p := range t.owners {
		if !t.isPrimary(p) {
			continue
		}
		for _, i := range t.pending[p] {
			owed[transferKey{p, t.members[i].name}] = true
		}
	}
	for k := range ts.done {
		if !owed[k] {
			delete(ts.done, k)
		}
	}
	for k := range owed {
		if ts.done[k] {
			n.goBackground(func() { n.reportReady(k) })
		} else {
			n.startStreamLocked(k, t.members[t.index(k.to)], true)
		}
	}
}

// startStream streams partition k.partition to member to unless a stream
// of it to that member is under way already: two streams of one partition
// to one member must not interleave. With ready, the coordinator is told
// once it is done.
func (n *Node) startStream(k transferKey, to member, ready bool) {
	n.transfers.mu.Lock()
	defer n.transfers.mu.Unlock()
	n.startStreamLocked(k, to, ready)
}

func (n *Node) startStreamLocked(k transferKey, to member, ready bool) {
	ts := &n.transfers
	if ts.running[k] {
		return
	}
	ts.running[k] = true
	ts.count.Add(1)
	n.goBackground(func() { n.runTransfer(k, to, ready) })
}

// runTransfer streams partition k.partition to member to; with ready, the
// coordinator is told once it is done.
func (n *Node) runTransfer(k transferKey, to member, ready bool) {
	ts := &n.transfers
	defer func() {
		ts.mu.Lock()
		delete(ts.running, k)
		ts.mu.Unlock()
		ts.count.Add(-1)
	}()
	select {
	case ts.slots <- struct{}{}:
		defer func() { <-ts.slots }()
	case <-n.done:
		return
	}
	if err := n.sendPartition(k.partition, to, ready); err != nil {
		n.log.Debug("ghost: partition transfer stopped; it is retried", "partition", k.partition, "to", to.addr, "err", err)
		return
	}
	if ready {
		ts.mu.Lock()
		ts.done[k] = true
		ts.mu.Unlock()
		n.reportReady(k)
	}
}

// sendPartition streams partition p to member to, in chunks.
func (n *Node) sendPartition(p int, to member, pendingOnly bool) error {
	start := n.store.versions.next()
	keys := n.store.keysOf(p)
	first := true
	for len(keys) > 0 || first {
		t := n.table.Load()
		i := t.index(to.name)
		if !t.isPrimary(p) || i < 0 || (pendingOnly && !slices.Contains(t.pending[p], i)) {
			return errTransferStopped
		}
		batch := keys[:min(chunkKeys, len(keys))]
		copies := n.store.copies(p, batch, false)
		size, sent := 0, 0
		for sent < len(copies) && (sent == 0 || size+len(copies[sent].key)+len(copies[sent].value) <= chunkBytes) {
			size += len(copies[sent].key) + len(copies[sent].value)
			sent++
		}
		if sent < len(copies) { // the rest of the batch goes in the next chunk
			batch = batch[:0]
			for _, c := range copies[:sent] {
				batch = append(batch, c.key)
			}
			copies = copies[:sent]
		}
		keys = keys[len(batch):]
		c := chunk{partition: p, sender: n.self.name, start: start, forgotten: n.store.forgottenOf(p), first: first, last: len(keys) == 0, pairs: copies}
		if first {
			c.decisions = n.recentDecisions(p)
		}
		if err := n.sendChunk(to, t.version, &c); err != nil {
			return err
		}
		first = false
		n.stats.pairsMoved.Add(uint64(len(copies)))
		n.stats.bytesMoved.Add(uint64(size))
	}
	return nil
}

func (n *Node) sendChunk(to member, tver uint64, c *chunk) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	resp, err := n.peers.get(to.addr).call(ctx, &request{op: opTransfer, value: encodeChunk(c, n.store.now()), tver: tver})
	if err != nil {
		return err
	}
	if resp.status != statusOK {
		n.learnVersion(resp.tver)
		return fmt.Errorf("%s refused a chunk (status %d): %s", to.addr, resp.status, resp.msg)
	}
	return nil
}

// reportReady tells the coordinator that a transfer is done.
func (n *Node) reportReady(k transferKey) {
	live, _ := n.liveView()
	c := coordinatorOf(live)
	if c.name == n.self.name {
		select {
		case n.readies <- readyReport{partition: k.partition, member: k.to}:
		default: // the loop is behind; the next tick repeats the report
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	body, _ := msgpack.Marshal([]any{k.partition, k.to})
	_, _ = n.peers.get(c.addr).call(ctx, &request{op: opReady, value: body})
}

// serveReady takes a ready report, when this node coordinates.
func (n *Node) serveReady(_ context.Context, req *request) response {
	r := &msgReader{b: req.value}
	fields, err := r.arrayLen()
	var p uint64
	var m string
	if err == nil && fields == 2 {
		if p, err = r.uint(uint64(n.cfg.PartitionCount - 1)); err == nil {
			m, err = r.str()
		}
	}
	if err != nil || fields != 2 {
		return response{id: req.id, status: statusError, msg: "malformed ready report"}
	}
	select {
	case n.readies <- readyReport{partition: int(p), member: m}:
	default:
	}
	return response{id: req.id, tver: n.table.Load().version}
}

// receiveState is what a receiver remembers of the streams coming in: per
// partition, the keys the current stream has brought.
type receiveState struct {
	mu       sync.Mutex
	sessions map[int]*receiveSession
	active   atomic.Int32 // len(sessions), read without the lock
}

// sent notes that the primary sent key of partition p outside the stream
// under way (a write's copy): it is part of the primary's partition, and
// the end of the stream must not drop it.
func (rs *receiveState) sent(p int, key string) {
	if rs.active.Load() == 0 {
		return
	}
	rs.mu.Lock()
	if s := rs.sessions[p]; s != nil {
		s.seen[key] = struct{}{}
	}
	rs.mu.Unlock()
}

type receiveSession struct {
	sender string
	start  uint64
	seen   map[string]struct{}
}

// serveTransfer applies one chunk of a partition streamed by its primary.
func (n *Node) serveTransfer(_ context.Context, req *request) response {
	c, err := decodeChunk(req.value, n.cfg.PartitionCount, n.store.now())
	if err != nil {
		n.log.Warn("ghost: refused a malformed transfer chunk", "err", err)
		return response{id: req.id, status: statusError, msg: err.Error()}
	}
	if c.merge {
		return n.serveMerge(req, c)
	}
	pt := n.store.lock(c.partition)
	t := n.table.Load()
	if req.tver > t.version || !t.holds(c.partition) || t.members[t.primary(c.partition)].name != c.sender {
		pt.mu.Unlock()
		return n.refuse(req, t, "a transfer chunk")
	}
	n.store.learnForgottenLocked(pt, c.forgotten)
	for _, d := range c.decisions {
		n.decided[c.partition].record(d.rid, d.done, time.Now(), n.dedupeRetention())
	}
	rs := &n.receiving
	rs.mu.Lock()
	s := rs.sessions[c.partition]
	if c.first || s == nil || s.sender != c.sender || s.start != c.start {
		s = &receiveSession{sender: c.sender, start: c.start, seen: map[string]struct{}{}}
		rs.sessions[c.partition] = s
		rs.active.Store(int32(len(rs.sessions)))
	}
	for _, pc := range c.pairs {
		if n.partitionOf(pc.key) != c.partition {
			continue // not this partition's: a confused or hostile sender
		}
		s.seen[pc.key] = struct{}{}
		n.store.applyFromPrimary(pt, pc, c.start)
	}
	if c.last {
		delete(rs.sessions, c.partition)
		rs.active.Store(int32(len(rs.sessions)))
		n.store.dropOlderLocked(pt, c.start, s.seen)
	}
	rs.mu.Unlock() // lock order: partition, then receiving (serveReplica too)
	pt.mu.Unlock()
	n.store.evict()
	return response{id: req.id, tver: t.version}
}

// chunk is one piece of a partition's stream.
type chunk struct {
	partition   int
	sender      string // member name of the primary streaming
	start       uint64 // version when the stream began
	forgotten   uint64 // the primary's watermark of what the partition forgot
	first, last bool
	merge       bool // pairs handed back by a former holder (heal.go), not a primary's stream
	pairs       []pairCopy
	// decisions: on a stream's first chunk, the requests the primary
	// decided lately (dedupe.go), so that the receiver, once it is the
	// primary, answers their retries as the first try was answered.
	decisions []decision
}

// encodeChunk encodes c at now: expiries as the time left (ttlLeft).
func encodeChunk(c *chunk, now int64) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeArrayLen(9)
	_ = enc.EncodeInt(int64(c.partition))
	_ = enc.EncodeString(c.sender)
	_ = enc.EncodeUint(c.start)
	_ = enc.EncodeUint(c.forgotten)
	_ = enc.EncodeBool(c.first)
	_ = enc.EncodeBool(c.last)
	_ = enc.EncodeBool(c.merge)
	_ = enc.EncodeArrayLen(len(c.pairs))
	for _, p := range c.pairs {
		_ = enc.EncodeArrayLen(5)
		_ = enc.EncodeString(p.key)
		_ = enc.EncodeBytes(p.value)
		_ = enc.EncodeInt(ttlLeft(p.expires, now))
		_ = enc.EncodeUint(p.version)
		_ = enc.EncodeBool(p.tombstone)
	}
	encodeDecisions(enc, c.decisions)
	return buf.Bytes()
}

// decodeChunk decodes a chunk, checking every length against the bytes
// left before allocating, and every value; expiries become deadlines on
// the clock at now.
func decodeChunk(b []byte, partitions int, now int64) (*chunk, error) {
	r := &msgReader{b: b}
	var c chunk
	if n, err := r.arrayLen(); err != nil || n != 9 {
		return nil, fmt.Errorf("ghost: malformed chunk header (%d fields, %v)", n, err)
	}
	p, err := r.uint(uint64(partitions - 1))
	if err != nil {
		return nil, fmt.Errorf("ghost: chunk partition: %w", err)
	}
	c.partition = int(p)
	if c.sender, err = r.str(); err != nil {
		return nil, err
	}
	if c.start, err = r.uint(math.MaxUint64); err != nil {
		return nil, err
	}
	if c.forgotten, err = r.uint(math.MaxUint64); err != nil {
		return nil, err
	}
	for _, f := range []*bool{&c.first, &c.last, &c.merge} {
		if *f, err = r.bool(); err != nil {
			return nil, err
		}
	}
	count, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	c.pairs = make([]pairCopy, count)
	for i := range c.pairs {
		if err := decodePair(r, &c.pairs[i]); err != nil {
			return nil, fmt.Errorf("ghost: pair %d of a chunk: %w", i, err)
		}
		c.pairs[i].expires = expiryAt(c.pairs[i].expires, now)
	}
	if c.decisions, err = decodeDecisions(r); err != nil {
		return nil, fmt.Errorf("ghost: decisions of a chunk: %w", err)
	}
	return &c, nil
}

func decodePair(r *msgReader, pc *pairCopy) error {
	if n, err := r.arrayLen(); err != nil || n != 5 {
		return fmt.Errorf("malformed pair (%d fields, %v)", n, err)
	}
	var err error
	if pc.key, err = r.str(); err != nil {
		return err
	}
	if err = checkKey(pc.key); err != nil {
		return err
	}
	if pc.value, err = r.bytes(); err != nil {
		return err
	}
	if pc.expires, err = r.int(); err != nil {
		return err
	}
	if pc.version, err = r.uint(math.MaxUint64); err != nil {
		return err
	}
	if pc.tombstone, err = r.bool(); err != nil {
		return err
	}
	if !pc.tombstone {
		return checkValue(pc.value)
	}
	return nil
}

// Leave leaves the cluster gracefully and shuts the node down. First it
// hands off: it tells the cluster it is leaving, and keeps serving while the
// partitions it holds (as owner or as a backup) are copied to their next
// holders; then it leaves gossip, telling peers at once. ctx bounds the
// whole: when it ends before the hand-off is done, the node leaves anyway
// and the error says so (with Replicas 2 or more, the copies it held are
// then rebuilt from the other copies, as after a crash).
func (n *Node) Leave(ctx context.Context) error {
	if n.closed.Load() || !n.leaving.CompareAndSwap(false, true) {
		return ErrClosed
	}
	handoff := n.handOff(ctx)
	if !n.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	// The leave broadcast reaches live peers in milliseconds; with every
	// member leaving at once (a whole cluster stopped) no one is left to
	// hear it, and memberlist waits for the whole timeout.
	timeout := leaveBroadcast
	if d, ok := ctx.Deadline(); ok {
		timeout = min(max(time.Until(d), 100*time.Millisecond), leaveBroadcast)
	}
	err := n.ml.Leave(timeout)
	n.shutdown()
	if serr := n.finalSnapshot(); serr != nil && err == nil {
		err = serr
	}
	if handoff != nil {
		return fmt.Errorf("ghost: leave: hand-off unfinished: %w", handoff)
	}
	if err != nil {
		return fmt.Errorf("ghost: leave: %w", err)
	}
	return nil
}

// leaveBroadcast bounds Leave's wait for its news to go out by gossip.
const leaveBroadcast = 2 * time.Second

// handOff announces that this node is leaving and waits until the table
// no longer gives it any partition, or ctx ends.
func (n *Node) handOff(ctx context.Context) error {
	if err := n.ml.UpdateNode(n.cfg.RequestTimeout); err != nil {
		n.log.Warn("ghost: could not announce leaving", "err", err)
	}
	n.ringChanged()
	for {
		changed := n.tableChanged.wait()
		if n.handedOff() {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handedOff reports whether this node may leave without taking data with
// it: no partition lists it, or no other member is left to take them
// (every one is leaving too: a whole cluster stopped, whose DataDirs keep
// what each node holds).
func (n *Node) handedOff() bool {
	live, leaving := n.liveView()
	if len(live) == 1 || len(leaving) == len(live) {
		return true
	}
	t := n.table.Load()
	for p := range t.owners {
		if t.holds(p) {
			return false
		}
	}
	return n.transfers.inFlight() == 0
}
