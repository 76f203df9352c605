package ghost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// checkLedger verifies every acknowledged write from every live node.
func checkLedger(t *testing.T, c *cluster, l *ledger, w *load) {
	t.Helper()
	checked, lost, stale := l.verify(t, c)
	t.Logf("%d writes (%d failed, first: %v), %d reads checked: %d lost, %d stale", w.ops.Load(), w.failed.Load(), w.firstErr.Load(), checked, lost, stale)
	if lost != 0 || stale != 0 {
		t.Fatalf("%d acknowledged writes lost, %d stale", lost, stale)
	}
}

func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(fmt.Sprint("tcp=", tcp), func(t *testing.T) {
			c := newCluster(t, 5, tcp, fastFailureDetection)
			l := newLedger()
			c.preload(l, "pre", 1000)
			w := c.startWriters(l, 4, 200)
			w.waitOps(t, 200)
			// Any one node, then the coordinator (the oldest) once Safe.
			c.nodes[3].halt()
			w.waitOps(t, 200)
			c.waitConverged()
			c.nodes[0].halt()
			w.waitOps(t, 200)
			c.waitConverged()
			w.halt()
			checkLedger(t, c, l, w)
			for _, n := range c.live() {
				if s := n.replicationStats(); s.short != 0 {
					t.Errorf("%s: %d partitions short of copies", n.Addr(), s.short)
				}
			}
		})
	}
}

func TestEveryPairHasItsCopies(t *testing.T) {
	for _, tc := range []struct {
		name           string
		size, replicas int
		want           int
	}{
		{"replicas 1", 3, 1, 1},
		{"replicas 2", 3, 2, 2},
		{"replicas 3 of 5", 5, 3, 3},
		{"replicas above members", 3, 5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, tc.size, false, func(cfg *Config) { cfg.Replicas = tc.replicas })
			ctx := context.Background()
			for i := range 200 {
				if err := c.nodes[i%tc.size].Put(ctx, fmt.Sprint("k", i), i, NoExpiry); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 200 {
				if got := c.copiesOf(fmt.Sprint("k", i)); got != tc.want {
					t.Fatalf("k%d has %d copies, want %d", i, got, tc.want)
				}
			}
		})
	}
}

func TestReplicasOneLosesOnlyTheCrashedNodesPairs(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection, func(cfg *Config) { cfg.Replicas = 1 })
	ctx := context.Background()
	victim := c.nodes[2]
	var onVictim, elsewhere []string
	for i := range 300 {
		k := fmt.Sprint("r1-", i)
		if err := c.nodes[0].Put(ctx, k, i, NoExpiry); err != nil {
			t.Fatal(err)
		}
		if victim.Owner(k) == victim.Addr() {
			onVictim = append(onVictim, k)
		} else {
			elsewhere = append(elsewhere, k)
		}
	}
	victim.halt()
	c.waitConverged()
	for _, k := range elsewhere {
		if _, err := c.nodes[1].Get(ctx, k); err != nil {
			t.Fatalf("Get %s, not on the crashed node: %v", k, err)
		}
	}
	for _, k := range onVictim {
		if _, err := c.nodes[1].Get(ctx, k); !errors.Is(err, ErrCacheMiss) {
			t.Fatalf("Get %s, held only by the crashed node: %v", k, err)
		}
	}
}

func TestWriteFailsWhileABackupIsSilent(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) { cfg.RequestTimeout = 400 * time.Millisecond })
	ctx := context.Background()
	owner := c.nodes[0]
	// A key owned by node 0 whose backup is node 2.
	var k string
	for i := 0; k == ""; i++ {
		cand := fmt.Sprint("silent", i)
		tb := owner.table.Load()
		p := owner.partitionOf(cand)
		if tb.isPrimary(p) && tb.members[tb.owners[p][1]].addr == c.nodes[2].Addr() {
			k = cand
		}
	}
	c.net.Isolate(c.nodes[2].Addr())
	// Gossip (slow in this test) has not declared it dead: the write
	// reaches the owner but cannot be acknowledged.
	if err := owner.Put(ctx, k, "v", NoExpiry); !errors.Is(err, ErrReplication) {
		t.Fatalf("Put with its backup cut off: %v, want ErrReplication", err)
	}
}

// An answer that rests on a write the copies never confirmed is not the
// copies' answer: a delete that finds its own failed delete's tombstone, or
// an Add that finds a failed put's pair, must not be acknowledged as
// NOT_FOUND or NOT_STORED until the copies have that entry. (A node cut off
// from its copies answered NOT_FOUND for keys the rest of the cluster
// still held, so the fault suite found.)
func TestAnswersOnUnconfirmedWritesWaitForTheCopies(t *testing.T) {
	c := newCluster(t, 2, false, func(cfg *Config) { cfg.RequestTimeout = 400 * time.Millisecond })
	ctx := context.Background()
	primary, backup := c.nodes[0], c.nodes[1]
	deleted := c.keyOwnedBy(primary, "deleted")
	added := c.keyOwnedBy(primary, "added")
	if err := primary.Put(ctx, deleted, 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	c.net.Isolate(backup.Addr())
	for i := range 2 {
		if err := primary.Delete(ctx, deleted); !errors.Is(err, ErrReplication) {
			t.Errorf("delete %d with the copy cut off: %v, want ErrReplication", i+1, err)
		}
	}
	if err := primary.Put(ctx, added, 1, NoExpiry); !errors.Is(err, ErrReplication) {
		t.Errorf("put with the copy cut off: %v, want ErrReplication", err)
	}
	if err := primary.Add(ctx, added, 2, NoExpiry); !errors.Is(err, ErrReplication) {
		t.Errorf("add with the copy cut off: %v, want ErrReplication", err)
	}
	c.net.Heal(backup.Addr())
	// The same calls, with the copy back, are answered once it has the
	// entries they rest on.
	waitFor(t, 10*time.Second, func() error {
		if err := primary.Delete(ctx, deleted); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("delete: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err := primary.Add(ctx, added, 2, NoExpiry); !errors.Is(err, ErrNotStored) {
		t.Errorf("add: %v, want ErrNotStored", err)
	}
	p := backup.partitionOf(deleted)
	if _, ok := backup.store.get(p, deleted); ok {
		t.Error("the copy still holds the deleted key")
	}
	raw, ok := backup.store.get(backup.partitionOf(added), added)
	if v, err := decodeValue(raw); !ok || err != nil || v != int64(1) {
		t.Errorf("the copy holds %v (%v) for the added key, want the put's 1", v, err)
	}
}

// A copy that holds a newer version of a key than its primary's write (an
// old primary's write, never acknowledged, decided with a clock ahead)
// says so instead of answering OK for a write it did not apply; the
// primary decides the write again past that version, and the write is on
// every copy when it is acknowledged. Before, the copy answered OK and
// kept its own value: after a failover the acknowledged write was gone.
func TestCopyHoldingANewerVersionSaysSo(t *testing.T) {
	c := newCluster(t, 2, false)
	ctx := context.Background()
	primary, backup := c.nodes[0], c.nodes[1]
	key := c.keyOwnedBy(primary, "newer")
	p := primary.partitionOf(key)
	ahead := primary.store.versions.next() + uint64(time.Hour)
	pt := backup.store.lock(p)
	backup.store.mergeLocked(pt, pairCopy{key: key, value: []byte{0xa3, 'o', 'l', 'd'}, version: ahead})
	pt.mu.Unlock()
	if err := primary.Put(ctx, key, "acknowledged", NoExpiry); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0xa0 | byte(len("acknowledged"))}, "acknowledged"...) // msgpack's string
	for _, n := range c.nodes {
		if v, ok := n.store.get(p, key); !ok || !bytes.Equal(v, want) {
			t.Errorf("%s holds %q after the write was acknowledged", n.Addr(), v)
		}
	}
}
