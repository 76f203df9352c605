package ghost

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Histories of many writers per key, checked for linearizability with
// porcupine: each key is a register that puts set, deletes clear (their
// answer, REMOVED or NOT_FOUND, must fit) and gets read.

type registerInput struct {
	op    Op
	key   string
	value int64 // put
}

type registerOutput struct {
	value   int64 // get: the value read; delete: 1 when REMOVED
	present bool  // get: a hit; delete: REMOVED
	unknown bool  // the call failed: it may or may not have been applied
}

// absent is the register's state when the key holds nothing.
const absent = int64(math.MinInt64)

var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(registerInput).key
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(byKey))
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return absent },
	Step: func(state, input, output any) (bool, any) {
		in, out, st := input.(registerInput), output.(registerOutput), state.(int64)
		switch in.op {
		case OpPut:
			return true, in.value
		case OpDelete:
			return out.unknown || out.present == (st != absent), absent
		default: // OpGet
			if out.present {
				return out.value == st, st
			}
			return st == absent, st
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(registerInput), output.(registerOutput)
		return fmt.Sprintf("%v(%s, %d) -> %+v", in.op, in.key, in.value, out)
	},
}

// opHistory records the operations of concurrent clients.
type opHistory struct {
	mu    sync.Mutex
	ops   []porcupine.Operation
	start time.Time
}

func (h *opHistory) now() int64 { return int64(time.Since(h.start)) }

// add records one finished call. A failed write is open: it may take
// effect at any time after its call, so it returns at the end of time. A
// failed read says nothing and is dropped.
func (h *opHistory) add(client int, in registerInput, call int64, out registerOutput) {
	ret := h.now()
	if out.unknown {
		if in.op == OpGet {
			return
		}
		ret = math.MaxInt64
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// Several writers per key on different nodes, and readers on the nodes
// including one that is then cut off: the history of every key is
// linearizable through the partition, the table changes it causes and the
// heal, once the cut-off node has had the failure detection time to learn
// it (its reads after that fail with ErrNoQuorum; those before the cut are
// checked).
func TestManyWritersPerKeyAreLinearizable(t *testing.T) {
	c := newCluster(t, 5, false, fastFailureDetection)
	cut := c.nodes[4]
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = fmt.Sprint("reg-", i)
	}
	h := &opHistory{start: time.Now()}
	var cutFrom, cutKnown atomic.Int64 // when cut off, and when it knew: reads between are not checked
	cutFrom.Store(math.MaxInt64)
	cutKnown.Store(math.MaxInt64)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var nextValue atomic.Int64
	var ops atomic.Int64
	client := func(id int, via *Node, write bool) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(id), 7))
		for ctx.Err() == nil {
			in := registerInput{op: OpGet, key: keys[rng.IntN(len(keys))]}
			if write {
				in.op, in.value = OpPut, nextValue.Add(1)
				if rng.IntN(5) == 0 {
					in.op, in.value = OpDelete, 0
				}
			}
			call := h.now()
			cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
			var out registerOutput
			switch in.op {
			case OpPut:
				out.unknown = via.Put(cctx, in.key, in.value, NoExpiry) != nil
			case OpDelete:
				err := via.Delete(cctx, in.key)
				out.present = err == nil
				out.unknown = err != nil && !errors.Is(err, ErrNotFound)
			default:
				it, err := via.Get(cctx, in.key)
				out.present = err == nil
				out.unknown = err != nil && !errors.Is(err, ErrCacheMiss)
				if err == nil {
					out.value = it.Value.(int64)
				}
			}
			ccancel()
			// A read on the cut-off node between the cut and the moment
			// it knew is the staleness the bound allows.
			if via == cut && in.op == OpGet && call <= cutKnown.Load() && h.now() >= cutFrom.Load() {
				continue
			}
			h.add(id, in, call, out)
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
	cutFrom.Store(h.now())
	c.net.Isolate(cut.Addr())
	waitFor(t, 20*time.Second, func() error {
		if !cut.cutOff.Load() {
			return errors.New("the cut-off node does not know it yet")
		}
		return nil
	})
	cutKnown.Store(h.now())
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
	res, info := porcupine.CheckOperationsVerbose(registerModel, h.ops, time.Minute)
	t.Logf("%d operations checked: %s", len(h.ops), res)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("ghost-history-%d.html", time.Now().UnixNano()))
		_ = porcupine.VisualizePath(registerModel, info, path)
		for _, ops := range registerModel.Partition(h.ops) {
			if porcupine.CheckOperations(registerModel, ops) {
				continue
			}
			slices.SortFunc(ops, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
			lo, hi := 1, len(ops) // the shortest illegal prefix by call
			for lo < hi {
				mid := (lo + hi) / 2
				if porcupine.CheckOperations(registerModel, ops[:mid]) {
					lo = mid + 1
				} else {
					hi = mid
				}
			}
			var b strings.Builder
			fmt.Fprintf(&b, "cut at %d, known at %d; shortest illegal prefix %d of %d\n", cutFrom.Load(), cutKnown.Load(), lo, len(ops))
			for _, op := range ops[max(0, lo-40):lo] {
				fmt.Fprintf(&b, "client %2d [%d, %d] %s\n", op.ClientId, op.Call, op.Return, registerModel.DescribeOperation(op.Input, op.Output))
			}
			_ = os.WriteFile(path+".txt", []byte(b.String()), 0o644)
			break
		}
		t.Fatalf("the history is %s (visualised in %s)", res, path)
	}
}
