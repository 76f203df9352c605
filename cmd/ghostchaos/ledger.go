package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// The ledger: every write the clients made, what they were told, and the
// final check of what the cluster holds against it.
//
// Each key has one writer, which issues its ops one after another, so the
// ops of a key are totally ordered and the state the cluster should end in
// follows from them. A write whose call failed (an error, or no reply
// because its process died) is indeterminate: it may or may not have been
// applied. So the end state of a key is a set of possible states: the state
// after its last acknowledged op, and every state a later failed op could
// have left. A read is right when it is one of them.

// opKind is a write operation.
type opKind string

// The write operations.
const (
	opPut    opKind = "put"
	opAdd    opKind = "add"
	opDelete opKind = "delete"
)

// outcome is what the writer was told.
type outcome string

// Outcomes. An op without one has not returned: if its process died, it is
// as indeterminate as a failed one.
const (
	outcomeOK        outcome = "ok"        // STORED or REMOVED
	outcomeNotStored outcome = "notstored" // Add found the key held: no change
	outcomeNotFound  outcome = "notfound"  // Delete found no key: the key is absent
	outcomeFailed    outcome = "failed"    // an error: indeterminate
)

// acked reports whether the writer was told the op's result.
func (o outcome) acked() bool {
	return o == outcomeOK || o == outcomeNotStored || o == outcomeNotFound
}

// opRef names an op: the epoch of the process that made it (unique per
// node process in a run) and its number in that process.
type opRef struct {
	Epoch int
	ID    int64
}

// ledgerOp is one write.
type ledgerOp struct {
	opRef
	Key    string
	Kind   opKind
	Value  string // put and add; never empty
	Result outcome
}

// ledger records writes as the node processes report them. It is safe for
// concurrent use.
type ledger struct {
	mu    sync.Mutex
	ops   map[opRef]*ledgerOp
	byKey map[string][]*ledgerOp
}

func newLedger() *ledger {
	return &ledger{ops: make(map[opRef]*ledgerOp), byKey: make(map[string][]*ledgerOp)}
}

// begin records an op about to be sent.
func (l *ledger) begin(ref opRef, key string, kind opKind, value string) error {
	switch {
	case key == "":
		return fmt.Errorf("op %v: no key", ref)
	case kind != opPut && kind != opAdd && kind != opDelete:
		return fmt.Errorf("op %v: unknown kind %q", ref, kind)
	case kind != opDelete && value == "":
		return fmt.Errorf("op %v: %s without a value", ref, kind)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ops[ref] != nil {
		return fmt.Errorf("op %v begun twice", ref)
	}
	op := &ledgerOp{opRef: ref, Key: key, Kind: kind, Value: value}
	l.ops[ref] = op
	l.byKey[key] = append(l.byKey[key], op)
	return nil
}

// end records what the writer was told about a begun op.
func (l *ledger) end(ref opRef, r outcome) error {
	if !r.acked() && r != outcomeFailed {
		return fmt.Errorf("op %v: unknown outcome %q", ref, r)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	op := l.ops[ref]
	switch {
	case op == nil:
		return fmt.Errorf("op %v ended but never begun", ref)
	case op.Result != "":
		return fmt.Errorf("op %v ended twice", ref)
	}
	op.Result = r
	return nil
}

// ledgerCounts sums up the ledger.
type ledgerCounts struct {
	Writes  int `json:"writes"`  // ops begun
	Acked   int `json:"acked"`   // ops acknowledged (STORED, REMOVED, NOT_STORED, NOT_FOUND)
	Failed  int `json:"failed"`  // ops that returned an error
	Pending int `json:"pending"` // ops that never returned: their process died
	Keys    int `json:"keys"`
}

func (l *ledger) counts() ledgerCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := ledgerCounts{Writes: len(l.ops), Keys: len(l.byKey)}
	for _, op := range l.ops {
		switch {
		case op.Result.acked():
			c.Acked++
		case op.Result == outcomeFailed:
			c.Failed++
		default:
			c.Pending++
		}
	}
	return c
}

// keys returns every key written, sorted.
func (l *ledger) keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.byKey))
}

// expectation is the set of states a key may be in at the end.
type expectation struct {
	absent bool            // the key may be absent
	values map[string]bool // values it may hold
	// anyValue: an acknowledged NOT_STORED said the key was held when the
	// ledger allowed no value; any value is then accepted.
	anyValue bool
	// contradictions counts acknowledged results the ledger could not
	// explain: a NOT_STORED for a key that must have been absent, a
	// NOT_FOUND for one that must have been held.
	contradictions int
	contradicted   string // the first of them, for the report
}

func (e *expectation) allows(present bool, value string) bool {
	if !present {
		return e.absent
	}
	return e.anyValue || e.values[value]
}

// expect computes the possible end states of key from its ops.
func (l *ledger) expect(key string) expectation {
	l.mu.Lock()
	ops := slices.Clone(l.byKey[key])
	l.mu.Unlock()
	slices.SortFunc(ops, func(a, b *ledgerOp) int {
		if a.Epoch != b.Epoch {
			return a.Epoch - b.Epoch
		}
		return int(a.ID - b.ID)
	})
	e := expectation{absent: true, values: map[string]bool{}}
	for _, op := range ops {
		e.apply(op)
	}
	return e
}

// apply moves the possible states over one op.
func (e *expectation) apply(op *ledgerOp) {
	held := len(e.values) > 0 || e.anyValue
	if !op.Result.acked() { // failed or never returned: it may have been applied
		switch op.Kind {
		case opPut:
			e.values[op.Value] = true
		case opAdd:
			if e.absent {
				e.values[op.Value] = true
			}
		case opDelete:
			e.absent = true
		}
		return
	}
	// An acknowledged result also tells what the key held before it:
	// REMOVED and NOT_STORED a value, NOT_FOUND and an Add's STORED none.
	heldBefore := op.Result == outcomeNotStored || op.Kind == opDelete && op.Result == outcomeOK
	if heldBefore && !held || !heldBefore && op.Kind != opPut && !e.absent {
		if e.contradictions == 0 {
			e.contradicted = fmt.Sprintf("%s %q answered %s (op %d of epoch %d) where the ledger allowed %s", op.Kind, op.Value, op.Result, op.ID, op.Epoch, e)
		}
		e.contradictions++
	}
	switch {
	case op.Result == outcomeNotStored: // no change, but the key is held
		e.absent = false
		e.anyValue = e.anyValue || !held
	case op.Kind == opDelete: // REMOVED or NOT_FOUND
		e.absent, e.anyValue = true, false
		clear(e.values)
	default: // STORED
		e.absent, e.anyValue = false, false
		clear(e.values)
		e.values[op.Value] = true
	}
}

// String shows a read for messages.
func (r readResult) String() string {
	switch {
	case r.Err != "":
		return "error " + r.Err
	case !r.Present:
		return "absent"
	}
	return fmt.Sprintf("%q", r.Value)
}

// readResult is one key as one host read it at the end.
type readResult struct {
	Present bool   `json:"present,omitempty"`
	Value   string `json:"value,omitempty"`
	Err     string `json:"err,omitempty"` // the read failed, retries included
}

// checkResult is the verdict on the final reads.
type checkResult struct {
	Keys        int      `json:"keys"`        // keys checked
	Reads       int      `json:"reads"`       // key × host reads
	Lost        int      `json:"lost"`        // keys an acknowledged value of which some host read as absent
	Stale       int      `json:"stale"`       // keys some host read with a value no write can explain (resurrected included)
	Resurrected int      `json:"resurrected"` // of the stale keys: acknowledged deleted, yet read with a value
	Unreadable  int      `json:"unreadable"`  // keys some host could not read at all
	Disagree    int      `json:"disagree"`    // keys the hosts read differently (errors aside)
	Odd         int      `json:"contradictions,omitempty"`
	OddExamples []string `json:"contradiction_examples,omitempty"` // the first contradiction of a few keys
	Examples    []string `json:"examples,omitempty"`               // a few of the wrong reads
	// ByClass splits Keys, Lost and Stale by key class (protocol.go).
	ByClass map[string]*classCounts `json:"by_class,omitempty"`
}

// classCounts are the keys of one class, and how many were lost or stale.
type classCounts struct {
	Keys  int `json:"keys"`
	Lost  int `json:"lost"`
	Stale int `json:"stale"`
}

// maxExamples bounds checkResult.Examples.
const maxExamples = 8

// check judges the final reads: byHost maps a host's name to what it read
// for each key. A key missing from a host's map counts as unreadable there.
func (l *ledger) check(byHost map[string]map[string]readResult) checkResult {
	var res checkResult
	hosts := slices.Sorted(maps.Keys(byHost))
	for _, key := range l.keys() {
		e := l.expect(key)
		res.Keys++
		res.Odd += e.contradictions
		if e.contradictions > 0 && len(res.OddExamples) < maxExamples {
			res.OddExamples = append(res.OddExamples, key+": "+e.contradicted)
		}
		wrong := map[string]bool{}
		var reads []readResult // distinct reads, in host order
		where := map[readResult][]string{}
		for _, h := range hosts {
			r, ok := byHost[h][key]
			if !ok {
				r = readResult{Err: "no answer"}
			}
			res.Reads++
			if where[r] == nil {
				reads = append(reads, r)
			}
			where[r] = append(where[r], h)
			if w := e.judge(r); w != "" {
				wrong[w] = true
			}
		}
		res.Lost += b2i(wrong[wrongLost])
		res.Stale += b2i(wrong[wrongStale] || wrong[wrongBack])
		if class := classOfKey(key); class != "" {
			if res.ByClass == nil {
				res.ByClass = map[string]*classCounts{}
			}
			cc := res.ByClass[class]
			if cc == nil {
				cc = &classCounts{}
				res.ByClass[class] = cc
			}
			cc.Keys++
			cc.Lost += b2i(wrong[wrongLost])
			cc.Stale += b2i(wrong[wrongStale] || wrong[wrongBack])
		}
		res.Resurrected += b2i(wrong[wrongBack])
		res.Unreadable += b2i(wrong[wrongUnreadable])
		answers := 0 // distinct reads that are not errors
		for _, r := range reads {
			answers += b2i(r.Err == "")
		}
		res.Disagree += b2i(answers > 1)
		if (len(wrong) > 0 || answers > 1) && len(res.Examples) < maxExamples {
			var views []string
			for _, r := range reads {
				v := fmt.Sprintf("%s on %s", r, strings.Join(where[r], ","))
				if w := e.judge(r); w != "" {
					v += " (" + w + ")"
				}
				views = append(views, v)
			}
			res.Examples = append(res.Examples, fmt.Sprintf("%s: want %s; read %s", key, e, strings.Join(views, "; ")))
		}
	}
	return res
}

// What is wrong with a read.
const (
	wrongLost       = "lost"       // absent, though an acknowledged value must be there
	wrongStale      = "stale"      // a value no write can explain now
	wrongBack       = "came back"  // a value, though the key was deleted
	wrongUnreadable = "unreadable" // no answer
)

// judge says what is wrong with a read, or "" when it is allowed.
func (e *expectation) judge(r readResult) string {
	switch {
	case r.Err != "":
		return wrongUnreadable
	case e.allows(r.Present, r.Value):
		return ""
	case !r.Present:
		return wrongLost
	case len(e.values) == 0 && !e.anyValue:
		return wrongBack
	}
	return wrongStale
}

// String lists the possible states, for messages.
func (e expectation) String() string {
	var s []string
	if e.absent {
		s = append(s, "absent")
	}
	if e.anyValue {
		s = append(s, "any value")
	}
	for _, v := range slices.Sorted(maps.Keys(e.values)) {
		s = append(s, fmt.Sprintf("%q", v))
	}
	return strings.Join(s, " or ")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
