package ghost

import "github.com/prometheus/client_golang/prometheus"

// Typed stats and the one table of their names. WatchdogStats and
// SnitchStats are what a node reports; watchdogFigures and snitchFigures
// give, for each of their fields, every name it goes by: its key in the
// original SDKs' JSON and on the wire, its Prometheus metric with its type,
// unit and help. nodeMetricNames does the same for the Prometheus metrics
// that are no field of a sample. Samples (metrics.go), the cache protocol's
// metrics payload (wire.go), the Prometheus descriptors (prometheus.go,
// latency.go) and the table in docs/metrics.md (checked by stats_test.go)
// are all made from these tables, so that a name is spelled once; the
// dashboard reads the typed fields.

// WatchdogStats are a node's application figures: what it served since it
// started, and its share of the partition table when they were read.
// Request counts are kept by the node that serves the key (its owner);
// Forwarded and ForwardErrors by the node that forwarded the call. In
// JSON, and in the original SDKs, each figure is named as its field.
type WatchdogStats struct {
	// TotalRequests is the sum of the five request counts below.
	TotalRequests int64
	// GetRequests counts Gets served as the key's owner.
	GetRequests int64
	// PutRequests counts Puts served as the key's owner.
	PutRequests int64
	// AddRequests counts Adds served as the key's owner.
	AddRequests int64
	// DeleteRequests counts Deletes served as the key's owner.
	DeleteRequests int64
	// FlushRequests counts Flushes served as a member.
	FlushRequests int64
	// CacheMiss counts Gets served that found no live pair (CACHE_MISS).
	CacheMiss int64
	// Stored counts Puts and Adds served that stored a pair (STORED).
	Stored int64
	// NotStored counts Adds served that found the key held (NOT_STORED).
	NotStored int64
	// Removed counts Deletes served that removed a pair (REMOVED).
	Removed int64
	// NotFound counts Deletes served that found no live pair (NOT_FOUND).
	NotFound int64
	// Flushed counts Flushes that emptied this node (FLUSHED).
	Flushed int64
	// ErrFlush counts Flushes called on this node that could not reach
	// every member (ERR_FLUSH).
	ErrFlush int64
	// Evicted counts pairs evicted, least recently used first, to stay
	// within MaxKeys and MaxBytes.
	Evicted int64
	// Expired counts pairs removed because their TTL ran out.
	Expired int64
	// Forwarded counts calls this node sent to another member: the key's
	// owner, or the next one when the owner failed.
	Forwarded int64
	// ForwardErrors counts forwarded calls that failed, so that the next
	// member was tried.
	ForwardErrors int64
	// Resyncs counts partitions this node streamed again to a backup that
	// anti-entropy found out of line.
	Resyncs int64
	// PairsMoved counts pairs and tombstones this node streamed to other
	// members in partition transfers.
	PairsMoved int64
	// BytesMoved counts key and value bytes this node streamed to other
	// members in partition transfers.
	BytesMoved int64
	// Loads counts loaders GetOrLoad ran on this node, refreshes included.
	Loads int64
	// LoadWaits counts GetOrLoad calls this node, as the key's primary,
	// held while another caller's loader ran.
	LoadWaits int64
	// Refreshes counts loaders this node ran in the background to refresh
	// a key ahead of its expiry (Config.RefreshAhead).
	Refreshes int64
	// NearHits counts Gets this node answered from its near cache.
	NearHits int64
	// NearReads counts Gets this node sent to the key's owner asking for
	// a near lease.
	NearReads int64
	// NearKept counts near copies this node kept.
	NearKept int64
	// NearDropped counts near copies this node dropped when their owner
	// told it of a write.
	NearDropped int64
	// NearGranted counts near leases this node granted as a key's primary.
	NearGranted int64
	// NearTold counts near holders this node, as a key's primary, told to
	// drop their copies before a write.
	NearTold int64
	// NearWaitedOut counts near holders that did not answer, whose leases
	// a write waited out.
	NearWaitedOut int64
	// PartitionsOwned is the partitions this node is the primary of.
	PartitionsOwned int64
	// PartitionsBackedUp is the partitions this node holds a backup of.
	PartitionsBackedUp int64
	// PartitionsShort is the partitions with fewer copies than Replicas
	// (or the members, when fewer) by this node's table.
	PartitionsShort int64
	// TransfersInFlight is the partition transfers this node is sending.
	TransfersInFlight int64
	// TableVersion is the version of the partition table this node holds.
	TableVersion int64
}

// SnitchStats are a node's system figures, read when the sample is taken.
// All but Keys, Bytes and Tombstones are the process's (the Go runtime's
// memory statistics, goroutines and CPU time), the same for every node of
// one process. In JSON, and in the original SDKs, each figure is named as
// its field.
type SnitchStats struct {
	// Alloc is the bytes of allocated heap objects (runtime.MemStats.Alloc).
	Alloc int64
	// TotalAlloc is the bytes allocated for heap objects since the process
	// started (MemStats.TotalAlloc).
	TotalAlloc int64
	// Sys is the bytes of memory the Go runtime obtained from the OS
	// (MemStats.Sys).
	Sys int64
	// HeapAlloc is the bytes of allocated heap objects (MemStats.HeapAlloc).
	HeapAlloc int64
	// HeapInuse is the bytes in in-use heap spans (MemStats.HeapInuse).
	HeapInuse int64
	// Mallocs is the heap objects allocated since the process started
	// (MemStats.Mallocs).
	Mallocs int64
	// Frees is the heap objects freed since the process started
	// (MemStats.Frees).
	Frees int64
	// LiveObjects is the heap objects allocated and not yet freed: Mallocs
	// less Frees.
	LiveObjects int64
	// NumGC is the completed garbage collection cycles (MemStats.NumGC).
	NumGC int64
	// PauseTotalNs is the nanoseconds spent in garbage collection pauses
	// since the process started (MemStats.PauseTotalNs).
	PauseTotalNs int64
	// LastPauseNs is the length of the last garbage collection pause, in
	// nanoseconds.
	LastPauseNs int64
	// Goroutines is the goroutines in the process.
	Goroutines int64
	// CPUMicros is the user and system CPU time the process used, in
	// microseconds.
	CPUMicros int64
	// Keys is the pairs held by this node, expired ones not yet crawled
	// included.
	Keys int64
	// Bytes is the bytes of the keys and encoded values held by this node.
	Bytes int64
	// Tombstones is the tombstones of deleted keys held by this node; they
	// count toward MaxKeys and MaxBytes.
	Tombstones int64
	// FrameBytes is the bytes held by messages larger than a connection's
	// 32 KiB read buffer, over every connection of this node, both ways;
	// at most 64 MiB, or eight of MaxFrameSize when that is more.
	FrameBytes int64
	// FrameWaits counts large messages that waited for room under that
	// bound.
	FrameWaits int64
	// SnapshotUnix is when this node last wrote its snapshot to its
	// DataDir, in unix seconds; 0 before the first, or without a DataDir.
	SnapshotUnix int64
	// SnapshotBytes, SnapshotPairs and SnapshotMicros are the size, the
	// pairs and the time taken of the last snapshot written.
	SnapshotBytes  int64
	SnapshotPairs  int64
	SnapshotMicros int64
	// SnapshotFailures counts snapshots that could not be written (a full
	// or read-only disk); the one before stays in place.
	SnapshotFailures int64
	// RestoredPairs is the pairs this node read back from its snapshot at
	// Join and offered to the cluster.
	RestoredPairs int64
}

// figure is one field of S (WatchdogStats or SnitchStats) under every
// name it goes by.
type figure[S any] struct {
	name  string          // the field's name: the figure's key in SDK JSON and on the wire
	field func(*S) *int64 // the field itself
	// metric is the Prometheus metric the figure is exported as; "" when
	// it is not exported.
	metric string
	// op, when set, makes the figure one series of metric, the one with
	// this "op" label. The figure of the same metric without op is then
	// the sum of the series: it names the metric, gives its help, and is
	// not exported itself (PromQL's sum without (op) gives it).
	op      string
	kind    prometheus.ValueType // CounterValue or GaugeValue
	scale   float64              // from the figure's unit to the metric's: seconds, bytes
	process bool                 // the Go runtime's, the same for every node of the process
	help    string               // the metric's help; it explains the figure too
}

// fig is a figure with scale 1 that is the node's own.
func fig[S any](name string, field func(*S) *int64, metric string, kind prometheus.ValueType, help string) figure[S] {
	return figure[S]{name: name, field: field, metric: metric, kind: kind, scale: 1, help: help}
}

// perOp makes f the series of its metric with label op.
func (f figure[S]) perOp(op string) figure[S] { f.op = op; return f }

// scaled makes f's metric f's figure times scale.
func (f figure[S]) scaled(scale float64) figure[S] { f.scale = scale; return f }

// ofProcess marks f as the Go runtime's.
func (f figure[S]) ofProcess() figure[S] { f.process = true; return f }

// watchdogFigures is the name table of WatchdogStats, one entry per field
// in the field's order.
func watchdogFigures() []figure[WatchdogStats] {
	type w = WatchdogStats
	const c, g, requests = prometheus.CounterValue, prometheus.GaugeValue, "ghost_requests_total"
	return []figure[w]{
		fig("TotalRequests", func(s *w) *int64 { return &s.TotalRequests }, requests, c, "Requests this node served as the key's owner (flush: as a member), by operation."),
		fig("GetRequests", func(s *w) *int64 { return &s.GetRequests }, requests, c, "Gets served as the key's owner.").perOp(opLabel(OpGet)),
		fig("PutRequests", func(s *w) *int64 { return &s.PutRequests }, requests, c, "Puts served as the key's owner.").perOp(opLabel(OpPut)),
		fig("AddRequests", func(s *w) *int64 { return &s.AddRequests }, requests, c, "Adds served as the key's owner.").perOp(opLabel(OpAdd)),
		fig("DeleteRequests", func(s *w) *int64 { return &s.DeleteRequests }, requests, c, "Deletes served as the key's owner.").perOp(opLabel(OpDelete)),
		fig("FlushRequests", func(s *w) *int64 { return &s.FlushRequests }, requests, c, "Flushes served as a member.").perOp(opLabel(OpFlush)),
		fig("CacheMiss", func(s *w) *int64 { return &s.CacheMiss }, "ghost_cache_misses_total", c, "Gets served that found no live pair (CACHE_MISS)."),
		fig("Stored", func(s *w) *int64 { return &s.Stored }, "ghost_stored_total", c, "Puts and Adds served that stored a pair (STORED)."),
		fig("NotStored", func(s *w) *int64 { return &s.NotStored }, "ghost_not_stored_total", c, "Adds served that found the key held (NOT_STORED)."),
		fig("Removed", func(s *w) *int64 { return &s.Removed }, "ghost_removed_total", c, "Deletes served that removed a pair (REMOVED)."),
		fig("NotFound", func(s *w) *int64 { return &s.NotFound }, "ghost_not_found_total", c, "Deletes served that found no live pair (NOT_FOUND)."),
		fig("Flushed", func(s *w) *int64 { return &s.Flushed }, "ghost_flushed_total", c, "Flushes that emptied this node (FLUSHED)."),
		fig("ErrFlush", func(s *w) *int64 { return &s.ErrFlush }, "ghost_flush_errors_total", c, "Flushes called on this node that could not reach every member (ERR_FLUSH)."),
		fig("Evicted", func(s *w) *int64 { return &s.Evicted }, "ghost_evictions_total", c, "Pairs evicted, least recently used first, to stay within MaxKeys and MaxBytes."),
		fig("Expired", func(s *w) *int64 { return &s.Expired }, "ghost_expired_total", c, "Pairs removed because their TTL ran out."),
		fig("Forwarded", func(s *w) *int64 { return &s.Forwarded }, "ghost_forwarded_total", c, "Calls this node sent to another member, the key's owner or its fallback."),
		fig("ForwardErrors", func(s *w) *int64 { return &s.ForwardErrors }, "ghost_forward_errors_total", c, "Forwarded calls that failed, so that the next member was tried."),
		fig("Resyncs", func(s *w) *int64 { return &s.Resyncs }, "ghost_resyncs_total", c, "Partitions this node streamed again to a backup that anti-entropy found out of line."),
		fig("PairsMoved", func(s *w) *int64 { return &s.PairsMoved }, "ghost_moved_pairs_total", c, "Pairs and tombstones this node streamed to other members in partition transfers."),
		fig("BytesMoved", func(s *w) *int64 { return &s.BytesMoved }, "ghost_moved_bytes_total", c, "Key and value bytes this node streamed to other members in partition transfers."),
		fig("Loads", func(s *w) *int64 { return &s.Loads }, "ghost_loads_total", c, "Loaders GetOrLoad ran on this node, refreshes included."),
		fig("LoadWaits", func(s *w) *int64 { return &s.LoadWaits }, "ghost_load_waits_total", c, "GetOrLoad calls this node, as the key's primary, held while another caller's loader ran."),
		fig("Refreshes", func(s *w) *int64 { return &s.Refreshes }, "ghost_refreshes_total", c, "Loaders this node ran in the background to refresh a key ahead of its expiry."),
		fig("NearHits", func(s *w) *int64 { return &s.NearHits }, "ghost_near_hits_total", c, "Gets answered from this node's near cache."),
		fig("NearReads", func(s *w) *int64 { return &s.NearReads }, "ghost_near_reads_total", c, "Gets this node sent to the key's owner asking for a near lease."),
		fig("NearKept", func(s *w) *int64 { return &s.NearKept }, "ghost_near_kept_total", c, "Near copies this node kept."),
		fig("NearDropped", func(s *w) *int64 { return &s.NearDropped }, "ghost_near_dropped_total", c, "Near copies this node dropped when their owner told it of a write."),
		fig("NearGranted", func(s *w) *int64 { return &s.NearGranted }, "ghost_near_granted_total", c, "Near leases this node granted as a key's primary."),
		fig("NearTold", func(s *w) *int64 { return &s.NearTold }, "ghost_near_told_total", c, "Near holders this node, as a key's primary, told to drop their copies before a write."),
		fig("NearWaitedOut", func(s *w) *int64 { return &s.NearWaitedOut }, "ghost_near_waited_out_total", c, "Near holders that did not answer, whose leases a write waited out."),
		fig("PartitionsOwned", func(s *w) *int64 { return &s.PartitionsOwned }, "ghost_partitions_owned", g, "Partitions this node owns."),
		fig("PartitionsBackedUp", func(s *w) *int64 { return &s.PartitionsBackedUp }, "ghost_partitions_backed_up", g, "Partitions this node holds a backup of."),
		fig("PartitionsShort", func(s *w) *int64 { return &s.PartitionsShort }, "ghost_partitions_short", g, "Partitions with fewer in-sync copies than Replicas (or the members) by this node's table."),
		fig("TransfersInFlight", func(s *w) *int64 { return &s.TransfersInFlight }, "ghost_transfers_in_flight", g, "Partition transfers this node is sending."),
		fig("TableVersion", func(s *w) *int64 { return &s.TableVersion }, "ghost_table_version", g, "Version of the partition table this node holds."),
	}
}

// snitchFigures is the name table of SnitchStats, one entry per field in
// the field's order.
func snitchFigures() []figure[SnitchStats] {
	type st = SnitchStats
	const c, g = prometheus.CounterValue, prometheus.GaugeValue
	// The figures that only ever grow are counters, so that rate() works
	// on them.
	return []figure[st]{
		fig("Alloc", func(s *st) *int64 { return &s.Alloc }, "ghost_memory_alloc_bytes", g, "Bytes of allocated heap objects in the process (Go runtime MemStats.Alloc).").ofProcess(),
		fig("TotalAlloc", func(s *st) *int64 { return &s.TotalAlloc }, "ghost_memory_alloc_bytes_total", c, "Bytes allocated for heap objects since the process started (MemStats.TotalAlloc).").ofProcess(),
		fig("Sys", func(s *st) *int64 { return &s.Sys }, "ghost_memory_sys_bytes", g, "Bytes of memory the Go runtime obtained from the OS (MemStats.Sys).").ofProcess(),
		fig("HeapAlloc", func(s *st) *int64 { return &s.HeapAlloc }, "ghost_memory_heap_alloc_bytes", g, "Bytes of allocated heap objects (MemStats.HeapAlloc).").ofProcess(),
		fig("HeapInuse", func(s *st) *int64 { return &s.HeapInuse }, "ghost_memory_heap_inuse_bytes", g, "Bytes in in-use heap spans (MemStats.HeapInuse).").ofProcess(),
		fig("Mallocs", func(s *st) *int64 { return &s.Mallocs }, "ghost_memory_mallocs_total", c, "Heap objects allocated since the process started (MemStats.Mallocs).").ofProcess(),
		fig("Frees", func(s *st) *int64 { return &s.Frees }, "ghost_memory_frees_total", c, "Heap objects freed since the process started (MemStats.Frees).").ofProcess(),
		fig("LiveObjects", func(s *st) *int64 { return &s.LiveObjects }, "ghost_memory_live_objects", g, "Heap objects allocated and not yet freed.").ofProcess(),
		fig("NumGC", func(s *st) *int64 { return &s.NumGC }, "ghost_gc_cycles_total", c, "Completed garbage collection cycles (MemStats.NumGC).").ofProcess(),
		fig("PauseTotalNs", func(s *st) *int64 { return &s.PauseTotalNs }, "ghost_gc_pause_seconds_total", c, "Time the process spent in garbage collection pauses.").ofProcess().scaled(1e-9),
		fig("LastPauseNs", func(s *st) *int64 { return &s.LastPauseNs }, "ghost_gc_last_pause_seconds", g, "Length of the last garbage collection pause.").ofProcess().scaled(1e-9),
		fig("Goroutines", func(s *st) *int64 { return &s.Goroutines }, "ghost_goroutines", g, "Goroutines in the process.").ofProcess(),
		fig("CPUMicros", func(s *st) *int64 { return &s.CPUMicros }, "ghost_cpu_seconds_total", c, "User and system CPU time the process used.").ofProcess().scaled(1e-6),
		fig("Keys", func(s *st) *int64 { return &s.Keys }, "ghost_pairs", g, "Pairs held by this node, expired ones not yet crawled included."),
		fig("Bytes", func(s *st) *int64 { return &s.Bytes }, "ghost_pair_bytes", g, "Bytes of the keys and encoded values held by this node."),
		fig("Tombstones", func(s *st) *int64 { return &s.Tombstones }, "ghost_tombstones", g, "Tombstones of deleted keys held by this node; they count toward MaxKeys and MaxBytes."),
		fig("FrameBytes", func(s *st) *int64 { return &s.FrameBytes }, "ghost_frame_bytes", g, "Bytes held by messages larger than a connection's read buffer, over every connection of this node."),
		fig("FrameWaits", func(s *st) *int64 { return &s.FrameWaits }, "ghost_frame_waits_total", c, "Large messages that waited for room under the bound on their bytes."),
		fig("SnapshotUnix", func(s *st) *int64 { return &s.SnapshotUnix }, "ghost_snapshot_timestamp_seconds", g, "When this node last wrote its snapshot to its DataDir (unix time); 0 before the first."),
		fig("SnapshotBytes", func(s *st) *int64 { return &s.SnapshotBytes }, "ghost_snapshot_bytes", g, "Size of the last snapshot written."),
		fig("SnapshotPairs", func(s *st) *int64 { return &s.SnapshotPairs }, "ghost_snapshot_pairs", g, "Pairs and tombstones in the last snapshot written."),
		fig("SnapshotMicros", func(s *st) *int64 { return &s.SnapshotMicros }, "ghost_snapshot_duration_seconds", g, "Time the last snapshot took to write.").scaled(1e-6),
		fig("SnapshotFailures", func(s *st) *int64 { return &s.SnapshotFailures }, "ghost_snapshot_failures_total", c, "Snapshots that could not be written; the one before stays."),
		fig("RestoredPairs", func(s *st) *int64 { return &s.RestoredPairs }, "ghost_restored_pairs", g, "Pairs read back from the snapshot at Join and offered to the cluster."),
	}
}

// nodeMetric is a Prometheus metric that is no figure of a sample.
type nodeMetric struct {
	name      string
	kind      string   // "gauge" or "histogram", as the docs say it
	labels    []string // its label names, but node
	labelDocs string   // the labels and their values, for the docs
	help      string
}

// desc is m's descriptor.
func (m nodeMetric) desc() *prometheus.Desc {
	return prometheus.NewDesc(m.name, m.help, m.labels, nil)
}

// nodeMetricNames are the Prometheus metrics that no sample carries:
// the collector reads them from the node when it is scraped.
type nodeMetricNames struct {
	latency, members, degraded, info nodeMetric
}

func newNodeMetricNames() nodeMetricNames {
	return nodeMetricNames{
		latency: nodeMetric{"ghost_request_duration_seconds", "histogram", []string{"op", "route"}, "`op`: get, put, add, delete; `route`: local, forwarded",
			"Time a Get, Put, Add or Delete called on this node took to be answered (any answer, CACHE_MISS included), by operation and by whether this node served it (local) or another member did (forwarded); buckets from 1 µs to 5 s. One local Get in 16 is timed, and the buckets and sum are scaled to the count of all."},
		members:  nodeMetric{"ghost_members", "gauge", nil, "", "Live members of the cluster as this node sees them, itself included."},
		degraded: nodeMetric{"ghost_degraded", "gauge", nil, "", "1 while this node sees no majority of its table's members (Node.Degraded): it refuses calls, and its side of the cluster can change no table."},
		info:     nodeMetric{"ghost_node_info", "gauge", []string{"name", "protocol_version"}, "`name`, `protocol_version`", "Always 1; its labels name the node in gossip and the protocol version it speaks."},
	}
}

// all lists m's metrics in the order the docs show them.
func (m nodeMetricNames) all() []nodeMetric {
	return []nodeMetric{m.latency, m.members, m.degraded, m.info}
}

// figuresToMap puts s's figures into into by name, as the SDK JSON and the wire
// carry them.
func figuresToMap[S any](table []figure[S], s *S, into map[string]int64) {
	for _, f := range table {
		into[f.name] = *f.field(s)
	}
}

// figuresFromMap sets s's fields from the figures of m; those m lacks are
// left as they are, and names s has no field of are ignored.
func figuresFromMap[S any](table []figure[S], m map[string]int64, s *S) {
	for _, f := range table {
		if v, ok := m[f.name]; ok {
			*f.field(s) = v
		}
	}
}
