package ghost

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// checkTable checks that table has one entry per field of S, in the
// fields' order, each named as its field and pointing at it, and that each
// says how it is exported.
func checkTable[S any](t *testing.T, table []figure[S]) {
	t.Helper()
	var s S
	v := reflect.ValueOf(&s).Elem()
	if len(table) != v.NumField() {
		t.Errorf("%T: %d figures for %d fields", s, len(table), v.NumField())
	}
	for i, f := range table[:min(len(table), v.NumField())] {
		field := v.Type().Field(i)
		if f.name != field.Name {
			t.Errorf("%T figure %d is %s, field %d is %s", s, i, f.name, i, field.Name)
		}
		if f.field(&s) != v.Field(i).Addr().Interface().(*int64) {
			t.Errorf("%T figure %s reads another field than %s", s, f.name, field.Name)
		}
		if f.help == "" || f.scale <= 0 || (f.kind != prometheus.CounterValue && f.kind != prometheus.GaugeValue) {
			t.Errorf("%T figure %s: help %q, scale %v, kind %v", s, f.name, f.help, f.scale, f.kind)
		}
		if f.op != "" && !slices.ContainsFunc(table, func(g figure[S]) bool { return g.metric == f.metric && g.op == "" }) {
			t.Errorf("%T figure %s is a series of %s, which no figure sums", s, f.name, f.metric)
		}
	}
}

func TestNameTableCoversEveryField(t *testing.T) {
	checkTable(t, watchdogFigures())
	checkTable(t, snitchFigures())
}

// No two figures share a name, nor two metrics, but for the series of one.
func TestNameTableNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	once := func(name string) {
		if seen[name] {
			t.Errorf("%s twice", name)
		}
		seen[name] = true
	}
	for _, f := range watchdogFigures() {
		once("figure " + f.name)
		if f.op == "" {
			once("metric " + f.metric)
		}
	}
	for _, f := range snitchFigures() {
		once("figure " + f.name)
		if f.op == "" {
			once("metric " + f.metric)
		}
	}
	for _, m := range newNodeMetricNames().all() {
		once("metric " + m.name)
	}
}

// A sample's JSON is flat: its figures named as their fields, and its
// Timestamp, as the original SDKs read it.
func TestSampleJSON(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 3, 30, 1e8, time.UTC)
	w := WatchdogStats{TotalRequests: 3, GetRequests: 2, CacheMiss: 1, TableVersion: 7}
	b, err := json.Marshal(NodeMetrics{Node: "10.0.0.7:7991", Data: []Sample{{Time: at, Watchdog: &w}}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Node string                       `json:"node"`
		Data []map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.Node != "10.0.0.7:7991" || len(got.Data) != 1 {
		t.Fatalf("%s: %v", b, err)
	}
	d := got.Data[0]
	want := map[string]string{"Timestamp": `"2026-11-25T08:03:30.1Z"`, "TotalRequests": "3", "GetRequests": "2", "CacheMiss": "1", "TableVersion": "7", "Evicted": "0"}
	for k, v := range want {
		if string(d[k]) != v {
			t.Errorf("%s = %s, want %s", k, d[k], v)
		}
	}
	if n := reflect.TypeFor[WatchdogStats]().NumField() + 1; len(d) != n {
		t.Errorf("%d keys, want %d: %s", len(d), n, b)
	}

	s := SnitchStats{Keys: 4, PauseTotalNs: 5}
	b, err = json.Marshal(Sample{Time: at, Snitch: &s})
	if err != nil || !strings.Contains(string(b), `"Keys":4`) || !strings.Contains(string(b), `"PauseTotalNs":5`) || strings.Contains(string(b), "TotalRequests") {
		t.Errorf("snitch sample: %s, %v", b, err)
	}
}

// Figures names every field of the sample's kind, and only those.
func TestSampleFigures(t *testing.T) {
	w := WatchdogStats{Forwarded: 9}
	m := Sample{Watchdog: &w}.Figures()
	if len(m) != reflect.TypeFor[WatchdogStats]().NumField() || m["Forwarded"] != 9 {
		t.Errorf("watchdog figures %v", m)
	}
	if _, ok := m["Keys"]; ok {
		t.Error("a watchdog sample has snitch figures")
	}
	if m := (Sample{}).Figures(); len(m) != 0 {
		t.Errorf("empty sample has figures %v", m)
	}
}

// sampleOfKind reads figures back into the fields of the kind asked for.
func TestSampleOfKind(t *testing.T) {
	at := time.Unix(0, 42)
	s := sampleOfKind(OpSnitchMetrics, at, map[string]int64{"Keys": 3, "Tombstones": 1, "FromTheFuture": 8})
	if s.Watchdog != nil || s.Snitch == nil || s.Snitch.Keys != 3 || s.Snitch.Tombstones != 1 || !s.Time.Equal(at) {
		t.Errorf("snitch: %+v", s)
	}
	s = sampleOfKind(OpWatchdogMetrics, at, map[string]int64{"Stored": 2})
	if s.Snitch != nil || s.Watchdog == nil || s.Watchdog.Stored != 2 {
		t.Errorf("watchdog: %+v", s)
	}
}

// The table of docs/metrics.md is the one the name table makes: a metric
// or figure added, renamed or explained anew must be documented. Run with
// GHOST_UPDATE_DOCS=1 to write the table into the file.
func TestMetricsDoc(t *testing.T) {
	const path = "docs/metrics.md"
	const begin = "<!-- The table below is made from the name table in stats.go"
	const end = "<!-- End of the table made from stats.go. -->"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s: no table between %q and %q", path, begin, end)
	}
	i += strings.Index(doc[i:], "\n") + 1
	want := metricsDocTable()
	if doc[i:j] == want {
		return
	}
	if os.Getenv("GHOST_UPDATE_DOCS") != "" {
		if err := os.WriteFile(path, []byte(doc[:i]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: table written", path)
		return
	}
	t.Errorf("%s: the table differs from the name table in stats.go; GHOST_UPDATE_DOCS=1 go test -run TestMetricsDoc . writes it. Want:\n%s", path, want)
}

// metricsDocTable is the Markdown table of every metric: the figures'
// (watchdog, then snitch) and the others.
func metricsDocTable() string {
	var b strings.Builder
	b.WriteString("\n| Metric | Type | Labels | Meaning | Snitch / watchdog figure |\n| --- | --- | --- | --- | --- |\n")
	row := func(cells ...string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	figureRows(watchdogFigures(), row)
	for _, m := range newNodeMetricNames().all() {
		row("`"+m.name+"`", m.kind, m.labelDocs, m.help, "")
	}
	figureRows(snitchFigures(), row)
	b.WriteString("\n") // a blank line on each side keeps the markers out of the table
	return b.String()
}

// figureRows writes a row per metric of table: the figure that names it,
// then those that are its series by op.
func figureRows[S any](table []figure[S], row func(cells ...string)) {
	for _, f := range table {
		if f.metric == "" || f.op != "" {
			continue
		}
		names, ops := []string{f.name}, []string(nil)
		for _, g := range table {
			if g.metric == f.metric && g.op != "" {
				names, ops = append(names, g.name), append(ops, g.op)
			}
		}
		labels := ""
		if len(ops) > 0 {
			labels = "`op`: " + strings.Join(ops, ", ")
		}
		kind, help := "gauge", f.help
		if f.kind == prometheus.CounterValue {
			kind = "counter"
		}
		if f.process {
			help = "*process*: " + help
		}
		row("`"+f.metric+"`", kind, labels, help, strings.Join(names, ", "))
	}
}
