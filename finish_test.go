package ghost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A write that failed after one copy took it is not taken back: that copy
// may be asked for it, so its primary must not serve the value before it
// afterwards; and the copy serves it only once its primary commits it.
// It waits, in flight, until the copy that missed it is reachable again,
// and is then finished in the background: every copy holds it, and every
// read returns it. (TestManyWritersPerKeyAreLinearizable once saw a key
// deleted on one copy and its old value again on the primary, around a
// heal.)
func TestAFailedWriteOnACopyIsFinishedNotTakenBack(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) { cfg.Replicas = 3 })
	ctx := context.Background()
	primary, took, missed := c.nodes[0], c.nodes[1], c.nodes[2]
	var key string
	for i := 0; key == ""; i++ {
		cand := fmt.Sprint("finish", i)
		tb := primary.table.Load()
		if o := tb.owners[primary.partitionOf(cand)]; tb.isPrimary(primary.partitionOf(cand)) &&
			tb.members[o[1]].addr == took.Addr() && tb.members[o[2]].addr == missed.Addr() {
			key = cand
		}
	}
	if err := primary.Put(ctx, key, "old", NoExpiry); err != nil {
		t.Fatal(err)
	}
	// Gossip still sees the copy alive, so the table keeps it; no call
	// reaches it.
	c.net.blockConns(missed.Addr())
	if err := primary.Put(ctx, key, "new", NoExpiry); !errors.Is(err, ErrReplication) {
		t.Fatalf("Put with a copy unreachable: %v, want ErrReplication", err)
	}
	if primary.finishing.len() != 1 {
		t.Fatalf("%d writes to finish, want the failed put", primary.finishing.len())
	}
	// The copy that took it serves it only once its primary commits it
	// (commit.go): a reader there waits.
	atCopy := make(chan string, 1)
	go func() {
		resp := took.serve(ctx, &request{op: OpGet, key: key, tver: took.table.Load().version})
		v, err := decodeValue(resp.value)
		atCopy <- fmt.Sprintf("%v (status %d, %v)", v, resp.status, err)
	}()
	stillWaiting(t, atCopy, "at the copy that took the write, before its primary committed it")
	got := make(chan error, 1)
	go func() {
		v, err := GetAs[string](ctx, primary, key)
		if err == nil && v != "new" {
			err = fmt.Errorf("read %q after a copy served new", v)
		}
		got <- err
	}()
	c.net.Heal(missed.Addr())
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if v := <-atCopy; v != "new (status 0, <nil>)" {
		t.Fatalf("the copy served %s once the write was finished, want new", v)
	}
	if n := took.store.settleTimeouts.Load(); n != 0 {
		t.Errorf("the copy's reader waited settleWait out %d times: the commit never came", n)
	}
	waitFor(t, 10*time.Second, func() error {
		if n := primary.finishing.len(); n != 0 {
			return fmt.Errorf("%d writes still to finish", n)
		}
		raw, ok := missed.store.get(missed.partitionOf(key), key)
		if v, err := decodeValue(raw); !ok || err != nil || v != "new" {
			return fmt.Errorf("the copy that missed the write holds %v (%v)", v, err)
		}
		return nil
	})
}
