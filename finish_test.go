package ghost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A write that failed after one copy took it is not taken back: that copy
// serves it, so its primary must not serve the value before it afterwards.
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
	tv := took.table.Load().version
	resp := took.serve(ctx, &request{op: OpGet, key: key, tver: tv})
	if v, err := decodeValue(resp.value); resp.status != statusOK || err != nil || v != "new" {
		t.Fatalf("the copy that took the write serves %v (status %d, %v), want new", v, resp.status, err)
	}
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
