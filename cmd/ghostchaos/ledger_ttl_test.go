package main

import (
	"strings"
	"testing"
	"time"
)

// The ledger's judgements of TTLs, a full cache, and keys that come back.

// t0 is an arbitrary moment, 2026-12-01 12:00 UTC in unix ns, so that test
// times read as offsets from it.
const t0 int64 = 1796126400_000_000_000

// at is t0 plus a number of seconds, in unix ns.
func at(s float64) int64 { return t0 + int64(s*float64(time.Second)) }

// timedWrite is one op of a timed history: from start to end seconds
// after t0 (end 0: it never returned).
type timedWrite struct {
	kind       opKind
	value      string
	ttl        time.Duration
	start, end float64
	res        outcome
}

// timedLedger records the ops of one key, "k", in order, under rules.
func timedLedger(t *testing.T, rules ledgerRules, ops ...timedWrite) *ledger {
	t.Helper()
	l := newLedgerWith(rules)
	for i, w := range ops {
		ref := opRef{Epoch: 1, ID: int64(i + 1)}
		mustOK(t, l.begin(ref, "k", w.kind, w.value, w.ttl, at(w.start)))
		if w.res != "" {
			mustOK(t, l.end(ref, w.res, at(w.end)))
		}
	}
	return l
}

// readAt is a read of v (absent when "") made from start to end seconds
// after t0.
func readAt(v string, start, end float64) readResult {
	return readResult{Present: v != "", Value: v, Start: at(start), End: at(end)}
}

// rulesTTL are the rules of a scenario with synchronised clocks and room
// in the cache.
func rulesTTL() ledgerRules { return ledgerRules{tolerance: baseTolerance} }

func TestTTLBounds(t *testing.T) {
	// A put with a 1s TTL, called at 10.0s and answered at 10.1s: its
	// primary set the deadline between 11.0s and 11.1s.
	l := timedLedger(t, rulesTTL(), timedWrite{opPut, "a", time.Second, 10, 10.1, outcomeOK})
	e := l.expect("k")
	for _, c := range []struct {
		read readResult
		want string // judge's verdict
	}{
		{readAt("a", 10.5, 10.6), ""},
		{readAt("", 10.5, 10.6), wrongLost},         // well before any deadline
		{readAt("", 10.8, 10.94), wrongLost},        // ends before the earliest deadline, tolerance included
		{readAt("", 10.8, 10.96), noteExpired},      // may end within the tolerance of the earliest deadline
		{readAt("a", 11.0, 11.05), ""},              // the deadline may not have passed yet
		{readAt("", 11.0, 11.05), noteExpired},      // or it may have
		{readAt("a", 11.14, 11.2), ""},              // starts within the tolerance of the latest deadline
		{readAt("a", 11.16, 11.2), wrongExpired},    // starts after the latest deadline and the tolerance
		{readAt("", 12, 12.1), noteExpired},         // long gone, as it should be
		{readAt("b", 10.5, 10.6), wrongStale},       // never written
		{readResult{Present: true, Value: "a"}, ""}, // no times: the widest window
		{readResult{Err: "timeout", Start: at(12)}, wrongUnreadable},
	} {
		if got := e.judge(c.read); got != c.want {
			t.Errorf("read %s from %.2fs to %.2fs: judged %q, want %q (possible: %s)",
				c.read, float64(c.read.Start-t0)/1e9, float64(c.read.End-t0)/1e9, got, c.want, e)
		}
	}
}

func TestTTLOlderValueAfterTheNewerExpired(t *testing.T) {
	l := timedLedger(t, rulesTTL(),
		timedWrite{opPut, "old", 0, 1, 1.1, outcomeOK},
		timedWrite{opPut, "new", time.Second, 2, 2.1, outcomeOK})
	e := l.expect("k")
	for _, c := range []struct {
		read readResult
		want string
	}{
		{readAt("new", 2.5, 2.6), ""},
		{readAt("old", 2.5, 2.6), wrongStale}, // older, while the newer one lives
		{readAt("old", 5, 5.1), wrongExpired}, // older, once the newer one ran out: what the TTL should have removed
		{readAt("new", 5, 5.1), wrongExpired}, // the newer one, after its TTL
		{readAt("", 5, 5.1), noteExpired},
	} {
		if got := e.judge(c.read); got != c.want {
			t.Errorf("read %s: judged %q, want %q (possible: %s)", c.read, got, c.want, e)
		}
	}
}

func TestTTLOfAnUnacknowledgedWrite(t *testing.T) {
	// A put that failed may have been applied at any moment since its
	// start: it may run out from start plus TTL on, and may still be live
	// at any later time.
	l := timedLedger(t, rulesTTL(),
		timedWrite{opDelete, "", 0, 1, 1.1, outcomeOK},
		timedWrite{opPut, "a", time.Second, 2, 5, outcomeFailed})
	e := l.expect("k")
	for _, r := range []readResult{readAt("", 2.1, 2.2), readAt("a", 100, 100.1), readAt("", 100, 100.1)} {
		if w := e.judge(r); isWrong(w) {
			t.Errorf("read %s: judged %q (possible: %s)", r, w, e)
		}
	}
}

func TestTTLWritesAfterExpiry(t *testing.T) {
	put := timedWrite{opPut, "a", time.Second, 10, 10.1, outcomeOK}
	for _, c := range []struct {
		name string
		next timedWrite
		odd  int
	}{
		{"add stored once expired", timedWrite{opAdd, "x", 0, 11.5, 11.6, outcomeOK}, 0},
		{"add stored while it may have expired", timedWrite{opAdd, "x", 0, 10.9, 11.0, outcomeOK}, 0},
		{"add stored while it lived", timedWrite{opAdd, "x", 0, 10.5, 10.6, outcomeOK}, 1},
		{"add not stored while it lived", timedWrite{opAdd, "x", 0, 10.5, 10.6, outcomeNotStored}, 0},
		{"add not stored once expired", timedWrite{opAdd, "x", 0, 11.5, 11.6, outcomeNotStored}, 1},
		{"delete not found once expired", timedWrite{opDelete, "", 0, 11.5, 11.6, outcomeNotFound}, 0},
		{"delete not found while it lived", timedWrite{opDelete, "", 0, 10.5, 10.6, outcomeNotFound}, 1},
		{"delete removed once expired", timedWrite{opDelete, "", 0, 11.5, 11.6, outcomeOK}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := timedLedger(t, rulesTTL(), put, c.next).expect("k")
			if e.contradictions != c.odd {
				t.Errorf("contradictions = %d, want %d (%s)", e.contradictions, c.odd, e.contradicted)
			}
		})
	}
	// An Add that may have found the key expired, and failed, may have
	// stored its value.
	e := timedLedger(t, rulesTTL(), put, timedWrite{opAdd, "x", 0, 11.5, 11.6, outcomeFailed}).expect("k")
	if !e.allows(readAt("x", 20, 20.1)) || !e.allows(readAt("", 20, 20.1)) || e.allows(readAt("a", 20, 20.1)) {
		t.Errorf("after a failed add on an expired key: possible %s", e)
	}
}

func TestTTLToleranceWidensBothBounds(t *testing.T) {
	// A node whose clock is 5 minutes ahead may set or judge deadlines 5
	// minutes off: the scenario's tolerance covers it.
	rules := ledgerRules{tolerance: baseTolerance + 5*time.Minute}
	e := timedLedger(t, rules, timedWrite{opPut, "a", time.Second, 400, 400.1, outcomeOK}).expect("k")
	for _, r := range []readResult{readAt("", 120, 120.1), readAt("a", 600, 600.1)} {
		if w := e.judge(r); isWrong(w) {
			t.Errorf("read %s: judged %q with a 5 min tolerance", r, w)
		}
	}
}

func TestFullCache(t *testing.T) {
	full := ledgerRules{evictable: true, tolerance: baseTolerance}
	for _, c := range []struct {
		name string
		ops  []timedWrite
		read readResult
		want string
		odd  int
	}{
		{"evicted value", []timedWrite{{opPut, "a", 0, 1, 1.1, outcomeOK}}, readAt("", 5, 5.1), noteEvicted, 0},
		{"kept value", []timedWrite{{opPut, "a", 0, 1, 1.1, outcomeOK}}, readAt("a", 5, 5.1), "", 0},
		{"older value", []timedWrite{{opPut, "a", 0, 1, 1.1, outcomeOK}, {opPut, "b", 0, 2, 2.1, outcomeOK}}, readAt("a", 5, 5.1), wrongStale, 0},
		{"deleted value", []timedWrite{{opPut, "a", 0, 1, 1.1, outcomeOK}, {opDelete, "", 0, 2, 2.1, outcomeOK}}, readAt("a", 5, 5.1), wrongBack, 0},
		{"expired beats evicted", []timedWrite{{opPut, "a", time.Second, 1, 1.1, outcomeOK}}, readAt("", 5, 5.1), noteExpired, 0},
		{"expired value back", []timedWrite{{opPut, "a", time.Second, 1, 1.1, outcomeOK}}, readAt("a", 5, 5.1), wrongExpired, 0},
		// An evicted pair answers NOT_FOUND to a delete, and STORED
		// to an add: no contradiction in a full cache.
		{"not found after eviction", []timedWrite{{opPut, "a", 0, 1, 1.1, outcomeOK}, {opDelete, "", 0, 2, 2.1, outcomeNotFound}}, readAt("", 5, 5.1), "", 0},
		{"add after eviction", []timedWrite{{opPut, "a", 0, 1, 1.1, outcomeOK}, {opAdd, "x", 0, 2, 2.1, outcomeOK}}, readAt("x", 5, 5.1), "", 0},
		// But eviction makes no value: NOT_STORED on a deleted key is
		// still a contradiction.
		{"not stored after delete", []timedWrite{{opPut, "a", 0, 1, 1.1, outcomeOK}, {opDelete, "", 0, 2, 2.1, outcomeOK}, {opAdd, "x", 0, 3, 3.1, outcomeNotStored}},
			readAt("", 5, 5.1), noteEvicted, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := timedLedger(t, full, c.ops...).expect("k")
			if got := e.judge(c.read); got != c.want {
				t.Errorf("read %s: judged %q, want %q (possible: %s)", c.read, got, c.want, e)
			}
			if e.contradictions != c.odd {
				t.Errorf("contradictions = %d, want %d (%s)", e.contradictions, c.odd, e.contradicted)
			}
		})
	}
	// Without a full cache the same absence is a loss.
	e := timedLedger(t, rulesTTL(), timedWrite{opPut, "a", 0, 1, 1.1, outcomeOK}).expect("k")
	if w := e.judge(readAt("", 5, 5.1)); w != wrongLost {
		t.Errorf("an absent value outside a full cache: judged %q, want %q", w, wrongLost)
	}
}

func TestCheckCountsComebacks(t *testing.T) {
	l := newLedgerWith(ledgerRules{evictable: true, tolerance: baseTolerance})
	id := int64(0)
	write := func(key string, kind opKind, value string, ttl time.Duration, start, end float64) {
		id++
		ref := opRef{Epoch: 1, ID: id}
		mustOK(t, l.begin(ref, key, kind, value, ttl, at(start)))
		mustOK(t, l.end(ref, outcomeOK, at(end)))
	}
	write("deleted", opPut, "a", 0, 1, 1.1)
	write("deleted", opDelete, "", 0, 2, 2.1)
	write("expired", opPut, "a", time.Second, 1, 1.1)
	write("older", opPut, "a", 0, 1, 1.1)
	write("older", opPut, "b", time.Second, 2, 2.1)
	write("evicted", opPut, "a", 0, 1, 1.1)
	write("ranout", opPut, "a", time.Second, 1, 1.1)
	write("kept", opPut, "a", 0, 1, 1.1)
	h1 := map[string]readResult{
		"deleted": readAt("a", 10, 10.1), "expired": readAt("a", 10, 10.1), "older": readAt("a", 10, 10.1),
		"evicted": readAt("", 10, 10.1), "ranout": readAt("", 10, 10.1), "kept": readAt("a", 10, 10.1),
	}
	res := l.check(map[string]map[string]readResult{"h1": h1})
	if res.Stale != 3 || res.Resurrected != 1 || res.ExpiredBack != 2 || res.Lost != 0 || res.Evicted != 1 || res.Expired != 1 {
		t.Errorf("check = %+v", res)
	}
	text := strings.Join(res.Examples, "\n")
	for _, s := range []string{
		`deleted: want absent; read "a" on h1 (came back)`,
		`older: want "b" (expiring 12:00:03.000…12:00:03.100) or evicted; read "a" on h1 (expired)`,
	} {
		if !strings.Contains(text, s) {
			t.Errorf("examples lack %q:\n%s", s, text)
		}
	}
}

func TestReadsOfHostsGroupWithoutTheirTimes(t *testing.T) {
	l := timedLedger(t, rulesTTL(), timedWrite{opPut, "a", 0, 1, 1.1, outcomeOK})
	res := l.check(map[string]map[string]readResult{
		"h1": {"k": readAt("a", 5, 5.1)},
		"h2": {"k": readAt("a", 6, 6.1)},
	})
	if res.Disagree != 0 || len(res.Examples) != 0 {
		t.Errorf("two hosts that read the same value at different times: %+v", res)
	}
}

// isWrong tells judge's faults from its notes.
func isWrong(w string) bool { return w != "" && w != noteEvicted && w != noteExpired }
