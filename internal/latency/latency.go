// Package latency counts latencies in a log-linear histogram, for the
// commands that measure GhostDB (ghostbench, ghostchaos). Histograms travel
// between processes in their sparse form.
package latency

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: 2^subBits buckets per power of
// two, so a recorded latency is off by at most 1/32 (about 3%).
const subBits = 5

// buckets covers every int64 nanosecond value.
const buckets = (64 - subBits) << subBits

// Histogram counts latencies in log-linear buckets. The zero value is
// empty and ready to use; it is not safe for concurrent use.
type Histogram struct {
	counts [buckets]int64
	total  int64
}

// bucketOf returns the bucket holding v nanoseconds: values below
// 2^(subBits+1) have a bucket each, larger ones share a bucket with the
// values that agree in their subBits+1 leading bits.
func bucketOf(v int64) int {
	if v < 2<<subBits {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - subBits - 1
	return e<<subBits + int(v>>e)
}

// bucketMid returns the middle of bucket b, in nanoseconds.
func bucketMid(b int) int64 {
	if b < 2<<subBits {
		return int64(b)
	}
	e := b>>subBits - 1
	low := int64(b-e<<subBits) << e
	return low + (int64(1)<<e)/2
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.total++
}

// Count is how many latencies were recorded.
func (h *Histogram) Count() int64 { return h.total }

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// Quantile returns the latency below which a fraction q of the recorded
// ones fall, or 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen int64
	for b, c := range h.counts {
		if seen += c; seen >= rank {
			return time.Duration(bucketMid(b))
		}
	}
	return 0
}

// Sparse returns the non-empty buckets as [bucket, count] pairs: the form
// histograms are sent between processes in.
func (h *Histogram) Sparse() [][2]int64 {
	var out [][2]int64
	for b, c := range h.counts {
		if c != 0 {
			out = append(out, [2]int64{int64(b), c})
		}
	}
	return out
}

// AddSparse adds counts in the form Sparse returns.
func (h *Histogram) AddSparse(pairs [][2]int64) error {
	for _, p := range pairs {
		if p[0] < 0 || p[0] >= buckets || p[1] < 0 {
			return fmt.Errorf("bad histogram bucket %v", p)
		}
		h.counts[p[0]] += p[1]
		h.total += p[1]
	}
	return nil
}

// Bucket is the index of the bucket that d falls in, for callers that keep
// counts in a sparse form of their own.
func Bucket(d time.Duration) int { return bucketOf(int64(d)) }
