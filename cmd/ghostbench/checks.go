package main

import (
	"fmt"
	"strings"
)

// Judging the results: ratios between cells, summaries over passes, and
// the issues' performance targets as PASS, FAIL or SKIP lines.

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
		mcKind, rdKind, ok := baselines(c.kind)
		if !ok {
			continue
		}
		mc, rd := find(mcKind, c.Conc), find(rdKind, c.Conc)
		var fl *cell // the floor, for the rows of one hop: a hop with nothing of GhostDB in it
		if c.kind == kindForwarded || c.kind == kindForwardedR1 {
			fl = find(kindNetFloor, c.Conc)
		}
		for i := range c.Passes {
			c.Passes[i].Ratios = &ratios{Memcached: passRatio(c, mc, i), Redis: passRatio(c, rd, i), Floor: passRatio(c, fl, i)}
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
	r.PutCost = putCosts(o, find)
	if o.wants(scenarioBase) {
		r.Checks = checks(o, find)
	}
	r.Checks = append(r.Checks, nearChecks(r, find, o.conc)...)
	r.Checks = append(r.Checks, eventChecks(r)...)
}

// baselines names the memcached and Redis rows that a kind of GhostDB row
// is compared with, if any.
func baselines(kind string) (memcached, redis string, ok bool) {
	switch kind {
	case kindForwarded, kindForwardedR1, kindLocal, kindCluster:
		return kindMemcached, kindRedis, true
	case kindBatch:
		return kindBatchMC, kindBatchRedis, true
	}
	return "", "", false
}

// passRatio is the ops/s of c over those of base in pass i, or 0.
func passRatio(c, base *cell, i int) float64 {
	if base == nil || i >= len(base.Passes) || i >= len(c.Passes) || base.Passes[i].OpsPerSec == 0 {
		return 0
	}
	return c.Passes[i].OpsPerSec / base.Passes[i].OpsPerSec
}

// checks judges issue 10's performance targets. Every ratio is the median
// over the passes of the ratio within a pass, whose cells ran side by
// side.
func checks(o options, find func(string, int) *cell) []check {
	out := forwardedChecks(o, find)
	out = append(out, localChecks(find)...)
	return append(out, batchCheck(find), clusterCheck(o, find))
}

// Concurrencies the targets are judged at.
const (
	concSingle = 1
	concTarget = 16
	concHigh   = 64
)

// notMeasured is the SKIP of a target whose cells did not run or failed.
func notMeasured(name string, conc ...int) check {
	cs := make([]string, len(conc))
	for i, c := range conc {
		cs[i] = fmt.Sprintf("c=%d", c)
	}
	return check{Name: name, Verdict: "SKIP", Detail: fmt.Sprintf("not measured: needs %s in -conc, and the rows compared", strings.Join(cs, " and "))}
}

// forwardedChecks: forwarded get/set at least 1×, 2× and 3× memcached's
// ops/s at c=1, 16 and 64, with a p99 no worse than memcached's.
func forwardedChecks(o options, find func(string, int) *cell) []check {
	var out []check
	for _, t := range []struct {
		conc int
		x    float64
	}{{concSingle, 1}, {concTarget, 2}, {concHigh, 3}} {
		name := fmt.Sprintf("forwarded get/set %s, Replicas %d, ≥ %g× memcached ops/s at c=%d, p99 no worse", o.ratio, o.replicas, t.x, t.conc)
		fw, mc := find(kindForwarded, t.conc), find(kindMemcached, t.conc)
		if fw == nil || mc == nil {
			out = append(out, notMeasured(name, t.conc))
			continue
		}
		x := medianRatio(fw, mc)
		ok := x >= t.x && fw.Summary.P99 <= mc.Summary.P99
		out = append(out, check{Name: name, Verdict: verdict(ok), Detail: fmt.Sprintf("%.2f× memcached (%s vs %s ops/s); p99 %.0f µs vs %.0f µs",
			x, si(fw.Summary.OpsPerSec), si(mc.Summary.OpsPerSec), fw.Summary.P99, mc.Summary.P99)})
	}
	return out
}

// localChecks: an owner-local Get at c=1 takes at most 2× the time of a
// sync.Map Load and 1.5× that of an otter GetIfPresent, and owner-local
// Gets at c=16 make at least 1.8× the ops/s of c=1.
func localChecks(find func(string, int) *cell) []check {
	var out []check
	lg := find(kindLocalGet, concSingle)
	for _, f := range []struct {
		kind, name string
		x          float64
	}{{kindFloor, "a sync.Map Get", 2}, {kindOtter, "an otter Get", 1.5}} {
		name := fmt.Sprintf("owner-local Get ≤ %g× %s (time per op at c=%d)", f.x, f.name, concSingle)
		fl := find(f.kind, concSingle)
		if lg == nil || fl == nil {
			out = append(out, notMeasured(name, concSingle))
			continue
		}
		x := medianRatio(fl, lg) // ops/s of the floor over ours: our time over its
		out = append(out, check{Name: name, Verdict: verdict(x <= f.x), Detail: fmt.Sprintf("%.0f ns vs %.0f ns: %.2f×", lg.Summary.MeanLatency, fl.Summary.MeanLatency, x)})
	}
	name := fmt.Sprintf("owner-local Get ops/s at c=%d ≥ 1.8× c=%d", concTarget, concSingle)
	if lg16 := find(kindLocalGet, concTarget); lg == nil || lg16 == nil {
		out = append(out, notMeasured(name, concSingle, concTarget))
	} else {
		x := medianRatio(lg16, lg)
		out = append(out, check{Name: name, Verdict: verdict(x >= 1.8), Detail: fmt.Sprintf("%.2f× (%s vs %s ops/s)", x, si(lg16.Summary.OpsPerSec), si(lg.Summary.OpsPerSec))})
	}
	return out
}

// batchCheck: GetMulti of 100 keys at least 1.5× the keys/s of Redis's
// MGET at c=16; the ratio to memcached's GetMulti is reported beside it.
func batchCheck(find func(string, int) *cell) check {
	name := fmt.Sprintf("GetMulti(%d) ≥ 1.5× Redis MGET(%[1]d) keys/s at c=%d", batchSize, concTarget)
	gm, rd := find(kindBatch, concTarget), find(kindBatchRedis, concTarget)
	if gm == nil || rd == nil {
		return notMeasured(name, concTarget)
	}
	var few string
	if gm.Batch != batchSize {
		few = fmt.Sprintf("only %d keys a call, as there are no more; ", gm.Batch)
	}
	x := medianRatio(gm, rd)
	vsMC := "memcached GetMulti not measured"
	if mc := find(kindBatchMC, concTarget); mc != nil {
		vsMC = fmt.Sprintf("%.2f× memcached GetMulti (%s keys/s, p99 %.0f µs)", medianRatio(gm, mc), si(mc.Summary.OpsPerSec), mc.Summary.P99)
	}
	return check{Name: name, Verdict: verdict(x >= 1.5), Detail: fmt.Sprintf("%s%.2f× Redis (%s vs %s keys/s; p99 per call %.0f µs vs %.0f µs); %s",
		few, x, si(gm.Summary.OpsPerSec), si(rd.Summary.OpsPerSec), gm.Summary.P99, rd.Summary.P99, vsMC)}
}

// clusterCheck: load from every process at once at least 3× memcached's
// ops/s at c=16.
func clusterCheck(o options, find func(string, int) *cell) check {
	name := fmt.Sprintf("%s keys from all %d processes ≥ 3× memcached at c=%d", o.dist, o.nodes, concTarget)
	cl, mc := find(kindCluster, concTarget), find(kindMemcached, concTarget)
	if cl == nil || mc == nil {
		return notMeasured(name, concTarget)
	}
	x := medianRatio(cl, mc)
	return check{Name: name, Verdict: verdict(x >= 3), Detail: fmt.Sprintf("%.2f× memcached (%s vs %s ops/s)", x, si(cl.Summary.OpsPerSec), si(mc.Summary.OpsPerSec))}
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// putCost compares forwarded writes with -replicas copies against one
// copy, at one concurrency. Ops/s ratios are medians of the per-pass
// ratios, latency ratios those of the medians.
type putCost struct {
	Conc     int     `json:"conc"`
	Replicas int     `json:"replicas"`
	OpsRatio float64 `json:"set_ops_ratio"`
	P50Ratio float64 `json:"set_p50_ratio"`
	P99Ratio float64 `json:"set_p99_ratio"`
	MixRatio float64 `json:"mix_ops_ratio,omitempty"` // forwarded get/set: Replicas over 1
	set, one *cell   // the set-only cells, for the text
}

// putCosts compares the replicas scenario's cells at each concurrency.
func putCosts(o options, find func(string, int) *cell) []putCost {
	var out []putCost
	for _, c := range o.conc {
		set, one := find(kindSet, c), find(kindSetR1, c)
		if set == nil || one == nil {
			continue
		}
		pc := putCost{Conc: c, Replicas: o.replicas, set: set, one: one,
			OpsRatio: medianRatio(set, one),
			P50Ratio: ratioOf(set.Summary.P50, one.Summary.P50),
			P99Ratio: ratioOf(set.Summary.P99, one.Summary.P99),
		}
		if mix, mix1 := find(kindForwarded, c), find(kindForwardedR1, c); mix != nil && mix1 != nil {
			pc.MixRatio = medianRatio(mix, mix1)
		}
		out = append(out, pc)
	}
	return out
}

// medianRatio is the median over the passes of c's ops/s over base's.
func medianRatio(c, base *cell) float64 {
	var xs []float64
	for i := range c.Passes {
		if x := passRatio(c, base, i); x != 0 {
			xs = append(xs, x)
		}
	}
	return median(xs)
}

// eventChecks judges the join and kill targets on the medians over the
// runs that completed.
func eventChecks(r *report) []check {
	var out []check
	if len(r.Join) > 0 {
		var ok []joinRun
		for _, j := range r.Join {
			if j.Err == "" {
				ok = append(ok, j)
			}
		}
		out = append(out, joinChecks(r.Join, ok)...)
	}
	seen := map[string]bool{}
	for _, k := range r.Kill {
		if !seen[k.Gossip] {
			seen[k.Gossip] = true
			out = append(out, killCheck(r.Kill, k.Gossip))
		}
	}
	return out
}

func joinChecks(all, ok []joinRun) []check {
	name := fmt.Sprintf("join of a node to %d holding %d pairs: p99 of get/set during the move ≤ 2× steady state", all[0].Nodes, all[0].Keys)
	noMiss := "join under load: no miss, no failed call"
	if len(ok) == 0 {
		return []check{{Name: name, Verdict: "FAIL", Detail: "no run completed: " + all[0].Err}, {Name: noMiss, Verdict: "FAIL", Detail: "no run completed"}}
	}
	med := func(f func(joinRun) float64) float64 {
		xs := make([]float64, len(ok))
		for i, j := range ok {
			xs[i] = f(j)
		}
		return median(xs)
	}
	x := med(func(j joinRun) float64 { return j.P99Ratio })
	var misses, errs, ops int64
	for _, j := range ok {
		misses += j.Steady.Misses + j.Move.Misses
		errs += j.Steady.Errors + j.Move.Errors
		ops += j.Steady.Ops + j.Move.Ops
	}
	return []check{
		{Name: name, Verdict: verdict(x <= 2), Detail: fmt.Sprintf("%.0f µs during the move vs %.0f µs steady: %.2f×; %s pairs moved, Safe %.1f s after Join (medians of %d runs)",
			med(func(j joinRun) float64 { return j.Move.P99 }), med(func(j joinRun) float64 { return j.Steady.P99 }), x,
			si(med(func(j joinRun) float64 { return float64(j.PairsMoved) })), med(func(j joinRun) float64 { return j.SafeSecs }), len(ok))},
		{Name: noMiss, Verdict: verdict(misses == 0 && errs == 0), Detail: fmt.Sprintf("%d misses, %d errors in %d ops over %d runs", misses, errs, ops, len(ok))},
	}
}

func killCheck(all []killRun, gossip string) check {
	var ok []killRun
	var first killRun
	for _, k := range all {
		if k.Gossip != gossip {
			continue
		}
		if first.Gossip == "" {
			first = k
		}
		if k.Err == "" {
			ok = append(ok, k)
		}
	}
	name := fmt.Sprintf("SIGKILL of 1 of %d nodes holding %d pairs, %s gossip: Safe again within 2× the failure-detection time", first.Nodes, first.Keys, gossip)
	if len(ok) == 0 {
		return check{Name: name, Verdict: "FAIL", Detail: "no run completed: " + first.Err}
	}
	var ratio, safe, detect, victim []float64
	for _, k := range ok {
		ratio = append(ratio, k.SafeRatio)
		safe = append(safe, k.SafeSecs)
		detect = append(detect, k.DetectSecs)
		victim = append(victim, float64(k.VictimKeys))
	}
	x := median(ratio)
	return check{Name: name, Verdict: verdict(x <= 2), Detail: fmt.Sprintf("Safe %.2f s after the kill, detection %.2f s: %.2f×; the node held %s pairs (medians of %d runs)",
		median(safe), median(detect), x, si(median(victim)), len(ok))}
}
