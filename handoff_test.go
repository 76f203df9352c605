package ghost

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readers reads the given keys in a loop until stopped, counting misses
// and failed calls: a join or leave must cause neither.
type readers struct {
	stop           chan struct{}
	wg             sync.WaitGroup
	reads, misses  atomic.Int64
	failed         atomic.Int64
	firstMiss, err atomic.Value
}

func (c *cluster) startReaders(keys []string, count int) *readers {
	r := &readers{stop: make(chan struct{})}
	for g := range count {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for i := g; ; i++ {
				select {
				case <-r.stop:
					return
				default:
				}
				live := c.live()
				n := live[i%len(live)]
				k := keys[i%len(keys)]
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := n.Get(ctx, k)
				cancel()
				switch {
				case errors.Is(err, ErrClosed):
					continue
				case errors.Is(err, ErrCacheMiss):
					r.misses.Add(1)
					r.firstMiss.CompareAndSwap(nil, fmt.Sprintf("%s via %s", k, n.Addr()))
				case err != nil:
					r.failed.Add(1)
					r.err.CompareAndSwap(nil, err.Error())
				}
				r.reads.Add(1)
			}
		}()
	}
	return r
}

func (r *readers) halt(t *testing.T) {
	t.Helper()
	close(r.stop)
	r.wg.Wait()
	t.Logf("%d reads: %d misses (first %v), %d failed (first %v)", r.reads.Load(), r.misses.Load(), r.firstMiss.Load(), r.failed.Load(), r.err.Load())
	if r.misses.Load() != 0 || r.failed.Load() != 0 {
		t.Fatalf("reads of pairs written before: %d misses, %d failed calls", r.misses.Load(), r.failed.Load())
	}
}

func preloadedKeys(prefix string, count int) []string {
	keys := make([]string, count)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return keys
}

func TestJoinUnderLoadCausesNoMiss(t *testing.T) {
	c := newCluster(t, 3, false)
	l := newLedger()
	c.preload(l, "pre", 3000)
	r := c.startReaders(preloadedKeys("pre", 3000), 3)
	w := c.startWriters(l, 3, 300)
	w.waitOps(t, 100)
	c.add(func(cfg *Config) { cfg.Peers = []string{c.nodes[1].Addr()} })
	c.add()
	c.waitConverged()
	w.waitOps(t, 100)
	w.halt()
	r.halt(t)
	if f := w.failed.Load(); f != 0 {
		t.Errorf("%d writes failed during the join", f)
	}
	checkLedger(t, c, l, w)
	var moved uint64
	for _, n := range c.live() {
		moved += n.stats.pairsMoved.Load()
	}
	// Two joiners of five take about 2/5 of 2 copies of 3,300+ pairs.
	t.Logf("pairs streamed: %d", moved)
	if moved == 0 {
		t.Fatal("nothing was streamed to the new nodes")
	}
}

func TestLeaveHandsOffCausesNoMiss(t *testing.T) {
	c := newCluster(t, 4, false)
	l := newLedger()
	c.preload(l, "pre", 2000)
	r := c.startReaders(preloadedKeys("pre", 2000), 2)
	w := c.startWriters(l, 2, 200, c.nodes[0], c.nodes[1], c.nodes[2])
	w.waitOps(t, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.nodes[3].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	w.halt()
	r.halt(t)
	checkLedger(t, c, l, w)
}

func TestRollingRestartLosesNothing(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(fmt.Sprint("tcp=", tcp), func(t *testing.T) {
			size := 5
			if tcp {
				size = 3
			}
			c := newCluster(t, size, tcp)
			l := newLedger()
			c.preload(l, "pre", 2000)
			w := c.startWriters(l, 3, 300)
			for i := range c.nodes {
				w.waitOps(t, 50)
				c.restart(i)
				c.waitConverged()
			}
			w.waitOps(t, 50)
			w.halt()
			checkLedger(t, c, l, w)
		})
	}
}

func TestSameAddressRestartIsANewMember(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection)
	l := newLedger()
	c.preload(l, "pre", 500)
	old := c.nodes[2]
	oldName := old.name
	old.halt() // a crash, and at once a new process on the same address
	n := c.startAt(2, old.Addr(), fastFailureDetection)
	if n.name == oldName {
		t.Fatal("the new process has the old one's name")
	}
	c.waitConverged()
	tb := c.nodes[0].table.Load()
	if tb.index(oldName) >= 0 || tb.index(n.name) < 0 {
		t.Fatalf("the table lists the old incarnation or not the new one: %v", tb.members)
	}
	checkLedger(t, c, l, &load{})
}

func TestDeletesAndPutsRacingATransfer(t *testing.T) {
	c := newCluster(t, 2, false)
	ctx := context.Background()
	l := newLedger()
	c.preload(l, "race", 4000)
	// While the new node fills, delete every third key and rewrite every
	// third other one.
	c.add()
	for i := 0; i < 4000; i += 3 {
		k := fmt.Sprintf("race-%d", i)
		l.record(k, deletedValue, c.nodes[i%2].Delete(ctx, k))
		k = fmt.Sprintf("race-%d", i+1)
		l.record(k, int64(10000+i), c.nodes[(i+1)%2].Put(ctx, k, int64(10000+i), NoExpiry))
	}
	c.waitConverged()
	checkLedger(t, c, l, &load{})
}

func TestFlushDuringATransferEmptiesBothSides(t *testing.T) {
	c := newCluster(t, 2, false)
	l := newLedger()
	c.preload(l, "fl", 4000)
	c.add()
	if err := c.nodes[0].Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	for _, n := range c.live() {
		if got := n.store.len(); got != 0 {
			t.Fatalf("%s holds %d pairs after a flush", n.Addr(), got)
		}
	}
}

func TestIsolatedNodeConvergesWhenHealed(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection)
	l := newLedger()
	c.preload(l, "pre", 1000)
	cut := c.nodes[2]
	c.net.Isolate(cut.Addr())
	w := c.startWriters(l, 2, 300, c.nodes[0], c.nodes[1])
	waitFor(t, 20*time.Second, func() error {
		if m := c.nodes[0].table.Load().members; len(m) != 2 {
			return fmt.Errorf("the majority's table still has %d members", len(m))
		}
		return nil
	})
	w.waitOps(t, 300)
	// The cut-off node, alone of three, has no majority: it keeps its table
	// and cannot take the others' partitions.
	if v := cut.table.Load(); len(v.members) != 3 {
		t.Fatalf("the cut-off node changed its table to %d members", len(v.members))
	}
	c.net.Heal(cut.Addr())
	c.waitConverged()
	w.halt()
	checkLedger(t, c, l, w)
}

// Two coordinators at once publish two lines of tables, and one wins. The
// writes acknowledged under the other must survive, even where the winning
// line gives their partition to a member that never held them: the
// members that leave the losing line hand their copies back. Here the
// losing line keeps a partition where it was and takes a write, and the
// winning table, of the same version, gives the partition to the third
// node alone; the coordinator then plans the copies back, streamed from
// that node.
func TestWritesOfALosingLineOfTablesSurvive(t *testing.T) {
	// ahead: how many versions the winning table is past the losing one's
	// (0: the same version, won on its coordinator's name), the tables
	// between missed by every node.
	for _, ahead := range []uint64{0, 3} {
		t.Run(fmt.Sprint("ahead=", ahead), func(t *testing.T) {
			c := newCluster(t, 3, false)
			ctx := context.Background()
			c.waitConverged()
			key := c.keyOwnedBy(c.nodes[1], "line")
			cur := c.nodes[0].table.Load()
			p := c.nodes[0].partitionOf(key)
			third := -1
			for i := range cur.members {
				if !slices.Contains(cur.owners[p], i) {
					third = i
				}
			}
			if err := c.nodes[0].Put(ctx, key, 1, NoExpiry); err != nil {
				t.Fatal(err)
			}
			applyEverywhere := func(tb *table) {
				for _, n := range c.nodes {
					n.applyTable(tb)
				}
			}
			losing := *cur
			losing.version, losing.coordinator, losing.line = cur.version+1, "0 losing", cur.following()
			applyEverywhere(&losing)
			if err := c.nodes[0].Put(ctx, key, 2, NoExpiry); err != nil {
				t.Fatal(err)
			}
			winning := *cur
			winning.version, winning.coordinator, winning.line = cur.version+1, "~ winning", cur.following()
			for range ahead {
				winning.version, winning.line = winning.version+1, winning.following()
			}
			winning.owners = slices.Clone(cur.owners)
			winning.owners[p] = []int{third}
			applyEverywhere(&winning)
			c.waitConverged()
			for _, n := range c.nodes {
				if it, err := n.Get(ctx, key); err != nil || it.Value != int64(2) {
					t.Errorf("Get via %s: %v, %v; want 2", n.Addr(), it.Value, err)
				}
			}
		})
	}
}

// A stalled primary (a SIGSTOP, a long pause) that comes back still holding
// its old table decides the writes waiting in its sockets before it hears
// of the new one. Its copies refuse them, so they are never acknowledged,
// and it keeps them as unconfirmed. When the new table makes it a holder of
// the partition again, the new primary's stream and write copies must
// replace them, whatever their versions: the stalled node's clock (a
// hybrid-logical one) may have given them versions above the writes the new
// primary acknowledged meanwhile, and above the stream's start. Here its
// clock is ahead of the others'; in the fault suite the same happened when
// it decided a write just after the new primary began filling its copy.
func TestStalledPrimaryDecisionsYieldToTheNewPrimary(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection)
	ctx := context.Background()
	stalled := c.nodes[2]
	var keys []string
	for i := range 5 {
		keys = append(keys, c.keyOwnedBy(stalled, fmt.Sprint("stalled", i)))
	}
	for _, k := range keys {
		if err := c.nodes[0].Put(ctx, k, 1, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	c.net.Isolate(stalled.Addr())
	waitFor(t, 20*time.Second, func() error {
		if m := c.nodes[0].table.Load().members; len(m) != 2 {
			return fmt.Errorf("the others' table still has %d members", len(m))
		}
		return nil
	})
	// The acknowledged writes, on the new primaries.
	for _, k := range keys {
		if err := c.nodes[0].Put(ctx, k, 2, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	// The stalled node, still on its old table, decides older requests for
	// the same keys, with versions from a clock a minute ahead.
	stalled.store.versions.observe(uint64(time.Now().Add(time.Minute).UnixNano()))
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			// Refused by its copies, and tried again until the node
			// finds itself cut off.
			if err := stalled.Put(ctx, k, 3, NoExpiry); !errors.Is(err, ErrReplication) && !errors.Is(err, ErrNoQuorum) {
				t.Errorf("Put %s on the stalled primary: %v, want ErrReplication or ErrNoQuorum", k, err)
			}
		})
	}
	wg.Wait()
	c.net.Heal(stalled.Addr())
	c.waitConverged()
	if tb := stalled.table.Load(); !tb.isPrimary(stalled.partitionOf(keys[0])) {
		t.Fatalf("the stalled node is not the primary of its keys again (table %d)", tb.version)
	}
	for _, k := range keys {
		for _, n := range c.live() {
			if it, err := n.Get(ctx, k); err != nil || it.Value != int64(2) {
				t.Errorf("Get %s via %s = %v, %v; want the acknowledged 2", k, n.Addr(), it.Value, err)
			}
		}
	}
}

func TestNodeKilledMidTransfer(t *testing.T) {
	for _, victim := range []string{"receiver", "source", "coordinator"} {
		t.Run(victim, func(t *testing.T) {
			c := newCluster(t, 3, false, fastFailureDetection)
			l := newLedger()
			c.preload(l, "big", 20000)
			joiner := c.add(fastFailureDetection)
			var target *Node
			waitFor(t, 20*time.Second, func() error {
				switch victim {
				case "receiver":
					target = joiner
					return nil
				case "coordinator":
					target = c.nodes[0]
					if target.transfers.inFlight() > 0 || c.nodes[1].transfers.inFlight() > 0 || c.nodes[2].transfers.inFlight() > 0 {
						return nil
					}
				case "source":
					for _, n := range c.nodes[1:3] {
						if n.transfers.inFlight() > 0 {
							target = n
							return nil
						}
					}
				}
				return errors.New("no transfer under way yet")
			})
			target.halt()
			c.waitConverged()
			checkLedger(t, c, l, &load{})
		})
	}
}

func TestSplitHealsWithoutLoss(t *testing.T) {
	c := newCluster(t, 5, false, fastFailureDetection)
	l := newLedger()
	c.preload(l, "pre", 2000)
	// Two nodes cut off together: the partitions whose both copies are on
	// their side are started afresh on the majority's, and must come back.
	minority := []string{c.nodes[3].Addr(), c.nodes[4].Addr()}
	c.net.Split(minority...)
	w := c.startWriters(l, 3, 300, c.nodes[0], c.nodes[1], c.nodes[2])
	waitFor(t, 20*time.Second, func() error {
		if m := c.nodes[0].table.Load().members; len(m) != 3 {
			return fmt.Errorf("the majority's table still has %d members", len(m))
		}
		return nil
	})
	w.waitOps(t, 300)
	for _, a := range minority {
		c.net.Heal(a)
	}
	c.waitConverged()
	w.halt()
	checkLedger(t, c, l, w)
}
