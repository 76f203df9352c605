package ghost

import (
	"context"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Anti-entropy: every AntiEntropyInterval, each primary compares a summary
// of each of its partitions (the pairs' keys and versions) with each
// in-sync backup's, and streams the partition again to a backup whose
// summary differs. Copies drift apart only through faults (a write applied
// on one side before a crash, evictions under memory pressure), so this is
// rare, and it is what brings such a copy back in line.

func (n *Node) antiEntropyLoop() {
	n.every(n.cfg.AntiEntropyInterval, n.antiEntropyRound)
}

func (n *Node) antiEntropyRound() {
	t := n.table.Load()
	for p := range t.owners {
		if !t.isPrimary(p) || len(t.pending[p]) > 0 {
			continue
		}
		for _, i := range t.owners[p][1:] {
			if n.closed.Load() {
				return
			}
			if differs, err := n.compareDigest(p, t.members[i], t.version); err == nil && differs {
				n.stats.resyncs.Add(1)
				n.log.Info("ghost: anti-entropy found a backup out of line; resyncing", "partition", p, "backup", t.members[i].addr)
				n.startStream(transferKey{p, t.members[i].name}, t.members[i], false)
			}
		}
	}
}

func (n *Node) compareDigest(p int, backup member, tver uint64) (bool, error) {
	sum, count := n.store.digest(p)
	body, _ := msgpack.Marshal([]any{p, sum, count})
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	resp, err := n.peers.get(backup.addr).call(ctx, &request{op: opDigest, value: body, tver: tver})
	if err != nil {
		return false, err
	}
	switch resp.status {
	case statusOK:
		return false, nil
	case statusDiffers:
		return true, nil
	}
	n.learnVersion(resp.tver)
	return false, fmt.Errorf("digest refused (status %d)", resp.status)
}

// serveDigest compares a primary's summary of a partition with this copy's.
func (n *Node) serveDigest(_ context.Context, req *request) response {
	p, sum, count, err := decodeDigest(req.value, n.cfg.PartitionCount)
	if err != nil {
		return response{id: req.id, status: statusError, msg: "malformed digest: " + err.Error()}
	}
	t := n.table.Load()
	if req.tver != t.version || !t.inSync(p) {
		return n.refuse(req, t, "a digest")
	}
	resp := response{id: req.id, tver: t.version}
	if ourSum, ourCount := n.store.digest(p); ourSum != sum || ourCount != count {
		resp.status = statusDiffers
	}
	return resp
}

// decodeDigest reads a partition's summary: [partition, sum, count].
func decodeDigest(b []byte, partitions int) (p int, sum uint64, count int, err error) {
	r := &msgReader{b: b}
	if n, err := r.arrayLen(); err != nil || n != 3 {
		return 0, 0, 0, fmt.Errorf("%d fields (%v)", n, err)
	}
	var u uint64
	if u, err = r.uint(uint64(partitions - 1)); err != nil {
		return 0, 0, 0, err
	}
	if sum, err = r.uint(math.MaxUint64); err != nil {
		return 0, 0, 0, err
	}
	c, err := r.uint(math.MaxInt32)
	return int(u), sum, int(c), err
}
