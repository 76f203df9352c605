package ghost

import (
	"context"
	"errors"
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
		first, retry := twice(request{op: OpDelete, key: key, ver: via.requestIDs.id()})
		if first != nil || retry != nil {
			t.Errorf("tcp=%v: Delete %v, retried %v; want REMOVED twice", tcp, first, retry)
		}
		if err := via.Delete(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("tcp=%v: a new Delete: %v; want NOT_FOUND", tcp, err)
		}
		raw, _ := via.encodeValue(key, 2)
		first, retry = twice(request{op: OpAdd, key: key, value: raw, ttl: int64(time.Minute), ver: via.requestIDs.id()})
		if first != nil || retry != nil {
			t.Errorf("tcp=%v: Add %v, retried %v; want STORED twice", tcp, first, retry)
		}
		if err := via.Add(ctx, key, 3, NoExpiry); !errors.Is(err, ErrNotStored) {
			t.Errorf("tcp=%v: a new Add: %v; want NOT_STORED", tcp, err)
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
	if _, ok := d.lookup(7); ok || len(d.order) != 1 {
		t.Fatal("an old decision was kept")
	}
	if _, ok := d.lookup(0); ok {
		t.Fatal("a request without an id was found")
	}
}
