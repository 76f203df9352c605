package main

import (
	"math"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	for _, v := range []int64{0, 1, 63, 64, 65, 100, 1000, 12345, 1e6, 123456789, 1 << 50, math.MaxInt64} {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, b)
		}
		mid := bucketMid(b)
		if err := math.Abs(float64(mid)-float64(v)) / math.Max(float64(v), 1); err > 1.0/32 {
			t.Errorf("value %d: bucket %d has middle %d, %.1f%% off", v, b, mid, 100*err)
		}
	}
}

func TestQuantile(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	var back histogram
	if err := back.addSparse(h.sparse()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}} {
		got := back.quantile(c.q)
		if math.Abs(float64(got-c.want))/float64(c.want) > 1.0/32 {
			t.Errorf("quantile(%v) = %v, want about %v", c.q, got, c.want)
		}
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v, want 2.5", m)
	}
}
