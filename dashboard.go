package ghost

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The dashboard: GET /dashboard is one self-contained page (web/
// dashboard.html: its styles and script inline, nothing loaded from
// elsewhere) that polls GET /dashboard/data every second. The node serving
// the page gathers the figures of every member over the cache protocol,
// at most once per dashMinInterval however many viewers there are, and
// keeps the last dashWindow of them per member for the charts. Nothing is
// gathered while nobody looks.

//go:embed web/dashboard.html
var dashboardHTML string

const (
	dashWindow      = 10 * time.Minute       // how far back the charts go
	dashMinInterval = 900 * time.Millisecond // figures are gathered at most this often
	dashTimeout     = 2 * time.Second        // a member slower than this is shown unreachable
	dashMaxPoints   = int(dashWindow/dashMinInterval) + 1
)

// dashMember is one member's row of the dashboard: its state and latest
// figures.
type dashMember struct {
	memberInfo
	Error      string `json:"error,omitempty"` // why it did not answer
	Pairs      int64  `json:"pairs"`
	Bytes      int64  `json:"bytes"`      // key and value bytes held
	HeapBytes  int64  `json:"heapBytes"`  // the process's heap in use
	SysBytes   int64  `json:"sysBytes"`   // memory the process has from the OS
	Goroutines int64  `json:"goroutines"` // the process's
	Requests   int64  `json:"requests"`   // served since the node started
	Gets       int64  `json:"gets"`
	Misses     int64  `json:"misses"`
	Forwarded  int64  `json:"forwarded"`
	NearHits   int64  `json:"nearHits"` // Gets answered from its near cache
	Loads      int64  `json:"loads"`    // GetOrLoad loaders it ran
	// HitRatio is the share of gets since the node started that found a
	// pair; null before the first get.
	HitRatio *float64 `json:"hitRatio"`
	// OpsPerSec is the requests served per second between the last two
	// gatherings; null until there are two.
	OpsPerSec          *float64 `json:"opsPerSec"`
	PartitionsOwned    int      `json:"partitionsOwned"`
	PartitionsBackedUp int      `json:"partitionsBackedUp"`
}

// dashPoint is one gathering of a member's figures, for the charts. The
// counters are cumulative: the page computes rates over the span it wants.
type dashPoint struct {
	T        int64 `json:"t"` // Unix milliseconds
	Pairs    int64 `json:"pairs"`
	Bytes    int64 `json:"bytes"`
	Requests int64 `json:"requests"`
	Gets     int64 `json:"gets"`
	Misses   int64 `json:"misses"`
}

// dashData is the reply of GET /dashboard/data.
type dashData struct {
	Node       string                 `json:"node"`   // the node answering
	Time       int64                  `json:"time"`   // when the figures were gathered, Unix ms
	Window     int64                  `json:"window"` // how far back series go, ms
	Members    []dashMember           `json:"members"`
	Series     map[string][]dashPoint `json:"series"` // by member name, oldest first; only points after ?since=
	Partitions []partitionInfo        `json:"partitions"`
	Transfers  int                    `json:"transfers"` // in flight on the node answering
}

// dashSeries is what the dashboard keeps of one member.
type dashSeries struct {
	last   dashMember // its latest figures
	points []dashPoint
	seen   time.Time // when it last answered
}

// dashboard holds the figures gathered for the page.
type dashboard struct {
	n          dashboardSource
	addr       string     // the node's
	mu         sync.Mutex // held while gathering, so that viewers share one gathering
	gathered   time.Time
	members    []dashMember
	partitions []partitionInfo
	series     map[string]*dashSeries // by member name
}

// dashboardSource is what the dashboard reads of its node: the cluster as
// the node sees it, and every member's latest samples.
type dashboardSource interface {
	memberView() []memberInfo
	partitionView() []partitionInfo
	transfersInFlight() int
	broadcast(ctx context.Context, op Op) []broadcastResult
}

func newDashboard(n dashboardSource, addr string) *dashboard {
	return &dashboard{n: n, addr: addr, series: make(map[string]*dashSeries)}
}

func (d *dashboard) servePage(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// The page may load nothing from anywhere but this node.
	h.Set("Content-Security-Policy", "default-src 'none'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write([]byte(dashboardHTML))
}

func (d *dashboard) serveData(w http.ResponseWriter, r *http.Request) {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		var err error
		if since, err = strconv.ParseInt(s, 10, 64); err != nil {
			http.Error(w, "since: want Unix milliseconds", http.StatusBadRequest)
			return
		}
	}
	b, err := json.Marshal(d.data(since))
	if err != nil { // cannot happen: every field encodes
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// data returns the figures, gathered afresh when the last ones are older
// than dashMinInterval, with the points after since.
func (d *dashboard) data(since int64) dashData {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.gathered) >= dashMinInterval {
		d.gather()
	}
	out := dashData{
		Node:       d.addr,
		Time:       d.gathered.UnixMilli(),
		Window:     dashWindow.Milliseconds(),
		Members:    d.members,
		Series:     make(map[string][]dashPoint, len(d.series)),
		Partitions: d.partitions,
		Transfers:  d.n.transfersInFlight(),
	}
	for name, s := range d.series {
		i := len(s.points)
		for i > 0 && s.points[i-1].T > since {
			i--
		}
		out.Series[name] = slices.Clone(s.points[i:]) // record changes s.points in place
	}
	return out
}

// gather asks every member for its figures and records them. d.mu is held.
func (d *dashboard) gather() {
	ctx, cancel := context.WithTimeout(context.Background(), dashTimeout)
	defer cancel()
	var snitch, watchdog []broadcastResult
	var wg sync.WaitGroup
	wg.Go(func() { snitch = d.n.broadcast(ctx, OpSnitchMetrics) })
	watchdog = d.n.broadcast(ctx, OpWatchdogMetrics)
	wg.Wait()
	now := time.Now()
	d.gathered = now
	d.partitions = d.n.partitionView()

	sys, app := latestSamples(snitch, OpSnitchMetrics), latestSamples(watchdog, OpWatchdogMetrics)
	d.members = d.members[:0:0]
	current := make(map[string]bool)
	for _, mi := range d.n.memberView() {
		m := dashMember{memberInfo: mi}
		m.PartitionsOwned, m.PartitionsBackedUp = partitionCounts(d.partitions, mi.Addr)
		s, a := sys[mi.Addr], app[mi.Addr]
		switch {
		case s.err != nil || a.err != nil:
			m.State, m.Error = stateUnreachable, errorText(s.err, a.err)
		case s.sample.Snitch == nil || a.sample.Watchdog == nil:
			m.Error = "joined after the figures were gathered"
		default:
			m.setFigures(s.sample.Snitch, a.sample.Watchdog)
			d.record(&m, now)
		}
		d.members = append(d.members, m)
		current[mi.Name] = true
	}
	// Members that went away stay listed, as left, while their series
	// lasts.
	for name, s := range d.series {
		switch {
		case now.Sub(s.seen) > dashWindow:
			delete(d.series, name)
		case !current[name]:
			left := s.last
			left.State, left.Self, left.OpsPerSec = stateLeft, false, nil
			left.PartitionsOwned, left.PartitionsBackedUp = 0, 0
			d.members = append(d.members, left)
		}
	}
}

// setFigures fills in m's figures from a snitch and a watchdog sample.
func (m *dashMember) setFigures(sys *SnitchStats, app *WatchdogStats) {
	m.Pairs, m.Bytes = sys.Keys, sys.Bytes
	m.HeapBytes, m.SysBytes, m.Goroutines = sys.HeapInuse, sys.Sys, sys.Goroutines
	m.Requests, m.Gets, m.Misses = app.TotalRequests, app.GetRequests, app.CacheMiss
	m.Forwarded, m.NearHits, m.Loads = app.Forwarded, app.NearHits, app.Loads
	if m.Gets > 0 {
		hits := float64(m.Gets-m.Misses) / float64(m.Gets)
		m.HitRatio = &hits
	}
}

// record appends a point to m's series and sets m's rate from the
// previous one. Counters that went down (a node restarted under the same
// Config.Name) give no rate.
func (d *dashboard) record(m *dashMember, now time.Time) {
	s := d.series[m.Name]
	if s == nil {
		s = &dashSeries{}
		d.series[m.Name] = s
	}
	p := dashPoint{T: now.UnixMilli(), Pairs: m.Pairs, Bytes: m.Bytes, Requests: m.Requests, Gets: m.Gets, Misses: m.Misses}
	if dt := now.Sub(s.seen).Seconds(); !s.seen.IsZero() && dt > 0 && m.Requests >= s.last.Requests {
		ops := float64(m.Requests-s.last.Requests) / dt
		m.OpsPerSec = &ops
	}
	old := 0
	for old < len(s.points) && (now.Sub(time.UnixMilli(s.points[old].T)) > dashWindow || len(s.points)-old >= dashMaxPoints) {
		old++
	}
	s.points = append(s.points[:0], s.points[old:]...)
	s.points = append(s.points, p)
	s.last, s.seen = *m, now
}

// errNoSample: a member answered a metrics call with no sample.
var errNoSample = errors.New("ghost: no metrics sample in the reply")

// latestSample is a member's latest sample of one kind, or why there is
// none.
type latestSample struct {
	sample Sample
	err    error
}

// latestSamples takes each member's latest sample from a broadcast of a
// metrics call of op's kind, by address.
func latestSamples(results []broadcastResult, op Op) map[string]latestSample {
	out := make(map[string]latestSample, len(results))
	for _, r := range results {
		var samples []Sample
		err := r.err
		if err == nil {
			err = decodeSamples(r.value, op, &samples)
		}
		if err == nil && len(samples) == 0 {
			err = errNoSample
		}
		if err != nil {
			out[r.addr] = latestSample{err: err}
			continue
		}
		out[r.addr] = latestSample{sample: samples[len(samples)-1]}
	}
	return out
}

// errorText is the text of the first error that is not nil.
func errorText(errs ...error) string {
	for _, err := range errs {
		if err != nil {
			return err.Error()
		}
	}
	return ""
}
