package main

import (
	"context"
	"sync/atomic"
	"time"
)

// Batch cells: every call gets cmd.Batch distinct keys at once, with
// GhostDB's Node.GetMulti, memcached's GetMulti or Redis's MGET, the call
// a page rendering many items makes. They count keys, not calls, so that
// their ops/s compare with each other whatever a call costs; latencies are
// per call.

// batchSize is the keys of a batch call.
const batchSize = 100

// batchClient is a target with a batch get. Keys absent from the answer
// are misses.
type batchClient interface {
	getMulti(ctx context.Context, keys []string) (hits int, err error)
}

func (c ghostClient) getMulti(ctx context.Context, keys []string) (int, error) {
	items, err := c.node.GetMulti(ctx, keys)
	return len(items), err
}

func (c memcachedClient) getMulti(_ context.Context, keys []string) (int, error) {
	items, err := c.mc.GetMulti(keys)
	return len(items), err
}

func (c redisClient) getMulti(ctx context.Context, keys []string) (int, error) {
	values, err := c.rc.MGet(ctx, keys...).Result()
	hits := 0
	for _, v := range values {
		if v != nil {
			hits++
		}
	}
	return hits, err
}

// batchLoop is one closed-loop load goroutine of batch calls. It times
// every call: one costs far more than reading the clock.
func (w *worker) batchLoop(ctx context.Context, bc batchClient, keys []string, cmd command, id uint64, phase *atomic.Int32, st *loopStats) {
	_, next := w.picker(keys, id)
	batch := make([]string, 0, min(cmd.Batch, len(keys)))
	seen := make(map[string]struct{}, cap(batch))
	for {
		ph := phase.Load()
		if ph == phaseStop {
			return
		}
		batch = pickDistinct(batch[:0], cap(batch), next, seen)
		t0 := time.Now()
		hits, err := bc.getMulti(ctx, batch)
		if ph != phaseMeasure {
			continue
		}
		st.hist.Record(time.Since(t0))
		st.count(int64(len(batch)), int64(len(batch)), int64(hits), err)
	}
}

// pickDistinct appends n keys from next to batch, none twice: a batch call
// answers a key once however often it is asked, so a repeat would count as
// a miss. n must not exceed the keys next picks from.
func pickDistinct(batch []string, n int, next func() string, seen map[string]struct{}) []string {
	clear(seen)
	for len(batch) < n {
		k := next()
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			batch = append(batch, k)
		}
	}
	return batch
}
