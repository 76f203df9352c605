package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ghostdb/ghost/internal/latency"
)

// A paced load runs in a worker's background while ghostbench changes the
// cluster around it (a join, a kill): an open loop of Rate ops/s, each op
// due at a fixed time and run in a goroutine of its own, as an
// application's request handlers would, so that an op held up by a moving
// or dead partition delays no other. At most Conc ops are in flight.
// Each op's latency is kept twice: from when it was sent, the time the
// GhostDB call took; and from when it was due, which adds any delay in
// starting it (the load process busy, Conc reached), as a caller outside
// would see it. Latencies are kept per slot of slotLen, by when the op was
// due, so that ghostbench can cut the run at the moments of its events
// (see timelineResult.window).

// slotLen is the time resolution of a paced load's timeline.
const slotLen = 50 * time.Millisecond

// pacedLoad is a paced load under way.
type pacedLoad struct {
	stop chan struct{}
	wg   sync.WaitGroup
	tl   *timeline
}

// timeline is what a paced load has recorded, per slot.
type timeline struct {
	mu       sync.Mutex
	start    time.Time
	slots    []slotCounts
	firstErr error
}

// slotCounts are the ops of one slot; the histograms map a bucket (see
// latency.Bucket) to its count, as few buckets are used per slot. get and set
// time from sending, due from when ops were due.
type slotCounts struct {
	ops, errors, misses int64
	get, set, due       map[int]int64
}

// timelineResult is a timeline as a worker reports it.
type timelineResult struct {
	Start    int64         `json:"start_ns"` // Unix nanoseconds when slot 0 begins
	Slot     time.Duration `json:"slot"`
	Slots    []slotResult  `json:"slots"`
	FirstErr string        `json:"first_err,omitempty"`
}

// slotResult is one slot of a timelineResult; histograms in sparse form.
type slotResult struct {
	Ops    int64      `json:"ops"`
	Errors int64      `json:"errors,omitempty"`
	Misses int64      `json:"misses,omitempty"`
	Get    [][2]int64 `json:"get,omitempty"`
	Set    [][2]int64 `json:"set,omitempty"`
	Due    [][2]int64 `json:"due,omitempty"`
}

// startPaced starts a paced load of cmd.Rate ops/s on all the keys, at most
// cmd.Conc in flight, that stops by itself after cmd.Duration.
func (w *worker) startPaced(ctx context.Context, cmd command) error {
	switch {
	case w.paced != nil:
		return errors.New("a paced load is already running")
	case cmd.Rate <= 0 || cmd.Conc < 1 || cmd.Duration <= 0:
		return fmt.Errorf("paced load: rate %v, conc %d, duration %v", cmd.Rate, cmd.Conc, cmd.Duration)
	case len(w.keys) == 0:
		return errors.New("paced load: no keys")
	}
	pl := &pacedLoad{stop: make(chan struct{}), tl: &timeline{
		start: time.Now(),
		slots: make([]slotCounts, cmd.Duration/slotLen+1),
	}}
	pl.wg.Go(func() { w.pace(ctx, cmd, pl) })
	w.paced = pl
	return nil
}

// pace starts an op every 1/cmd.Rate seconds, each in a goroutine of its
// own, until stopped or the timeline is full, then waits for those in
// flight.
func (w *worker) pace(ctx context.Context, cmd command, pl *pacedLoad) {
	cl := ghostClient{w.node}
	rng, next := w.picker(w.keys, 0)
	interval := time.Duration(float64(time.Second) / cmd.Rate)
	end := pl.tl.start.Add(time.Duration(len(pl.tl.slots)) * slotLen)
	slots := make(chan struct{}, cmd.Conc) // in flight
	var ops sync.WaitGroup
	defer ops.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for due := pl.tl.start; due.Before(end); due = due.Add(interval) {
		timer.Reset(max(time.Until(due), 0))
		select {
		case <-timer.C:
		case <-pl.stop:
			return
		}
		select {
		case slots <- struct{}{}:
		case <-pl.stop:
			return
		}
		key, isGet := next(), rng.IntN(100) < cmd.GetPct
		ops.Go(func() {
			defer func() { <-slots }()
			sent := time.Now()
			hit, err := w.op(ctx, cl, key, isGet)
			pl.tl.record(due, sent, time.Now(), isGet, hit, err)
		})
	}
}

// stopPaced stops the paced load and returns its timeline; nil when none
// runs.
func (w *worker) stopPaced() (*timelineResult, error) {
	pl := w.paced
	if pl == nil {
		return nil, errors.New("no paced load is running")
	}
	close(pl.stop)
	pl.wg.Wait()
	w.paced = nil
	return pl.tl.result(), nil
}

// record counts one op that was due at due, sent at sent, and done at done.
func (tl *timeline) record(due, sent, done time.Time, isGet, hit bool, err error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	i := int(due.Sub(tl.start) / slotLen)
	if i < 0 || i >= len(tl.slots) {
		return
	}
	s := &tl.slots[i]
	s.ops++
	hist := &s.set
	if isGet {
		hist = &s.get
		if !hit && err == nil {
			s.misses++
		}
	}
	count(hist, done.Sub(sent))
	count(&s.due, done.Sub(due))
	if err != nil {
		s.errors++
		if tl.firstErr == nil {
			tl.firstErr = err
		}
	}
}

// count adds d to a histogram kept as a map.
func count(hist *map[int]int64, d time.Duration) {
	if *hist == nil {
		*hist = map[int]int64{}
	}
	(*hist)[latency.Bucket(d)]++
}

// result returns the timeline up to its last slot with an op.
func (tl *timeline) result() *timelineResult {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	r := &timelineResult{Start: tl.start.UnixNano(), Slot: slotLen}
	last := -1
	for i, s := range tl.slots {
		if s.ops > 0 {
			last = i
		}
	}
	for _, s := range tl.slots[:last+1] {
		r.Slots = append(r.Slots, slotResult{Ops: s.ops, Errors: s.errors, Misses: s.misses, Get: sparseMap(s.get), Set: sparseMap(s.set), Due: sparseMap(s.due)})
	}
	if tl.firstErr != nil {
		r.FirstErr = tl.firstErr.Error()
	}
	return r
}

// sparseMap returns a histogram kept as a map in the sparse form.
func sparseMap(m map[int]int64) [][2]int64 {
	var out [][2]int64
	for _, b := range slices.Sorted(maps.Keys(m)) {
		out = append(out, [2]int64{int64(b), m[b]})
	}
	return out
}
