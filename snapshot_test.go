package ghost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// dataDirs gives each of size nodes a DataDir of its own: tune(i, cfg)
// sets slot i's, with an interval long enough that the tests say when a
// snapshot is written (writeSnapshot), as a tick of it would.
func dataDirs(t *testing.T, size int) (dirs []string, tune func(i int, cfg *Config)) {
	for range size {
		dirs = append(dirs, t.TempDir())
	}
	return dirs, func(i int, cfg *Config) {
		cfg.DataDir = dirs[i]
		cfg.SnapshotInterval = time.Hour
	}
}

// inOrder adapts tune to newCluster, which starts slots 0, 1, ... in turn.
func inOrder(tune func(i int, cfg *Config)) func(*Config) {
	i := 0
	return func(cfg *Config) { tune(i, cfg); i++ }
}

func restoredPairs(c *cluster) (sum int64) {
	for _, n := range c.live() {
		sum += n.snapshots.restored.Load()
	}
	return sum
}

// TestWholeClusterRestartsWarm stops every node of a cluster at once,
// gracefully and as a crash after a snapshot, and starts them all again
// on their DataDirs: every acknowledged write comes back, and no deleted
// pair, and no pair (nor an older value of its key) whose TTL ran out.
func TestWholeClusterRestartsWarm(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "close", true: "crash"}[crash], func(t *testing.T) {
			_, tune := dataDirs(t, 3)
			c := newCluster(t, 3, false, inOrder(tune))
			l := newLedger()
			c.preload(l, "pre", 600)
			w := c.startWriters(l, 3, 200) // puts and deletes
			w.waitOps(t, 300)
			w.halt()
			ctx := context.Background()
			for i := range 20 { // overwritten with a TTL that runs out before the restart
				key := fmt.Sprintf("pre-%d", i)
				if err := c.nodes[i%3].Put(ctx, key, int64(-5), time.Millisecond); err != nil {
					t.Fatal(err)
				}
				l.record(key, deletedValue, nil)
			}
			if err := c.nodes[0].Put(ctx, "long", int64(7), time.Hour); err != nil {
				t.Fatal(err)
			}
			l.record("long", 7, nil)
			if crash {
				for _, n := range c.nodes {
					if err := n.writeSnapshot(); err != nil {
						t.Fatal(err)
					}
				}
			}
			c.restartAll(crash, tune)
			if restoredPairs(c) == 0 {
				t.Fatal("no pair was restored")
			}
			checkLedger(t, c, l, w)
			it, err := c.nodes[1].Get(ctx, "long")
			if err != nil || it.Value.(int64) != 7 {
				t.Fatalf("long: %v %v", it.Value, err)
			}
		})
	}
}

// TestRestoreAfterLongAbsenceRevivesNothing: a node whose snapshot is older
// than TombstoneTTL while the rest of the cluster kept running deleting,
// overwriting and expiring its keys brings none of its old pairs back.
func TestRestoreAfterLongAbsenceRevivesNothing(t *testing.T) {
	short := func(cfg *Config) {
		fastFailureDetection(cfg)
		cfg.TombstoneTTL = 200 * time.Millisecond
		cfg.CrawlerInterval = 20 * time.Millisecond
	}
	_, tune := dataDirs(t, 3)
	c := newCluster(t, 3, false, short, inOrder(func(i int, cfg *Config) {
		if i == 2 {
			tune(i, cfg)
		}
	}))
	l := newLedger()
	c.preload(l, "pre", 300)
	absent := c.nodes[2]
	if err := absent.writeSnapshot(); err != nil {
		t.Fatal(err)
	}
	absent.halt()
	c.waitConverged()
	ctx := context.Background()
	for i := range 300 {
		key := fmt.Sprintf("pre-%d", i)
		var err error
		switch {
		case i < 100:
			err = c.nodes[0].Delete(ctx, key)
			l.record(key, deletedValue, err)
		case i < 200:
			err = c.nodes[1].Put(ctx, key, int64(1000+i), NoExpiry)
			l.record(key, int64(1000+i), err)
		case i < 250:
			err = c.nodes[0].Put(ctx, key, int64(2000+i), time.Millisecond)
			l.record(key, deletedValue, err)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Until every tombstone and expired pair is collected: the cluster
	// keeps only its watermarks of them.
	waitFor(t, 10*time.Second, func() error {
		for _, n := range c.live() {
			if tombs, keys := n.store.tombstones(), n.store.len(); tombs != 0 || keys != 150 {
				return fmt.Errorf("%s holds %d tombstones and %d pairs", n.Addr(), tombs, keys)
			}
		}
		return nil
	})
	back := c.startAt(2, absent.Addr(), short, func(cfg *Config) { tune(2, cfg) })
	c.waitConverged()
	if back.snapshots.restored.Load() == 0 {
		t.Fatal("no pair was restored")
	}
	checkLedger(t, c, l, &load{})
}

// TestBadSnapshotStartsCold: a snapshot that cannot be trusted is moved
// aside and the node starts cold and serves; nothing crashes.
func TestBadSnapshotStartsCold(t *testing.T) {
	net := NewMemNetwork()
	dir := t.TempDir()
	cfg := testConfig(net)
	cfg.DataDir = dir
	n, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 50 {
		if err := n.Put(ctx, fmt.Sprint("k", i), i, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	flipped := slicesClone(good)
	flipped[len(flipped)/3] ^= 1
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"truncated", good[:len(good)/2]},
		{"corrupt", flipped},
		{"another format", resum(append([]byte(snapshotMagic+"\x00\x07"), good[len(snapshotMagic)+2:]...))},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, snapshotFile), tc.b, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(net)
			cfg.DataDir = dir
			n, err := Join(ctx, cfg)
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			defer n.Close()
			if got := n.snapshots.restored.Load(); got != 0 {
				t.Fatalf("restored %d pairs from a bad file", got)
			}
			aside, _ := filepath.Glob(filepath.Join(dir, snapshotFile+".bad-*"))
			if len(aside) != 1 {
				t.Fatalf("the bad file was not kept aside: %v", aside)
			}
			if kept, _ := os.ReadFile(aside[0]); string(kept) != string(tc.b) {
				t.Fatal("the file kept aside is not the bad file")
			}
			if err := n.Put(ctx, "k", 1, NoExpiry); err != nil {
				t.Fatalf("the node does not serve: %v", err)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		cfg := testConfig(net)
		cfg.DataDir = dir
		n, err := Join(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if got := n.snapshots.restored.Load(); got != 50 {
			t.Fatalf("restored %d pairs, want 50", got)
		}
		waitFor(t, 5*time.Second, func() error {
			_, err := n.Get(ctx, "k49")
			return err
		})
	})
}

// TestDataDirIsOneNodes: a second node on a DataDir in use refuses to
// start; a DataDir that cannot be made fails Join; a snapshot that cannot
// be written leaves the last one in place.
func TestDataDirIsOneNodes(t *testing.T) {
	net := NewMemNetwork()
	ctx := context.Background()
	dir := t.TempDir()
	cfg := testConfig(net)
	cfg.DataDir = dir
	first, err := Join(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := Join(ctx, cfg); !errors.Is(err, ErrDataDirInUse) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("a second node on one DataDir: %v, want ErrDataDirInUse", err)
	}

	if err := first.Put(ctx, "k", 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	if err := first.writeSnapshot(); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, snapshotFile+".tmp"), 0o755); err != nil {
		t.Fatal(err) // the next snapshot cannot be written
	}
	if err := first.Put(ctx, "k2", 2, NoExpiry); err != nil {
		t.Fatal(err)
	}
	if err := first.writeSnapshot(); err == nil {
		t.Fatal("a snapshot written over a directory")
	}
	if first.snapshots.failures.Load() != 1 {
		t.Fatalf("failures: %d", first.snapshots.failures.Load())
	}
	if _, parts, err := readSnapshotFile(filepath.Join(dir, snapshotFile), first.cfg.PartitionCount); err != nil || len(parts) == 0 {
		t.Fatalf("the last snapshot did not stay: %v", err)
	}
	os.Remove(filepath.Join(dir, snapshotFile+".tmp"))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Join(ctx, cfg)
	if err != nil {
		t.Fatalf("Join once the first node left: %v", err)
	}
	again.Close()

	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = notADir
	if n, err := Join(ctx, cfg); err == nil {
		n.Close()
		t.Fatal("Join on a DataDir that is a file")
	}
}

// TestSnapshotRacesWritesTransfersAndFlush: snapshots taken every few
// milliseconds while writers run, a Flush empties the cache and a node
// joins (streams), then every node crashes and comes back: every write
// acknowledged before the last snapshots comes back, and nothing flushed.
func TestSnapshotRacesWritesTransfersAndFlush(t *testing.T) {
	_, tune := dataDirs(t, 4)
	fast := func(i int, cfg *Config) {
		tune(i, cfg)
		cfg.SnapshotInterval = 5 * time.Millisecond
	}
	c := newCluster(t, 3, false, inOrder(fast))
	l := newLedger()
	c.preload(l, "flushed", 300)
	ctx := context.Background()
	if err := c.nodes[1].Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		l.record(fmt.Sprintf("flushed-%d", i), deletedValue, nil)
	}
	w := c.startWriters(l, 3, 200)
	w.waitOps(t, 200)
	c.add(func(cfg *Config) { fast(3, cfg) })
	w.waitOps(t, 200)
	c.waitConverged()
	w.waitOps(t, 100)
	w.halt()
	for _, n := range c.nodes {
		if err := n.writeSnapshot(); err != nil {
			t.Fatal(err)
		}
	}
	c.restartAll(true, fast)
	checkLedger(t, c, l, w)
}

// TestAnOlderSnapshotBringsNothingBack: two copies of every partition
// snapshotted at different moments, the later after the cluster overwrote
// every key with a TTL that ran out and forgot it. Whichever node comes
// back first, no older value comes back.
func TestAnOlderSnapshotBringsNothingBack(t *testing.T) {
	for _, olderFirst := range []bool{true, false} {
		t.Run(fmt.Sprint("older first=", olderFirst), func(t *testing.T) {
			_, tune := dataDirs(t, 2)
			crawl := func(i int, cfg *Config) {
				tune(i, cfg)
				cfg.CrawlerInterval = 20 * time.Millisecond
			}
			c := newCluster(t, 2, false, inOrder(crawl))
			older, newer := c.nodes[0], c.nodes[1]
			if !olderFirst {
				older, newer = newer, older
			}
			l := newLedger()
			c.preload(l, "k", 100)
			if err := older.writeSnapshot(); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for i := range 100 {
				key := fmt.Sprintf("k-%d", i)
				if err := c.nodes[i%2].Put(ctx, key, int64(-5), time.Millisecond); err != nil {
					t.Fatal(err)
				}
				l.record(key, deletedValue, nil)
			}
			waitFor(t, 10*time.Second, func() error {
				for _, n := range c.nodes {
					if k := n.store.len(); k != 0 {
						return fmt.Errorf("%s still holds %d pairs", n.Addr(), k)
					}
				}
				return nil
			})
			if err := newer.writeSnapshot(); err != nil {
				t.Fatal(err)
			}
			c.restartAll(true, crawl)
			if restoredPairs(c) != 100 {
				t.Fatalf("restored %d pairs, want the older snapshot's 100", restoredPairs(c))
			}
			checkLedger(t, c, l, &load{})
		})
	}
}

// BenchmarkSnapshot measures a node of 1M pairs of 100 bytes (set
// GHOST_SNAPSHOT_PAIRS for another count): writing its snapshot, restoring
// it (reading the file and merging every pair back, alone), and Gets with
// and without snapshots written all along.
func BenchmarkSnapshot(b *testing.B) {
	pairs := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("GHOST_SNAPSHOT_PAIRS")); err == nil && v > 0 {
		pairs = v
	}
	dir := b.TempDir()
	cfg := testConfig(NewMemNetwork())
	cfg.DataDir, cfg.SnapshotInterval, cfg.MaxBytes = dir, time.Hour, 4<<30
	n, err := Join(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	value, _ := msgpack.Marshal(strings.Repeat("v", 97)) // 100 bytes encoded
	keys := make([]string, pairs)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%09d", i)
		n.store.set(n.partitionOf(keys[i]), keys[i], value, 0, false)
	}
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			if err := n.writeSnapshot(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(pairs)*float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		b.ReportMetric(float64(n.snapshots.bytes.Load())/float64(pairs), "B/pair")
	})
	n.Close()
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			m, err := Join(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := m.WaitSafe(context.Background()); err != nil {
				b.Fatal(err)
			}
			if got := m.store.len(); got != int64(pairs) {
				b.Fatalf("restored %d pairs of %d", got, pairs)
			}
			b.StopTimer()
			m.halt()
			b.StartTimer()
		}
		b.ReportMetric(float64(pairs)*float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	})
	m, err := Join(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer m.halt()
	if err := m.WaitSafe(context.Background()); err != nil {
		b.Fatal(err)
	}
	gets := func(b *testing.B) {
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := m.Get(ctx, keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i += 7919
			}
		})
	}
	b.Run("gets", gets)
	b.Run("gets while snapshotting", func(b *testing.B) {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					_ = m.writeSnapshot()
				}
			}
		}()
		gets(b)
		close(stop)
		<-done
	})
}
