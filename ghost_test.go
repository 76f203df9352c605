package ghost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childNodeEnv) != "" {
		os.Exit(runChildNode())
	}
	// memberlist.Shutdown does not wait for a probe already under way, nor
	// for an indirect probe it runs for a peer: they end by themselves
	// within a probe timeout. Everything else must be gone.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).handleIndirectPing.func2"))
}

// clusterCases are the cluster shapes every API test runs on.
var clusterCases = []struct {
	name string
	size int
	tcp  bool
}{
	{"mem1", 1, false},
	{"mem3", 3, false},
	{"mem5", 5, false},
	{"tcp1", 1, true},
	{"tcp3", 3, true},
	{"tcp5", 5, true},
}

func forEachCluster(t *testing.T, test func(t *testing.T, c *cluster)) {
	for _, cc := range clusterCases {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			test(t, newCluster(t, cc.size, cc.tcp))
		})
	}
}

func TestKeysSpreadOverOwners(t *testing.T) {
	c := newCluster(t, 5, false)
	owned := map[string]int{}
	for i := range 2000 {
		owned[c.nodes[0].Owner(fmt.Sprint("key-", i))]++
	}
	for _, n := range c.nodes {
		// 400 each on average; consistent's load bound caps a node at
		// 1.25 times its share of partitions, and names are random, so
		// allow a wide band below.
		if o := owned[n.Addr()]; o < 100 || o > 650 {
			t.Errorf("%s owns %d of 2000 keys", n.Addr(), o)
		}
		// Every node computes the same table.
		for i := range 100 {
			k := fmt.Sprint("key-", i)
			if n.Owner(k) != c.nodes[0].Owner(k) {
				t.Fatalf("%s and %s disagree on the owner of %s", n.Addr(), c.nodes[0].Addr(), k)
			}
		}
	}
}

func TestPutGetFromEveryNode(t *testing.T) {
	forEachCluster(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		for _, owner := range c.nodes {
			k := c.keyOwnedBy(owner, "pg")
			for _, from := range c.nodes {
				want := "from " + from.Addr()
				if err := from.Put(ctx, k, want, NoExpiry); err != nil {
					t.Fatalf("Put via %s: %v", from.Addr(), err)
				}
				for _, reader := range c.nodes {
					it, err := reader.Get(ctx, k)
					if err != nil || it.Value != want || it.Key != k {
						t.Fatalf("Get via %s = %+v, %v; want %q", reader.Addr(), it, err, want)
					}
				}
			}
			if copies := c.copiesOf(k); copies != min(2, len(c.nodes)) {
				t.Fatalf("%d nodes hold %s, want %d", copies, k, min(2, len(c.nodes)))
			}
		}
		if _, err := c.nodes[0].Get(ctx, "never-put"); !errors.Is(err, ErrCacheMiss) || Message(OpGet, err) != "CACHE_MISS" {
			t.Fatalf("Get of a missing key: %v", err)
		}
		if len(c.nodes) > 1 && c.nodes[0].stats.forwarded.Load() == 0 {
			t.Fatal("no call was forwarded")
		}
	})
}

type quote struct {
	Ticker string
	Price  float64
	Volume int
	Tags   []string
	At     time.Time
}

func TestValuesRoundTrip(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := context.Background()
	at := time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC)
	cases := []struct {
		in   any
		want any // Item.Value
	}{
		{"text", "text"},
		{42, int64(42)},
		{-7, int64(-7)},
		{uint8(200), int64(200)},
		{3.5, 3.5},
		{float32(1.5), 1.5},
		{true, true},
		{nil, nil},
		{[]byte{1, 2, 3}, []byte{1, 2, 3}},
		{[]int{1, 2}, []any{int64(1), int64(2)}},
		{map[string]int{"a": 1}, map[string]any{"a": int64(1)}},
		{map[int]string{1: "a"}, map[any]any{int64(1): "a"}},
		{map[string]any{"n": map[string]any{"x": 1}}, map[string]any{"n": map[string]any{"x": int64(1)}}},
	}
	for i, tc := range cases {
		k := fmt.Sprint("value-", i)
		from := c.nodes[i%3]
		if err := from.Put(ctx, k, tc.in, NoExpiry); err != nil {
			t.Fatalf("Put %#v: %v", tc.in, err)
		}
		it, err := c.nodes[(i+1)%3].Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(it.Value, tc.want) {
			t.Errorf("Put %#v: Value = %#v (%T), want %#v", tc.in, it.Value, it.Value, tc.want)
		}
	}

	q := quote{Ticker: "AMZN", Price: 181.25, Volume: 1200, Tags: []string{"tech"}, At: at}
	if err := c.nodes[0].Put(ctx, "quote", q, NoExpiry); err != nil {
		t.Fatal(err)
	}
	it, err := c.nodes[2].Get(ctx, "quote")
	if err != nil {
		t.Fatal(err)
	}
	var got quote
	if err := it.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !got.At.Equal(at) {
		t.Fatalf("time %v, want %v", got.At, at)
	}
	got.At = at
	if !reflect.DeepEqual(got, q) {
		t.Fatalf("Decode = %+v, want %+v", got, q)
	}
	if m, ok := it.Value.(map[string]any); !ok || m["Ticker"] != "AMZN" || m["Volume"] != int64(1200) {
		t.Fatalf("struct as Value = %#v", it.Value)
	}
	if err := c.nodes[1].Put(ctx, "time", at, NoExpiry); err != nil {
		t.Fatal(err)
	}
	if it, err := c.nodes[0].Get(ctx, "time"); err != nil || !it.Value.(time.Time).Equal(at) {
		t.Fatalf("time value %#v, %v", it.Value, err)
	}
}

func TestAddDeleteMessages(t *testing.T) {
	forEachCluster(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		for i, owner := range c.nodes {
			k := c.keyOwnedBy(owner, "ad")
			from := c.nodes[(i+1)%len(c.nodes)]
			err := from.Add(ctx, k, 1, NoExpiry)
			if err != nil || Message(OpAdd, err) != "STORED" {
				t.Fatalf("first Add: %v", err)
			}
			err = c.nodes[i].Add(ctx, k, 2, NoExpiry)
			if !errors.Is(err, ErrNotStored) || Message(OpAdd, err) != "NOT_STORED" {
				t.Fatalf("second Add: %v", err)
			}
			if it, _ := from.Get(ctx, k); it.Value != int64(1) {
				t.Fatalf("Add overwrote: %v", it.Value)
			}
			err = from.Put(ctx, k, 3, NoExpiry)
			if err != nil || Message(OpPut, err) != "STORED" {
				t.Fatalf("Put over Add: %v", err)
			}
			err = from.Delete(ctx, k)
			if err != nil || Message(OpDelete, err) != "REMOVED" {
				t.Fatalf("Delete: %v", err)
			}
			err = c.nodes[i].Delete(ctx, k)
			if !errors.Is(err, ErrNotFound) || Message(OpDelete, err) != "NOT_FOUND" {
				t.Fatalf("second Delete: %v", err)
			}
			if _, err := from.Get(ctx, k); !errors.Is(err, ErrCacheMiss) {
				t.Fatalf("Get after Delete: %v", err)
			}
		}
	})
}

func TestAddRace(t *testing.T) {
	forEachCluster(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, losses := 0, 0
		for g := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.nodes[g%len(c.nodes)].Add(ctx, "contended", g, NoExpiry)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrNotStored):
					losses++
				default:
					t.Errorf("Add: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || losses != 39 {
			t.Fatalf("%d Adds won and %d lost; want exactly one winner", wins, losses)
		}
	})
}

func TestTTL(t *testing.T) {
	forEachCluster(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		last := c.nodes[len(c.nodes)-1]
		if err := c.nodes[0].Put(ctx, "short", "x", 150*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := c.nodes[0].Put(ctx, "forever", "x", NoExpiry); err != nil {
			t.Fatal(err)
		}
		if _, err := last.Get(ctx, "short"); err != nil {
			t.Fatalf("fresh pair: %v", err)
		}
		waitFor(t, 5*time.Second, func() error {
			if _, err := last.Get(ctx, "short"); !errors.Is(err, ErrCacheMiss) {
				return fmt.Errorf("still there: %v", err)
			}
			return nil
		})
		if _, err := last.Get(ctx, "forever"); err != nil {
			t.Fatalf("NoExpiry pair: %v", err)
		}
		// An expired key can be added again.
		if err := last.Add(ctx, "short", "y", NoExpiry); err != nil {
			t.Fatalf("Add over an expired pair: %v", err)
		}
		if err := last.Put(ctx, "bad", "x", -5*time.Second); err == nil {
			t.Fatal("negative ttl accepted")
		}
	})
}

func TestDefaultTTLAndCrawler(t *testing.T) {
	c := newCluster(t, 2, false, func(cfg *Config) {
		cfg.DefaultTTL = 100 * time.Millisecond
		cfg.CrawlerInterval = 20 * time.Millisecond
	})
	ctx := context.Background()
	for i := range 20 {
		if err := c.nodes[i%2].Put(ctx, fmt.Sprint("d", i), i, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Nobody reads the pairs: the crawler alone must remove them.
	waitFor(t, 5*time.Second, func() error {
		for _, n := range c.nodes {
			if l := n.store.len(); l != 0 {
				return fmt.Errorf("%s still holds %d pairs", n.Addr(), l)
			}
		}
		return nil
	})
	var expired uint64
	for _, n := range c.nodes {
		expired += n.stats.expired.Load()
	}
	if expired != 40 { // both copies of each pair expire
		t.Fatalf("Expired = %d, want 40", expired)
	}
}

func TestLRUEvictionAtMaxKeys(t *testing.T) {
	c := newCluster(t, 1, false, func(cfg *Config) { cfg.MaxKeys = 100 })
	n, ctx := c.nodes[0], context.Background()
	for i := range 100 {
		if err := n.Put(ctx, fmt.Sprint(i), i, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Get(ctx, "0"); err != nil { // 0 is now the most recently used
		t.Fatal(err)
	}
	for i := 100; i < 110; i++ {
		if err := n.Put(ctx, fmt.Sprint(i), i, NoExpiry); err != nil {
			t.Fatal(err)
		}
		if l := n.store.len(); l > 100 {
			t.Fatalf("holds %d pairs, MaxKeys 100", l)
		}
	}
	for i := 1; i <= 10; i++ {
		if _, err := n.Get(ctx, fmt.Sprint(i)); !errors.Is(err, ErrCacheMiss) {
			t.Fatalf("pair %d should have been evicted: %v", i, err)
		}
	}
	for _, k := range []int{0, 11, 50, 109} {
		if _, err := n.Get(ctx, fmt.Sprint(k)); err != nil {
			t.Fatalf("pair %d evicted out of LRU order: %v", k, err)
		}
	}
	if ev := n.stats.evicted.Load(); ev != 10 {
		t.Fatalf("Evicted = %d, want 10", ev)
	}
}

func TestFlushEmptiesEveryNode(t *testing.T) {
	forEachCluster(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		for i := range 200 {
			if err := c.nodes[i%len(c.nodes)].Put(ctx, fmt.Sprint("f", i), i, NoExpiry); err != nil {
				t.Fatal(err)
			}
		}
		err := c.nodes[len(c.nodes)-1].Flush(ctx)
		if err != nil || Message(OpFlush, err) != "FLUSHED" {
			t.Fatalf("Flush: %v", err)
		}
		for _, n := range c.nodes {
			if l := n.store.len(); l != 0 {
				t.Fatalf("%s holds %d pairs after Flush", n.Addr(), l)
			}
		}
	})
}

func TestPingAndMetricsListEveryNode(t *testing.T) {
	forEachCluster(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		c.nodes[0].Put(ctx, "m", 1, NoExpiry)
		c.nodes[0].Get(ctx, "m")
		c.nodes[0].Get(ctx, "missing")
		want := c.nodes[0].Members()
		for _, n := range c.nodes {
			up, err := n.Ping(ctx)
			if err != nil || !slices.Equal(up, want) {
				t.Fatalf("Ping via %s = %v, %v; want %v", n.Addr(), up, err, want)
			}
		}
		for _, kind := range []struct {
			name string
			get  func(context.Context) ([]NodeMetrics, error)
			key  string
		}{
			{"snitch", c.nodes[0].SnitchMetrics, "HeapAlloc"},
			{"watchdog", c.nodes[0].WatchdogMetrics, "TotalRequests"},
		} {
			ms, err := kind.get(ctx)
			if err != nil || len(ms) != len(want) {
				t.Fatalf("%s: %d entries, %v", kind.name, len(ms), err)
			}
			var total int64
			for i, m := range ms {
				if m.Node != want[i] || len(m.Data) == 0 {
					t.Fatalf("%s entry %d = %s with %d samples", kind.name, i, m.Node, len(m.Data))
				}
				live := m.Data[len(m.Data)-1]
				if _, ok := live.Figures()[kind.key]; !ok || time.Since(live.Time) > time.Minute {
					t.Fatalf("%s sample lacks %s or is stale: %+v", kind.name, kind.key, live)
				}
				total += live.Figures()["GetRequests"]
			}
			if kind.name == "watchdog" && total != 2 {
				t.Fatalf("GetRequests across the cluster = %d, want 2", total)
			}
		}
	})
}

func TestMetricsHistory(t *testing.T) {
	c := newCluster(t, 1, false, func(cfg *Config) {
		cfg.SnitchInterval = 10 * time.Millisecond
		cfg.WatchdogInterval = 10 * time.Millisecond
		cfg.MetricsHistory = 3
	})
	n, ctx := c.nodes[0], context.Background()
	waitFor(t, 5*time.Second, func() error {
		ms, err := n.WatchdogMetrics(ctx)
		if err != nil {
			return err
		}
		if len(ms[0].Data) != 4 { // three recorded, one live
			return fmt.Errorf("%d samples", len(ms[0].Data))
		}
		d := ms[0].Data
		for i := 1; i < len(d); i++ {
			if d[i].Time.Before(d[i-1].Time) {
				return fmt.Errorf("samples out of order")
			}
		}
		return nil
	})
	ms, _ := n.SnitchMetrics(ctx)
	if b, err := ms[0].Data[0].MarshalJSON(); err != nil || !strings.Contains(string(b), `"Timestamp"`) {
		t.Fatalf("sample JSON %s, %v", b, err)
	}
}

func TestMessage(t *testing.T) {
	cases := []struct {
		op   Op
		err  error
		want string
	}{
		{OpGet, nil, "OK"},
		{OpGet, fmt.Errorf("x: %w", ErrCacheMiss), "CACHE_MISS"},
		{OpPut, nil, "STORED"},
		{OpAdd, nil, "STORED"},
		{OpAdd, ErrNotStored, "NOT_STORED"},
		{OpDelete, nil, "REMOVED"},
		{OpDelete, ErrNotFound, "NOT_FOUND"},
		{OpFlush, nil, "FLUSHED"},
		{OpFlush, fmt.Errorf("%w: node down", ErrFlush), "ERR_FLUSH"},
		{OpPing, nil, "OK"},
		{OpGet, ErrKey, ErrKey.Error()},
	}
	for _, tc := range cases {
		if got := Message(tc.op, tc.err); got != tc.want {
			t.Errorf("Message(%d, %v) = %q, want %q", tc.op, tc.err, got, tc.want)
		}
	}
}

func TestBadKeysAndValues(t *testing.T) {
	c := newCluster(t, 2, false, func(cfg *Config) { cfg.MaxValueSize = 1000 })
	n, ctx := c.nodes[0], context.Background()
	for name, key := range map[string]string{
		"empty":     "",
		"too long":  strings.Repeat("k", MaxKeyLen+1),
		"not UTF-8": "bad\xff\xfekey",
	} {
		if _, err := n.Get(ctx, key); !errors.Is(err, ErrKey) {
			t.Errorf("Get with a key %s: %v", name, err)
		}
		if err := n.Put(ctx, key, 1, NoExpiry); !errors.Is(err, ErrKey) {
			t.Errorf("Put with a key %s: %v", name, err)
		}
		if err := n.Add(ctx, key, 1, NoExpiry); !errors.Is(err, ErrKey) {
			t.Errorf("Add with a key %s: %v", name, err)
		}
		if err := n.Delete(ctx, key); !errors.Is(err, ErrKey) {
			t.Errorf("Delete with a key %s: %v", name, err)
		}
	}
	if err := n.Put(ctx, strings.Repeat("k", MaxKeyLen), 1, NoExpiry); err != nil {
		t.Fatalf("a key of exactly MaxKeyLen bytes: %v", err)
	}
	if err := n.Put(ctx, "big", make([]byte, 1000), NoExpiry); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("oversized value: %v", err)
	}
	if err := n.Put(ctx, "unencodable", make(chan int), NoExpiry); err == nil {
		t.Fatal("a channel value was accepted")
	}
	if _, err := n.Get(ctx, "big"); !errors.Is(err, ErrCacheMiss) {
		t.Fatalf("a rejected value was stored: %v", err)
	}
	// The owner checks too, whatever a peer sends.
	resp := n.serve(ctx, &request{op: OpPut, key: "x", value: make([]byte, 2000)})
	if _, err := resp.result(); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("owner accepted an oversized value: %v", err)
	}
	resp = n.serve(ctx, &request{op: OpGet, key: ""})
	if _, err := resp.result(); !errors.Is(err, ErrKey) {
		t.Fatalf("owner accepted an empty key: %v", err)
	}
}
