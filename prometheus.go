package ghost

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus export. Each node has its own registry, served at GET /metrics
// on its port, and Node.Collector gives applications the same metrics for
// their own registry. Nothing is registered in the global default registry:
// many nodes may live in one process.
//
// The collector reads the node's typed counters, the snitch sample and the
// partition map when it is scraped; only the latency histograms
// (latency.go) are kept for it on the data path.

// opLabel is op's value for the "op" label.
func opLabel(op Op) string {
	switch op {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpAdd:
		return "add"
	case OpDelete:
		return "delete"
	case OpFlush:
		return "flush"
	}
	return "other"
}

// Collector returns a Prometheus collector of this node's metrics, the
// ones GET /metrics serves, for an application to register in its own
// registry so that one scrape covers both. Every metric carries a label
// node="host:port", so the collectors of several nodes can share a
// registry. The README lists the metrics.
func (n *Node) Collector() prometheus.Collector {
	return prometheus.WrapCollectorWith(prometheus.Labels{"node": n.addr}, &nodeCollector{n: n, descs: newNodeDescs()})
}

// newMetricsHandler returns the handler of GET /metrics: n's own registry.
func newMetricsHandler(n *Node) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collector()) // a fresh registry: no name can clash
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{n},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// slogPrinter gives promhttp the node's logger.
type slogPrinter struct{ n *Node }

func (p slogPrinter) Println(v ...any) { p.n.log.Warn("ghost: serving metrics", "err", v) }

// counterFigure is a watchdog counter and the metric it is exported as.
type counterFigure struct {
	figure string // its name in watchdog samples
	desc   *prometheus.Desc
	read   func(*watchdog) uint64
}

// gaugeFigure is a snitch figure and the metric it is exported as.
type gaugeFigure struct {
	figure string // its name in snitch samples
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	scale  float64 // to the metric's unit
}

// nodeDescs describe every metric but the latency histograms.
type nodeDescs struct {
	requests                                  *prometheus.Desc // by op
	counters                                  []counterFigure
	snitch                                    []gaugeFigure
	members, owned, backedUp, transfers, info *prometheus.Desc
	short, tableVersion, degraded             *prometheus.Desc
}

func newNodeDescs() nodeDescs {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	counter := func(figure, name, help string, read func(*watchdog) uint64) counterFigure {
		return counterFigure{figure, desc(name, help), read}
	}
	gauge := func(figure, name, help string, kind prometheus.ValueType, scale float64) gaugeFigure {
		return gaugeFigure{figure, desc(name, help), kind, scale}
	}
	const c, g = prometheus.CounterValue, prometheus.GaugeValue
	return nodeDescs{
		requests: desc("ghost_requests_total", "Requests this node served as the key's owner (flush: as a member), by operation.", "op"),
		counters: []counterFigure{
			counter("CacheMiss", "ghost_cache_misses_total", "Gets served that found no live pair (CACHE_MISS).", func(w *watchdog) uint64 { return w.cacheMiss.Load() }),
			counter("Stored", "ghost_stored_total", "Puts and Adds served that stored a pair (STORED).", func(w *watchdog) uint64 { return w.stored.Load() }),
			counter("NotStored", "ghost_not_stored_total", "Adds served that found the key held (NOT_STORED).", func(w *watchdog) uint64 { return w.notStored.Load() }),
			counter("Removed", "ghost_removed_total", "Deletes served that removed a pair (REMOVED).", func(w *watchdog) uint64 { return w.removed.Load() }),
			counter("NotFound", "ghost_not_found_total", "Deletes served that found no live pair (NOT_FOUND).", func(w *watchdog) uint64 { return w.notFound.Load() }),
			counter("Flushed", "ghost_flushed_total", "Flushes that emptied this node (FLUSHED).", func(w *watchdog) uint64 { return w.flushed.Load() }),
			counter("ErrFlush", "ghost_flush_errors_total", "Flushes called on this node that could not reach every member (ERR_FLUSH).", func(w *watchdog) uint64 { return w.errFlush.Load() }),
			counter("Evicted", "ghost_evictions_total", "Pairs evicted, least recently used first, to stay within MaxKeys and MaxBytes.", func(w *watchdog) uint64 { return w.evicted.Load() }),
			counter("Expired", "ghost_expired_total", "Pairs removed because their TTL ran out.", func(w *watchdog) uint64 { return w.expired.Load() }),
			counter("Forwarded", "ghost_forwarded_total", "Calls this node sent to another member, the key's owner or its fallback.", func(w *watchdog) uint64 { return w.forwarded.Load() }),
			counter("ForwardErrors", "ghost_forward_errors_total", "Forwarded calls that failed, so that the next member was tried.", func(w *watchdog) uint64 { return w.forwardErrors.Load() }),
			counter("Resyncs", "ghost_resyncs_total", "Partitions this node streamed again to a backup that anti-entropy found out of line.", func(w *watchdog) uint64 { return w.resyncs.Load() }),
			counter("PairsMoved", "ghost_moved_pairs_total", "Pairs and tombstones this node streamed to other members in partition transfers.", func(w *watchdog) uint64 { return w.pairsMoved.Load() }),
			counter("BytesMoved", "ghost_moved_bytes_total", "Key and value bytes this node streamed to other members in partition transfers.", func(w *watchdog) uint64 { return w.bytesMoved.Load() }),
		},
		snitch: []gaugeFigure{
			gauge("Keys", "ghost_pairs", "Pairs held by this node, expired ones not yet crawled included.", g, 1),
			gauge("Bytes", "ghost_pair_bytes", "Bytes of the keys and encoded values held by this node.", g, 1),
			gauge("Tombstones", "ghost_tombstones", "Tombstones of deleted keys held by this node; they count toward MaxKeys and MaxBytes.", g, 1),
			gauge("Alloc", "ghost_memory_alloc_bytes", "Bytes of allocated heap objects in the process (Go runtime MemStats.Alloc).", g, 1),
			gauge("TotalAlloc", "ghost_memory_alloc_bytes_total", "Bytes allocated for heap objects since the process started (MemStats.TotalAlloc).", c, 1),
			gauge("Sys", "ghost_memory_sys_bytes", "Bytes of memory the Go runtime obtained from the OS (MemStats.Sys).", g, 1),
			gauge("HeapAlloc", "ghost_memory_heap_alloc_bytes", "Bytes of allocated heap objects (MemStats.HeapAlloc).", g, 1),
			gauge("HeapInuse", "ghost_memory_heap_inuse_bytes", "Bytes in in-use heap spans (MemStats.HeapInuse).", g, 1),
			gauge("Mallocs", "ghost_memory_mallocs_total", "Heap objects allocated since the process started (MemStats.Mallocs).", c, 1),
			gauge("Frees", "ghost_memory_frees_total", "Heap objects freed since the process started (MemStats.Frees).", c, 1),
			gauge("LiveObjects", "ghost_memory_live_objects", "Heap objects allocated and not yet freed.", g, 1),
			gauge("NumGC", "ghost_gc_cycles_total", "Completed garbage collection cycles (MemStats.NumGC).", c, 1),
			gauge("PauseTotalNs", "ghost_gc_pause_seconds_total", "Time the process spent in garbage collection pauses.", c, 1e-9),
			gauge("LastPauseNs", "ghost_gc_last_pause_seconds", "Length of the last garbage collection pause.", g, 1e-9),
			gauge("Goroutines", "ghost_goroutines", "Goroutines in the process.", g, 1),
			gauge("CPUMicros", "ghost_cpu_seconds_total", "User and system CPU time the process used.", c, 1e-6),
		},
		members:      desc("ghost_members", "Live members of the cluster as this node sees them, itself included."),
		owned:        desc("ghost_partitions_owned", "Partitions this node owns."),
		backedUp:     desc("ghost_partitions_backed_up", "Partitions this node holds a backup of."),
		transfers:    desc("ghost_transfers_in_flight", "Partition transfers this node is sending."),
		short:        desc("ghost_partitions_short", "Partitions with fewer in-sync copies than Replicas (or the members) by this node's table."),
		tableVersion: desc("ghost_table_version", "Version of the partition table this node holds."),
		degraded:     desc("ghost_degraded", "1 while this node sees no majority of its table's members (Node.Degraded): it refuses calls, and its side of the cluster can change no table."),
		info:         desc("ghost_node_info", "Always 1; its labels name the node in gossip and the protocol version it speaks.", "name", "protocol_version"),
	}
}

// nodeCollector reads a node's figures when it is scraped.
type nodeCollector struct {
	n     *Node
	descs nodeDescs
}

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	ch <- d.requests
	for _, f := range d.counters {
		ch <- f.desc
	}
	for _, f := range d.snitch {
		ch <- f.desc
	}
	for _, desc := range []*prometheus.Desc{d.members, d.owned, d.backedUp, d.transfers, d.info, d.short, d.tableVersion, d.degraded} {
		ch <- desc
	}
	ch <- c.n.latency.desc
}

// Collect implements prometheus.Collector.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n, d, w := c.n, &c.descs, c.n.stats
	for _, r := range []struct {
		op    Op
		count *counter
	}{{OpGet, &w.getRequests}, {OpPut, &w.putRequests}, {OpAdd, &w.addRequests}, {OpDelete, &w.deleteRequests}, {OpFlush, &w.flushRequests}} {
		ch <- prometheus.MustNewConstMetric(d.requests, prometheus.CounterValue, float64(r.count.Load()), opLabel(r.op))
	}
	for _, f := range d.counters {
		ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, float64(f.read(w)))
	}
	snitch := snitchSample(time.Now(), n.store).Values
	for _, f := range d.snitch {
		ch <- prometheus.MustNewConstMetric(f.desc, f.kind, float64(snitch[f.figure])*f.scale)
	}
	r := n.replicationStats()
	gauge := func(desc *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(d.members, len(n.Members()))
	gauge(d.owned, r.owned)
	gauge(d.backedUp, r.backedUp)
	gauge(d.short, r.short)
	gauge(d.transfers, int(r.transfers))
	gauge(d.tableVersion, int(r.tableVersion))
	degraded := 0
	if n.cutOff.Load() {
		degraded = 1
	}
	gauge(d.degraded, degraded)
	gauge(d.info, 1, n.name, strconv.Itoa(int(n.cfg.protocolVersion)))
	n.latency.collect(ch)
}
