package ghost

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// Micro-benchmarks of the layers a call goes through: the store, the wire
// encoding, a node serving its own keys, and a call forwarded to another
// node over loopback TCP. cmd/ghostbench measures whole clusters against
// memcached and Redis.

// benchKeys is how many distinct keys the benchmarks cycle through.
const benchKeys = 10_000

// benchValue is a 100-byte value, the size ghostbench uses by default.
var benchValue = bytes.Repeat([]byte("v"), 100)

// keys returns n key names with prefix.
func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s:%08d", prefix, i)
	}
	return out
}

// parallel runs op under b.RunParallel, each goroutine walking keys from
// its own starting point.
func parallel(b *testing.B, keys []string, op func(key string)) {
	b.Helper()
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919))
		for pb.Next() {
			op(keys[i%len(keys)])
			i++
		}
	})
}

func BenchmarkStore(b *testing.B) {
	s := newStore(271, 1<<20, 1<<30, &watchdog{}, func() int64 { return time.Now().UnixNano() })
	part := func(k string) int { return int(xxhash.Sum64String(k) % 271) } // as Node.partitionOf
	hits, misses := keys("hit", benchKeys), keys("miss", benchKeys)
	for _, k := range hits {
		s.set(part(k), k, benchValue, 0, false)
	}
	b.Run("GetHit", func(b *testing.B) {
		parallel(b, hits, func(k string) {
			if _, ok := s.get(part(k), k); !ok {
				b.Fatal("miss")
			}
		})
	})
	b.Run("GetMiss", func(b *testing.B) {
		parallel(b, misses, func(k string) {
			if _, ok := s.get(part(k), k); ok {
				b.Fatal("hit")
			}
		})
	})
	b.Run("Put", func(b *testing.B) {
		parallel(b, hits, func(k string) { s.set(part(k), k, benchValue, 0, false) })
	})
}

// BenchmarkSyncMapGet is the floor for a local Get: a sync.Map load.
func BenchmarkSyncMapGet(b *testing.B) {
	var m sync.Map
	ks := keys("hit", benchKeys)
	for _, k := range ks {
		m.Store(k, benchValue)
	}
	parallel(b, ks, func(k string) {
		if _, ok := m.Load(k); !ok {
			b.Fatal("miss")
		}
	})
}

func BenchmarkEncodeRequest(b *testing.B) {
	a := &appender{}
	enc := msgpack.NewEncoder(a)
	req := &request{id: 42, op: OpPut, key: "key:00000042", value: benchValue, ttl: int64(NoExpiry)}
	b.ReportAllocs()
	for b.Loop() {
		a.b = a.b[:0]
		encodeRequest(a, enc, req)
	}
	b.SetBytes(int64(len(a.b)))
}

func BenchmarkDecodeRequest(b *testing.B) {
	a := &appender{}
	encodeRequest(a, msgpack.NewEncoder(a), &request{id: 42, op: OpPut, key: "key:00000042", value: benchValue, ttl: int64(NoExpiry)})
	body := a.b[4:] // past the length prefix
	var r msgReader
	var req request
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r.reset(body)
		if err := decodeRequest(&r, &req); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGetPut benchmarks Get (all hits) and Put through from, on keys
// that are already stored.
func benchGetPut(b *testing.B, from *Node, keys []string) {
	b.Helper()
	ctx := context.Background()
	for _, k := range keys {
		if err := from.Put(ctx, k, benchValue, NoExpiry); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Get", func(b *testing.B) {
		parallel(b, keys, func(k string) {
			if _, err := from.Get(ctx, k); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("GetAs", func(b *testing.B) {
		parallel(b, keys, func(k string) {
			if _, err := GetAs[[]byte](ctx, from, k); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("Put", func(b *testing.B) {
		parallel(b, keys, func(k string) {
			if err := from.Put(ctx, k, benchValue, NoExpiry); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkNodeLocal calls a lone node, which owns every key: no network.
func BenchmarkNodeLocal(b *testing.B) {
	for _, tcp := range []bool{false, true} {
		name := "mem"
		if tcp {
			name = "tcp"
		}
		b.Run(name, func(b *testing.B) {
			c := newCluster(b, 1, tcp)
			benchGetPut(b, c.nodes[0], keys("local", benchKeys))
		})
	}
}

// BenchmarkNodeForwarded calls one node of two for keys the other owns:
// every call is one round trip over loopback TCP.
func BenchmarkNodeForwarded(b *testing.B) {
	c := newCluster(b, 2, true)
	from, owner := c.nodes[0], c.nodes[1]
	var remote []string
	for _, k := range keys("fwd", 2*benchKeys) {
		if from.Owner(k) == owner.Addr() {
			remote = append(remote, k)
		}
	}
	if len(remote) == 0 {
		b.Fatal("no key owned by the second node")
	}
	benchGetPut(b, from, remote)
}

// BenchmarkGetMulti reads 100 keys at a time from one node of three, about
// two thirds of them owned by the others: one request to each.
func BenchmarkGetMulti(b *testing.B) {
	c := newCluster(b, 3, true)
	from, ctx := c.nodes[0], context.Background()
	ks := keys("multi", benchKeys)
	pairs := make(map[string]any, len(ks))
	for _, k := range ks {
		pairs[k] = benchValue
	}
	if err := from.PutMulti(ctx, pairs, NoExpiry); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919))
		batch := make([]string, 100)
		for pb.Next() {
			for j := range batch {
				batch[j] = ks[(i*100+j*97)%len(ks)]
			}
			i++
			got, err := from.GetMulti(ctx, batch)
			if err != nil || len(got) != len(batch) {
				b.Fatalf("%d of %d, %v", len(got), len(batch), err)
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "keys/s")
}
