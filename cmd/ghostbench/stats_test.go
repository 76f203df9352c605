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

// TestFinish checks ratios and verdicts on made-up figures.
func TestFinish(t *testing.T) {
	one := func(p passResult) []passResult { return []passResult{p} }
	r := &report{Cells: []*cell{
		{kind: kindMemcached, Conc: 16, Passes: one(passResult{OpsPerSec: 100, P99: 50})},
		{kind: kindRedis, Conc: 16, Passes: one(passResult{OpsPerSec: 80, P99: 50})},
		{kind: kindForwarded, Conc: 16, Passes: one(passResult{OpsPerSec: 160, P99: 40})},
		{kind: kindCluster, Conc: 16, Passes: one(passResult{OpsPerSec: 250})},
		{kind: kindLocalGet, Conc: 16, Passes: one(passResult{MeanLatency: 100})},
		{kind: kindFloor, Conc: 16, Passes: one(passResult{MeanLatency: 60})},
		{kind: kindBatch, NA: "n/a"},
	}}
	finish(options{conc: []int{16}, nodes: 3, replicas: 2, scenarios: []string{scenarioBase}}, r)
	if got := r.Cells[2].Summary.Ratios; got == nil || got.Memcached != 1.6 || got.Redis != 2 {
		t.Errorf("forwarded ratios %+v, want 1.6 and 2", got)
	}
	if r.Cells[0].Summary.Ratios != nil || r.Cells[6].Summary != nil {
		t.Error("ratios on a baseline, or a summary on an n/a cell")
	}
	var verdicts []string
	for _, c := range r.Checks {
		verdicts = append(verdicts, c.Verdict)
	}
	if want := []string{"PASS", "PASS", "FAIL"}; !slices.Equal(verdicts, want) {
		t.Errorf("verdicts %v, want %v: %+v", verdicts, want, r.Checks)
	}
}
