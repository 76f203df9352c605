package ghost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScale runs GHOST_SCALE nodes in one process on the in-memory network
// and measures how long the cluster takes to become Safe, and how many
// tables and table calls that costs, as it forms, loses 10 nodes at once,
// gains 20 at once and restarts its nodes one at a time
// (GHOST_SCALE_RESTARTS of them; all by default). It prints a Markdown
// table (docs/scale.md). It is skipped unless GHOST_SCALE is set:
//
//	GHOST_SCALE=100 go test -run TestScale -v -timeout 60m .
//
// GHOST_SCALE_DEADLINE (a duration, default 10m) bounds each wait for Safe.
func TestScale(t *testing.T) {
	size, err := strconv.Atoi(os.Getenv("GHOST_SCALE"))
	if err != nil || size < 1 {
		t.Skip("set GHOST_SCALE to a node count to run the scale simulation")
	}
	restarts := size
	if s := os.Getenv("GHOST_SCALE_RESTARTS"); s != "" {
		if restarts, err = strconv.Atoi(s); err != nil {
			t.Fatalf("GHOST_SCALE_RESTARTS: %v", err)
		}
	}
	deadline := 10 * time.Minute
	if s := os.Getenv("GHOST_SCALE_DEADLINE"); s != "" {
		if deadline, err = time.ParseDuration(s); err != nil {
			t.Fatalf("GHOST_SCALE_DEADLINE: %v", err)
		}
	}
	s := &scaleRun{t: t, deadline: deadline, warns: &warnCount{counts: map[string]int{}}}
	s.c = &cluster{t: t, net: NewMemNetwork()}
	s.logger = slog.New(s.warns)
	t.Cleanup(s.stopAll)

	// 1. Form: each node joins the first, one after another (each Join
	// returns once the node serves, before the next starts; nobody waits
	// for Safe in between), then the whole cluster settles.
	s.phase(fmt.Sprintf("form %d (sequential joins)", size), func() {
		for range size {
			s.remember(s.c.add(s.tune))
		}
	})

	// 2. Kill 10 at once: crash (halt) 10 nodes other than the
	// coordinator, c.nodes[0]; fewer below 21 nodes, where 10 would be half
	// the table or more, and the rest, without a majority, rightly could
	// not change the table (quorum.go).
	if kill := min(10, (size-1)/2); kill > 0 {
		s.phase(fmt.Sprintf("kill %d at once", kill), func() {
			var wg sync.WaitGroup
			for _, n := range s.c.nodes[size-kill:] {
				wg.Go(n.halt)
			}
			wg.Wait()
		})
	}

	// 3. Join 20 at once: 20 new nodes start concurrently, each given
	// every live member as a seed.
	s.phase("join 20 at once", func() {
		var seeds []string
		for _, n := range s.c.live() {
			seeds = append(seeds, n.Addr())
		}
		errs := make([]error, 20)
		nodes := make([]*Node, 20)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				cfg := testConfig(s.c.net)
				cfg.Peers = seeds
				s.tune(&cfg)
				nodes[i], errs[i] = Join(context.Background(), cfg)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("Join: %v", err)
		}
		s.c.mu.Lock()
		s.c.nodes = append(s.c.nodes, nodes...)
		s.c.mu.Unlock()
		for _, n := range nodes {
			s.remember(n)
		}
	})

	// 4. Rolling restart: each live node in turn leaves (Leave, with its
	// hand-off) and a new process starts on its address; the cluster is
	// Safe again before the next. The coordinator, c.nodes[0], goes first.
	var slots []int
	for i, n := range s.c.nodes {
		if !n.closed.Load() && len(slots) < restarts {
			slots = append(slots, i)
		}
	}
	if len(slots) > 0 {
		var each []time.Duration
		s.phase(fmt.Sprintf("rolling restart of %d", len(slots)), func() {
			for k, i := range slots {
				start := time.Now()
				s.remember(s.c.restart(i, s.tune))
				if k < len(slots)-1 { // the phase waits for the last one
					s.waitSafe()
					each = append(each, time.Since(start))
				}
			}
		})
		if len(each) > 0 {
			var sum time.Duration
			for _, d := range each {
				sum += d
			}
			t.Logf("rolling restart: %d restarts, mean %v, max %v each (Leave, start, Safe)", len(each), (sum / time.Duration(len(each))).Round(time.Millisecond), slices.Max(each).Round(time.Millisecond))
		}
	}
	s.report()
}

// scaleRun is one run of TestScale: its cluster, every node it started
// (the cluster's slots are reused by restarts) and the rows of its report.
type scaleRun struct {
	t        *testing.T
	c        *cluster
	deadline time.Duration
	logger   *slog.Logger
	warns    *warnCount
	all      []*Node
	rows     []string
}

// tune is the configuration of every node of the run: the test defaults
// (testGossip: a silent node is declared dead after several seconds) and a
// logger that counts warnings instead of printing them.
func (s *scaleRun) tune(cfg *Config) { cfg.Logger = s.logger }

func (s *scaleRun) remember(n *Node) { s.all = append(s.all, n) }

// stopAll stops every node at once, as crashes: a graceful Close of each in
// turn would take minutes at this size.
func (s *scaleRun) stopAll() {
	var wg sync.WaitGroup
	for _, n := range s.all {
		wg.Go(n.halt)
	}
	wg.Wait()
}

// scaleCounts are the cumulative counts of the run's traffic.
type scaleCounts struct {
	version                 uint64 // newest table version a live node holds
	pushes, pushBytes       int64
	fetches, fetchBytes     int64
	pingRounds, pings       int64
	packets, packetBytes    int64
	packetsDropped, tableSz int64
}

func (s *scaleRun) counts() scaleCounts {
	var k scaleCounts
	for _, n := range s.all {
		tc := &n.tableCalls
		k.pushes += tc.pushes.Load()
		k.pushBytes += tc.pushBytes.Load()
		k.fetches += tc.fetches.Load()
		k.fetchBytes += tc.fetchBytes.Load()
		k.pingRounds += tc.pingRounds.Load()
		k.pings += tc.pings.Load()
	}
	for _, n := range s.c.live() {
		if t := n.table.Load(); t.version > k.version {
			k.version = t.version
			k.tableSz = int64(len(encodeTable(t)))
		}
	}
	k.packets = s.c.net.packets.Load()
	k.packetBytes = s.c.net.packetBytes.Load()
	k.packetsDropped = s.c.net.packetsDropped.Load()
	return k
}

// phase runs act, waits until every live node is Safe, and records a row:
// the time from the start of act to Safe and the traffic meanwhile.
func (s *scaleRun) phase(name string, act func()) {
	s.t.Helper()
	before := s.counts()
	start := time.Now()
	act()
	acted := time.Since(start)
	s.waitSafe()
	took := time.Since(start)
	after := s.counts()
	live := len(s.c.live())
	tables := int64(after.version - before.version)
	per := func(x int64) string {
		if tables == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(x)/float64(tables))
	}
	perMember := func(x int64) string {
		if tables == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(x)/float64(tables)/float64(live))
	}
	d := func(f func(scaleCounts) int64) int64 { return f(after) - f(before) }
	pushes := d(func(k scaleCounts) int64 { return k.pushes })
	fetches := d(func(k scaleCounts) int64 { return k.fetches })
	pings := d(func(k scaleCounts) int64 { return k.pings })
	rounds := d(func(k scaleCounts) int64 { return k.pingRounds })
	pushMB := float64(d(func(k scaleCounts) int64 { return k.pushBytes })) / 1e6
	fetchMB := float64(d(func(k scaleCounts) int64 { return k.fetchBytes })) / 1e6
	packets := d(func(k scaleCounts) int64 { return k.packets })
	gossipMB := float64(d(func(k scaleCounts) int64 { return k.packetBytes })) / 1e6
	dropped := d(func(k scaleCounts) int64 { return k.packetsDropped })
	row := fmt.Sprintf("| %s | %d | %v | %v | %d (v%d) | %d | %.1f | %s | %s | %d | %.1f | %d | %d | %s | %d | %.1f | %d | %.1f KB | %d | %d MB |",
		name, live, acted.Round(time.Millisecond), took.Round(time.Millisecond), tables, after.version,
		pushes, pushMB, per(pushes), perMember(pushes), fetches, fetchMB, rounds, pings, per(pings),
		packets, gossipMB, dropped, float64(after.tableSz)/1e3, runtime.NumGoroutine(), heapInUse()>>20)
	s.rows = append(s.rows, row)
	s.t.Logf("%s", row)
}

// waitSafe waits, up to the run's deadline, until every live node lists
// exactly the live nodes, holds the same table and is Safe.
func (s *scaleRun) waitSafe() {
	s.t.Helper()
	nodes := s.c.live()
	var want []string
	for _, n := range nodes {
		want = append(want, n.Addr())
	}
	slices.Sort(want)
	last := time.Now()
	waitFor(s.t, s.deadline, func() error {
		err := safeAmong(nodes, want)
		if err != nil && time.Since(last) > 30*time.Second {
			last = time.Now()
			s.t.Logf("still waiting: %v (warnings so far: %s)", err, s.warns.summary(3))
		}
		return err
	})
}

func safeAmong(nodes []*Node, want []string) error {
	version := nodes[0].table.Load().version
	for _, n := range nodes {
		if v := n.table.Load().version; v != version {
			return fmt.Errorf("%s holds table %d, %s %d", n.Addr(), v, nodes[0].Addr(), version)
		}
		if !n.Safe() {
			return notSafe(n)
		}
	}
	for _, n := range nodes {
		if got := n.Members(); !slices.Equal(got, want) {
			return fmt.Errorf("%s sees %d members, want %d", n.Addr(), len(got), len(want))
		}
	}
	return nil
}

func (s *scaleRun) report() {
	var b strings.Builder
	b.WriteString("\n| phase | live | act | to Safe | tables | pushes | push MB | pushes/table | pushes/table/member | fetches | fetch MB | ping rounds | pings | pings/table | gossip packets | gossip MB | packets dropped | table size | goroutines | heap |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range s.rows {
		b.WriteString(r + "\n")
	}
	s.t.Logf("GOMAXPROCS %d, %d partitions, %d replicas%s", runtime.GOMAXPROCS(0), s.all[0].cfg.PartitionCount, s.all[0].cfg.Replicas, b.String())
	s.t.Logf("warnings logged by the nodes: %s", s.warns.summary(10))
}

// warnCount is a slog handler that counts the warnings by message.
type warnCount struct {
	mu     sync.Mutex
	counts map[string]int
}

func (w *warnCount) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCount) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.counts[r.Message]++
	w.mu.Unlock()
	return nil
}
func (w *warnCount) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCount) WithGroup(string) slog.Handler      { return w }

// summary returns the top most frequent warnings with their counts.
func (w *warnCount) summary(top int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	type kv struct {
		msg string
		n   int
	}
	var all []kv
	for m, n := range w.counts {
		all = append(all, kv{m, n})
	}
	slices.SortFunc(all, func(a, b kv) int { return b.n - a.n })
	var parts []string
	for _, e := range all[:min(top, len(all))] {
		parts = append(parts, fmt.Sprintf("%d× %q", e.n, e.msg))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
