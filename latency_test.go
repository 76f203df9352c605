package ghost

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// collectLatencies returns l's histograms by op and route.
func collectLatencies(t *testing.T, l *latencies) map[[2]string]*dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric, 2*latencyOps)
	l.collect(ch)
	close(ch)
	out := map[[2]string]*dto.Histogram{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		var op, route string
		for _, lp := range pb.GetLabel() {
			switch lp.GetName() {
			case "op":
				op = lp.GetValue()
			case "route":
				route = lp.GetValue()
			}
		}
		out[[2]string{op, route}] = pb.GetHistogram()
	}
	return out
}

func TestLatencyHistograms(t *testing.T) {
	l := newLatencies()
	start := time.Now().Add(-3 * time.Millisecond)
	l.observe(OpGet, false, start)
	l.observe(OpPut, true, start)
	l.observe(OpFlush, false, start) // not a key call: ignored
	l.observe(Op(0), true, start)
	got := collectLatencies(t, l)
	if len(got) != 8 {
		t.Errorf("%d histograms, want 8 (4 ops × local, forwarded)", len(got))
	}
	for _, tc := range []struct {
		op, route string
		want      uint64
	}{{"get", "local", 1}, {"get", "forwarded", 0}, {"put", "forwarded", 1}, {"delete", "local", 0}} {
		h := got[[2]string{tc.op, tc.route}]
		if n := h.GetSampleCount(); n != tc.want {
			t.Errorf("%s %s: %d observations, want %d", tc.op, tc.route, n, tc.want)
		}
		if tc.want > 0 && h.GetSampleSum() < 0.003 {
			t.Errorf("%s %s: %vs observed, want ≥ 3ms", tc.op, tc.route, h.GetSampleSum())
		}
	}
}

// Calls counted but not timed are spread over the buckets as the timed
// ones are.
func TestLatencySampledCallsAreScaled(t *testing.T) {
	l := newLatencies()
	l.observe(OpGet, false, time.Now().Add(-3*time.Millisecond))
	l.observe(OpGet, false, time.Now().Add(-30*time.Millisecond))
	for range 14 {
		l.observe(OpGet, false, time.Time{})
	}
	h := collectLatencies(t, l)[[2]string{"get", "local"}]
	if h.GetSampleCount() != 16 {
		t.Fatalf("count %d, want 16", h.GetSampleCount())
	}
	if sum := h.GetSampleSum(); sum < 8*0.033 || sum > 8*0.034 {
		t.Errorf("sum %vs, want 8 × 33ms", sum)
	}
	for _, b := range h.GetBucket() {
		var want uint64
		switch {
		case b.GetUpperBound() >= 0.05:
			want = 16
		case b.GetUpperBound() >= 0.005:
			want = 8
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket ≤ %vs: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}
