package main

import (
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v, want 2.5", m)
	}
}

// TestFinish checks ratios and verdicts on made-up figures: each target
// once met and once missed, one of them on p99 alone.
func TestFinish(t *testing.T) {
	c := func(kind string, conc int, opsPerSec, p99 float64) *cell {
		return &cell{kind: kind, Conc: conc, Passes: []passResult{{OpsPerSec: opsPerSec, P99: p99, MeanLatency: float64(conc) / opsPerSec * 1e9}}}
	}
	r := &report{Cells: []*cell{
		c(kindMemcached, 1, 100, 50),
		c(kindForwarded, 1, 120, 40), // 1.2× ≥ 1×
		c(kindLocalGet, 1, 1e6, 1),
		c(kindFloor, 1, 2.5e6, 1), // 2.5× the time of a sync.Map Get > 2×
		c(kindOtter, 1, 1.5e6, 1), // 1.5× the time of an otter Get ≤ 1.5×
		c(kindMemcached, 16, 100, 50),
		c(kindRedis, 16, 80, 50),
		c(kindForwarded, 16, 250, 40), // 2.5× ≥ 2×
		c(kindCluster, 16, 290, 0),    // 2.9× < 3×
		c(kindLocalGet, 16, 1.9e6, 1), // 1.9× c=1 ≥ 1.8×
		c(kindBatchMC, 16, 800, 900),
		c(kindBatch, 16, 1600, 700), // 1.6× Redis ≥ 1.5×
		c(kindBatchRedis, 16, 1000, 800),
		c(kindMemcached, 64, 100, 50),
		c(kindForwarded, 64, 400, 60), // 4× ≥ 3×, but p99 60 > 50
		{kind: kindBatch, Conc: 64, NA: "n/a"},
	}}
	finish(options{conc: []int{1, 16, 64}, nodes: 3, replicas: 2, ratio: "9:1", dist: "uniform", scenarios: []string{scenarioBase}}, r)
	if got := r.Cells[7].Summary.Ratios; got == nil || got.Memcached != 2.5 || got.Redis != 3.125 {
		t.Errorf("forwarded ratios %+v, want 2.5 and 3.125", got)
	}
	if got := r.Cells[11].Summary.Ratios; got == nil || got.Memcached != 2 || got.Redis != 1.6 {
		t.Errorf("GetMulti ratios %+v, want 2 and 1.6 (against GetMulti and MGET)", got)
	}
	if r.Cells[0].Summary.Ratios != nil || r.Cells[3].Summary.Ratios != nil || r.Cells[15].Summary != nil {
		t.Error("ratios on a baseline or a floor, or a summary on an n/a cell")
	}
	var verdicts []string
	for _, c := range r.Checks {
		verdicts = append(verdicts, c.Verdict)
	}
	want := []string{"PASS", "PASS", "FAIL", "FAIL", "PASS", "PASS", "PASS", "FAIL"}
	if !slices.Equal(verdicts, want) {
		t.Errorf("verdicts %v, want %v: %+v", verdicts, want, r.Checks)
	}
}
