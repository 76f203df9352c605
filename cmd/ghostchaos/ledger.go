package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
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
	Value  string        // put and add; never empty
	TTL    time.Duration // put and add: the pair's TTL; 0 for none
	Start  int64         // unix ns, the writer's clock, just before the call
	End    int64         // unix ns, just after it returned; 0 while it has not
	Result outcome
}

// ledger records writes as the node processes report them. It is safe for
// concurrent use.
type ledger struct {
	rules ledgerRules // set before the first report, never after
	mu    sync.Mutex
	ops   map[opRef]*ledgerOp
	byKey map[string][]*ledgerOp
}

// ledgerRules are what a scenario allows beyond what its writes explain.
type ledgerRules struct {
	// evictable: the nodes run with a small MaxKeys, so any pair may have
	// been evicted, and any key may read absent (counted as evicted). No
	// other state is allowed on that account: not an older value, not a
	// deleted one.
	evictable bool
	// tolerance is how far the node clocks that set and judge TTL
	// deadlines may be from the clock the writers and readers time their
	// calls with.
	tolerance time.Duration
}

// baseTolerance is the clock tolerance of TTL judgements when no node's
// clock is offset: every process of the suite reads the same host clock,
// so it only covers the moments between reading the clock and the call.
const baseTolerance = 50 * time.Millisecond

func newLedger() *ledger { return newLedgerWith(ledgerRules{tolerance: baseTolerance}) }

func newLedgerWith(rules ledgerRules) *ledger {
	return &ledger{rules: rules, ops: make(map[opRef]*ledgerOp), byKey: make(map[string][]*ledgerOp)}
}

// begin records an op about to be sent at at (unix ns).
func (l *ledger) begin(ref opRef, key string, kind opKind, value string, ttl time.Duration, at int64) error {
	switch {
	case key == "":
		return fmt.Errorf("op %v: no key", ref)
	case kind != opPut && kind != opAdd && kind != opDelete:
		return fmt.Errorf("op %v: unknown kind %q", ref, kind)
	case kind != opDelete && value == "":
		return fmt.Errorf("op %v: %s without a value", ref, kind)
	case ttl < 0 || kind == opDelete && ttl != 0:
		return fmt.Errorf("op %v: %s with ttl %v", ref, kind, ttl)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ops[ref] != nil {
		return fmt.Errorf("op %v begun twice", ref)
	}
	op := &ledgerOp{opRef: ref, Key: key, Kind: kind, Value: value, TTL: ttl, Start: at}
	l.ops[ref] = op
	l.byKey[key] = append(l.byKey[key], op)
	return nil
}

// end records what the writer was told about a begun op, at at (unix ns).
func (l *ledger) end(ref opRef, r outcome, at int64) error {
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
	case at != 0 && at < op.Start:
		return fmt.Errorf("op %v ended before it began", ref)
	}
	op.Result, op.End = r, at
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

// The ledger's notion of time: a pair written with a TTL expires at a
// deadline its primary sets, from its own clock, at some moment of the
// call. From the writer's side the deadline lies between the call's start
// plus the TTL and its return plus the TTL (a write that was not
// acknowledged may have been applied at any later moment, so its latest
// deadline is unbounded). A key may be seen absent once its earliest
// deadline has passed, and may be seen present until its latest deadline
// has; each observation (a later write's answer, a final read) is judged
// over its own interval, the call's start to its return, and with the
// rules' clock tolerance on both bounds.

// noDeadline is the latest deadline of a pair that may have been written
// at any moment.
const noDeadline = math.MaxInt64

// deadline is when a possible value expires, unix ns.
type deadline struct {
	expires          bool // written with a TTL; else it never expires
	earliest, latest int64
}

// expectation is the set of states a key may be in at the end.
type expectation struct {
	absent bool                // the key may be absent, whatever the time
	values map[string]deadline // values it may hold, each until its deadline
	// anyValue: an acknowledged NOT_STORED said the key was held when the
	// ledger allowed no value; any value is then accepted. anyExpires: so
	// is an absent read, when some write of the key had a TTL.
	anyValue, anyExpires bool
	rules                ledgerRules
	// contradictions counts acknowledged results the ledger could not
	// explain: a NOT_STORED for a key that must have been absent, a
	// NOT_FOUND for one that must have been held.
	contradictions int
	contradicted   string // the first of them, for the report
}

// window is the interval of an observation, unix ns: a call's start and
// return. Zero times are unknown: the widest window, which allows the most.
func window(start, end int64) (int64, int64) {
	if end == 0 {
		end = noDeadline
	}
	return start, end
}

// mayBeLive reports whether a pair of deadline d may still have been live
// at some moment from start on.
func (e *expectation) mayBeLive(d deadline, start int64) bool {
	return !d.expires || d.latest == noDeadline || start < d.latest+int64(e.rules.tolerance)
}

// mayBeExpired reports whether a pair of deadline d may have expired by
// end.
func (e *expectation) mayBeExpired(d deadline, end int64) bool {
	return d.expires && (end == noDeadline || end+int64(e.rules.tolerance) >= d.earliest)
}

// mayBeAbsent reports whether the key may have been absent at some moment
// of the window that ends at end: deleted, never written, evicted, or
// expired.
func (e *expectation) mayBeAbsent(end int64) bool {
	return e.absent || e.rules.evictable || e.mayBeAbsentByTime(end)
}

// mayBeAbsentByTime is mayBeAbsent for expiry alone.
func (e *expectation) mayBeAbsentByTime(end int64) bool {
	if e.anyValue && e.anyExpires {
		return true
	}
	for _, d := range e.values {
		if e.mayBeExpired(d, end) {
			return true
		}
	}
	return false
}

// mayBeHeld reports whether the key may have held a value at some moment
// of the window that starts at start.
func (e *expectation) mayBeHeld(start int64) bool {
	if e.anyValue {
		return true
	}
	for _, d := range e.values {
		if e.mayBeLive(d, start) {
			return true
		}
	}
	return false
}

// allows reports whether a read is one of the possible states.
func (e *expectation) allows(r readResult) bool {
	start, end := window(r.Start, r.End)
	if !r.Present {
		return e.mayBeAbsent(end)
	}
	if e.anyValue {
		return true
	}
	d, ok := e.values[r.Value]
	return ok && e.mayBeLive(d, start)
}

// expect computes the possible end states of key from its ops.
func (l *ledger) expect(key string) expectation {
	l.mu.Lock()
	ops := make([]ledgerOp, len(l.byKey[key]))
	for i, op := range l.byKey[key] {
		ops[i] = *op
	}
	l.mu.Unlock()
	slices.SortFunc(ops, func(a, b ledgerOp) int {
		if a.Epoch != b.Epoch {
			return a.Epoch - b.Epoch
		}
		return int(a.ID - b.ID)
	})
	e := expectation{absent: true, values: map[string]deadline{}, rules: l.rules}
	for i := range ops {
		e.apply(&ops[i])
	}
	return e
}

// deadlineOf is the deadline of the value op wrote.
func deadlineOf(op *ledgerOp) deadline {
	if op.TTL <= 0 {
		return deadline{}
	}
	d := deadline{expires: true, earliest: op.Start + int64(op.TTL), latest: noDeadline}
	if op.Result.acked() && op.End != 0 {
		d.latest = op.End + int64(op.TTL)
	}
	return d
}

// apply moves the possible states over one op.
func (e *expectation) apply(op *ledgerOp) {
	start, end := window(op.Start, op.End)
	held, absent := e.mayBeHeld(start), e.mayBeAbsent(end)
	e.anyExpires = e.anyExpires || op.TTL > 0
	if !op.Result.acked() { // failed or never returned: it may have been applied
		switch op.Kind {
		case opPut:
			e.values[op.Value] = deadlineOf(op)
		case opAdd:
			if absent {
				e.values[op.Value] = deadlineOf(op)
			}
		case opDelete:
			e.absent = true
		}
		return
	}
	// An acknowledged result also tells what the key held at a moment of
	// the call: REMOVED and NOT_STORED a value, NOT_FOUND and an Add's
	// STORED none.
	heldBefore := op.Result == outcomeNotStored || op.Kind == opDelete && op.Result == outcomeOK
	if heldBefore && !held || !heldBefore && op.Kind != opPut && !absent {
		if e.contradictions == 0 {
			e.contradicted = fmt.Sprintf("%s %q answered %s (op %d of epoch %d%s) where the ledger allowed %s", op.Kind, op.Value, op.Result, op.ID, op.Epoch, callText(op), e)
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
		e.values[op.Value] = deadlineOf(op)
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
	// Start and End are when the read that answered was made, unix ns:
	// what a TTL deadline is judged against. Zero: unknown.
	Start int64 `json:"start,omitempty"`
	End   int64 `json:"end,omitempty"`
}

// answer is the read without its times: what hosts that read alike share.
func (r readResult) answer() readResult {
	return readResult{Present: r.Present, Value: r.Value, Err: r.Err}
}

// checkResult is the verdict on the final reads.
type checkResult struct {
	Keys        int `json:"keys"`         // keys checked
	Reads       int `json:"reads"`        // key × host reads
	Lost        int `json:"lost"`         // keys an acknowledged value of which some host read as absent
	Stale       int `json:"stale"`        // keys some host read with a value no write can explain (resurrected and expired_back included)
	Resurrected int `json:"resurrected"`  // of the stale keys: acknowledged deleted, yet read with a value
	ExpiredBack int `json:"expired_back"` // of the stale keys: read with a value after its TTL, or an older one once the newer one's TTL was over
	Unreadable  int `json:"unreadable"`   // keys some host could not read at all
	Disagree    int `json:"disagree"`     // keys the hosts read differently (errors aside)
	// Allowed absences, counted to show that the cache was full and that
	// TTLs ran out: keys some host read absent only because a full cache
	// may have evicted them (evicted), or because their TTL may have
	// passed (expired).
	Evicted     int      `json:"evicted"`
	Expired     int      `json:"expired"`
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
		seen := map[string]bool{} // what judge said of some host's read
		var reads []readResult    // distinct answers, in host order
		where := map[readResult][]string{}
		verdicts := map[readResult]map[string]bool{}
		for _, h := range hosts {
			r, ok := byHost[h][key]
			if !ok {
				r = readResult{Err: "no answer"}
			}
			res.Reads++
			a := r.answer()
			if where[a] == nil {
				reads = append(reads, a)
				verdicts[a] = map[string]bool{}
			}
			where[a] = append(where[a], h)
			if w := e.judge(r); w != "" {
				seen[w] = true
				verdicts[a][w] = true
			}
		}
		stale := seen[wrongStale] || seen[wrongBack] || seen[wrongExpired]
		res.Lost += b2i(seen[wrongLost])
		res.Stale += b2i(stale)
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
			cc.Lost += b2i(seen[wrongLost])
			cc.Stale += b2i(stale)
		}
		res.Resurrected += b2i(seen[wrongBack])
		res.ExpiredBack += b2i(seen[wrongExpired])
		res.Unreadable += b2i(seen[wrongUnreadable])
		res.Evicted += b2i(seen[noteEvicted])
		res.Expired += b2i(seen[noteExpired])
		answers := 0 // distinct reads that are not errors
		for _, r := range reads {
			answers += b2i(r.Err == "")
		}
		res.Disagree += b2i(answers > 1)
		wrong := seen[wrongLost] || stale || seen[wrongUnreadable]
		if (wrong || answers > 1) && len(res.Examples) < maxExamples {
			var views []string
			for _, r := range reads {
				v := fmt.Sprintf("%s on %s", r, strings.Join(where[r], ","))
				if w := slices.Sorted(maps.Keys(verdicts[r])); len(w) > 0 {
					v += " (" + strings.Join(w, ", ") + ")"
				}
				views = append(views, v)
			}
			res.Examples = append(res.Examples, fmt.Sprintf("%s: want %s; read %s", key, e, strings.Join(views, "; ")))
		}
	}
	return res
}

// What is wrong with a read, and what is allowed but worth counting.
const (
	wrongLost       = "lost"       // absent, though an acknowledged value must be there
	wrongStale      = "stale"      // a value no write can explain now
	wrongBack       = "came back"  // a value, though the key was deleted
	wrongExpired    = "expired"    // a value whose TTL was over, or an older one once the newer one's was
	wrongUnreadable = "unreadable" // no answer
	noteEvicted     = "evicted"    // absent, which only an eviction explains: allowed in a full cache
	noteExpired     = "ran out"    // absent, which only a TTL explains: allowed
)

// judge says what is wrong with a read, or what allowed it when that is
// worth counting, or "" when it is plainly allowed.
func (e *expectation) judge(r readResult) string {
	start, end := window(r.Start, r.End)
	switch {
	case r.Err != "":
		return wrongUnreadable
	case !r.Present && e.absent:
		return ""
	case !r.Present && e.mayBeAbsentByTime(end):
		return noteExpired
	case !r.Present && e.rules.evictable:
		return noteEvicted
	case !r.Present:
		return wrongLost
	case e.allows(r):
		return ""
	case len(e.values) == 0:
		return wrongBack
	}
	if _, ok := e.values[r.Value]; ok || !e.mayBeHeld(start) {
		// The value itself ran out, or every value the key may hold
		// has: what came back is what the TTL should have removed.
		return wrongExpired
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
		s = append(s, fmt.Sprintf("%q", v)+e.values[v].String())
	}
	if e.rules.evictable && !e.absent {
		s = append(s, "evicted")
	}
	return strings.Join(s, " or ")
}

// String shows a deadline, for messages: empty for none.
func (d deadline) String() string {
	if !d.expires {
		return ""
	}
	latest := "never"
	if d.latest != noDeadline {
		latest = clockText(d.latest)
	}
	return fmt.Sprintf(" (expiring %s…%s)", clockText(d.earliest), latest)
}

// callText shows when a call was made, for messages: empty when unknown.
func callText(op *ledgerOp) string {
	if op.Start == 0 || op.End == 0 {
		return ""
	}
	return fmt.Sprintf(", %s…%s", clockText(op.Start), clockText(op.End))
}

// clockText shows a moment as a time of day, to the millisecond.
func clockText(ns int64) string { return time.Unix(0, ns).UTC().Format("15:04:05.000") }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
