package main

import (
	"fmt"
	"io"
	"math"
	"slices"
)

// passResult is what one cell measured in one pass, summed over the
// processes that ran its load.
type passResult struct {
	Pass        int     `json:"pass"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	HitRate     float64 `json:"hit_rate"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p999_us"`
	MeanLatency float64 `json:"mean_latency_ns"` // concurrency / per-process ops/s: time per op as a caller sees it
	CPUClient   float64 `json:"cpu_client_us_per_op"`
	CPUServer   float64 `json:"cpu_server_us_per_op"`
	Ratios      *ratios `json:"ratios,omitempty"` // this pass against memcached and Redis
	// ForwardedPerOp is the calls the load processes' nodes sent to other
	// members, per op (GhostDB rows).
	ForwardedPerOp float64 `json:"forwarded_per_op,omitempty"`
	// NearHitsPerGet and NearReadsPerGet are the load processes' Gets
	// answered from their near caches, and sent asking for a near lease.
	NearHitsPerGet  float64 `json:"near_hits_per_get,omitempty"`
	NearReadsPerGet float64 `json:"near_reads_per_get,omitempty"`
	FirstError      string  `json:"first_error,omitempty"`
}

// ratios compares a GhostDB cell with the same workload on memcached and
// Redis: ops/s of GhostDB over theirs. Zero means not measured.
type ratios struct {
	Memcached float64 `json:"vs_memcached,omitempty"`
	Redis     float64 `json:"vs_redis,omitempty"`
	Floor     float64 `json:"vs_floor,omitempty"` // the Go request/response over loopback (floor.go)
}

// summary condenses the passes of a cell: medians, with the range of
// ops/s.
type summary struct {
	OpsPerSec    float64 `json:"ops_per_sec_median"`
	OpsPerSecMin float64 `json:"ops_per_sec_min"`
	OpsPerSecMax float64 `json:"ops_per_sec_max"`
	P50          float64 `json:"p50_us"`
	P99          float64 `json:"p99_us"`
	P999         float64 `json:"p999_us"`
	MeanLatency  float64 `json:"mean_latency_ns"`
	CPUClient    float64 `json:"cpu_client_us_per_op"`
	CPUServer    float64 `json:"cpu_server_us_per_op"`
	Errors       int64   `json:"errors"`
	HitRate      float64 `json:"hit_rate"`
	Ratios       *ratios `json:"ratios,omitempty"`
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianOf returns the median of f over the passes, leaving out the zero
// values f gives for passes where it was not measured.
func medianOf(passes []passResult, f func(passResult) float64) float64 {
	var xs []float64
	for _, p := range passes {
		if v := f(p); v != 0 {
			xs = append(xs, v)
		}
	}
	return median(xs)
}

// summarize condenses the passes of one cell.
func summarize(passes []passResult) summary {
	var s summary
	if len(passes) == 0 {
		return s
	}
	s.OpsPerSecMin = math.Inf(1)
	for _, p := range passes {
		s.OpsPerSecMin = min(s.OpsPerSecMin, p.OpsPerSec)
		s.OpsPerSecMax = max(s.OpsPerSecMax, p.OpsPerSec)
		s.Errors += p.Errors
	}
	s.OpsPerSec = medianOf(passes, func(p passResult) float64 { return p.OpsPerSec })
	s.P50 = medianOf(passes, func(p passResult) float64 { return p.P50 })
	s.P99 = medianOf(passes, func(p passResult) float64 { return p.P99 })
	s.P999 = medianOf(passes, func(p passResult) float64 { return p.P999 })
	s.MeanLatency = medianOf(passes, func(p passResult) float64 { return p.MeanLatency })
	s.CPUClient = medianOf(passes, func(p passResult) float64 { return p.CPUClient })
	s.CPUServer = medianOf(passes, func(p passResult) float64 { return p.CPUServer })
	s.HitRate = medianOf(passes, func(p passResult) float64 { return p.HitRate })
	if passes[0].Ratios != nil {
		s.Ratios = &ratios{
			Memcached: medianOf(passes, func(p passResult) float64 { return p.Ratios.Memcached }),
			Redis:     medianOf(passes, func(p passResult) float64 { return p.Ratios.Redis }),
			Floor:     medianOf(passes, func(p passResult) float64 { return p.Ratios.Floor }),
		}
	}
	return s
}

// check is one of the performance targets, judged on the
// medians.
type check struct {
	Name    string `json:"name"`
	Verdict string `json:"verdict"` // PASS, FAIL or SKIP (not measured)
	Detail  string `json:"detail"`
}

// writeMarkdown prints the results as a Markdown table, the checks after
// it.
func writeMarkdown(w io.Writer, r *report) {
	if len(r.Cells) > 0 {
		fmt.Fprintf(w, "GhostDB benchmark, %s: %d keys, %d-byte values, get:set %s, %s keys, %v per cell after %v warm-up, %d passes, %d GhostDB processes, Replicas %d.\n\n",
			r.Meta.Date, r.Meta.Keys, r.Meta.ValueSize, r.Meta.Ratio, r.Meta.Dist, r.Meta.Duration, r.Meta.Warmup, r.Meta.Passes, r.Meta.Nodes, r.Meta.Replicas)
	} else {
		fmt.Fprintf(w, "GhostDB replication events, %s: %d-byte values, Replicas %d.\n\n", r.Meta.Date, r.Meta.ValueSize, r.Meta.Replicas)
	}
	fmt.Fprintf(w, "Machine: %s, %d cores; %s; %s; %s.\n\n", r.Meta.CPU, r.Meta.Cores, r.Meta.GoVersion, orNone(r.Meta.Memcached, "memcached not run"), orNone(r.Meta.Redis, "Redis not run"))
	writeCells(w, r.Cells)
	writeReplication(w, r)
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%s %s: %s\n", c.Verdict, c.Name, c.Detail)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
}

// writeCells prints the table of the cells, when there are any.
func writeCells(w io.Writer, cells []*cell) {
	if len(cells) == 0 {
		return
	}
	fmt.Fprintln(w, "| target | scenario | c | ops/s median (min–max) | p50 µs | p99 µs | p99.9 µs | time/op | CPU µs/op client+server | errors | hits | ×memcached | ×Redis | ×floor |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, c := range cells {
		if c.NA != "" {
			fmt.Fprintf(w, "| %s | %s | %s | %s | | | | | | | | | | |\n", c.Target, c.Scenario, concLabel(c.Conc), c.NA)
			continue
		}
		s := c.Summary
		cpu := micros(s.CPUClient) // a cluster's processes are clients and servers at once
		if s.CPUServer != 0 {
			cpu += "+" + micros(s.CPUServer)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s (%s–%s) | %s | %s | %s | %s | %s | %d | %.1f%% | %s | %s | %s |\n",
			c.Target, c.Scenario, concLabel(c.Conc),
			si(s.OpsPerSec), si(s.OpsPerSecMin), si(s.OpsPerSecMax),
			micros(s.P50), micros(s.P99), micros(s.P999), nanos(s.MeanLatency),
			cpu, s.Errors, 100*s.HitRate,
			s.Ratios.column(targetMemcached), s.Ratios.column(targetRedis), s.Ratios.column(targetFloor))
	}
	fmt.Fprintln(w)
	for _, c := range cells {
		if c.Batch > 0 {
			fmt.Fprintf(w, "GetMulti and MGET rows count keys: ops/s, CPU per op and hits are per key; latencies and time/op per call of %d keys.\n\n", c.Batch)
			break
		}
	}
}

func concLabel(c int) string {
	if c == 0 {
		return "–"
	}
	return fmt.Sprint(c)
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// column formats the ratio against target for the table, empty when not
// measured.
func (r *ratios) column(target string) string {
	if r == nil {
		return ""
	}
	v := r.Memcached
	switch target {
	case targetRedis:
		v = r.Redis
	case targetFloor:
		v = r.Floor
	}
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", v)
}

// si formats a count with a k or M suffix and three significant digits.
func si(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3g", v/1e6) + "M"
	case a >= 1e3:
		return fmt.Sprintf("%.3g", v/1e3) + "k"
	}
	return fmt.Sprintf("%.3g", v)
}

// micros formats microseconds with three significant digits at most, and
// no more than two decimals.
func micros(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// nanos formats a time in nanoseconds as ns, µs or ms.
func nanos(v float64) string {
	switch {
	case v >= 1e6:
		return micros(v/1e6) + " ms"
	case v >= 1e3:
		return micros(v/1e3) + " µs"
	}
	return fmt.Sprintf("%.0f ns", v)
}
