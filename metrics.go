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

// Sample is one reading of a node's metrics.
//
// Snitch (system) samples carry: Alloc, TotalAlloc, Sys, HeapAlloc,
// HeapInuse, Mallocs, Frees, LiveObjects, NumGC, PauseTotalNs, LastPauseNs
// (Go runtime memory statistics), Goroutines, CPUMicros (user and system CPU
// time of the process), Keys and Bytes (pairs and key+value bytes held).
//
// Watchdog (application) samples carry cumulative counts since the node
// started: TotalRequests, GetRequests, PutRequests, AddRequests,
// DeleteRequests, FlushRequests, CacheMiss, Stored, NotStored, Removed,
// NotFound, Flushed, ErrFlush, Evicted, Expired, Forwarded, ForwardErrors.
//
// Request counts are kept by the node that serves the key (its owner);
// Forwarded and ForwardErrors by the node that forwarded the call.
type Sample struct {
	Time   time.Time
	Values map[string]int64
}

// MarshalJSON writes the sample flat, as the original GhostDB did:
// {"Timestamp": "...", "Alloc": 1234, ...}.
func (s Sample) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(s.Values)+1)
	for k, v := range s.Values {
		m[k] = v
	}
	m["Timestamp"] = s.Time.UTC().Format(time.RFC3339Nano)
	return json.Marshal(m)
}

// watchdog counts what the node does. The data path adds to its counters
// from every core at once; they are read only when a sample is taken.
type watchdog struct {
	getRequests, putRequests, addRequests, deleteRequests, flushRequests counter
	cacheMiss, stored, notStored, removed, notFound, flushed, errFlush   counter
	evicted, expired, forwarded, forwardErrors                           counter
	resyncs, pairsMoved, bytesMoved                                      counter
}

func (w *watchdog) sample(now time.Time) Sample {
	get, put, add := w.getRequests.Load(), w.putRequests.Load(), w.addRequests.Load()
	del, flush := w.deleteRequests.Load(), w.flushRequests.Load()
	v := map[string]int64{
		"TotalRequests":  int64(get + put + add + del + flush),
		"GetRequests":    int64(get),
		"PutRequests":    int64(put),
		"AddRequests":    int64(add),
		"DeleteRequests": int64(del),
		"FlushRequests":  int64(flush),
		"CacheMiss":      int64(w.cacheMiss.Load()),
		"Stored":         int64(w.stored.Load()),
		"NotStored":      int64(w.notStored.Load()),
		"Removed":        int64(w.removed.Load()),
		"NotFound":       int64(w.notFound.Load()),
		"Flushed":        int64(w.flushed.Load()),
		"ErrFlush":       int64(w.errFlush.Load()),
		"Evicted":        int64(w.evicted.Load()),
		"Expired":        int64(w.expired.Load()),
		"Forwarded":      int64(w.forwarded.Load()),
		"ForwardErrors":  int64(w.forwardErrors.Load()),
		"Resyncs":        int64(w.resyncs.Load()),
		"PairsMoved":     int64(w.pairsMoved.Load()),
		"BytesMoved":     int64(w.bytesMoved.Load()),
	}
	return Sample{Time: now, Values: v}
}

// snitchSample reads the Go runtime and the process.
func snitchSample(now time.Time, s *store) Sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	var cpu int64
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
	}
	return Sample{Time: now, Values: map[string]int64{
		"Alloc":        int64(ms.Alloc),
		"TotalAlloc":   int64(ms.TotalAlloc),
		"Sys":          int64(ms.Sys),
		"HeapAlloc":    int64(ms.HeapAlloc),
		"HeapInuse":    int64(ms.HeapInuse),
		"Mallocs":      int64(ms.Mallocs),
		"Frees":        int64(ms.Frees),
		"LiveObjects":  int64(ms.Mallocs - ms.Frees),
		"NumGC":        int64(ms.NumGC),
		"PauseTotalNs": int64(ms.PauseTotalNs),
		"LastPauseNs":  int64(ms.PauseNs[(ms.NumGC+255)%256]),
		"Goroutines":   int64(runtime.NumGoroutine()),
		"CPUMicros":    cpu,
		"Keys":         s.len(),
		"Bytes":        s.size(),
		"Tombstones":   s.tombstones(),
	}}
}

// localSamples is this node's answer to a metrics call of op's kind: its
// recorded history followed by a sample taken now. The cache protocol and
// the HTTP gateway both send it.
func (n *Node) localSamples(op Op) []Sample {
	now := time.Now()
	if op == OpSnitchMetrics {
		return n.snitchHist.withLive(snitchSample(now, n.store))
	}
	return n.watchdogHist.withLive(n.watchdogSample(now))
}

// watchdogSample is the watchdog counters with the replication figures.
func (n *Node) watchdogSample(now time.Time) Sample {
	s := n.stats.sample(now)
	r := n.replicationStats()
	s.Values["PartitionsOwned"] = int64(r.owned)
	s.Values["PartitionsBackedUp"] = int64(r.backedUp)
	s.Values["PartitionsShort"] = int64(r.short)
	s.Values["TransfersInFlight"] = r.transfers
	s.Values["TableVersion"] = int64(r.tableVersion)
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
