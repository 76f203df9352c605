package ghost

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Batch calls. GetMulti, PutMulti and DeleteMulti group their keys by the
// member that serves each key's partition and send one request per member,
// to all of them at once; keys this node serves are served in place. Every
// key is served, refused and retried exactly as a single call for it would
// be (the same handlers run on the owner, a write is copied to every
// backup before it is acknowledged): a key refused as routed with an old
// table, or whose owner could not be reached, is grouped again under the
// newer table and sent again, within RequestTimeout.

// maxBatchKeys is the most keys one batch request carries; a larger group
// is sent as several requests at once.
const maxBatchKeys = 1024

// batchEntryOverhead bounds the msgpack framing of one key in a batch
// request or reply, beyond its key, value and message bytes.
const batchEntryOverhead = 32

// BatchError is the error of a batch call some of whose keys failed. Keys
// maps each failed key to its error. errors.Is looks through all of them:
// errors.Is(err, ErrNotFound) reports whether DeleteMulti found some key
// absent, errors.Is(err, ErrKey) whether some key was malformed.
type BatchError struct {
	Op   Op
	Keys map[string]error
}

// Error names the number of failed keys and the first few, by key order.
func (e *BatchError) Error() string {
	keys := make([]string, 0, len(e.Keys))
	for k := range e.Keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "ghost: %d keys failed", len(keys))
	for i, k := range keys {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(keys)-i)
			break
		}
		fmt.Fprintf(&b, "; %q: %v", k, e.Keys[k])
	}
	return b.String()
}

// Unwrap returns every key's error, for errors.Is and errors.As.
func (e *BatchError) Unwrap() []error {
	out := make([]error, 0, len(e.Keys))
	for _, err := range e.Keys {
		out = append(out, err)
	}
	return out
}

// batchErrors collects the failed keys of a batch call.
type batchErrors map[string]error

func (b batchErrors) err(op Op) error {
	if len(b) == 0 {
		return nil
	}
	return &BatchError{Op: op, Keys: b}
}

// GetMulti returns the pairs stored under keys, in one request per member
// that serves some of them. Misses are absent from the map and are not
// errors. Keys that could not be read (malformed, their copies
// unreachable...) are absent too, and named in a *BatchError.
func (n *Node) GetMulti(ctx context.Context, keys []string) (map[string]Item, error) {
	items, failed := n.batchItems(keys, false) // a key asked twice is read twice
	n.runBatch(ctx, OpGet, items, 0)
	out := make(map[string]Item, len(items))
	for _, it := range items {
		switch {
		case errors.Is(it.err, ErrCacheMiss):
		case it.err != nil:
			failed[it.key] = it.err
		default:
			decode := decodeValue
			if it.owned {
				decode = decodeOwnedValue
			}
			v, err := decode(it.resp.value)
			if err != nil {
				failed[it.key] = fmt.Errorf("ghost: decode value of %q: %w", it.key, err)
				continue
			}
			out[it.key] = Item{Key: it.key, Value: v, raw: it.resp.value}
		}
	}
	return out, failed.err(OpGet)
}

// PutMulti stores every pair of pairs, as Put does each (STORED), in one
// request per member that owns some of them. ttl applies to all of them:
// NoExpiry for ever, 0 for Config.DefaultTTL. Each pair is acknowledged on
// its own: when some fail, the others are stored all the same and the
// failed ones are named in a *BatchError.
func (n *Node) PutMulti(ctx context.Context, pairs map[string]any, ttl time.Duration) error {
	ttl, err := n.checkTTL(ttl)
	if err != nil {
		return err
	}
	failed := batchErrors{}
	backing := make([]batchItem, 0, len(pairs))
	for key, value := range pairs {
		if err := checkKey(key); err != nil {
			failed[key] = err
			continue
		}
		raw, err := n.encodeValue(key, value)
		if err != nil {
			failed[key] = err
			continue
		}
		backing = append(backing, batchItem{key: key, value: raw, p: n.partitionOf(key)})
	}
	items := pointersTo(backing)
	n.runBatch(ctx, OpPut, items, int64(ttl))
	for _, it := range items {
		if it.err != nil {
			failed[it.key] = it.err
		}
	}
	return failed.err(OpPut)
}

// DeleteMulti removes the pairs stored under keys, as Delete does each
// (REMOVED), in one request per member that owns some of them. Keys that
// held no pair are named in a *BatchError with ErrNotFound, as are the
// ones that failed otherwise.
func (n *Node) DeleteMulti(ctx context.Context, keys []string) error {
	items, failed := n.batchItems(keys, true) // a second delete would find nothing
	n.runBatch(ctx, OpDelete, items, 0)
	for _, it := range items {
		if it.err != nil {
			failed[it.key] = it.err
		}
	}
	return failed.err(OpDelete)
}

// batchItem is one key of a batch call on its way to an answer.
type batchItem struct {
	key   string
	value []byte // encoded, for puts
	p     int    // partition
	rid   uint64 // writes: the request id, the same on every try (dedupe.go)
	resp  response
	err   error
	// retry: the key was refused or not reached, and goes out again under
	// the newest table; full: its reply had no room for it.
	retry, full bool
	// owned: resp.value is in a reply no one else reads, not in the
	// store, so a binary value may be returned without a copy.
	owned bool
}

// batchItems checks keys, and with dedupe drops repeated ones; malformed
// ones are reported at once and not sent.
func (n *Node) batchItems(keys []string, dedupe bool) ([]*batchItem, batchErrors) {
	failed := batchErrors{}
	var seen map[string]struct{}
	if dedupe {
		seen = make(map[string]struct{}, len(keys))
	}
	backing := make([]batchItem, 0, len(keys))
	for _, k := range keys {
		if dedupe {
			if _, dup := seen[k]; dup {
				continue
			}
			seen[k] = struct{}{}
		}
		if err := checkKey(k); err != nil {
			failed[k] = err
			continue
		}
		backing = append(backing, batchItem{key: k, p: n.partitionOf(k)})
	}
	return pointersTo(backing), failed
}

// pointersTo returns pointers to each item, which stay in one allocation.
func pointersTo(backing []batchItem) []*batchItem {
	items := make([]*batchItem, len(backing))
	for i := range backing {
		items[i] = &backing[i]
	}
	return items
}

// batchGroup is the keys of a batch that go to one member in one request.
type batchGroup struct {
	to    member
	items []*batchItem
}

// runBatch serves op for every item, filling in its reply or error.
func (n *Node) runBatch(ctx context.Context, op Op, items []*batchItem, ttl int64) {
	pace := n.callBackoff(ctx, time.Now())
	if op != OpGet {
		for _, it := range items {
			it.rid = n.requestIDs.id()
		}
	}
	pending := items
	for len(pending) > 0 {
		if n.closed.Load() {
			for _, it := range pending {
				it.err = ErrClosed
			}
			return
		}
		t := n.routingTable()
		groups := n.groupBatch(t, op, pending)
		var wg sync.WaitGroup
		for _, g := range groups[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.sendBatch(ctx, op, t.version, ttl, g)
			}()
		}
		n.sendBatch(ctx, op, t.version, ttl, groups[0]) // this goroutine's share
		wg.Wait()
		var again []*batchItem
		full := true
		for _, it := range pending {
			if it.retry {
				again = append(again, it)
				full = full && it.full
			}
		}
		pending = again
		if len(pending) == 0 {
			return
		}
		if full && time.Now().Before(pace.deadline) {
			continue // the rest of a full reply is asked for at once
		}
		switch err := pace.wait(ctx, n.done, n.tableChanged.wait()); {
		case errors.Is(err, errRetriesSpent):
			for _, it := range pending {
				if it.full {
					it.err = errors.New("the reply had no room for it")
				}
				if !errors.Is(it.err, ErrReplication) { // reached the primary: not "no server"
					it.err = fmt.Errorf("%w: for key %q: %w", ErrNoMoreServers, it.key, it.err)
				}
			}
			return
		case err != nil:
			for _, it := range pending {
				it.err = err
			}
			return
		}
	}
}

// groupBatch splits items by the member each goes to under t, as
// tryHolders picks it: the primary for a write; for a read, the first
// in-sync copy not suspected of being down. A group is cut into requests
// that fit a frame.
func (n *Node) groupBatch(t *table, op Op, items []*batchItem) []batchGroup {
	byMember := make([][]*batchItem, len(t.members))
	var suspect []bool // by member, for reads: looked up once per batch
	if op == OpGet {
		suspect = make([]bool, len(t.members))
		for i, m := range t.members {
			suspect[i] = i != t.self && n.peers.get(m.addr).suspect()
		}
		if t.self >= 0 {
			suspect[t.self] = !n.servesOwnReads() // its lease lapsed: another copy serves
		}
	}
	for _, it := range items {
		it.retry, it.full, it.owned = false, false, false
		holders := t.owners[it.p]
		to := holders[0]
		if op == OpGet {
			for _, i := range holders {
				if !suspect[i] {
					to = i
					break
				}
			}
		}
		byMember[to] = append(byMember[to], it)
	}
	limit := n.cfg.MaxFrameSize - 4<<10
	var groups []batchGroup
	for i, its := range byMember {
		if len(its) == 0 {
			continue
		}
		size := 0
		start := 0
		for j, it := range its {
			s := len(it.key) + len(it.value) + batchEntryOverhead
			if j > start && (j-start == maxBatchKeys || size+s > limit) {
				groups = append(groups, batchGroup{to: t.members[i], items: its[start:j]})
				start, size = j, 0
			}
			size += s
		}
		groups = append(groups, batchGroup{to: t.members[i], items: its[start:]})
	}
	return groups
}

// sendBatch serves one group: in place when this node is its member,
// otherwise in one request.
func (n *Node) sendBatch(ctx context.Context, op Op, tver uint64, ttl int64, g batchGroup) {
	reqs := make([]request, len(g.items))
	for i, it := range g.items {
		reqs[i] = request{op: op, key: it.key, value: it.value, ttl: ttl, tver: tver, rid: it.rid}
	}
	if g.to.name == n.self.name {
		for i, resp := range n.serveBatchRequests(ctx, reqs, math.MaxInt) {
			n.settleBatchItem(g.items[i], resp, g.to)
		}
		return
	}
	pool := n.peers.get(g.to.addr)
	n.stats.forwarded.Add(uint64(len(reqs)))
	resp, err := pool.call(ctx, &request{op: opBatch, value: encodeBatchRequests(op, reqs), ttl: ttl, tver: tver, flags: uint8(op)})
	var replies []response
	if err == nil {
		if resp, err = resp.result(); err == nil {
			replies, err = decodeBatchReplies(resp.value, len(reqs))
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			n.stats.forwardErrors.Add(uint64(len(reqs)))
			pool.markSuspect()
			n.log.Warn("ghost: peer failed a batch call", "peer", g.to.addr, "keys", len(reqs), "err", err)
		}
		for _, it := range g.items {
			it.err, it.retry = fmt.Errorf("%s: %w", g.to.addr, err), ctx.Err() == nil
		}
		return
	}
	for i, r := range replies {
		n.settleBatchItem(g.items[i], r, g.to)
		g.items[i].owned = true // its value is a view of this reply, ours alone
	}
}

// settleBatchItem takes a key's reply: its answer, or a reason to send it
// again.
func (n *Node) settleBatchItem(it *batchItem, r response, from member) {
	switch r.status {
	case statusWrongOwner, statusStale:
		n.learnVersion(r.tver)
		it.retry = true
		it.err = fmt.Errorf("%s holds table %d", from.addr, r.tver)
	case statusReplyFull:
		it.retry, it.full = true, true
	case statusNoQuorum:
		// The member cut off, or its read lease lapsed: another copy, or
		// a later try, may serve.
		it.resp, it.err = r.result()
		it.retry = true
	case statusReplicaFailed:
		// A copy did not confirm the write: again with its request id,
		// as routeTo sends a single key's.
		it.resp, it.err = r.result()
		it.retry = true
	default:
		it.resp, it.err = r.result()
	}
}

// serveBatch serves a batch request from another member: every key
// through its op's own handler, and the replies in one frame.
func (n *Node) serveBatch(ctx context.Context, req *request) response {
	reqs, err := decodeBatchRequests(req.value, req.ttl, req.tver)
	if err == nil && len(reqs) > 0 && reqs[0].op != Op(req.flags) {
		// The flags name the batch's op (the protocol says so); a batch
		// that lies about it is malformed.
		err = fmt.Errorf("ghost: batch of op %d flagged as op %d", reqs[0].op, req.flags)
	}
	if err != nil {
		return response{id: req.id, status: statusError, msg: err.Error()}
	}
	replies := n.serveBatchRequests(ctx, reqs, n.cfg.MaxFrameSize-4<<10)
	return response{id: req.id, value: encodeBatchReplies(replies), tver: n.table.Load().version}
}

// serveBatchRequests serves each request of a batch: reads one after the
// other, until their values fill room bytes (the rest are answered
// statusReplyFull, and asked again); writes all at once, as each waits on
// its copies.
func (n *Node) serveBatchRequests(ctx context.Context, reqs []request, room int) []response {
	out := make([]response, len(reqs))
	if len(reqs) > 0 && reqs[0].op != OpGet {
		var wg sync.WaitGroup
		for i := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = n.serveBatchRequest(ctx, &reqs[i])
			}()
		}
		wg.Wait()
		return out
	}
	used := 0
	for i := range reqs {
		if used > room {
			out[i] = response{status: statusReplyFull}
			continue
		}
		out[i] = n.serveBatchRequest(ctx, &reqs[i])
		used += len(out[i].value) + len(out[i].msg) + batchEntryOverhead
	}
	return out
}

// serveBatchRequest serves one key of a batch with its op's handler
// (decodeBatchRequests admits only these ops).
func (n *Node) serveBatchRequest(ctx context.Context, req *request) response {
	switch req.op {
	case OpGet:
		return n.serveGet(ctx, req)
	case OpDelete:
		return n.serveDelete(ctx, req)
	}
	return n.serveStore(ctx, req)
}

// A batch request's value is [op, key, value, rid, key, value, rid...]
// (values are nil for reads and deletes, request ids 0 for reads); its ttl
// and table are the request's own. A batch reply's value is [status,
// value, message, table] for each key, in the order of the request.

func encodeBatchRequests(op Op, reqs []request) []byte {
	size := 8
	for i := range reqs {
		size += len(reqs[i].key) + len(reqs[i].value) + batchEntryOverhead
	}
	a := &appender{b: make([]byte, 0, size)}
	enc := msgpack.NewEncoder(a)
	_ = enc.EncodeArrayLen(1 + 3*len(reqs))
	_ = enc.EncodeUint(uint64(op))
	for i := range reqs {
		_ = enc.EncodeString(reqs[i].key)
		_ = enc.EncodeBytes(reqs[i].value)
		_ = enc.EncodeUint(reqs[i].rid)
	}
	return a.b
}

func decodeBatchRequests(b []byte, ttl int64, tver uint64) ([]request, error) {
	r := &msgReader{b: b}
	n, err := r.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("ghost: malformed batch: %w", err)
	}
	if n%3 != 1 || n/3 > maxBatchKeys {
		return nil, fmt.Errorf("ghost: malformed batch: %d fields", n)
	}
	op, err := r.uint(math.MaxUint8)
	if err != nil {
		return nil, fmt.Errorf("ghost: malformed batch: %w", err)
	}
	switch Op(op) {
	case OpGet, OpPut, OpAdd, OpDelete:
	default:
		return nil, fmt.Errorf("ghost: batch of op %d: only get, put, add and delete batch", op)
	}
	reqs := make([]request, n/3)
	for i := range reqs {
		reqs[i] = request{op: Op(op), ttl: ttl, tver: tver}
		if reqs[i].key, err = r.str(); err == nil {
			if reqs[i].value, err = r.bytes(); err == nil {
				reqs[i].rid, err = r.uint(math.MaxUint64)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ghost: malformed batch key %d: %w", i, err)
		}
	}
	return reqs, nil
}

func encodeBatchReplies(replies []response) []byte {
	size := 8
	for i := range replies {
		size += len(replies[i].value) + len(replies[i].msg) + batchEntryOverhead
	}
	a := &appender{b: make([]byte, 0, size)}
	enc := msgpack.NewEncoder(a)
	_ = enc.EncodeArrayLen(4 * len(replies))
	for i := range replies {
		_ = enc.EncodeUint(uint64(replies[i].status))
		_ = enc.EncodeBytes(replies[i].value)
		_ = enc.EncodeString(replies[i].msg)
		_ = enc.EncodeUint(replies[i].tver)
	}
	return a.b
}

// decodeBatchReplies decodes the replies to a batch of want keys. The
// values are views into b.
func decodeBatchReplies(b []byte, want int) ([]response, error) {
	r := &msgReader{b: b}
	n, err := r.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("ghost: malformed batch reply: %w", err)
	}
	if n != 4*want {
		return nil, fmt.Errorf("ghost: batch reply has %d fields for %d keys", n, want)
	}
	out := make([]response, want)
	for i := range out {
		var st uint64
		if st, err = r.uint(math.MaxUint8); err == nil {
			out[i].status = status(st)
			if out[i].value, err = r.raw(); err == nil {
				if out[i].msg, err = r.str(); err == nil {
					out[i].tver, err = r.uint(math.MaxUint64)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ghost: malformed batch reply %d: %w", i, err)
		}
	}
	return out, nil
}
