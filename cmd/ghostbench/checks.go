package main

import (
	"fmt"
	"slices"
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
		if !slices.Contains([]string{kindForwarded, kindForwardedR1, kindLocal, kindCluster}, c.kind) {
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
	r.PutCost = putCosts(o, find)
	if o.wants(scenarioBase) {
		r.Checks = checks(o, find)
	}
	r.Checks = append(r.Checks, eventChecks(r)...)
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
		name := fmt.Sprintf("forwarded Get/Put, Replicas %d, ≥ 1.5× memcached ops/s at c=%d, p99 no worse", o.replicas, c)
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
