package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/ghostdb/ghost/internal/latency"
)

// The workload of a node process: writers that each own their keys (put,
// add, delete; in some scenarios some puts and adds with a short TTL), and
// readers of every writer's keys. Each goroutine paces
// itself and stops on stop or at the spec's deadline, whichever is first.

// load is a running workload.
type load struct {
	node  *ghost.Node
	cfg   nodeConfig
	spec  loadSpec
	out   *reporter
	slots slotRecorder

	nextID atomic.Int64
	frozen atomic.Bool     // writers leave their warm keys alone
	ctx    context.Context // ends at stop or at spec.Until
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(node *ghost.Node, cfg nodeConfig, spec loadSpec, out *reporter) *load {
	ctx, cancel := context.WithDeadline(context.Background(), spec.Until)
	l := &load{node: node, cfg: cfg, spec: spec, out: out, ctx: ctx, cancel: cancel}
	l.frozen.Store(spec.Frozen)
	l.slots.reset(cfg.Host, time.Now())
	for w := range spec.Writers {
		l.wg.Go(func() { l.writer(w) })
	}
	for r := range spec.Readers {
		l.wg.Go(func() { l.reader(r) })
	}
	if spec.Shared > 0 {
		l.wg.Go(l.sharedClient)
	}
	l.wg.Go(l.reportSlots)
	return l
}

// stop ends the workload, waits for its calls to return and reports the
// last slot.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
	if s := l.slots.take(time.Now()); s != nil {
		l.out.send(message{T: msgSlot, Slot: s})
	}
}

// pace waits for the next tick of a goroutine that runs every period,
// without catching up on ticks a slow call missed. It reports false when
// the load is over.
func (l *load) pace(next *time.Time, period time.Duration) bool {
	*next = next.Add(period)
	if now := time.Now(); next.Before(now) {
		*next = now
	}
	t := time.NewTimer(time.Until(*next))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.ctx.Done():
		return false
	}
}

// writer w owns keys keyName(host, w, 0..Keys-1): no one else writes them,
// so what it was told is the whole truth about them. A fresh writer first
// adds its cold keys, then writes its warm and hot keys at random; once
// frozen, its hot keys only.
func (l *load) writer(w int) {
	rng := rand.New(rand.NewPCG(uint64(l.cfg.Epoch), uint64(w)))
	b := belief{held: make(map[int]bool), expires: make(map[int]time.Time)}
	next := time.Now()
	if l.spec.Fresh {
		for i := range l.spec.Keys {
			b.held[i] = false
		}
		for i := 0; i < l.spec.Keys; i += 3 {
			if !l.pace(&next, l.spec.WriteEvery) {
				return
			}
			l.writeKey(w, i, opAdd, 0, &b)
		}
	}
	for l.pace(&next, l.spec.WriteEvery) {
		if i, ok := l.pickKey(rng); ok {
			b.age(i, time.Now())
			kind := chooseWrite(rng, b.held, i)
			l.writeKey(w, i, kind, l.spec.pickTTL(rng, kind), &b)
		}
	}
}

// belief is what a writer believes of its keys.
type belief struct {
	// held: true held, false absent, missing unknown (a restarted writer
	// knows nothing).
	held map[int]bool
	// expires: when a key written with a TTL is surely gone.
	expires map[int]time.Time
}

// age forgets key i's value once its TTL is surely over, so that the
// writer adds it again: an Add is how a pair that should have expired
// shows itself.
func (b *belief) age(i int, now time.Time) {
	if t, ok := b.expires[i]; ok && now.After(t) {
		b.held[i] = false
		delete(b.expires, i)
	}
}

// learn updates the belief after a write of key i that returned at end.
func (b *belief) learn(i int, kind opKind, ttl time.Duration, res outcome, end time.Time) {
	delete(b.expires, i)
	switch res {
	case outcomeOK:
		b.held[i] = kind != opDelete
		if ttl > 0 && kind != opDelete {
			// Its primary set the deadline during the call: it is
			// over by the end plus the TTL, give or take the clocks.
			b.expires[i] = end.Add(ttl + baseTolerance)
		}
	case outcomeNotStored:
		b.held[i] = true
	case outcomeNotFound:
		b.held[i] = false
	default:
		delete(b.held, i)
	}
}

// pickTTL draws the TTL of a put or add: none for most, as the spec says.
func (spec loadSpec) pickTTL(rng *rand.Rand, kind opKind) time.Duration {
	if kind == opDelete || spec.TTLShare <= 0 || rng.IntN(100) >= spec.TTLShare {
		return 0
	}
	return spec.TTLMin + time.Duration(rng.Int64N(int64(max(spec.TTLMax-spec.TTLMin, 0))+1))
}

// pickKey picks a warm or hot key, or a hot one once frozen.
func (l *load) pickKey(rng *rand.Rand) (int, bool) {
	for range 100 {
		i := rng.IntN(l.spec.Keys)
		switch keyClass(i) {
		case classHot:
			return i, true
		case classWarm:
			if !l.frozen.Load() {
				return i, true
			}
		}
	}
	return 0, false
}

// writeKey makes one write of writer w's key i, reported before and
// after with the times that bound it, and updates what the writer
// believes of the key.
func (l *load) writeKey(w, i int, kind opKind, ttl time.Duration, b *belief) {
	key := keyName(l.cfg.Host, w, i)
	ref := opRef{Epoch: l.cfg.Epoch, ID: l.nextID.Add(1)}
	var value string
	if kind != opDelete {
		value = fmt.Sprintf("e%d.%d", ref.Epoch, ref.ID)
	}
	l.out.send(message{T: msgBegin, Ref: ref, Key: key, Kind: kind, Value: value, TTL: ttl, At: time.Now().UnixNano()})
	res := l.write(key, kind, value, ttl)
	end := time.Now()
	l.out.send(message{T: msgEnd, Ref: ref, Result: res, At: end.UnixNano()})
	b.learn(i, kind, ttl, res, end)
}

// chooseWrite picks the next op on key i. A key believed absent gets an
// Add half the time, and a Delete now and then (a REMOVED would show a
// deleted key come back); any other key mostly puts, and some deletes.
func chooseWrite(rng *rand.Rand, held map[int]bool, i int) opKind {
	h, known := held[i]
	n := rng.IntN(100)
	switch {
	case known && !h && n < 50:
		return opAdd
	case known && !h && n < 60, (!known || h) && n < 25:
		return opDelete
	}
	return opPut
}

// write makes one write call, with ttl (0: none), and classifies its
// result.
func (l *load) write(key string, kind opKind, value string, ttl time.Duration) outcome {
	// Not l.ctx: a call the load's end cut short would count as failed.
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if ttl <= 0 {
		ttl = ghost.NoExpiry
	}
	start := time.Now()
	var err error
	switch kind {
	case opPut:
		err = l.node.Put(ctx, key, value, ttl)
	case opAdd:
		err = l.node.Add(ctx, key, value, ttl)
	case opDelete:
		err = l.node.Delete(ctx, key)
	}
	var res outcome
	switch {
	case err == nil:
		res = outcomeOK
	case kind == opAdd && errors.Is(err, ghost.ErrNotStored):
		res, err = outcomeNotStored, nil
	case kind == opDelete && errors.Is(err, ghost.ErrNotFound):
		res, err = outcomeNotFound, nil
	default:
		res = outcomeFailed
	}
	l.slots.record(start, time.Since(start), err)
	return res
}

// reader reads random keys of every writer.
func (l *load) reader(r int) {
	rng := rand.New(rand.NewPCG(uint64(l.cfg.Epoch), uint64(1000+r)))
	writers, keys := l.spec.WriterHosts*l.spec.Writers, l.spec.Keys
	if writers == 0 || keys == 0 {
		return
	}
	next := time.Now()
	for l.pace(&next, l.spec.ReadEvery) {
		key := l.spec.nthKey(rng.IntN(writers * keys))
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		start := time.Now()
		_, err := l.node.Get(ctx, key)
		cancel()
		if errors.Is(err, ghost.ErrCacheMiss) {
			err = nil
		}
		l.slots.record(start, time.Since(start), err)
	}
}

// nthKey numbers the keys of every writer of the run, from 0.
func (spec loadSpec) nthKey(n int) string {
	return keyName(1+n/(spec.Writers*spec.Keys), n/spec.Keys%spec.Writers, n%spec.Keys)
}

// reportSlots sends a slot summary every slotLength.
func (l *load) reportSlots() {
	t := time.NewTicker(slotLength)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			if s := l.slots.take(now); s != nil {
				l.out.send(message{T: msgSlot, Slot: s})
			}
		case <-l.ctx.Done():
			return
		}
	}
}

// slotRecorder sums up the calls of the current slot. It is safe for
// concurrent use.
type slotRecorder struct {
	mu   sync.Mutex
	cur  slot
	hist latency.Histogram
}

func (r *slotRecorder) reset(host int, now time.Time) {
	r.cur = slot{Host: host, From: now.UnixMilli()}
	r.hist = latency.Histogram{}
}

// record counts one call that began at start and took took; err is nil
// for any answer the cluster gave (misses and NOT_STORED included).
func (r *slotRecorder) record(start time.Time, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.Ops++
	r.hist.Record(took)
	if err == nil {
		return
	}
	at := start.Add(took).UnixMilli()
	r.cur.Failed++
	if r.cur.FirstFail == 0 {
		r.cur.FirstFail, r.cur.FirstErr = at, err.Error()
	}
	r.cur.LastFail = at
}

// take returns the slot that ends now, or nil when it saw no call, and
// starts the next.
func (r *slotRecorder) take(now time.Time) *slot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.cur
	s.To = now.UnixMilli()
	s.Hist = r.hist.Sparse()
	r.reset(s.Host, now)
	if s.Ops == 0 {
		return nil
	}
	return &s
}
