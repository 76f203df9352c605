package latency

import (
	"math"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	for _, v := range []int64{0, 1, 63, 64, 65, 100, 1000, 12345, 1e6, 123456789, 1 << 50, math.MaxInt64} {
		b := bucketOf(v)
		if b < 0 || b >= buckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, b)
		}
		mid := bucketMid(b)
		if err := math.Abs(float64(mid)-float64(v)) / math.Max(float64(v), 1); err > 1.0/32 {
			t.Errorf("value %d: bucket %d has middle %d, %.1f%% off", v, b, mid, 100*err)
		}
	}
}

func TestQuantile(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	var back Histogram
	if err := back.AddSparse(h.Sparse()); err != nil {
		t.Fatal(err)
	}
	if back.Count() != 1000 {
		t.Fatalf("Count = %d, want 1000", back.Count())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}} {
		got := back.Quantile(c.q)
		if math.Abs(float64(got-c.want))/float64(c.want) > 1.0/32 {
			t.Errorf("Quantile(%v) = %v, want about %v", c.q, got, c.want)
		}
	}
	var empty Histogram
	if q := empty.Quantile(0.5); q != 0 {
		t.Errorf("empty Quantile = %v, want 0", q)
	}
	if err := back.AddSparse([][2]int64{{-1, 1}}); err == nil {
		t.Error("AddSparse took a negative bucket")
	}
}
