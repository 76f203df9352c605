package ghost

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/ghostdb/ghost/internal/linearize"
)

// Several writers per key on different nodes, and readers on the nodes
// including one that is then cut off: the history of every key is
// linearizable through the partition, the table changes it causes and the
// heal. The cut-off node's reads are checked too, those it answered before
// it knew it was cut off included: its read lease ends before the majority
// can acknowledge a write without it (lease.go).
func TestManyWritersPerKeyAreLinearizable(t *testing.T) {
	c := newCluster(t, 5, false, fastFailureDetection)
	cut := c.nodes[4]
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = fmt.Sprint("reg-", i)
	}
	var h linearize.History
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var cutFrom, cutKnown atomic.Int64 // when cut off, and when it knew
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var nextValue atomic.Int64
	var ops atomic.Int64
	client := func(id int, via *Node, write bool) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(id), 7))
		for ctx.Err() == nil {
			in := linearize.Input{Kind: linearize.Get, Key: keys[rng.IntN(len(keys))]}
			if write {
				in.Kind, in.Value = linearize.Put, fmt.Sprint(nextValue.Add(1))
				if rng.IntN(5) == 0 {
					in.Kind, in.Value = linearize.Delete, ""
				}
			}
			call := now()
			cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
			var out linearize.Output
			switch in.Kind {
			case linearize.Put:
				out.Done = true
				out.Unknown = via.Put(cctx, in.Key, in.Value, NoExpiry) != nil
			case linearize.Delete:
				err := via.Delete(cctx, in.Key)
				out.Done = err == nil
				out.Unknown = err != nil && !errors.Is(err, ErrNotFound)
			default:
				it, err := via.Get(cctx, in.Key)
				out.Done = err == nil
				out.Unknown = err != nil && !errors.Is(err, ErrCacheMiss)
				if err == nil {
					out.Value = it.Value.(string)
				}
			}
			ccancel()
			// A read on the cut-off node between the cut and the moment
			// it knew is the staleness the bound allows.
			h.Add(id, in, call, now(), out)
			ops.Add(1)
			time.Sleep(time.Millisecond) // pace: the history stays small enough to check
		}
	}
	id := 0
	for _, n := range c.nodes[:4] {
		for range 2 {
			wg.Add(1)
			go client(id, n, true)
			id++
		}
	}
	for _, n := range []*Node{c.nodes[0], cut, cut} {
		wg.Add(1)
		go client(id, n, false)
		id++
	}
	waitForOps := func(count int64) {
		target := ops.Load() + count
		waitFor(t, 60*time.Second, func() error {
			if ops.Load() < target {
				return fmt.Errorf("%d of %d operations", ops.Load(), target)
			}
			return nil
		})
	}
	waitForOps(2000)
	cutFrom.Store(now())
	c.net.Isolate(cut.Addr())
	waitFor(t, 20*time.Second, func() error {
		if !cut.cutOff.Load() {
			return errors.New("the cut-off node does not know it yet")
		}
		return nil
	})
	cutKnown.Store(now())
	t.Logf("the cut-off node knew after %v", time.Duration(cutKnown.Load()-cutFrom.Load()))
	waitFor(t, 20*time.Second, func() error {
		if m := c.nodes[0].table.Load().members; len(m) != 4 {
			return fmt.Errorf("the majority's table has %d members", len(m))
		}
		return nil
	})
	waitForOps(10000)
	c.net.Heal(cut.Addr())
	c.waitConverged()
	waitForOps(2000)
	cancel()
	wg.Wait()
	v := h.Check(time.Minute)
	t.Logf("%s", v)
	if v.Result != porcupine.Ok {
		path, err := v.WriteReport(os.TempDir(), fmt.Sprintf("ghost-history-%d", time.Now().UnixNano()))
		t.Fatalf("the history is %s; cut at %d, known at %d (report in %s, %v):\n%s", v, cutFrom.Load(), cutKnown.Load(), path, err, v.Excerpt)
	}
}
