package ghost

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A write whose backup has just died is refused by its primary until the
// table drops the dead member (gossip takes a while to declare it). A
// caller with time left on its context waits that out: the write, sent
// again with its request id, succeeds under the new table, and each write
// reports its own first outcome (REMOVED, STORED), not the effect of its
// earlier try. A PutMulti does the same for each key. The fault suite saw
// a few failed calls on every crash before.
func TestWritesWaitOutADeadBackup(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection, func(cfg *Config) { cfg.RequestTimeout = 300 * time.Millisecond })
	primary, victim := c.nodes[0], c.nodes[2]
	backedUpBy := func(prefix string) string {
		for i := 0; ; i++ {
			k := fmt.Sprint(prefix, i)
			tb := primary.table.Load()
			if p := primary.partitionOf(k); tb.isPrimary(p) && tb.members[tb.owners[p][1]].name == victim.self.name {
				return k
			}
		}
	}
	deleted, added, put := backedUpBy("deleted"), backedUpBy("added"), backedUpBy("put")
	var multi []string
	for i := range 4 {
		multi = append(multi, backedUpBy(fmt.Sprint("multi", i, "-")))
	}
	if err := primary.Put(context.Background(), deleted, 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	victim.halt()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Called on the primary and on the other node, which forwards.
	if err := c.nodes[1].Delete(ctx, deleted); err != nil {
		t.Errorf("Delete with the backup dead: %v, want REMOVED", err)
	}
	if err := primary.Add(ctx, added, 1, NoExpiry); err != nil {
		t.Errorf("Add with the backup dead: %v, want STORED", err)
	}
	if err := c.nodes[1].Put(ctx, put, 1, NoExpiry); err != nil {
		t.Errorf("Put with the backup dead: %v", err)
	}
	pairs := make(map[string]any, len(multi))
	for _, k := range multi {
		pairs[k] = 1
	}
	if err := c.nodes[1].PutMulti(ctx, pairs, NoExpiry); err != nil {
		t.Errorf("PutMulti with the backup dead: %v", err)
	}
	if tb := primary.table.Load(); len(tb.members) != 2 {
		t.Fatalf("the writes returned before the table dropped the dead member: %d members", len(tb.members))
	}
	c.waitConvergedAmong(c.nodes[:2])
	for _, k := range append([]string{added, put}, multi...) {
		if n := c.copiesOf(k); n != 2 {
			t.Errorf("%s has %d copies, want 2", k, n)
		}
	}
	if _, err := c.nodes[1].Get(ctx, deleted); !errors.Is(err, ErrCacheMiss) {
		t.Errorf("Get of the deleted key: %v, want ErrCacheMiss", err)
	}
}

func TestBackoffPausesUntilItsDeadline(t *testing.T) {
	ctx := context.Background()
	pace := backoff{pause: time.Millisecond, longest: 4 * time.Millisecond, deadline: time.Now().Add(time.Hour)}
	for range 4 {
		if err := pace.wait(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if pace.pause != 4*time.Millisecond {
		t.Errorf("pause after 4 waits = %v, want the longest, 4ms", pace.pause)
	}
	// A wake ends a pause at once, however long.
	woken := make(chan struct{})
	close(woken)
	long := backoff{pause: time.Hour, longest: time.Hour}
	if err := long.wait(ctx, nil, woken); err != nil {
		t.Errorf("woken: %v", err)
	}
	// The next pause would end past the deadline.
	spent := backoff{pause: time.Second, longest: time.Second, deadline: time.Now().Add(time.Millisecond)}
	if err := spent.wait(ctx, nil, nil); !errors.Is(err, errRetriesSpent) {
		t.Errorf("past the deadline: %v, want errRetriesSpent", err)
	}
	closed := make(chan struct{})
	close(closed)
	if err := long.wait(ctx, closed, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v, want ErrClosed", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := long.wait(cancelled, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// A call's retries stop at its context's deadline when that is later than
// RequestTimeout, and at RequestTimeout otherwise.
func TestCallDeadline(t *testing.T) {
	n := &Node{cfg: Config{RequestTimeout: time.Second}}
	start := time.Now()
	if got := n.callDeadline(context.Background(), start); !got.Equal(start.Add(time.Second)) {
		t.Errorf("no deadline: %v after start, want 1s", got.Sub(start))
	}
	short, cancel := context.WithDeadline(context.Background(), start.Add(time.Millisecond))
	defer cancel()
	if got := n.callDeadline(short, start); !got.Equal(start.Add(time.Second)) {
		t.Errorf("an earlier deadline: %v after start, want 1s", got.Sub(start))
	}
	long, cancel := context.WithDeadline(context.Background(), start.Add(time.Minute))
	defer cancel()
	if got := n.callDeadline(long, start); !got.Equal(start.Add(time.Minute)) {
		t.Errorf("a later deadline: %v after start, want 1m", got.Sub(start))
	}
}
