package ghost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// batchPairs returns count pairs key-i → i.
func batchPairs(prefix string, count int) (map[string]any, []string) {
	pairs := make(map[string]any, count)
	keys := make([]string, count)
	for i := range count {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
		pairs[keys[i]] = int64(i)
	}
	return pairs, keys
}

func TestBatchCalls(t *testing.T) {
	forEachCluster(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		first, last := c.nodes[0], c.nodes[len(c.nodes)-1]
		pairs, keys := batchPairs("b", 300)
		if err := first.PutMulti(ctx, pairs, NoExpiry); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"b-0", "b-150", "b-299"} { // single calls see the batch's writes
			if it, err := last.Get(ctx, k); err != nil || it.Value != pairs[k] {
				t.Fatalf("Get %s = %v, %v; want %v", k, it.Value, err, pairs[k])
			}
		}
		got, err := last.GetMulti(ctx, append(keys, "absent-1", "absent-2", "b-7"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(keys) {
			t.Fatalf("GetMulti returned %d pairs, want %d (misses absent)", len(got), len(keys))
		}
		for _, k := range keys {
			if got[k].Key != k || got[k].Value != pairs[k] {
				t.Fatalf("GetMulti %s = %+v, want %v", k, got[k], pairs[k])
			}
		}
		var v int64
		if err := got["b-42"].Decode(&v); err != nil || v != 42 {
			t.Fatalf("Decode = %d, %v", v, err)
		}

		err = first.DeleteMulti(ctx, []string{"b-1", "b-2", "b-3", "absent-1"})
		var be *BatchError
		if !errors.As(err, &be) || len(be.Keys) != 1 || !errors.Is(be.Keys["absent-1"], ErrNotFound) || !errors.Is(err, ErrNotFound) {
			t.Fatalf("DeleteMulti of one absent key: %v", err)
		}
		got, err = first.GetMulti(ctx, []string{"b-1", "b-2", "b-3", "b-4"})
		if err != nil || len(got) != 1 || got["b-4"].Value != int64(4) {
			t.Fatalf("GetMulti after DeleteMulti = %v, %v", got, err)
		}
		if got, err := first.GetMulti(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("GetMulti of no keys = %v, %v", got, err)
		}
	})
}

func TestBatchReportsBadKeysAndValues(t *testing.T) {
	c := newCluster(t, 2, false)
	n, ctx := c.nodes[0], context.Background()
	long := strings.Repeat("k", MaxKeyLen+1)
	err := n.PutMulti(ctx, map[string]any{
		"good": "v", "": "empty key", long: "long key",
		"huge": strings.Repeat("x", n.cfg.MaxValueSize), "bad-type": make(chan int),
	}, NoExpiry)
	var be *BatchError
	if !errors.As(err, &be) || len(be.Keys) != 4 {
		t.Fatalf("PutMulti with 4 bad pairs: %v", err)
	}
	if !errors.Is(be.Keys[""], ErrKey) || !errors.Is(be.Keys[long], ErrKey) || !errors.Is(be.Keys["huge"], ErrValueTooLarge) || be.Keys["bad-type"] == nil {
		t.Fatalf("PutMulti errors: %v", be.Keys)
	}
	if !errors.Is(err, ErrKey) || !errors.Is(err, ErrValueTooLarge) || be.Op != OpPut {
		t.Fatalf("errors.Is through the BatchError: %v", err)
	}
	got, err := n.GetMulti(ctx, []string{"good", "", "\xff", "huge"})
	if !errors.Is(err, ErrKey) || !errors.As(err, &be) || len(be.Keys) != 2 {
		t.Fatalf("GetMulti with 2 bad keys: %v", err)
	}
	if len(got) != 1 || got["good"].Value != "v" {
		t.Fatalf("the good key was not served alongside the bad ones: %v", got)
	}
	if err := n.PutMulti(ctx, map[string]any{"k": 1}, -time.Second); err == nil {
		t.Fatal("PutMulti with a negative ttl succeeded")
	}
}

// A reply that cannot carry every value asked for in one frame carries
// what fits; the caller asks again for the rest.
func TestBatchReplyLargerThanAFrame(t *testing.T) {
	c := newCluster(t, 2, false, func(cfg *Config) { cfg.MaxValueSize = 1000; cfg.MaxFrameSize = 8 << 10 })
	from, owner := c.nodes[0], c.nodes[1]
	ctx := context.Background()
	var keys []string
	pairs := map[string]any{}
	for i := 0; len(keys) < 100; i++ {
		k := fmt.Sprint("big-", i)
		if from.Owner(k) == owner.Addr() {
			keys = append(keys, k)
			pairs[k] = strings.Repeat("v", 900)
		}
	}
	if err := from.PutMulti(ctx, pairs, NoExpiry); err != nil {
		t.Fatal(err)
	}
	got, err := from.GetMulti(ctx, keys)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("GetMulti of 100 values of 900 bytes, 8 KiB frames: %d pairs, %v", len(got), err)
	}
}

// A batch fails over as single calls do: with a node down, its keys are
// read from their backups, and writes reach the new primaries once the
// cluster has noticed; nothing acknowledged is lost.
func TestBatchFailsOver(t *testing.T) {
	c := newCluster(t, 3, true, fastFailureDetection)
	ctx := context.Background()
	from, victim := c.nodes[0], c.nodes[2]
	pairs, keys := batchPairs("fo", 200)
	if err := from.PutMulti(ctx, pairs, NoExpiry); err != nil {
		t.Fatal(err)
	}
	victim.halt()
	got, err := from.GetMulti(ctx, keys)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("GetMulti with a node down: %d of %d pairs, %v", len(got), len(keys), err)
	}
	for k, v := range pairs {
		pairs[k] = v.(int64) + 1000
	}
	if err := from.PutMulti(ctx, pairs, NoExpiry); err != nil {
		t.Fatalf("PutMulti while the cluster replaces a dead node: %v", err)
	}
	c.waitConverged()
	for _, n := range c.live() {
		got, err := n.GetMulti(ctx, keys)
		if err != nil || len(got) != len(keys) {
			t.Fatalf("GetMulti via %s: %d pairs, %v", n.Addr(), len(got), err)
		}
		for k, it := range got {
			if it.Value != pairs[k] {
				t.Fatalf("%s via %s = %v, acknowledged %v", k, n.Addr(), it.Value, pairs[k])
			}
		}
		for _, k := range keys {
			if copies := c.copiesOf(k); copies != 2 {
				t.Fatalf("%s has %d copies, want 2", k, copies)
			}
		}
	}
}

func TestBatchOnClosedNode(t *testing.T) {
	c := newCluster(t, 1, false)
	n := c.nodes[0]
	n.Close()
	if _, err := n.GetMulti(context.Background(), []string{"a"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetMulti on a closed node: %v", err)
	}
}

// Hostile batch payloads are refused with an error reply; the node keeps
// serving.
func TestBatchRefusesMalformedPayloads(t *testing.T) {
	c := newCluster(t, 1, false)
	n := c.nodes[0]
	for name, payload := range map[string][]byte{
		"empty":                   nil,
		"not an array":            {0xc3},
		"even fields":             encodeBatchRequests(OpGet, []request{{key: "a"}})[:1],
		"flush batch":             encodeBatchRequests(OpFlush, []request{{key: "a"}}),
		"huge count":              {0xdd, 0xff, 0xff, 0xff, 0xff},
		"truncated":               encodeBatchRequests(OpPut, []request{{key: "a", value: []byte{1}}})[:4],
		"writes flagged as reads": encodeBatchRequests(OpPut, []request{{key: "a", value: []byte{1}}}),
	} {
		resp := n.serveBatch(context.Background(), &request{op: opBatch, value: payload, flags: uint8(OpGet)})
		if resp.status != statusError {
			t.Errorf("%s: status %d, want an error", name, resp.status)
		}
	}
	if _, err := decodeBatchReplies([]byte{0x94, 0, 0xc4, 0xff}, 1); err == nil {
		t.Error("a truncated reply decoded")
	}
	if err := n.Put(context.Background(), "still", "serving", NoExpiry); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatchRequests(OpPut, []request{{key: "a", value: []byte{1}}, {key: "b", value: []byte{0xc0}}}))
	f.Add(encodeBatchReplies([]response{{status: statusOK, value: []byte{1}}, {status: statusMiss}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeBatchRequests(b, 0, 0)
		_, _ = decodeBatchReplies(b, 2)
	})
}

// startBatchWriters is startWriters with batches: each writer puts, and now
// and then deletes, 10 keys of its own at a time.
func (c *cluster) startBatchWriters(l *ledger, writers, keysEach int) *load {
	return c.runWriters(writers, 11, nil, func(ctx context.Context, w *load, n *Node, rng *rand.Rand, g int, i int64) {
		pairs := map[string]any{}
		for range 10 {
			pairs[fmt.Sprintf("bw%d-%d", g, rng.IntN(keysEach))] = i
		}
		v, err := i, error(nil)
		if i%10 == 0 {
			v, err = deletedValue, n.DeleteMulti(ctx, slices.Collect(maps.Keys(pairs)))
		} else {
			err = n.PutMulti(ctx, pairs, NoExpiry)
		}
		var be *BatchError
		errors.As(err, &be)
		for k := range pairs {
			keyErr := err
			if be != nil {
				keyErr = be.Keys[k] // nil: this key succeeded
			}
			w.note(l, k, v, keyErr)
		}
	})
}

// A batch's writes are acknowledged key by key, as single writes are: none
// that was acknowledged is lost when a node crashes under batch load.
func TestBatchWritesSurviveACrash(t *testing.T) {
	c := newCluster(t, 4, false, fastFailureDetection)
	l := newLedger()
	w := c.startBatchWriters(l, 3, 100)
	w.waitOps(t, 500)
	c.nodes[2].halt()
	w.waitOps(t, 500)
	c.waitConverged()
	w.waitOps(t, 200)
	w.halt()
	checkLedger(t, c, l, w)
}

// Byte values a batch returns are the caller's: changing one changes
// neither the cache nor the other values.
func TestBatchValuesAreTheCallers(t *testing.T) {
	c := newCluster(t, 3, false)
	n, ctx := c.nodes[0], context.Background()
	pairs := map[string]any{}
	var keys []string
	for i := range 30 {
		k := fmt.Sprint("bytes-", i)
		keys = append(keys, k)
		pairs[k] = []byte(k)
	}
	if err := n.PutMulti(ctx, pairs, NoExpiry); err != nil {
		t.Fatal(err)
	}
	got, err := n.GetMulti(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range got {
		b := it.Value.([]byte)
		for i := range b {
			b[i] = 'x'
		}
		_ = append(b, "more"...) // must not run into a neighbour
	}
	again, err := n.GetMulti(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if v := again[k].Value.([]byte); string(v) != k {
			t.Fatalf("%s reads %q after the caller changed its copy", k, v)
		}
	}
}
