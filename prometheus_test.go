package ghost

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads n's GET /metrics as Prometheus does.
func scrape(t *testing.T, hc *http.Client, n *Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := hc.Get("http://" + n.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: HTTP %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: not the text format: %v", err)
	}
	return families
}

// metricValue finds the one series of name whose labels include want, and
// returns its value (a histogram's count).
func metricValue(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := families[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	var found []float64
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			found = append(found, m.Counter.GetValue())
		case m.Gauge != nil:
			found = append(found, m.Gauge.GetValue())
		case m.Histogram != nil:
			found = append(found, float64(m.Histogram.GetSampleCount()))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(found))
	}
	return found[0]
}

// metricsTraffic makes calls on n for a key it owns and one other owns:
// for each a put, a get and an add that finds it held; a get that misses
// and a delete of the local key. It returns the remote key.
func metricsTraffic(t *testing.T, c *cluster, n, other *Node) string {
	t.Helper()
	ctx := context.Background()
	local, remote := c.keyOwnedBy(n, "local"), c.keyOwnedBy(other, "remote")
	for _, key := range []string{local, remote} {
		if err := n.Put(ctx, key, "v", NoExpiry); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Get(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := n.Add(ctx, key, "v", NoExpiry); !errors.Is(err, ErrNotStored) {
			t.Fatalf("Add: %v", err)
		}
	}
	if _, err := n.Get(ctx, c.keyOwnedBy(n, "missing")); !errors.Is(err, ErrCacheMiss) {
		t.Fatalf("Get: %v", err)
	}
	if err := n.Delete(ctx, local); err != nil {
		t.Fatal(err)
	}
	return remote
}

func TestMetricsEndpoint(t *testing.T) {
	c := newCluster(t, 3, true)
	hc := newGatewayClient(t).hc
	n, other := c.nodes[0], c.nodes[1]
	remote := metricsTraffic(t, c, n, other)

	f := scrape(t, hc, n)
	self := map[string]string{"node": n.Addr()}
	with := func(k, v string) map[string]string { return map[string]string{"node": n.Addr(), k: v} }
	for name, want := range map[string]float64{
		"ghost_members":              3,
		"ghost_pairs":                float64(n.store.len()),
		"ghost_pair_bytes":           float64(n.store.size()),
		"ghost_cache_misses_total":   1,
		"ghost_stored_total":         1,
		"ghost_not_stored_total":     1,
		"ghost_removed_total":        1,
		"ghost_forwarded_total":      3, // put, get and add of the remote key
		"ghost_transfers_in_flight":  0,
		"ghost_forward_errors_total": 0,
	} {
		if got := metricValue(t, f, name, self); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for op, want := range map[string]float64{"get": 2, "put": 1, "add": 1, "delete": 1, "flush": 0} {
		if got := metricValue(t, f, "ghost_requests_total", with("op", op)); got != want {
			t.Errorf("ghost_requests_total{op=%q} = %v, want %v", op, got, want)
		}
	}
	owned, backedUp := partitionCounts(n.partitionView(), n.Addr())
	if got := metricValue(t, f, "ghost_partitions_owned", self); got != float64(owned) || owned == 0 {
		t.Errorf("ghost_partitions_owned = %v, the view says %d", got, owned)
	}
	if got := metricValue(t, f, "ghost_partitions_backed_up", self); got != float64(backedUp) || backedUp == 0 {
		t.Errorf("ghost_partitions_backed_up = %v, the view says %d", got, backedUp)
	}
	for _, tc := range []struct {
		op, route string
		want      float64
	}{
		{"get", "local", 2}, {"get", "forwarded", 1}, {"put", "local", 1}, {"put", "forwarded", 1},
		{"add", "local", 1}, {"add", "forwarded", 1}, {"delete", "local", 1}, {"delete", "forwarded", 0},
	} {
		labels := map[string]string{"node": n.Addr(), "op": tc.op, "route": tc.route}
		if got := metricValue(t, f, "ghost_request_duration_seconds", labels); got != tc.want {
			t.Errorf("ghost_request_duration_seconds%v: %v calls, want %v", labels, got, tc.want)
		}
	}
	if got := metricValue(t, f, "ghost_goroutines", self); got < 10 {
		t.Errorf("ghost_goroutines = %v", got)
	}
	if got := metricValue(t, f, "ghost_node_info", with("name", n.name)); got != 1 {
		t.Errorf("ghost_node_info = %v", got)
	}

	// The owner of the remote key counts what it served.
	g := scrape(t, hc, other)
	if got := metricValue(t, g, "ghost_requests_total", map[string]string{"node": other.Addr(), "op": "get"}); got != 1 {
		t.Errorf("owner's ghost_requests_total{op=get} = %v, want 1", got)
	}

	// Scrapes do not disturb the original protocol on the same port.
	rep := newGatewayClient(t).post(t, n, "get", sdkBody(remote, nil, nil))
	expect(t, "get after scrapes", rep, 1, "OK")

	resp, err := hc.Post("http://"+n.Addr()+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: HTTP %d, want 405", resp.StatusCode)
	}
}

func TestCollectorFollowsPrometheusConventions(t *testing.T) {
	c := newCluster(t, 1, false)
	problems, err := testutil.CollectAndLint(c.nodes[0].Collector())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// Every watchdog and snitch figure is exported: a figure of a metric with
// series by op is its series with that label (or, with no op, their sum),
// any other is a metric of its own.
func TestCollectorCoversEveryFigure(t *testing.T) {
	c := newCluster(t, 1, false)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.nodes[0].Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[[2]string]bool{} // {metric, op label}; {metric, ""} for every metric
	for _, f := range families {
		series[[2]string{f.GetName(), ""}] = true
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "op" {
					series[[2]string{f.GetName(), l.GetValue()}] = true
				}
			}
		}
	}
	check := func(name, metric, op string) {
		if metric == "" || !series[[2]string{metric, op}] {
			t.Errorf("figure %s is not exported (metric %q, op %q)", name, metric, op)
		}
	}
	for _, f := range watchdogFigures() {
		check(f.name, f.metric, f.op)
	}
	for _, f := range snitchFigures() {
		check(f.name, f.metric, f.op)
	}
}

// An application registers the collectors of its nodes in its own registry
// beside its own metrics.
func TestCollectorInAppRegistry(t *testing.T) {
	c := newCluster(t, 2, false)
	ctx := context.Background()
	for i, n := range c.nodes {
		if err := n.Put(ctx, c.keyOwnedBy(n, "app"), i, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	appCounter := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_requests_total", Help: "The application's own."})
	reg.MustRegister(appCounter)
	for _, n := range c.nodes {
		if err := reg.Register(n.Collector()); err != nil {
			t.Fatalf("register %s: %v", n.Addr(), err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	if byName["app_requests_total"] == nil {
		t.Error("the application's metric is missing")
	}
	for _, n := range c.nodes {
		self := map[string]string{"node": n.Addr()}
		if got := metricValue(t, byName, "ghost_pairs", self); got != 2 { // its own pair and the other's backup
			t.Errorf("%s: ghost_pairs %v, want 2", n.Addr(), got)
		}
		if got := metricValue(t, byName, "ghost_members", self); got != 2 {
			t.Errorf("%s: ghost_members %v, want 2", n.Addr(), got)
		}
	}
	// The same node twice is refused, as any duplicate collector is.
	if err := reg.Register(c.nodes[0].Collector()); err == nil {
		t.Error("registering a node twice succeeded")
	}
}
