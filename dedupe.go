package ghost

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Exactly-once writes. Each Put, Add and Delete call carries a request id,
// the same on every try of the call: when a connection breaks after the
// primary decided the write, the caller sends it again, and the primary
// answers the retry with the first try's outcome instead of deciding it
// anew. Without it, a retried Delete found its own tombstone and answered
// NOT_FOUND, and a retried Add found its own pair and answered NOT_STORED.
//
// The primary keeps the ids it decided for a while (dedupeRetention); a
// retry that reaches another primary, the table having changed meanwhile,
// is decided there again (a Put or Delete decides the same; an Add that
// ownership moved under fails instead, see serveWrite).

// dedupeRetention is how long a primary remembers a decided request, in
// RequestTimeouts: a caller retries within one.
const dedupeRetention = 4

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
	order []decision // oldest first
}

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
	drop := 0
	for drop < len(d.order) && now.Sub(d.order[drop].at) > retention {
		delete(d.byID, d.order[drop].rid)
		drop++
	}
	if drop > 0 {
		d.order = append(d.order[:0], d.order[drop:]...)
	}
	d.byID[rid] = done
	d.order = append(d.order, decision{rid: rid, done: done, at: now})
}
