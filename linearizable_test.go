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
	var cutFrom, cutKnown atomic.Int64 // when cut off, and when it knew
	r := newRegisterClients(keys)
	for _, n := range c.nodes[:4] {
		r.start(n, true)
		r.start(n, true)
	}
	for _, n := range []*Node{c.nodes[0], cut, cut} {
		r.start(n, false)
	}
	r.waitOps(t, 2000)
	cutFrom.Store(r.now())
	c.net.Isolate(cut.Addr())
	waitFor(t, 20*time.Second, func() error {
		if !cut.cutOff.Load() {
			return errors.New("the cut-off node does not know it yet")
		}
		return nil
	})
	cutKnown.Store(r.now())
	t.Logf("the cut-off node knew after %v", time.Duration(cutKnown.Load()-cutFrom.Load()))
	waitFor(t, 20*time.Second, func() error {
		if m := c.nodes[0].table.Load().members; len(m) != 4 {
			return fmt.Errorf("the majority's table has %d members", len(m))
		}
		return nil
	})
	r.waitOps(t, 10000)
	c.net.Heal(cut.Addr())
	c.waitConverged()
	r.waitOps(t, 2000)
	r.stop()
	r.check(t, fmt.Sprintf("cut at %d, known at %d", cutFrom.Load(), cutKnown.Load()))
}

// registerClients call Put, Delete and Get on a few keys from many
// goroutines, each through one node, and record every call in a history
// that porcupine checks: the keys as registers, calls that failed without
// an answer as maybe applied.
type registerClients struct {
	keys   []string
	h      linearize.History
	begin  time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	next   atomic.Int64 // the next value written
	ops    atomic.Int64
	ids    int
}

func newRegisterClients(keys []string) *registerClients {
	r := &registerClients{keys: keys, begin: time.Now()}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

func (r *registerClients) now() int64 { return int64(time.Since(r.begin)) }

// start starts a client calling through via: a writer (one delete in five
// writes) or a reader.
func (r *registerClients) start(via *Node, write bool) {
	id := r.ids
	r.ids++
	r.wg.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(id), 7))
		for r.ctx.Err() == nil {
			in := linearize.Input{Kind: linearize.Get, Key: r.keys[rng.IntN(len(r.keys))]}
			if write {
				in.Kind, in.Value = linearize.Put, fmt.Sprint(r.next.Add(1))
				if rng.IntN(5) == 0 {
					in.Kind, in.Value = linearize.Delete, ""
				}
			}
			call := r.now()
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
			r.h.Add(id, in, call, r.now(), out)
			r.ops.Add(1)
			time.Sleep(time.Millisecond) // pace: the history stays small enough to check
		}
	})
}

// waitOps waits until the clients have made count more calls.
func (r *registerClients) waitOps(t testing.TB, count int64) {
	t.Helper()
	waitCount(t, &r.ops, count, 60*time.Second, "operations")
}

func (r *registerClients) stop() {
	r.cancel()
	r.wg.Wait()
}

// check fails t unless the history is linearizable, writing porcupine's
// view of it to the temporary directory; about says what the test did
// when.
func (r *registerClients) check(t testing.TB, about string) {
	t.Helper()
	v := r.h.Check(time.Minute)
	t.Logf("%s", v)
	if v.Result != porcupine.Ok {
		path, err := v.WriteReport(os.TempDir(), fmt.Sprintf("ghost-history-%d", time.Now().UnixNano()))
		t.Fatalf("the history is %s; %s (report in %s, %v):\n%s", v, about, path, err, v.Excerpt)
	}
}
