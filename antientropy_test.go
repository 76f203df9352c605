package ghost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A backup that drifted from its primary (a pair lost, a tombstone and a
// stray pair it should not hold) is found by the digests and streamed the
// partition again.
func TestAntiEntropyRepairsABackup(t *testing.T) {
	c := newCluster(t, 2, false, func(cfg *Config) { cfg.AntiEntropyInterval = 50 * time.Millisecond })
	ctx := context.Background()
	owner := c.nodes[0]
	k := c.keyOwnedBy(owner, "ae")
	if err := owner.Put(ctx, k, "right", NoExpiry); err != nil {
		t.Fatal(err)
	}
	backup := c.nodes[1]
	// The backup loses the pair behind everyone's back, and gains one the
	// owner never had.
	p := backup.partitionOf(k)
	pt := backup.store.lock(p)
	backup.store.deleteLocked(pt, k, backup.store.versions.next())
	pt.mu.Unlock()
	stray := k + "-stray"
	for i := 0; backup.partitionOf(stray) != p; i++ {
		stray = fmt.Sprintf("%s-stray%d", k, i)
	}
	pt = backup.store.lock(p)
	backup.store.mergeLocked(pt, pairCopy{key: stray, value: []byte{0xa1, 'x'}, version: 1})
	pt.mu.Unlock()
	waitFor(t, 10*time.Second, func() error {
		if e := backup.store.parts[p].load(k); e == nil || e.tombstone {
			return errors.New("the backup still misses the pair")
		}
		if _, ok := backup.store.get(p, stray); ok {
			return errors.New("the backup still holds the stray pair")
		}
		return nil
	})
	if owner.stats.resyncs.Load() == 0 {
		t.Fatal("no resync was counted")
	}
}
