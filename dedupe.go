package ghost

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Exactly-once writes. Each Put, Add and Delete call carries a request id,
// the same on every try of the call: when a connection breaks after the
// primary decided the write, the caller sends it again, and the primary
// answers the retry with the first try's outcome instead of deciding it
// anew. Without it, a retried Delete found its own tombstone and answered
// NOT_FOUND, and a retried Add found its own pair and answered NOT_STORED.
//
// The primary keeps the ids it decided for a while (dedupeRetention), and
// so do its copies, from the copies it sends them with the id and the
// outcome: a retry that reaches a copy promoted to primary meanwhile (the
// first try's primary died, or lost the partition in a table change) is
// answered as the first try was. A retry that reaches a primary that
// never saw the first try is decided there again, to the same outcome:
// the first try left no trace there either.

// dedupeRetention is how long a node remembers a decided request: four
// RequestTimeouts, as a caller retries within one.
func (n *Node) dedupeRetention() time.Duration { return 4 * n.cfg.RequestTimeout }

// requestIDs gives each call a request id: a random prefix per node, so
// that ids from different nodes do not meet, and a counter.
type requestIDs struct {
	prefix uint64
	next   atomic.Uint64
}

func (r *requestIDs) init() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	r.prefix = binary.BigEndian.Uint64(b[:]) &^ (1<<40 - 1)
}

// id returns a fresh request id; never 0, which carries no id.
func (r *requestIDs) id() uint64 { return r.prefix | (r.next.Add(1) & (1<<40 - 1)) | 1<<39 }

// decision is the outcome of a write the primary decided: whether it
// stored (or removed), and when.
type decision struct {
	rid  uint64
	done bool
	at   time.Time
}

// decided is one partition's recent decisions, guarded by the partition's
// lock (serveWrite holds it).
type decided struct {
	byID  map[uint64]bool
	order []decision // oldest first, from head on
	head  int        // order[:head] are forgotten, and go at the next compaction
}

// maxDecisions bounds the decisions a partition keeps, whatever their age:
// a partition that takes more writes than that within dedupeRetention
// forgets the oldest early (a retry of one is decided again), rather than
// grow without bound.
const maxDecisions = 4096

// lookup returns the outcome of request rid, when this node decided it.
func (d *decided) lookup(rid uint64) (done, ok bool) {
	if rid == 0 || d.byID == nil {
		return false, false
	}
	done, ok = d.byID[rid]
	return done, ok
}

// record notes the outcome of request rid, and forgets decisions older
// than retention.
func (d *decided) record(rid uint64, done bool, now time.Time, retention time.Duration) {
	if rid == 0 {
		return
	}
	if d.byID == nil {
		d.byID = map[uint64]bool{}
	}
	for d.head < len(d.order) && (now.Sub(d.order[d.head].at) > retention || len(d.order)-d.head >= maxDecisions) {
		delete(d.byID, d.order[d.head].rid)
		d.head++
	}
	if d.head > 0 && 2*d.head >= len(d.order) {
		// Compact once half is forgotten: a copy per write would cost as
		// much as the decisions kept.
		d.order = d.order[:copy(d.order, d.order[d.head:])]
		d.head = 0
	}
	d.byID[rid] = done
	d.order = append(d.order, decision{rid: rid, done: done, at: now})
}

// recentDecisions returns partition p's decisions still kept.
func (n *Node) recentDecisions(p int) []decision {
	pt := n.store.lock(p)
	defer pt.mu.Unlock()
	d := &n.decided[p]
	keep := time.Now().Add(-n.dedupeRetention())
	i := d.head
	for i < len(d.order) && d.order[i].at.Before(keep) {
		i++
	}
	return slices.Clone(d.order[i:])
}

// A stream's decisions travel as [rid, done, rid, done...].

func encodeDecisions(enc *msgpack.Encoder, ds []decision) {
	_ = enc.EncodeArrayLen(2 * len(ds))
	for _, d := range ds {
		_ = enc.EncodeUint(d.rid)
		_ = enc.EncodeBool(d.done)
	}
}

func decodeDecisions(r *msgReader) ([]decision, error) {
	count, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	if count%2 != 0 {
		return nil, fmt.Errorf("%d fields", count)
	}
	ds := make([]decision, count/2)
	for i := range ds {
		if ds[i].rid, err = r.uint(math.MaxUint64); err != nil {
			return nil, err
		}
		if ds[i].done, err = r.bool(); err != nil {
			return nil, err
		}
	}
	return ds, nil
}
