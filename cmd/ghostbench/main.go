// Command ghostbench measures GhostDB side by side with memcached and Redis,
// in one run, and reports the results as ratios.
//
// It starts a GhostDB cluster of -nodes processes on 127.0.0.1 (copies of
// itself, each embedding a node) and, when their binaries are on PATH,
// memcached and redis-server on free loopback ports with persistence off.
// Every target gets the same closed-loop workload, driven from a cluster
// process: -keys keys prefilled with -value-byte values, gets and sets in
// -ratio, -conc callers at once, uniform or Zipf keys. Cells (a target, a
// scenario and a concurrency) run for -duration after -warmup, interleaved
// over -passes passes, and the table reports per cell the median and range
// of ops/s, latency percentiles, CPU per op and the ratio of GhostDB to
// memcached and Redis. It ends with the targets as PASS or FAIL
// lines (SKIP when a target was not measured).
//
// GhostDB scenarios:
//
//	forwarded   every op is for a key another process owns: one hop each
//	owner-local every op is for a key the calling process owns
//	cluster     uniform keys, load from every process at once (aggregate)
//	batch get   a get of 100 keys; there is no batch API yet
//
// The floor row is a sync.Map in the load process, for the target
// "owner-local Get ≤ 2× sync.Map Get".
//
// Usage:
//
//	ghostbench [-targets ghost,memcached,redis] [-nodes 3] [-conc 1,16,64] [-secret] [-json out.json]
//
// The Markdown table goes to stdout, progress to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ghostdb/ghost/internal/latency"
)

// options are the command line flags.
type options struct {
	targets   []string
	nodes     int
	keys      int
	valueSize int
	getPct    int
	ratio     string
	conc      []int
	dist      string
	zipfS     float64
	duration  time.Duration
	warmup    time.Duration
	passes    int
	jsonOut   string
	seed      uint64
	secret    bool
}

func main() {
	worker := flag.String("worker", "", "internal: run as a GhostDB cluster process with this JSON configuration")
	var o options
	targets := flag.String("targets", "ghost,memcached,redis", "comma-separated targets: ghost (GhostDB and the sync.Map floor), memcached, redis")
	conc := flag.String("conc", "1,16,64", "comma-separated concurrencies: callers per load process")
	flag.IntVar(&o.nodes, "nodes", 3, "GhostDB cluster processes")
	flag.IntVar(&o.keys, "keys", 100_000, "keys, prefilled before the first cell")
	flag.IntVar(&o.valueSize, "value", 100, "value size in bytes")
	flag.StringVar(&o.ratio, "ratio", "9:1", "get:set ratio")
	flag.StringVar(&o.dist, "dist", "uniform", "key distribution: uniform or zipf")
	flag.Float64Var(&o.zipfS, "zipf-s", 1.1, "Zipf exponent s (> 1) with -dist zipf")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured time per cell")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up per cell, not measured")
	flag.IntVar(&o.passes, "passes", 3, "passes over all cells; targets are interleaved in each")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file (- for stdout, in place of the table)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the key choices")
	flag.BoolVar(&o.secret, "secret", false, "run the GhostDB cluster with a SecretKey: TLS between nodes")
	verbose := flag.Bool("v", false, "log debug messages")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *worker != "" {
		if err := runWorker(ctx, *worker); err != nil {
			slog.Error("worker failed", "err", err)
			os.Exit(1)
		}
		return
	}
	var err error
	if err = o.parse(*targets, *conc); err == nil {
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ghostbench:", err)
		os.Exit(1)
	}
}

// parse checks the flags and fills in the fields parsed from lists.
func (o *options) parse(targets, conc string) error {
	for t := range strings.SplitSeq(targets, ",") {
		switch t = strings.TrimSpace(t); t {
		case targetGhost, targetMemcached, targetRedis:
			o.targets = append(o.targets, t)
		default:
			return fmt.Errorf("-targets: unknown target %q", t)
		}
	}
	for c := range strings.SplitSeq(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-conc: %q is not a positive number", c)
		}
		o.conc = append(o.conc, n)
	}
	g, s, ok := strings.Cut(o.ratio, ":")
	gets, err1 := strconv.Atoi(g)
	sets, err2 := strconv.Atoi(s)
	if !ok || err1 != nil || err2 != nil || gets < 0 || sets < 0 || gets+sets == 0 {
		return fmt.Errorf("-ratio %q: want gets:sets, such as 9:1", o.ratio)
	}
	o.getPct = 100 * gets / (gets + sets)
	switch {
	case o.nodes < 1:
		return errors.New("-nodes must be at least 1")
	case o.keys < 1:
		return errors.New("-keys must be at least 1")
	case o.valueSize < 0:
		return errors.New("-value must not be negative")
	case o.dist != "uniform" && o.dist != "zipf":
		return fmt.Errorf("-dist %q: want uniform or zipf", o.dist)
	case o.dist == "zipf" && o.zipfS <= 1:
		return errors.New("-zipf-s must be greater than 1")
	case o.duration <= 0 || o.warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	case o.passes < 1:
		return errors.New("-passes must be at least 1")
	}
	return nil
}

func (o *options) has(target string) bool { return slices.Contains(o.targets, target) }

// cell is one row of the table: a target, a scenario and a concurrency.
type cell struct {
	Target   string       `json:"target"`
	Scenario string       `json:"scenario"`
	Conc     int          `json:"conc"`
	NA       string       `json:"na,omitempty"` // why the cell has no figures
	Passes   []passResult `json:"passes,omitempty"`
	Summary  *summary     `json:"summary,omitempty"`

	kind    string  // scenario key, for ratios and checks
	cmd     command // what the load processes run
	load    []*proc // the processes that run the load
	servers []int   // the other processes serving it, for CPU per op
}

// Scenario keys.
const (
	kindMemcached = "memcached"
	kindRedis     = "redis"
	kindForwarded = "forwarded"
	kindLocal     = "local"
	kindCluster   = "cluster"
	kindLocalGet  = "local-get"
	kindFloor     = "floor"
	kindBatch     = "batch"
)

// report is the whole result, as printed and as JSON.
type report struct {
	Meta   meta     `json:"meta"`
	Cells  []*cell  `json:"cells"`
	Checks []check  `json:"checks"`
	Notes  []string `json:"notes,omitempty"`
}

// meta describes the run.
type meta struct {
	Date      string  `json:"date"`
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	GoVersion string  `json:"go_version"`
	Memcached string  `json:"memcached,omitempty"`
	Redis     string  `json:"redis,omitempty"`
	Nodes     int     `json:"nodes"`
	Secret    bool    `json:"secret"` // the cluster ran with a SecretKey (TLS between nodes)
	Keys      int     `json:"keys"`
	ValueSize int     `json:"value_size"`
	Ratio     string  `json:"ratio"`
	Dist      string  `json:"dist"`
	ZipfS     float64 `json:"zipf_s,omitempty"`
	Duration  string  `json:"duration"`
	Warmup    string  `json:"warmup"`
	Passes    int     `json:"passes"`
	Conc      []int   `json:"conc"`
	Command   string  `json:"command"`
	Seconds   float64 `json:"wall_seconds"`
}

// run is the whole benchmark: start everything, run the cells, report,
// stop everything.
func run(ctx context.Context, o options) error {
	began := time.Now()
	r := &report{Meta: meta{
		Date: began.UTC().Format("2006-01-02 15:04 MST"), CPU: cpuModel(), Cores: runtime.NumCPU(),
		GoVersion: runtime.Version(), Nodes: o.nodes, Secret: o.secret, Keys: o.keys, ValueSize: o.valueSize,
		Ratio: o.ratio, Dist: o.dist, Duration: o.duration.String(), Warmup: o.warmup.String(),
		Passes: o.passes, Conc: o.conc, Command: strings.Join(append([]string{"ghostbench"}, os.Args[1:]...), " "),
	}}
	if o.dist == "zipf" {
		r.Meta.ZipfS = o.zipfS
	}
	servers := map[string]*server{}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, t := range []string{targetMemcached, targetRedis} {
		if !o.has(t) {
			continue
		}
		s, err := startServer(ctx, t)
		var missing missingServerError
		if errors.As(err, &missing) {
			slog.Warn("skipping a target", "target", t, "why", err)
			r.Notes = append(r.Notes, err.Error())
			continue
		}
		if err != nil {
			return err
		}
		servers[t] = s
		if t == targetMemcached {
			r.Meta.Memcached = s.version
		} else {
			r.Meta.Redis = s.version
		}
	}

	slog.Info("starting the GhostDB cluster", "processes", o.nodes)
	cl, err := startCluster(ctx, o)
	if err != nil {
		return err
	}
	defer cl.stop()
	if err := prefillAll(ctx, o, cl, servers); err != nil {
		return err
	}

	r.Cells = plan(o, cl, servers)
	if err := runCells(ctx, o, r.Cells); err != nil {
		return err
	}
	finish(o, r)
	r.Meta.Seconds = time.Since(began).Seconds()
	return output(o, r)
}

// prefillAll stores every key in every target before the first cell.
func prefillAll(ctx context.Context, o options, cl *cluster, servers map[string]*server) error {
	var calls []call
	if o.has(targetGhost) {
		for _, p := range cl.procs {
			calls = append(calls, call{p, command{Cmd: cmdPrefill, Target: targetGhost}})
		}
		calls = append(calls, call{cl.procs[0], command{Cmd: cmdPrefill, Target: targetSyncMap}})
	}
	for t, s := range servers {
		calls = append(calls, call{cl.procs[0], command{Cmd: cmdPrefill, Target: t, Addr: s.addr}})
	}
	slog.Info("prefilling", "keys", o.keys, "value_bytes", o.valueSize)
	// Prefills run one at a time: the server ones share worker 0.
	for _, c := range calls {
		if _, err := c.p.call(ctx, c.cmd, time.Minute+time.Duration(o.keys)*time.Millisecond); err != nil {
			return fmt.Errorf("prefill %s from process %d: %w", c.cmd.Target, c.p.id, err)
		}
	}
	return nil
}

// scenario is a kind of row, run at every concurrency.
type scenario struct {
	target, name, kind string
	cmd                command // Target, Keys, Addr, GetPct and SampleEvery
	load               []*proc
	servers            []int
}

// plan lists the cells of the table, in the order they run within a pass
// at each concurrency: targets alternate, so that a change in the machine's
// load hits all of them alike.
func plan(o options, cl *cluster, servers map[string]*server) []*cell {
	mix := "get/set " + o.ratio
	p0, others := cl.procs[:1], cl.pids()[1:]
	var scs []scenario
	addServer := func(target, name string) {
		if s := servers[target]; s != nil {
			scs = append(scs, scenario{name, mix, target, command{Target: target, Addr: s.addr, GetPct: o.getPct, SampleEvery: 1}, p0, []int{s.pid()}})
		}
	}
	ghost := func(keys string, getPct, sampleEvery int) command {
		return command{Target: targetGhost, Keys: keys, GetPct: getPct, SampleEvery: sampleEvery}
	}
	addServer(targetMemcached, "memcached")
	if o.has(targetGhost) {
		scs = append(scs, scenario{"GhostDB", "forwarded " + mix, kindForwarded, ghost(keysRemote, o.getPct, 1), p0, others})
	}
	addServer(targetRedis, "Redis")
	if o.has(targetGhost) {
		// In-process targets time one op in 64: reading the clock would
		// cost more than a sync.Map load.
		scs = append(scs,
			scenario{"GhostDB", "owner-local " + mix, kindLocal, ghost(keysLocal, o.getPct, 64), p0, others},
			scenario{"GhostDB", fmt.Sprintf("cluster: %d processes × c, %s", o.nodes, mix), kindCluster, ghost(keysAll, o.getPct, 1), cl.procs, nil},
			scenario{"GhostDB", "owner-local get only", kindLocalGet, ghost(keysLocal, 100, 64), p0, others},
			scenario{"sync.Map", "get only (floor)", kindFloor, command{Target: targetSyncMap, GetPct: 100, SampleEvery: 64}, p0, nil},
		)
	}
	var cells []*cell
	for _, c := range o.conc {
		for _, sc := range scs {
			cmd := sc.cmd
			cmd.Cmd, cmd.Conc, cmd.Warmup, cmd.Duration = cmdRun, c, o.warmup, o.duration
			cells = append(cells, &cell{Target: sc.target, Scenario: sc.name, Conc: c, kind: sc.kind, cmd: cmd, load: sc.load, servers: sc.servers})
		}
	}
	if o.has(targetGhost) {
		cells = append(cells, &cell{Target: "GhostDB", Scenario: "batch get of 100 keys", kind: kindBatch, NA: "n/a (no batch API yet)"})
	}
	return cells
}

// runCells runs every cell once per pass and records the results.
func runCells(ctx context.Context, o options, cells []*cell) error {
	perCell := o.warmup + o.duration + 200*time.Millisecond
	runnable := 0
	for _, c := range cells {
		if c.NA == "" {
			runnable++
		}
	}
	done := 0
	for pass := 1; pass <= o.passes; pass++ {
		for _, c := range cells {
			if c.NA != "" {
				continue
			}
			left := time.Duration(runnable*o.passes-done) * perCell
			slog.Info("cell", "pass", fmt.Sprintf("%d/%d", pass, o.passes), "target", c.Target, "scenario", c.Scenario, "c", c.Conc,
				"cell", fmt.Sprintf("%d/%d", done+1, runnable*o.passes), "left", left.Round(time.Second))
			res, err := runCell(ctx, c)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				// A cell that cannot run (no keys of that kind, say) is
				// reported as such; the others go on.
				slog.Warn("cell failed", "target", c.Target, "scenario", c.Scenario, "c", c.Conc, "err", err)
				c.NA = "n/a (" + err.Error() + ")"
				c.Passes = nil
				continue
			}
			res.Pass = pass
			c.Passes = append(c.Passes, res)
			done++
		}
	}
	return nil
}

// runCell runs one cell on its load processes at once and measures the
// CPU that they and the cell's servers used while it was measured.
func runCell(ctx context.Context, c *cell) (passResult, error) {
	loadPIDs := make([]int, len(c.load))
	for i, p := range c.load {
		loadPIDs[i] = p.pid()
	}
	cpu := make(chan cpuSample, 1)
	go func() { cpu <- sampleCPU(ctx, loadPIDs, c.servers, c.cmd.Warmup, c.cmd.Duration) }()
	type out struct {
		res *cellResult
		err error
	}
	outs := make(chan out, len(c.load))
	for _, p := range c.load {
		go func() {
			res, err := p.call(ctx, c.cmd, c.cmd.Warmup+c.cmd.Duration+time.Minute)
			outs <- out{res, err}
		}()
	}
	var pr passResult
	var hist latency.Histogram
	var gets, hits int64
	var errs []error
	for range c.load {
		o := <-outs
		if o.err != nil {
			errs = append(errs, o.err)
			continue
		}
		pr.Ops += o.res.Ops
		pr.Errors += o.res.Errors
		pr.OpsPerSec += float64(o.res.Ops) / o.res.Seconds
		gets += o.res.Gets
		hits += o.res.Hits
		if err := hist.AddSparse(o.res.Hist); err != nil {
			errs = append(errs, err)
		}
		if pr.FirstError == "" {
			pr.FirstError = o.res.FirstErr
		}
	}
	if err := errors.Join(errs...); err != nil {
		return pr, err
	}
	if pr.Ops == 0 {
		return pr, errors.New("no op completed")
	}
	used := <-cpu
	perOp := 1e6 / (pr.OpsPerSec * used.seconds) // µs per op
	pr.CPUClient = used.load * perOp
	pr.CPUServer = used.servers * perOp
	if gets > 0 {
		pr.HitRate = float64(hits) / float64(gets)
	}
	pr.P50 = hist.Quantile(0.50).Seconds() * 1e6
	pr.P99 = hist.Quantile(0.99).Seconds() * 1e6
	pr.P999 = hist.Quantile(0.999).Seconds() * 1e6
	pr.MeanLatency = float64(c.cmd.Conc*len(c.load)) / pr.OpsPerSec * 1e9
	return pr, nil
}

// cpuSample is the CPU seconds processes used in an interval of seconds.
type cpuSample struct{ load, servers, seconds float64 }

// sampleCPU measures the CPU the load processes and the servers use from
// warmup after it is called until duration later: the interval in which
// the workers, started at the same moment, count ops.
func sampleCPU(ctx context.Context, load, servers []int, warmup, duration time.Duration) cpuSample {
	sleep := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	sleep(warmup)
	l0, s0, t0 := sumCPU(load), sumCPU(servers), time.Now()
	sleep(duration)
	return cpuSample{load: sumCPU(load) - l0, servers: sumCPU(servers) - s0, seconds: time.Since(t0).Seconds()}
}

// sumCPU returns the CPU seconds the processes have used, leaving out
// those it cannot read.
func sumCPU(pids []int) float64 {
	var total float64
	for _, pid := range pids {
		if s, err := cpuTime(pid); err == nil {
			total += s
		}
	}
	return total
}

// finish works out the ratios, the summaries and the checks.
func finish(o options, r *report) {
	find := func(kind string, conc int) *cell {
		for _, c := range r.Cells {
			if c.kind == kind && c.Conc == conc && len(c.Passes) > 0 {
				return c
			}
		}
		return nil
	}
	for _, c := range r.Cells {
		if c.kind != kindForwarded && c.kind != kindLocal && c.kind != kindCluster {
			continue
		}
		mc, rd := find(kindMemcached, c.Conc), find(kindRedis, c.Conc)
		for i := range c.Passes {
			c.Passes[i].Ratios = &ratios{Memcached: passRatio(c, mc, i), Redis: passRatio(c, rd, i)}
		}
	}
	for _, c := range r.Cells {
		if len(c.Passes) == 0 {
			continue
		}
		s := summarize(c.Passes)
		c.Summary = &s
		for _, p := range c.Passes {
			if p.FirstError != "" {
				r.Notes = append(r.Notes, fmt.Sprintf("%s %s c=%d: %d errors; the first in pass %d: %s", c.Target, c.Scenario, c.Conc, s.Errors, p.Pass, p.FirstError))
				break
			}
		}
	}
	r.Checks = checks(o, find)
}

// passRatio is the ops/s of c over those of base in pass i, or 0.
func passRatio(c, base *cell, i int) float64 {
	if base == nil || i >= len(base.Passes) || i >= len(c.Passes) || base.Passes[i].OpsPerSec == 0 {
		return 0
	}
	return c.Passes[i].OpsPerSec / base.Passes[i].OpsPerSec
}

// checks judges the performance targets on the medians.
func checks(o options, find func(string, int) *cell) []check {
	// Throughput targets are judged at c=16 and c=64, or at the highest
	// concurrency run when neither is.
	var at []int
	for _, c := range o.conc {
		if c == 16 || c == 64 {
			at = append(at, c)
		}
	}
	if len(at) == 0 {
		at = []int{slices.Max(o.conc)}
	}
	var out []check
	for _, c := range at {
		fw, mc := find(kindForwarded, c), find(kindMemcached, c)
		name := fmt.Sprintf("forwarded Get/Put ≥ 1.5× memcached ops/s at c=%d, p99 no worse", c)
		if fw == nil || mc == nil {
			out = append(out, check{Name: name, Verdict: "SKIP", Detail: "not measured"})
		} else {
			s := fw.Summary
			ok := s.Ratios.Memcached >= 1.5 && s.P99 <= mc.Summary.P99
			out = append(out, check{Name: name, Verdict: verdict(ok), Detail: fmt.Sprintf("%.2f× memcached (%s vs %s ops/s); p99 %.0f µs vs %.0f µs",
				s.Ratios.Memcached, si(s.OpsPerSec), si(mc.Summary.OpsPerSec), s.P99, mc.Summary.P99)})
		}
	}
	c1 := slices.Min(o.conc)
	name := fmt.Sprintf("owner-local Get ≤ 2× sync.Map Get (time per op at c=%d)", c1)
	if lg, fl := find(kindLocalGet, c1), find(kindFloor, c1); lg == nil || fl == nil {
		out = append(out, check{Name: name, Verdict: "SKIP", Detail: "not measured"})
	} else {
		x := lg.Summary.MeanLatency / fl.Summary.MeanLatency
		out = append(out, check{Name: name, Verdict: verdict(x <= 2), Detail: fmt.Sprintf("%.0f ns vs %.0f ns: %.1f×", lg.Summary.MeanLatency, fl.Summary.MeanLatency, x)})
	}
	for _, c := range at {
		cl, mc := find(kindCluster, c), find(kindMemcached, c)
		name := fmt.Sprintf("%s keys from all %d processes ≥ 3× memcached at c=%d", o.dist, o.nodes, c)
		if cl == nil || mc == nil {
			out = append(out, check{Name: name, Verdict: "SKIP", Detail: "not measured"})
			continue
		}
		x := cl.Summary.Ratios.Memcached
		out = append(out, check{Name: name, Verdict: verdict(x >= 3), Detail: fmt.Sprintf("%.2f× memcached (%s vs %s ops/s)", x, si(cl.Summary.OpsPerSec), si(mc.Summary.OpsPerSec))})
	}
	return out
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// output prints the table and writes the JSON.
func output(o options, r *report) error {
	if o.jsonOut != "-" {
		writeMarkdown(os.Stdout, r)
	}
	if o.jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if o.jsonOut == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(o.jsonOut, b, 0o644)
}

// cpuModel returns the CPU's model name from /proc/cpuinfo, or GOARCH.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}
