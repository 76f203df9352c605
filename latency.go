package ghost

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencies times the key calls a node answers, by operation and by where
// they were served, for the ghost_request_duration_seconds histograms.
//
// Every call is counted. A local read costs less than reading the clock
// twice, so only one in localReadSampling is timed; the histogram's
// buckets and sum are scaled from the timed calls to the count of all of
// them when scraped. Other calls are all timed. Like counter, the counts
// are kept in cells on lines of their own, one picked at random per call.
type latencies struct {
	desc  *prometheus.Desc
	cells [counterCells]latencyCell
}

// localReadSampling: one local read in this many is timed. A power of two.
const localReadSampling = 16

// latencyBounds are the buckets' upper bounds, in seconds. A local call
// takes about a microsecond, a forwarded one tens of microseconds, and one
// that fails over waits for RequestTimeout.
var latencyBounds = [latencyBuckets - 1]float64{
	1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5,
}

// latencyBuckets counts the buckets: one per bound, and one over the last.
const latencyBuckets = 22

const latencyOps = int(OpDelete - OpGet + 1) // get, put, add, delete

type latencyCell struct {
	h [latencyOps][2]latencyCounts // [op-OpGet][0 local, 1 forwarded]
	_ [64]byte
}

type latencyCounts struct {
	calls, timed, nanos atomic.Uint64
	buckets             [latencyBuckets]atomic.Uint64
}

func newLatencies() *latencies {
	return &latencies{desc: newNodeMetricNames().latency.desc()}
}

// timeLocalRead returns the time to time a local read from, or the zero
// time for one that is only counted.
func timeLocalRead() time.Time {
	if rand.Uint32()&(localReadSampling-1) != 0 {
		return time.Time{}
	}
	return time.Now()
}

// observe counts a call of op, and times it from start unless start is
// zero.
func (l *latencies) observe(op Op, forwarded bool, start time.Time) {
	if op < OpGet || op > OpDelete {
		return
	}
	route := 0
	if forwarded {
		route = 1
	}
	c := &l.cells[cell()].h[op-OpGet][route]
	c.calls.Add(1)
	if start.IsZero() {
		return
	}
	d := time.Since(start)
	c.timed.Add(1)
	c.nanos.Add(uint64(max(d, 0)))
	b, _ := slices.BinarySearch(latencyBounds[:], d.Seconds())
	c.buckets[b].Add(1)
}

// collect sends one histogram per op and route.
func (l *latencies) collect(ch chan<- prometheus.Metric) {
	for op := range latencyOps {
		for route, name := range []string{"local", "forwarded"} {
			var calls, timed, nanos uint64
			var buckets [latencyBuckets]uint64
			for i := range l.cells {
				c := &l.cells[i].h[op][route]
				calls += c.calls.Load()
				timed += c.timed.Load()
				nanos += c.nanos.Load()
				for b := range buckets {
					buckets[b] += c.buckets[b].Load()
				}
			}
			scale := 0.0
			if timed > 0 {
				scale = float64(calls) / float64(timed)
			}
			cumulative := make(map[float64]uint64, len(latencyBounds))
			var below uint64
			for b, bound := range latencyBounds {
				below += buckets[b]
				cumulative[bound] = min(uint64(float64(below)*scale+0.5), calls)
			}
			ch <- prometheus.MustNewConstHistogram(l.desc, calls, float64(nanos)*scale/1e9, cumulative, opLabel(OpGet+Op(op)), name)
		}
	}
}
