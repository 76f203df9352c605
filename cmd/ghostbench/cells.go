package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ghostdb/ghost/internal/latency"
)

// The cells of the table: what each row runs and where, and running them
// in interleaved passes while measuring their CPU.

// cell is one row of the table: a target, a scenario and a concurrency.
type cell struct {
	Target   string       `json:"target"`
	Scenario string       `json:"scenario"`
	Conc     int          `json:"conc"`
	Batch    int          `json:"batch,omitempty"` // keys a call: ops/s are keys/s, latencies per call
	NA       string       `json:"na,omitempty"`    // why the cell has no figures
	Passes   []passResult `json:"passes,omitempty"`
	Summary  *summary     `json:"summary,omitempty"`

	kind    string  // scenario key, for ratios and checks
	cmd     command // what the load processes run
	load    []*proc // the processes that run the load
	servers []int   // the other processes serving it, for CPU per op
}

// Scenario keys.
const (
	kindMemcached  = "memcached"
	kindRedis      = "redis"
	kindNetFloor   = "net-floor" // floor.go: a Go request/response over loopback
	kindForwarded  = "forwarded"
	kindLocal      = "local"
	kindCluster    = "cluster"
	kindLocalGet   = "local-get"
	kindFloor      = "floor"       // sync.Map
	kindOtter      = "otter-floor" // otter
	kindBatch      = "batch"       // GhostDB GetMulti
	kindBatchMC    = "batch-memcached"
	kindBatchRedis = "batch-redis"

	kindSet         = "set"          // forwarded sets with -replicas copies
	kindSetR1       = "set-r1"       // forwarded sets with one copy
	kindForwardedR1 = "forwarded-r1" // forwarded get/set with one copy

	kindNearOff = "near-off" // forwarded Zipf get/set 95:5 without a near cache
	kindNearOn  = "near-on"  // the same with one
)

// scenario is a kind of row, run at every concurrency.
type scenario struct {
	target, name, kind string
	cmd                command // Target, Keys, Addr, GetPct and SampleEvery
	load               []*proc
	servers            []int
}

// plan lists the cells of the table, in the order they run within a pass
// at each concurrency: targets alternate, so that a change in the machine's
// load hits all of them alike. main is the cluster with -replicas copies,
// r1 the one with a single copy (nil without the replicas scenario).
func plan(o options, main, r1 *cluster, servers map[string]*server) []*cell {
	var scs []scenario
	if o.wants(scenarioBase) {
		scs = baseScenarios(o, main, servers)
	}
	if r1 != nil {
		mix := "get/set " + o.ratio
		set := command{Target: targetGhost, Keys: keysRemote, GetPct: 0, SampleEvery: 1}
		get := set
		get.GetPct = o.getPct
		scs = append(scs,
			scenario{"GhostDB", fmt.Sprintf("forwarded set only, Replicas %d", o.replicas), kindSet, set, main.procs[:1], main.pids()[1:]},
			scenario{"GhostDB", "forwarded set only, Replicas 1", kindSetR1, set, r1.procs[:1], r1.pids()[1:]},
			scenario{"GhostDB", "forwarded " + mix + ", Replicas 1", kindForwardedR1, get, r1.procs[:1], r1.pids()[1:]},
		)
	}
	var cells []*cell
	for _, c := range o.conc {
		for _, sc := range scs {
			cmd := sc.cmd
			cmd.Cmd, cmd.Conc, cmd.Warmup, cmd.Duration = cmdRun, c, o.warmup, o.duration
			cells = append(cells, &cell{Target: sc.target, Scenario: sc.name, Conc: c, Batch: cmd.Batch, kind: sc.kind, cmd: cmd, load: sc.load, servers: sc.servers})
		}
	}
	return cells
}

// baseScenarios are the rows of the base scenario.
func baseScenarios(o options, cl *cluster, servers map[string]*server) []scenario {
	mix := "get/set " + o.ratio
	p0, others := cl.procs[:1], cl.pids()[1:]
	var scs []scenario
	addServer := func(target, name, scenarioName, kind string, batch int) {
		if s := servers[target]; s != nil {
			scs = append(scs, scenario{name, scenarioName, kind, command{Target: target, Addr: s.addr, GetPct: o.getPct, SampleEvery: 1, Batch: batch}, p0, []int{s.pid()}})
		}
	}
	ghost := func(keys string, getPct, sampleEvery int) command {
		return command{Target: targetGhost, Keys: keys, GetPct: getPct, SampleEvery: sampleEvery}
	}
	addServer(targetFloor, "floor", mix+" (Go over loopback)", kindNetFloor, 0)
	addServer(targetMemcached, "memcached", mix, kindMemcached, 0)
	if o.has(targetGhost) {
		scs = append(scs, scenario{"GhostDB", fmt.Sprintf("forwarded %s, Replicas %d", mix, o.replicas), kindForwarded, ghost(keysRemote, o.getPct, 1), p0, others})
	}
	addServer(targetRedis, "Redis", mix, kindRedis, 0)
	if o.has(targetGhost) {
		// In-process targets time one op in 64: reading the clock would
		// cost more than a sync.Map load.
		scs = append(scs,
			scenario{"GhostDB", "owner-local " + mix, kindLocal, ghost(keysLocal, o.getPct, 64), p0, others},
			scenario{"GhostDB", fmt.Sprintf("cluster: %d processes × c, %s", o.nodes, mix), kindCluster, ghost(keysAll, o.getPct, 1), cl.procs, nil},
			scenario{"GhostDB", "owner-local get only", kindLocalGet, ghost(keysLocal, 100, 64), p0, others},
			scenario{"sync.Map", "get only (floor)", kindFloor, command{Target: targetSyncMap, GetPct: 100, SampleEvery: 64}, p0, nil},
			scenario{"otter", "get only (floor)", kindOtter, command{Target: targetOtter, GetPct: 100, SampleEvery: 64}, p0, nil},
		)
	}
	// Batch rows: a get of 100 distinct keys a call (fewer with fewer keys).
	batch := min(batchSize, o.keys)
	perCall := fmt.Sprintf(" of %d keys (keys/s; latency per call)", batch)
	addServer(targetMemcached, "memcached", "GetMulti"+perCall, kindBatchMC, batch)
	if o.has(targetGhost) {
		get := ghost(keysAll, 100, 1)
		get.Batch = batch
		scs = append(scs, scenario{"GhostDB", fmt.Sprintf("GetMulti of %d %s keys from 1 of %d processes (keys/s; latency per call)", batch, o.dist, o.nodes), kindBatch, get, p0, others})
	}
	addServer(targetRedis, "Redis", "MGET"+perCall, kindBatchRedis, batch)
	return scs
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
			rep, err := p.call(ctx, c.cmd, c.cmd.Warmup+c.cmd.Duration+time.Minute)
			if err == nil && rep.Result == nil {
				err = fmt.Errorf("process %d: no result", p.id)
			}
			outs <- out{rep.Result, err}
		}()
	}
	var pr passResult
	var hist latency.Histogram
	var gets, hits, forwarded, nearHits, nearReads int64
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
		forwarded += o.res.Forwarded
		nearHits += o.res.NearHits
		nearReads += o.res.NearReads
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
	calls := pr.Ops
	if c.Batch > 0 {
		calls /= int64(c.Batch)
	}
	if pr.Errors >= calls {
		// Ops that fail fast are no throughput to judge a target on.
		return pr, fmt.Errorf("every call failed: %s", pr.FirstError)
	}
	used := <-cpu
	perOp := 1e6 / (pr.OpsPerSec * used.seconds) // µs per op
	pr.CPUClient = used.load * perOp
	pr.CPUServer = used.servers * perOp
	if gets > 0 {
		pr.HitRate = float64(hits) / float64(gets)
		pr.NearHitsPerGet, pr.NearReadsPerGet = float64(nearHits)/float64(gets), float64(nearReads)/float64(gets)
	}
	pr.ForwardedPerOp = float64(forwarded) / float64(pr.Ops)
	pr.P50 = hist.Quantile(0.50).Seconds() * 1e6
	pr.P99 = hist.Quantile(0.99).Seconds() * 1e6
	pr.P999 = hist.Quantile(0.999).Seconds() * 1e6
	perCall := float64(pr.Ops) / float64(calls) // 1, or the keys of a batch
	pr.MeanLatency = float64(c.cmd.Conc*len(c.load)) * perCall / pr.OpsPerSec * 1e9
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
