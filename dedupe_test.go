package ghost

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// A write sent again after its connection broke, when the primary had
// decided it, reports the first try's outcome: a Delete that removed the
// pair answers REMOVED again, not NOT_FOUND, and an Add that stored
// answers STORED again, not NOT_STORED. New calls are decided anew.
func TestRetriedWritesReportTheirFirstOutcome(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		c := newCluster(t, 3, tcp)
		ctx := context.Background()
		via := c.nodes[1]
		key := c.keyOwnedBy(c.nodes[0], "once")
		if err := via.Put(ctx, key, 1, NoExpiry); err != nil {
			t.Fatal(err)
		}
		// The same request twice, as routeTo sends it again after a broken
		// connection.
		twice := func(req request) (first, retry error) {
			again := req
			_, first = via.route(ctx, &req)
			_, retry = via.route(ctx, &again)
			return first, retry
		}
		first, retry := twice(request{op: OpDelete, key: key, rid: via.requestIDs.id()})
		if first != nil || retry != nil {
			t.Errorf("tcp=%v: Delete %v, retried %v; want REMOVED twice", tcp, first, retry)
		}
		if err := via.Delete(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("tcp=%v: a new Delete: %v; want NOT_FOUND", tcp, err)
		}
		raw, _ := via.encodeValue(key, 2)
		first, retry = twice(request{op: OpAdd, key: key, value: raw, ttl: int64(time.Minute), rid: via.requestIDs.id()})
		if first != nil || retry != nil {
			t.Errorf("tcp=%v: Add %v, retried %v; want STORED twice", tcp, first, retry)
		}
		if err := via.Add(ctx, key, 3, NoExpiry); !errors.Is(err, ErrNotStored) {
			t.Errorf("tcp=%v: a new Add: %v; want NOT_STORED", tcp, err)
		}
	}
}

// A retry that reaches the backup promoted in its first primary's place
// reports the first try's outcome too: the copies of a write carry its
// request id and outcome. So do the keys of a batch, each its own id.
func TestRetriesAcrossAFailoverReportTheirFirstOutcome(t *testing.T) {
	c := newCluster(t, 4, false, fastFailureDetection)
	ctx := context.Background()
	via, primary := c.nodes[1], c.nodes[3] // not the coordinator: the table changes at once
	key := c.keyOwnedBy(primary, "single")
	batchKeys := []string{c.keyOwnedBy(primary, "batch-a"), c.keyOwnedBy(primary, "batch-b")}
	for _, k := range append([]string{key}, batchKeys...) {
		if err := via.Put(ctx, k, 1, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	del := request{op: OpDelete, key: key, rid: via.requestIDs.id()}
	again := del
	if _, err := via.route(ctx, &del); err != nil {
		t.Fatal(err)
	}
	batchDelete := func(n *Node, i int) response { // key i of one batch, the same id on every try
		req := request{op: OpDelete, key: batchKeys[i], tver: n.table.Load().version, rid: uint64(1000 + i)}
		return n.serveBatchRequests(ctx, []request{req}, math.MaxInt)[0]
	}
	for i := range batchKeys {
		if r := batchDelete(primary, i); r.status != statusOK {
			t.Fatalf("batch delete %d: status %d", i, r.status)
		}
	}
	primary.halt()
	c.waitConvergedAmong(c.nodes[:3]) // the backups promoted, new copies streamed
	if _, err := via.route(ctx, &again); err != nil {
		t.Errorf("the Delete retried after the failover: %v; want REMOVED", err)
	}
	if err := via.Delete(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("a new Delete: %v; want NOT_FOUND", err)
	}
	for i, k := range batchKeys {
		for _, n := range c.nodes[:3] {
			if n.table.Load().isPrimary(n.partitionOf(k)) {
				if r := batchDelete(n, i); r.status != statusOK {
					t.Errorf("batch delete %d retried after the failover: status %d; want REMOVED", i, r.status)
				}
			}
		}
	}
}

func TestDecisionsAreForgottenAfterRetention(t *testing.T) {
	var d decided
	now := time.Now()
	d.record(7, true, now, time.Second)
	if done, ok := d.lookup(7); !ok || !done {
		t.Fatal("a decision was not kept")
	}
	d.record(8, false, now.Add(2*time.Second), time.Second)
	if _, ok := d.lookup(7); ok || len(d.order)-d.head != 1 {
		t.Fatal("an old decision was kept")
	}
	if _, ok := d.lookup(0); ok {
		t.Fatal("a request without an id was found")
	}
}

// A partition keeps at most maxDecisions, however fast they come, and the
// memory of the forgotten ones is reused.
func TestDecisionsAreBounded(t *testing.T) {
	var d decided
	now := time.Now()
	for rid := uint64(1); rid <= 3*maxDecisions; rid++ {
		d.record(rid, true, now, time.Hour)
	}
	if kept := len(d.byID); kept != maxDecisions {
		t.Errorf("%d decisions kept, want %d", kept, maxDecisions)
	}
	if _, ok := d.lookup(3 * maxDecisions); !ok {
		t.Error("the newest decision was forgotten")
	}
	if _, ok := d.lookup(1); ok {
		t.Error("the oldest decision was kept past the bound")
	}
	if cap(d.order) > 4*maxDecisions {
		t.Errorf("%d decisions' room for %d kept", cap(d.order), maxDecisions)
	}
}
