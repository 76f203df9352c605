package ghost

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus export. Each node has its own registry, served at GET /metrics
// on its port, and Node.Collector gives applications the same metrics for
// their own registry. Nothing is registered in the global default registry:
// many nodes may live in one process.
//
// The collector reads the node's typed stats (stats.go), which name their
// metrics, and its membership when it is scraped; only the latency histograms
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
// registry. docs/metrics.md lists the metrics.
func (n *Node) Collector() prometheus.Collector {
	return prometheus.WrapCollectorWith(prometheus.Labels{"node": n.addr}, &nodeCollector{src: n, descs: newNodeDescs()})
}

// newMetricsHandler returns the handler of GET /metrics: n's own registry.
func newMetricsHandler(n *Node) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collector()) // a fresh registry: no name can clash
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{n.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// slogPrinter gives promhttp the node's logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("ghost: serving metrics", "err", v) }

// exportedFigure is a figure of the name table (stats.go) that is exported,
// with its metric's descriptor.
type exportedFigure[S any] struct {
	figure[S]
	desc *prometheus.Desc
}

// exportFigures returns the figures of table that are exported, each with
// its metric's descriptor, and the descriptors, each once.
func exportFigures[S any](table []figure[S]) ([]exportedFigure[S], []*prometheus.Desc) {
	byOp := make(map[string]bool) // the metrics whose series are figures by op
	for _, f := range table {
		if f.op != "" {
			byOp[f.metric] = true
		}
	}
	descs := make(map[string]*prometheus.Desc)
	var all []*prometheus.Desc
	for _, f := range table {
		if f.metric == "" || f.op != "" {
			continue
		}
		var labels []string
		if byOp[f.metric] {
			labels = []string{"op"}
		}
		descs[f.metric] = prometheus.NewDesc(f.metric, f.help, labels, nil)
		all = append(all, descs[f.metric])
	}
	var out []exportedFigure[S]
	for _, f := range table {
		if f.metric == "" || (f.op == "" && byOp[f.metric]) {
			continue // not exported, or the sum of series that are
		}
		out = append(out, exportedFigure[S]{f, descs[f.metric]})
	}
	return out, all
}

// collectFigures sends the value of every exported figure of s.
func collectFigures[S any](ch chan<- prometheus.Metric, figures []exportedFigure[S], s *S) {
	for _, f := range figures {
		var labels []string
		if f.op != "" {
			labels = []string{f.op}
		}
		ch <- prometheus.MustNewConstMetric(f.desc, f.kind, float64(*f.field(s))*f.scale, labels...)
	}
}

// nodeDescs describe every metric but the latency histograms.
type nodeDescs struct {
	watchdog                []exportedFigure[WatchdogStats]
	snitch                  []exportedFigure[SnitchStats]
	figures                 []*prometheus.Desc // of watchdog and snitch, each once
	members, degraded, info *prometheus.Desc
}

func newNodeDescs() nodeDescs {
	var d nodeDescs
	var w, s []*prometheus.Desc
	d.watchdog, w = exportFigures(watchdogFigures())
	d.snitch, s = exportFigures(snitchFigures())
	d.figures = append(w, s...)
	m := newNodeMetricNames()
	d.members, d.degraded, d.info = m.members.desc(), m.degraded.desc(), m.info.desc()
	return d
}

// scrapeSource is what the collector reads of a node when it is scraped:
// a narrow view, so that the collector holds no *Node.
type scrapeSource interface {
	scrapeFigures() (WatchdogStats, SnitchStats)
	scrapeGauges() (members int, degraded bool, name string, protocol uint8)
	latencyHistograms() *latencies
}

// nodeCollector reads a node's figures when it is scraped.
type nodeCollector struct {
	src   scrapeSource
	descs nodeDescs
}

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, desc := range d.figures {
		ch <- desc
	}
	for _, desc := range []*prometheus.Desc{d.members, d.degraded, d.info} {
		ch <- desc
	}
	ch <- c.src.latencyHistograms().desc
}

// Collect implements prometheus.Collector.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	d := &c.descs
	w, s := c.src.scrapeFigures()
	collectFigures(ch, d.watchdog, &w)
	collectFigures(ch, d.snitch, &s)
	gauge := func(desc *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
	}
	members, cutOff, name, protocol := c.src.scrapeGauges()
	gauge(d.members, members)
	degraded := 0
	if cutOff {
		degraded = 1
	}
	gauge(d.degraded, degraded)
	gauge(d.info, 1, name, strconv.Itoa(int(protocol)))
	c.src.latencyHistograms().collect(ch)
}

// scrapeFigures are the node's watchdog and snitch figures now.
func (n *Node) scrapeFigures() (WatchdogStats, SnitchStats) {
	return n.watchdogStats(), snitchStats(n.store, n.frameBudget, &n.snapshots)
}

// scrapeGauges are the node's gauges that are no figure of a sample.
func (n *Node) scrapeGauges() (members int, degraded bool, name string, protocol uint8) {
	return len(n.Members()), n.cutOff.Load(), n.name, n.cfg.protocolVersion
}

func (n *Node) latencyHistograms() *latencies { return n.latency }
