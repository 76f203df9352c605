package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostdb/ghost"
)

// The near scenario: issue 19's rows. Two clusters of -nodes processes,
// alike but for a near cache (Config.NearCacheKeys -near-keys) on the
// second, run forwarded Zipf (-zipf-s) get/set 95:5 from one process, cells
// interleaved as the table's are; the check compares ops/s and the calls
// sent to the owners per op. Then the stampede: every process reads the
// same cold keys through GetOrLoad from -conc's largest number of callers
// at once, and the loader's calls are counted across the processes.

// nearRun is the near scenario's result besides its cells.
type nearRun struct {
	StampedeKeys  int    `json:"stampede_keys"`
	StampedeLoads int64  `json:"stampede_loads"` // loader calls in every process together
	StampedeProcs int    `json:"stampede_processes"`
	StampedeConc  int    `json:"stampede_callers_per_process"`
	Err           string `json:"err,omitempty"`
}

// nearGetPct is the near rows' share of gets: 95:5.
const nearGetPct = 95

// stampedeLoad is how long the stampede's loader takes: long enough that
// every caller arrives while the first load runs.
const stampedeLoad = 50 * time.Millisecond

func runNear(ctx context.Context, o options, r *report) error {
	if !o.wants(scenarioNear) || !o.has(targetGhost) {
		return nil
	}
	base := o.workerBase(o.replicas)
	base.Dist = "zipf"
	base.ZipfS = max(o.zipfS, 1.01)
	var clusters []*cluster
	defer func() {
		for _, cl := range clusters {
			cl.stop()
		}
	}()
	for _, near := range []int{0, o.nearKeys} {
		cfg := base
		cfg.NearCacheKeys = near
		slog.Info("starting a GhostDB cluster", "processes", o.nodes, "near_cache_keys", near)
		cl, err := startCluster(ctx, cfg, o.nodes)
		if err != nil {
			return err
		}
		clusters = append(clusters, cl)
		if _, err := waitSafe(ctx, o, cl.procs, o.nodes); err != nil {
			return err
		}
	}
	if err := prefillAll(ctx, o, clusters, nil); err != nil {
		return err
	}
	mix := fmt.Sprintf("forwarded Zipf s=%.2g get/set 95:5", base.ZipfS)
	cmd := command{Target: targetGhost, Keys: keysRemote, GetPct: nearGetPct, SampleEvery: 1}
	scs := []scenario{
		{"GhostDB", mix + ", no near cache", kindNearOff, cmd, clusters[0].procs[:1], clusters[0].pids()[1:]},
		{"GhostDB", fmt.Sprintf("%s, near cache of %d keys", mix, o.nearKeys), kindNearOn, cmd, clusters[1].procs[:1], clusters[1].pids()[1:]},
	}
	var cells []*cell
	for _, c := range o.conc {
		for _, sc := range scs {
			cmd := sc.cmd
			cmd.Cmd, cmd.Conc, cmd.Warmup, cmd.Duration = cmdRun, c, o.warmup, o.duration
			cells = append(cells, &cell{Target: sc.target, Scenario: sc.name, Conc: c, kind: sc.kind, cmd: cmd, load: sc.load, servers: sc.servers})
		}
	}
	if err := runCells(ctx, o, cells); err != nil {
		return err
	}
	r.Cells = append(r.Cells, cells...)

	conc := o.conc[len(o.conc)-1]
	run := &nearRun{StampedeKeys: 20, StampedeProcs: o.nodes, StampedeConc: conc}
	calls := make([]call, len(clusters[1].procs))
	for i, p := range clusters[1].procs {
		calls[i] = call{p, command{Cmd: cmdStampede, Conc: conc, Prefix: "stampede", Rounds: run.StampedeKeys}}
	}
	slog.Info("stampede", "keys", run.StampedeKeys, "processes", o.nodes, "callers", conc)
	reps, err := callAll(ctx, calls, time.Duration(run.StampedeKeys)*(stampedeLoad+10*time.Second))
	for _, rep := range reps {
		run.StampedeLoads += rep.Loads
	}
	if err != nil {
		run.Err = err.Error()
	}
	r.Near = run
	return nil
}

// stampede reads cmd.Rounds cold keys, one after the other, each from
// cmd.Conc callers at once through GetOrLoad, and returns how often the
// loader ran here. Every process starts the same keys at about the same
// time; a round ends when all of this process's callers have the value.
func (w *worker) stampede(ctx context.Context, cmd command) (int64, error) {
	var loads atomic.Int64
	load := func(ctx context.Context, key string) ([]byte, time.Duration, error) {
		loads.Add(1)
		select {
		case <-time.After(stampedeLoad):
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		return w.value, ghost.NoExpiry, nil
	}
	for round := range cmd.Rounds {
		key := fmt.Sprintf("%s-%d", cmd.Prefix, round)
		errs := make([]error, cmd.Conc)
		var wg sync.WaitGroup
		for g := range cmd.Conc {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				_, errs[g] = ghost.GetOrLoadAs(cctx, w.node, key, load)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return loads.Load(), fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	return loads.Load(), nil
}

// nearChecks judge issue 19's targets: with the near cache, ops/s up ≥ 3×
// and calls to the owners (the bytes they send) down ≥ 10×; a stampede
// runs the loader once per key.
func nearChecks(r *report, find func(kind string, conc int) *cell, concs []int) []check {
	if r.Near == nil {
		return nil
	}
	var out []check
	for _, c := range concs {
		off, on := find(kindNearOff, c), find(kindNearOn, c)
		speed := check{Name: fmt.Sprintf("near cache, Zipf 95:5 c=%d: ops/s ≥ 3× without", c), Verdict: "SKIP", Detail: "not measured"}
		bytes := check{Name: fmt.Sprintf("near cache, Zipf 95:5 c=%d: values sent down by the owners per get ≤ 1/10 of without", c), Verdict: "SKIP", Detail: "not measured"}
		if off != nil && on != nil && off.Summary != nil && on.Summary != nil {
			ratio := on.Summary.OpsPerSec / off.Summary.OpsPerSec
			speed.Verdict, speed.Detail = verdict(ratio >= 3), fmt.Sprintf("%.0f vs %.0f ops/s: %.2f×", on.Summary.OpsPerSec, off.Summary.OpsPerSec, ratio)
			// Every forwarded call but a set's is a get whose value comes
			// down: a near lease's read, or a plain one.
			down := func(p passResult) float64 {
				gets := float64(p.Ops) * float64(nearGetPct) / 100
				return (p.ForwardedPerOp*float64(p.Ops) - (float64(p.Ops) - gets)) / gets
			}
			dOff, dOn := medianOf(off.Passes, down), medianOf(on.Passes, down)
			hits := medianOf(on.Passes, func(p passResult) float64 { return p.NearHitsPerGet })
			fewer := dOff / max(dOn, 1e-9)
			bytes.Verdict, bytes.Detail = verdict(fewer >= 10), fmt.Sprintf("%.3f vs %.3f per get: %.1f× fewer; %.3f of gets near hits", dOn, dOff, fewer, hits)
		}
		out = append(out, speed, bytes)
	}
	n := r.Near
	st := check{Name: fmt.Sprintf("stampede: %d cold keys, GetOrLoad from %d processes × %d callers: loader calls per key = 1", n.StampedeKeys, n.StampedeProcs, n.StampedeConc)}
	perKey := float64(n.StampedeLoads) / float64(n.StampedeKeys)
	st.Verdict, st.Detail = verdict(n.Err == "" && n.StampedeLoads == int64(n.StampedeKeys)), fmt.Sprintf("%d loader calls, %.2f per key", n.StampedeLoads, perKey)
	if n.Err != "" {
		st.Detail += "; " + n.Err
	}
	return append(out, st)
}
