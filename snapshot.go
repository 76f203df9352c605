package ghost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Warm restart. With Config.DataDir a node writes the partitions it holds
// (pairs and tombstones, with their versions, absolute expiries and each
// partition's watermark of what it forgot) to a snapshot file every
// SnapshotInterval and once more when it leaves (snapshotfile.go). The
// next Join on that directory reads the file and offers each partition's
// pairs to the partition's primary, as a node back from a split hands its
// copies back (heal.go): newer wins by version, so a pair deleted or
// rewritten meanwhile stays as the cluster has it.
//
// What keeps a restore from reviving what the cluster forgot is each
// partition's watermark. A snapshot's pair at or below the watermark of
// the partition it is offered to is refused when the partition lacks its
// key (the partition may have forgotten it: deleted and the tombstone
// collected, expired, evicted or flushed). An in-sync copy's snapshot
// carries its own watermark, and the primary learns it: it drops the pairs
// at or below it that the snapshot lacks (offered earlier by an older
// snapshot of another copy), so the outcome does not hang on which node
// comes back first. A pair whose TTL ran out is offered as a tombstone,
// which keeps older copies of its key out for the same reason.

const (
	snapshotFile = "snapshot"
	lockFile     = "LOCK"
)

// ErrDataDirInUse: another node (in this process or another) holds
// Config.DataDir.
var ErrDataDirInUse = errors.New("ghost: DataDir in use by another node")

// snapshots is a node's side of its DataDir.
type snapshots struct {
	dir  string     // "" without a DataDir
	lock *os.File   // holds the directory's lock (flock) while the node runs
	mu   sync.Mutex // one snapshot written at a time

	// The last snapshot written, for metrics.
	// redo: a restore offered while the node was alone under a table of
	// its own (version 0), kept until a table of the cluster's line
	// follows it: when that table abandons the node's own (applyTable's
	// hand-back), it is offered again, so that its watermarks reach the
	// cluster's primaries.
	redo   []offering
	redoMu sync.Mutex

	at, bytes, pairs, micros atomic.Int64
	failures                 atomic.Int64 // snapshots that could not be written
	restored                 atomic.Int64 // pairs read back from the snapshot at Join
}

// openDataDir creates dir when missing and takes its lock.
func openDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ghost: DataDir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ghost: DataDir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrDataDirInUse, dir)
		}
		return nil, fmt.Errorf("ghost: DataDir %s: lock: %w", dir, err)
	}
	return f, nil
}

// close releases the directory's lock.
func (s *snapshots) close() {
	if s.lock != nil {
		_ = s.lock.Close() // closing the file releases the flock
		s.lock = nil
	}
}

// startSnapshots, with a DataDir, reads the snapshot there, offers it to
// the cluster (restore) and starts writing snapshots; Join calls it once
// the node has its table.
func (n *Node) startSnapshots() {
	if n.snapshots.dir == "" {
		return
	}
	h, parts := n.readSnapshot()
	n.restore(h, parts)
	n.goBackground(n.snapshotLoop)
}

// finalSnapshot writes the last snapshot, of what the node held when it
// stopped serving, and releases the DataDir: Leave calls it after the
// node shut down.
func (n *Node) finalSnapshot() error {
	defer n.snapshots.close()
	if n.snapshots.dir == "" {
		return nil
	}
	return n.writeSnapshot()
}

// snapshotLoop writes a snapshot every SnapshotInterval until the node
// shuts down.
func (n *Node) snapshotLoop() {
	n.every(n.cfg.SnapshotInterval, func() { _ = n.writeSnapshot() })
}

// writeSnapshot writes what this node holds to its DataDir: to a temporary
// file, synced, then renamed over the last snapshot, so that a crash
// mid-way leaves the last one whole. Callers are never held up: each
// partition is locked only while its entries are listed.
func (n *Node) writeSnapshot() error {
	s := &n.snapshots
	s.mu.Lock()
	defer s.mu.Unlock()
	began := time.Now()
	tmp := filepath.Join(s.dir, snapshotFile+".tmp")
	pairs, size, err := n.writeSnapshotTo(tmp)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, snapshotFile))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		s.failures.Add(1)
		n.log.Warn("ghost: could not write a snapshot; the last one stays", "dir", s.dir, "err", err)
		return err
	}
	s.at.Store(time.Now().Unix())
	s.bytes.Store(size)
	s.pairs.Store(pairs)
	s.micros.Store(time.Since(began).Microseconds())
	return nil
}

func (n *Node) writeSnapshotTo(path string) (pairs, size int64, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	t := n.table.Load()
	sw := newSnapshotWriter(f, snapshotHeader{taken: n.store.versions.next(), wall: time.Now().UnixNano(), partitions: n.cfg.PartitionCount, addr: n.addr})
	for p := range n.store.parts {
		if !t.holds(p) {
			continue
		}
		forgotten, held := n.store.snapshotOf(p)
		// A copy cut off from the majority may have forgotten, under a
		// line of its own, versions the majority wrote meanwhile: its
		// watermark vouches for nothing.
		sw.part(p, t.inSync(p) && !n.cutOff.Load(), forgotten, held)
		if sw.err != nil {
			break
		}
	}
	if err := sw.finish(); err != nil {
		return 0, 0, err
	}
	return sw.pairs, sw.bytes, f.Sync()
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// snapshotOf lists partition p for a snapshot: what a reader would be
// served of each key (a write its copies have not confirmed is not, its
// prior is), a pair whose TTL ran out as a tombstone of its version, and
// the partition's watermark, raised to the last flush (a flush forgets
// everything before it).
func (s *store) snapshotOf(p int) (forgotten uint64, pairs []pairCopy) {
	pt := s.lock(p)
	defer pt.mu.Unlock()
	now := s.now()
	pt.each(func(e *entry) {
		v := visible(e)
		switch {
		case v == nil:
		case !v.tombstone && v.expired(now):
			pairs = append(pairs, pairCopy{key: v.key, version: v.version, tombstone: true})
		default:
			pairs = append(pairs, v.pair())
		}
	})
	return max(pt.forgotten, s.flushedAt.Load()), pairs
}

// readSnapshot reads the DataDir's snapshot at Join. A file that cannot
// be used is moved aside (snapshot.bad-<unix seconds>) for inspection, and
// the node starts cold.
func (n *Node) readSnapshot() (snapshotHeader, []snapshotPart) {
	path := filepath.Join(n.snapshots.dir, snapshotFile)
	h, parts, err := readSnapshotFile(path, n.cfg.PartitionCount)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		return h, nil
	case errors.Is(err, errSnapshotFile):
		aside := fmt.Sprintf("%s.bad-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			aside = path + " (could not be moved: " + rerr.Error() + ")"
		}
		n.log.Warn("ghost: the snapshot cannot be restored; starting cold, the file is kept aside", "file", aside, "err", err)
		return h, nil
	default:
		n.log.Warn("ghost: the snapshot cannot be read; starting cold", "file", path, "err", err)
		return h, nil
	}
	return h, parts
}

// restore offers each partition of a snapshot to its primary, in the
// background, once the node is settled in the cluster's table (or after
// restoreWait): offered to a table of the node's own before it found its
// peers, the pairs would land on a line of tables that the cluster's
// replaces, and the watermarks with them. The node is not Safe until
// every partition was taken.
func (n *Node) restore(h snapshotHeader, parts []snapshotPart) {
	if len(parts) == 0 {
		return
	}
	now := n.store.now()
	var count int64
	var offers []offering
	for _, sp := range parts {
		for i := range sp.pairs {
			pc := &sp.pairs[i]
			n.store.versions.observe(pc.version)
			if !pc.tombstone && pc.expired(now) {
				*pc = pairCopy{key: pc.key, version: pc.version, tombstone: true}
			}
			if !pc.tombstone {
				count++
			}
		}
		forgotten := uint64(0)
		if sp.complete {
			forgotten = sp.forgotten
		}
		if len(sp.pairs) > 0 || forgotten > 0 {
			offers = append(offers, offering{partition: sp.partition, pairs: sp.pairs, taken: h.taken, forgotten: forgotten})
		}
	}
	n.snapshots.restored.Store(count)
	n.log.Info("ghost: restoring a snapshot", "pairs", count, "partitions", len(parts), "taken", time.Unix(0, h.wall))
	n.transfers.count.Add(1)
	n.goBackground(func() {
		defer n.transfers.count.Add(-1)
		deadline := time.After(restoreWait)
	wait:
		// Alone, the node restores under its own table: it may be the
		// first of a cluster restarting, or a cluster of one.
		for !n.settled() || n.table.Load().version == 0 && n.ml.NumMembers() > 1 {
			changed := n.tableChanged.wait()
			select {
			case <-changed:
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				n.log.Warn("ghost: the table did not settle; restoring the snapshot anyway", "waited", restoreWait)
				break wait
			case <-n.done:
				return
			}
		}
		if n.table.Load().version == 0 {
			n.snapshots.redoMu.Lock()
			n.snapshots.redo = offers
			n.snapshots.redoMu.Unlock()
		}
		for _, o := range offers {
			n.offer(o, restoreAttempts)
		}
	})
}

// tableApplied offers again a restore offered under the node's own table
// when t abandons that table (handBack), and forgets it once a table of
// the cluster continues it. applyTable calls it.
func (n *Node) tableApplied(t *table, handBack bool) {
	s := &n.snapshots
	s.redoMu.Lock()
	redo := s.redo
	if !handBack && t.version > 0 {
		s.redo = nil
	}
	s.redoMu.Unlock()
	if handBack {
		for _, o := range redo {
			n.offer(o, restoreAttempts)
		}
	}
}

// restoreWait bounds how long a restore waits for the table to settle.
const restoreWait = 30 * time.Second

// restoreAttempts bounds how often a restored partition is offered: with
// pauses of up to a second, a few minutes for the cluster to form.
const restoreAttempts = 300

// expired reports whether c's TTL has run out at now.
func (c *pairCopy) expired(now int64) bool { return c.expires != 0 && now >= c.expires }
