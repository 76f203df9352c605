package ghost

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// nearCached is a test tune: a near cache on every node.
func nearCached(cfg *Config) { cfg.NearCacheKeys = 1000 }

// keyAwayFrom returns a key whose copies are all on nodes other than n.
func (c *cluster) keyAwayFrom(n *Node, prefix string) string {
	c.t.Helper()
	for i := range 100000 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		t := n.table.Load()
		if !slices.ContainsFunc(t.owners[n.partitionOf(k)], func(o int) bool { return t.members[o].addr == n.Addr() }) {
			return k
		}
	}
	c.t.Fatalf("no key away from %s", n.Addr())
	return ""
}

func getString(t *testing.T, n *Node, key string) string {
	t.Helper()
	v, err := GetAs[string](context.Background(), n, key)
	if err != nil {
		t.Fatalf("Get %s on %s: %v", key, n.Addr(), err)
	}
	return v
}

// A key read twice from its owner is kept near and served without a hop;
// a write anywhere drops it before it is acknowledged, so the next read
// returns the write.
func TestNearCacheServesAndDropsOnWrite(t *testing.T) {
	c := newCluster(t, 3, false, nearCached)
	ctx := context.Background()
	reader, writer := c.nodes[2], c.nodes[0]
	key := c.keyAwayFrom(reader, "near")
	if err := writer.Put(ctx, key, "one", NoExpiry); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the first read is admitted, the second asks for a lease
		if v := getString(t, reader, key); v != "one" {
			t.Fatalf("read %q, want one", v)
		}
	}
	forwarded := reader.stats.forwarded.Load()
	for range 100 {
		if v := getString(t, reader, key); v != "one" {
			t.Fatalf("read %q, want one", v)
		}
	}
	if got := reader.stats.forwarded.Load() - forwarded; got > 1 { // a lease may end under a slow machine
		t.Errorf("%d reads of a near key left the node", got)
	}
	if hits := reader.watchdogStats().NearHits; hits < 99 {
		t.Errorf("NearHits %d, want the reads after the lease", hits)
	}
	for i, v := range []string{"two", "three"} {
		via := []*Node{writer, c.nodes[1]}[i] // the primary, and a node that forwards
		if err := via.Put(ctx, key, v, NoExpiry); err != nil {
			t.Fatal(err)
		}
		if got := getString(t, reader, key); got != v {
			t.Fatalf("read %q after the write of %q was acknowledged", got, v)
		}
		getString(t, reader, key) // near again
	}
	if err := writer.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Get(ctx, key); !errors.Is(err, ErrCacheMiss) {
		t.Fatalf("Get after Delete: %v, want ErrCacheMiss", err)
	}
	var told int64
	for _, n := range c.nodes {
		told += n.watchdogStats().NearTold
	}
	if told == 0 || reader.watchdogStats().NearDropped == 0 {
		t.Errorf("told %d holders, the reader dropped %d copies", told, reader.watchdogStats().NearDropped)
	}
}

// A holder that cannot be told holds a write up for its lease at most,
// and its copy ends with the lease: it is not served after the write.
func TestNearCacheWriteWaitsOutAnUnreachableHolder(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.NearCacheKeys = 1000
		cfg.NearCacheLease = 300 * time.Millisecond
	})
	ctx := context.Background()
	reader, writer := c.nodes[2], c.nodes[0]
	key := c.keyAwayFrom(reader, "unreachable")
	if err := writer.Put(ctx, key, "one", NoExpiry); err != nil {
		t.Fatal(err)
	}
	getString(t, reader, key)
	getString(t, reader, key)
	// Gossip still sees the reader; no call reaches it.
	c.net.blockConns(reader.Addr())
	if err := writer.Put(ctx, key, "two", NoExpiry); err != nil {
		t.Fatal(err)
	}
	var waited int64
	for _, n := range c.nodes {
		waited += n.watchdogStats().NearWaitedOut
	}
	if waited == 0 {
		t.Error("no write waited out the reader's lease")
	}
	if v, ok := reader.near.get(hashKey(key), key); ok {
		t.Fatalf("the reader still serves %q near after the write", v)
	}
}

// Flush empties the near caches too.
func TestNearCacheFlush(t *testing.T) {
	c := newCluster(t, 3, false, nearCached)
	ctx := context.Background()
	reader := c.nodes[2]
	key := c.keyAwayFrom(reader, "flush")
	if err := c.nodes[0].Put(ctx, key, "one", NoExpiry); err != nil {
		t.Fatal(err)
	}
	getString(t, reader, key)
	getString(t, reader, key)
	if err := c.nodes[1].Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Get(ctx, key); !errors.Is(err, ErrCacheMiss) {
		t.Fatalf("Get after Flush: %v, want ErrCacheMiss", err)
	}
}

// Readers with near caches and writers on other nodes, through a node
// joining (the table changes, primaries move) and a node's death: every
// key's history is linearizable, near hits included.
func TestNearCacheReadsAreLinearizable(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(map[bool]string{false: "memnet", true: "tcp"}[tcp], func(t *testing.T) {
			c := newCluster(t, 3, tcp, nearCached, fastFailureDetection)
			keys := make([]string, 6)
			for i := range keys {
				keys[i] = fmt.Sprint("near-", i)
			}
			r := newRegisterClients(keys)
			writers, readers := c.nodes[:1], c.nodes[1:]
			for _, n := range writers {
				r.start(n, true)
				r.start(n, true)
			}
			for _, n := range readers {
				r.start(n, false)
				r.start(n, false)
			}
			r.waitOps(t, 1500)
			joined := c.add(nearCached, fastFailureDetection)
			r.start(joined, false)
			c.waitConverged()
			r.waitOps(t, 1500)
			c.nodes[1].halt() // a reader, and the primary of some keys
			waitFor(t, 30*time.Second, func() error {
				if m := c.nodes[0].table.Load().members; len(m) != 3 {
					return fmt.Errorf("the table has %d members", len(m))
				}
				return nil
			})
			r.waitOps(t, 1500)
			r.stop()
			var hits int64
			for _, n := range c.live() {
				hits += n.watchdogStats().NearHits
			}
			if hits == 0 {
				t.Error("no read was a near hit")
			}
			t.Logf("%d near hits in %d calls", hits, r.ops.Load())
			r.check(t, "a node joined, then one died")
		})
	}
}

// A near copy read within its lease is renewed before the lease ends, in
// one call per owner, for as long as it is read: it stays near. A write
// still drops it.
func TestNearCacheRenewsLeasesOfKeysInUse(t *testing.T) {
	const lease = 200 * time.Millisecond
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.NearCacheKeys = 1000
		cfg.NearCacheLease = lease
	})
	ctx := context.Background()
	reader, writer := c.nodes[2], c.nodes[0]
	key := c.keyAwayFrom(reader, "renew")
	if err := writer.Put(ctx, key, "one", NoExpiry); err != nil {
		t.Fatal(err)
	}
	getString(t, reader, key)
	getString(t, reader, key)
	forwarded := reader.stats.forwarded.Load()
	for start := time.Now(); time.Since(start) < 10*lease; time.Sleep(lease / 10) {
		if v := getString(t, reader, key); v != "one" {
			t.Fatalf("read %q, want one", v)
		}
	}
	// A renewal late on a loaded machine costs one read.
	if got := reader.stats.forwarded.Load() - forwarded; got > 3 {
		t.Errorf("%d reads over 10 leases left the node", got)
	}
	if err := c.nodes[1].Put(ctx, key, "two", NoExpiry); err != nil {
		t.Fatal(err)
	}
	if v := getString(t, reader, key); v != "two" {
		t.Fatalf("read %q after the write was acknowledged", v)
	}
}

// A renewal request decodes to what was encoded, and garbage is refused
// without a panic.
func FuzzDecodeNearRenewals(f *testing.F) {
	f.Add(appendNearRenewals(nil, "10.0.0.1:7991", []nearRenewal{{key: "a", version: 1}, {key: "price:AMZN", version: 1 << 60}}))
	f.Add(appendNearRenewals(nil, "", nil))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		holder, keys, err := decodeNearRenewals(b)
		if err != nil {
			return
		}
		// Varints may be longer than they need be: compare what they say.
		holder2, keys2, err := decodeNearRenewals(appendNearRenewals(nil, holder, keys))
		if err != nil || holder2 != holder || !slices.Equal(keys2, keys) {
			t.Fatalf("%x decodes to %q %v, which does not decode back (%q %v, %v)", b, holder, keys, holder2, keys2, err)
		}
	})
}
