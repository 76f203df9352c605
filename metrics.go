package ghost

import (
	"encoding/json"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// NodeMetrics is one node's answer to SnitchMetrics or WatchdogMetrics. It
// marshals to JSON as {"node": ..., "data": [...]}, the shape the original
// GhostDB SDKs return.
type NodeMetrics struct {
	Node string   `json:"node"` // the node's address
	Data []Sample `json:"data"` // oldest first; the last one was taken at call time
}

// Sample is one reading of a node's metrics: a watchdog sample, from
// WatchdogMetrics, or a snitch sample, from SnitchMetrics. It marshals to
// JSON flat, as the original GhostDB's did: {"Timestamp": "...",
// "GetRequests": 2, ...}, each figure named as its field.
type Sample struct {
	Time time.Time // when it was taken
	// Watchdog holds the figures of a watchdog sample; it is nil in a
	// snitch sample.
	Watchdog *WatchdogStats
	// Snitch holds the figures of a snitch sample; it is nil in a
	// watchdog sample.
	Snitch *SnitchStats
}

// Figures returns the sample's figures by name, the names of its JSON and
// of the original SDKs: the fields of its WatchdogStats or SnitchStats.
// It is for code that handles figures without knowing them, such as a
// generic exporter; code that wants one figure reads its field.
func (s Sample) Figures() map[string]int64 {
	m := make(map[string]int64)
	if s.Watchdog != nil {
		figuresToMap(watchdogFigures(), s.Watchdog, m)
	}
	if s.Snitch != nil {
		figuresToMap(snitchFigures(), s.Snitch, m)
	}
	return m
}

// MarshalJSON writes the sample flat, as the original GhostDB did:
// {"Timestamp": "...", "Alloc": 1234, ...}.
func (s Sample) MarshalJSON() ([]byte, error) {
	m := make(map[string]any)
	for k, v := range s.Figures() {
		m[k] = v
	}
	m["Timestamp"] = s.Time.UTC().Format(time.RFC3339Nano)
	return json.Marshal(m)
}

// sampleOfKind is the sample a metrics call of op's kind carries, with the
// figures of m, as the cache protocol carries them.
func sampleOfKind(op Op, t time.Time, m map[string]int64) Sample {
	if op == OpSnitchMetrics {
		var s SnitchStats
		figuresFromMap(snitchFigures(), m, &s)
		return Sample{Time: t, Snitch: &s}
	}
	var w WatchdogStats
	figuresFromMap(watchdogFigures(), m, &w)
	return Sample{Time: t, Watchdog: &w}
}

// watchdog counts what the node does. The data path adds to its counters
// from every core at once; they are read only when a sample is taken.
type watchdog struct {
	getRequests, putRequests, addRequests, deleteRequests, flushRequests counter
	cacheMiss, stored, notStored, removed, notFound, flushed, errFlush   counter
	evicted, expired, forwarded, forwardErrors                           counter
	resyncs, pairsMoved, bytesMoved                                      counter
	loads, loadWaits, refreshes                                          counter
	nearHits, nearReads, nearKept, nearDropped                           counter
	nearGranted, nearTold, nearWaitedOut                                 counter
}

// stats reads the counters. The replication figures are left zero: they
// are the partition table's, not the watchdog's (see Node.watchdogStats).
func (w *watchdog) stats() WatchdogStats {
	get, put, add := w.getRequests.Load(), w.putRequests.Load(), w.addRequests.Load()
	del, flush := w.deleteRequests.Load(), w.flushRequests.Load()
	return WatchdogStats{
		TotalRequests:  int64(get + put + add + del + flush),
		GetRequests:    int64(get),
		PutRequests:    int64(put),
		AddRequests:    int64(add),
		DeleteRequests: int64(del),
		FlushRequests:  int64(flush),
		CacheMiss:      int64(w.cacheMiss.Load()),
		Stored:         int64(w.stored.Load()),
		NotStored:      int64(w.notStored.Load()),
		Removed:        int64(w.removed.Load()),
		NotFound:       int64(w.notFound.Load()),
		Flushed:        int64(w.flushed.Load()),
		ErrFlush:       int64(w.errFlush.Load()),
		Evicted:        int64(w.evicted.Load()),
		Expired:        int64(w.expired.Load()),
		Forwarded:      int64(w.forwarded.Load()),
		ForwardErrors:  int64(w.forwardErrors.Load()),
		Resyncs:        int64(w.resyncs.Load()),
		PairsMoved:     int64(w.pairsMoved.Load()),
		BytesMoved:     int64(w.bytesMoved.Load()),
		Loads:          int64(w.loads.Load()),
		LoadWaits:      int64(w.loadWaits.Load()),
		Refreshes:      int64(w.refreshes.Load()),
		NearHits:       int64(w.nearHits.Load()),
		NearReads:      int64(w.nearReads.Load()),
		NearKept:       int64(w.nearKept.Load()),
		NearDropped:    int64(w.nearDropped.Load()),
		NearGranted:    int64(w.nearGranted.Load()),
		NearTold:       int64(w.nearTold.Load()),
		NearWaitedOut:  int64(w.nearWaitedOut.Load()),
	}
}

// snitchStats reads the Go runtime and the process, and what s holds.
func snitchStats(s *store, frames *frameBudget, snaps *snapshots) SnitchStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	var cpu int64
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
	}
	return SnitchStats{
		Alloc:        int64(ms.Alloc),
		TotalAlloc:   int64(ms.TotalAlloc),
		Sys:          int64(ms.Sys),
		HeapAlloc:    int64(ms.HeapAlloc),
		HeapInuse:    int64(ms.HeapInuse),
		Mallocs:      int64(ms.Mallocs),
		Frees:        int64(ms.Frees),
		LiveObjects:  int64(ms.Mallocs - ms.Frees),
		NumGC:        int64(ms.NumGC),
		PauseTotalNs: int64(ms.PauseTotalNs),
		LastPauseNs:  int64(ms.PauseNs[(ms.NumGC+255)%256]),
		Goroutines:   int64(runtime.NumGoroutine()),
		CPUMicros:    cpu,
		Keys:         s.len(),
		Bytes:        s.size(),
		Tombstones:   s.tombstones(),
		FrameBytes:   frames.bytes.Load(),
		FrameWaits:   frames.waits.Load(),

		SnapshotUnix:     snaps.at.Load(),
		SnapshotBytes:    snaps.bytes.Load(),
		SnapshotPairs:    snaps.pairs.Load(),
		SnapshotMicros:   snaps.micros.Load(),
		SnapshotFailures: snaps.failures.Load(),
		RestoredPairs:    snaps.restored.Load(),
	}
}

// snitchSample is a snitch sample taken now.
func snitchSample(now time.Time, s *store, frames *frameBudget, snaps *snapshots) Sample {
	st := snitchStats(s, frames, snaps)
	return Sample{Time: now, Snitch: &st}
}

// localSamples is this node's answer to a metrics call of op's kind: its
// recorded history followed by a sample taken now. The cache protocol and
// the HTTP gateway both send it.
func (n *Node) localSamples(op Op) []Sample {
	now := time.Now()
	if op == OpSnitchMetrics {
		return n.snitchHist.withLive(snitchSample(now, n.store, n.frameBudget, &n.snapshots))
	}
	return n.watchdogHist.withLive(n.watchdogSample(now))
}

// watchdogSample is a watchdog sample taken now.
func (n *Node) watchdogSample(now time.Time) Sample {
	w := n.watchdogStats()
	return Sample{Time: now, Watchdog: &w}
}

// Watchdog returns this node's own watchdog figures as they are now,
// without asking any other member (WatchdogMetrics asks them all).
func (n *Node) Watchdog() WatchdogStats { return n.watchdogStats() }

// watchdogStats is the watchdog counters with the replication figures.
func (n *Node) watchdogStats() WatchdogStats {
	s := n.stats.stats()
	r := n.replicationStats()
	s.PartitionsOwned = int64(r.owned)
	s.PartitionsBackedUp = int64(r.backedUp)
	s.PartitionsShort = int64(r.short)
	s.TransfersInFlight = r.transfers
	s.TableVersion = int64(r.tableVersion)
	return s
}

// replicationFigures describe this node's share of the partition table.
type replicationFigures struct {
	owned, backedUp, short int // partitions it is primary of, holds a backup of; partitions short of copies
	transfers              int64
	tableVersion           uint64
}

func (n *Node) replicationStats() replicationFigures {
	t := n.table.Load()
	r := replicationFigures{
		transfers:    n.transfers.inFlight(),
		tableVersion: t.version,
	}
	want := min(n.cfg.Replicas, len(t.members))
	for p := range t.owners {
		switch {
		case t.isPrimary(p):
			r.owned++
		case t.holds(p):
			r.backedUp++
		}
		if len(t.owners[p]) < want {
			r.short++
		}
	}
	return r
}

// history keeps the last max samples of one kind.
type history struct {
	mu      sync.Mutex
	max     int
	samples []Sample
}

func (h *history) add(s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) == h.max {
		copy(h.samples, h.samples[1:])
		h.samples = h.samples[:h.max-1]
	}
	h.samples = append(h.samples, s)
}

// withLive returns the history, oldest first, followed by live.
func (h *history) withLive(live Sample) []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Sample, 0, len(h.samples)+1)
	out = append(out, h.samples...)
	return append(out, live)
}

// metricsLoop records a snitch sample every SnitchInterval and a watchdog
// sample every WatchdogInterval until the node shuts down.
func (n *Node) metricsLoop() {
	snitch := time.NewTicker(n.cfg.SnitchInterval)
	defer snitch.Stop()
	watchdog := time.NewTicker(n.cfg.WatchdogInterval)
	defer watchdog.Stop()
	for {
		select {
		case now := <-snitch.C:
			n.snitchHist.add(snitchSample(now, n.store, n.frameBudget, &n.snapshots))
		case now := <-watchdog.C:
			n.watchdogHist.add(n.watchdogSample(now))
		case <-n.done:
			return
		}
	}
}
