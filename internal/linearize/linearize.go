// Package linearize checks histories of calls on cache keys for
// linearizability with porcupine: each key is a register that puts set,
// adds set when it is empty, deletes clear and gets read, and every
// answer (STORED or NOT_STORED, REMOVED or NOT_FOUND, a hit or a miss)
// must fit some order of the calls that respects their real-time order.
// The package's tests and the fault suite (cmd/ghostchaos) share it.
package linearize

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is a call on a key.
type Kind uint8

// The calls.
const (
	Get Kind = iota
	Put
	Add
	Delete
)

func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Add:
		return "add"
	case Delete:
		return "delete"
	}
	return "get"
}

// Input is a call: its kind, key and, for a put or an add, the value
// (never empty: the empty string is the register's empty state).
type Input struct {
	Kind  Kind
	Key   string
	Value string
}

// Output is a call's answer.
type Output struct {
	// Done: a get hit, an add STORED, a delete REMOVED. (A put is always
	// done when it is known.)
	Done bool
	// Value: a get's value on a hit.
	Value string
	// Unknown: the call failed. A write may or may not have been applied
	// (History.Add keeps it open to the end); a read says nothing.
	Unknown bool
}

// model is the register model, partitioned by key.
func model() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			for _, op := range history {
				k := op.Input.(Input).Key
				byKey[k] = append(byKey[k], op)
			}
			keys := make([]string, 0, len(byKey))
			for k := range byKey {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return "" },
		Step: func(state, input, output any) (bool, any) {
			in, out, st := input.(Input), output.(Output), state.(string)
			switch in.Kind {
			case Put:
				return true, in.Value
			case Add:
				if st != "" {
					return out.Unknown || !out.Done, st
				}
				return out.Unknown || out.Done, in.Value
			case Delete:
				return out.Unknown || out.Done == (st != ""), ""
			}
			if out.Done {
				return out.Value == st, st
			}
			return st == "", st
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(Input), output.(Output)
			s := fmt.Sprintf("%s(%s", in.Kind, in.Key)
			if in.Value != "" {
				s += ", " + in.Value
			}
			switch {
			case out.Unknown:
				return s + ") failed"
			case in.Kind == Get && out.Done:
				return s + ") = " + out.Value
			case in.Kind == Get:
				return s + ") missed"
			case in.Kind == Put || out.Done:
				return s + ") done"
			}
			return s + ") not done"
		},
	}
}

// History records the calls of concurrent clients. It is safe for
// concurrent use.
type History struct {
	mu  sync.Mutex
	ops []porcupine.Operation
}

// Add records one call that began at call and returned at ret (any clock
// the clients share, in nanoseconds). A failed write is open: it may take
// effect at any time after its call, so it returns at the end of time. A
// failed read says nothing and is dropped.
func (h *History) Add(client int, in Input, call, ret int64, out Output) {
	if out.Unknown {
		if in.Kind == Get {
			return
		}
		ret = math.MaxInt64
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	h.mu.Unlock()
}

// Len is the number of calls recorded.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Verdict is what a check found.
type Verdict struct {
	Result porcupine.CheckResult // Ok, Illegal, or Unknown when the check ran out of time
	Calls  int
	Keys   int
	// Illegal only: the first key found illegal, and its calls up to the
	// shortest prefix (by call time) that is already illegal, the last
	// ones described one per line.
	Key     string
	Excerpt string
	info    porcupine.LinearizationInfo
}

// Check checks the history, giving up after timeout.
func (h *History) Check(timeout time.Duration) Verdict {
	h.mu.Lock()
	ops := slices.Clone(h.ops)
	h.mu.Unlock()
	res, info := porcupine.CheckOperationsVerbose(model(), ops, timeout)
	v := Verdict{Result: res, Calls: len(ops), Keys: len(model().Partition(ops)), info: info}
	if res == porcupine.Illegal {
		v.Key, v.Excerpt = illegalExcerpt(ops)
	}
	return v
}

// excerptCalls is how many calls an excerpt shows before the one that
// made the history illegal.
const excerptCalls = 40

// illegalExcerpt finds a key whose calls are illegal and describes the
// calls up to the shortest illegal prefix.
func illegalExcerpt(history []porcupine.Operation) (string, string) {
	for _, ops := range model().Partition(history) {
		if porcupine.CheckOperations(model(), ops) {
			continue
		}
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
		lo, hi := 1, len(ops)
		for lo < hi {
			mid := (lo + hi) / 2
			if porcupine.CheckOperations(model(), ops[:mid]) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		var b strings.Builder
		for _, op := range ops[max(0, lo-excerptCalls):lo] {
			ret := fmt.Sprint(op.Return)
			if op.Return == math.MaxInt64 {
				ret = "open"
			}
			fmt.Fprintf(&b, "client %2d [%d, %s] %s\n", op.ClientId, op.Call, ret, model().DescribeOperation(op.Input, op.Output))
		}
		return ops[0].Input.(Input).Key, b.String()
	}
	return "", ""
}

// Visualize writes porcupine's HTML view of the checked history to path.
func (v Verdict) Visualize(path string) error {
	return porcupine.VisualizePath(model(), v.info, path)
}

// Linearizable reports whether the check found the history linearizable
// (not illegal, nor undecided).
func (v Verdict) Linearizable() bool { return v.Result == porcupine.Ok }

// String says what the check found, in a few words.
func (v Verdict) String() string {
	switch v.Result {
	case porcupine.Ok:
		return fmt.Sprintf("linearizable (%d calls on %d keys)", v.Calls, v.Keys)
	case porcupine.Illegal:
		return fmt.Sprintf("NOT linearizable: key %s (%d calls on %d keys)", v.Key, v.Calls, v.Keys)
	}
	return fmt.Sprintf("undecided: the check ran out of time (%d calls on %d keys)", v.Calls, v.Keys)
}

// WriteReport writes the verdict, the illegal key's excerpt and the HTML
// view beside it, into dir, and returns the excerpt file's path.
func (v Verdict) WriteReport(dir, name string) (string, error) {
	path := dir + string(os.PathSeparator) + name
	if err := v.Visualize(path + ".html"); err != nil {
		return "", err
	}
	return path + ".txt", os.WriteFile(path+".txt", []byte(v.String()+"\n"+v.Excerpt), 0o644)
}
