package main

import (
	"strings"
	"testing"
	"time"
)

// write is one op of a test history: kind, value, outcome.
type write struct {
	kind  opKind
	value string
	res   outcome // "" for an op that never returned
}

// ledgerOf records the histories of keys, each key's ops in order, spread
// over two epochs so that sorting by epoch is exercised too.
func ledgerOf(t *testing.T, histories map[string][]write) *ledger {
	t.Helper()
	l := newLedger()
	k := 0
	for key, ops := range histories {
		k++
		for i, w := range ops {
			// Ids rise within an epoch and fall across them: the epoch
			// decides first.
			ref := opRef{Epoch: 1 + i/3, ID: int64(1000*k + 100 - 10*(i/3) + i%3)}
			if err := l.begin(ref, key, w.kind, w.value, 0, 0); err != nil {
				t.Fatal(err)
			}
			if w.res != "" {
				if err := l.end(ref, w.res, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return l
}

func present(v string) readResult { return readResult{Present: true, Value: v} }

var absent = readResult{}

func TestExpectation(t *testing.T) {
	for _, c := range []struct {
		name   string
		ops    []write
		allow  []readResult
		refuse []readResult
		odd    int
	}{
		{"never acked", []write{{opPut, "a", outcomeFailed}},
			[]readResult{absent, present("a")}, []readResult{present("b")}, 0},
		{"last ack wins", []write{{opPut, "a", outcomeOK}, {opPut, "b", outcomeOK}},
			[]readResult{present("b")}, []readResult{absent, present("a")}, 0},
		{"failed after ack", []write{{opPut, "a", outcomeOK}, {opPut, "b", outcomeFailed}, {opDelete, "", outcomeFailed}},
			[]readResult{present("a"), present("b"), absent}, []readResult{present("c")}, 0},
		{"failed before ack is forgotten", []write{{opPut, "a", outcomeFailed}, {opPut, "b", outcomeOK}},
			[]readResult{present("b")}, []readResult{present("a"), absent}, 0},
		{"pending counts as failed", []write{{opPut, "a", outcomeOK}, {opPut, "b", ""}},
			[]readResult{present("a"), present("b")}, []readResult{absent}, 0},
		{"deleted stays deleted", []write{{opPut, "a", outcomeOK}, {opDelete, "", outcomeOK}},
			[]readResult{absent}, []readResult{present("a")}, 0},
		{"add on absent", []write{{opDelete, "", outcomeNotFound}, {opAdd, "x", outcomeOK}},
			[]readResult{present("x")}, []readResult{absent}, 0},
		{"failed add only if absent", []write{{opPut, "a", outcomeOK}, {opAdd, "x", outcomeFailed}},
			[]readResult{present("a")}, []readResult{present("x"), absent}, 0},
		{"not stored keeps the value", []write{{opPut, "a", outcomeOK}, {opAdd, "x", outcomeNotStored}},
			[]readResult{present("a")}, []readResult{present("x"), absent}, 0},
		{"not stored after a failed put", []write{{opDelete, "", outcomeOK}, {opPut, "a", outcomeFailed}, {opAdd, "x", outcomeNotStored}},
			[]readResult{present("a")}, []readResult{absent, present("x")}, 1}, // REMOVED of a key never written
		{"not stored contradicts the ledger", []write{{opAdd, "x", outcomeNotStored}},
			[]readResult{present("zzz")}, []readResult{absent}, 1},
		{"not found contradicts the ledger", []write{{opPut, "a", outcomeOK}, {opDelete, "", outcomeNotFound}},
			[]readResult{absent}, []readResult{present("a")}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := ledgerOf(t, map[string][]write{"k": c.ops})
			e := l.expect("k")
			for _, r := range c.allow {
				if !e.allows(r) {
					t.Errorf("%+v refused; possible: %s", r, e)
				}
			}
			for _, r := range c.refuse {
				if e.allows(r) {
					t.Errorf("%+v allowed; possible: %s", r, e)
				}
			}
			if e.contradictions != c.odd {
				t.Errorf("contradictions = %d, want %d", e.contradictions, c.odd)
			}
		})
	}
}

func TestLedgerOrdersByEpochThenID(t *testing.T) {
	l := newLedger()
	// The restarted writer's op (epoch 2, id 1) follows the first
	// process's (epoch 1, id 50), whatever order the reports came in.
	mustOK(t, l.begin(opRef{2, 1}, "k", opPut, "new", 0, 0))
	mustOK(t, l.end(opRef{2, 1}, outcomeOK, 0))
	mustOK(t, l.begin(opRef{1, 50}, "k", opPut, "old", 0, 0))
	mustOK(t, l.end(opRef{1, 50}, outcomeOK, 0))
	if e := l.expect("k"); !e.allows(present("new")) || e.allows(present("old")) {
		t.Errorf("possible states %s, want only \"new\"", e)
	}
}

func TestLedgerRefusesBadReports(t *testing.T) {
	l := newLedger()
	mustOK(t, l.begin(opRef{1, 1}, "k", opPut, "v", 0, 0))
	for name, err := range map[string]error{
		"begun twice":     l.begin(opRef{1, 1}, "k", opPut, "v", 0, 0),
		"no key":          l.begin(opRef{1, 2}, "", opPut, "v", 0, 0),
		"unknown kind":    l.begin(opRef{1, 3}, "k", "incr", "v", 0, 0),
		"put no value":    l.begin(opRef{1, 4}, "k", opPut, "", 0, 0),
		"negative ttl":    l.begin(opRef{1, 5}, "k", opPut, "v", -time.Second, 0),
		"delete with ttl": l.begin(opRef{1, 6}, "k", opDelete, "", time.Second, 0),
		"never begun":     l.end(opRef{9, 9}, outcomeOK, 0),
		"bad outcome":     l.end(opRef{1, 1}, "maybe", 0),
		"ended twice":     func() error { _ = l.end(opRef{1, 1}, outcomeOK, 0); return l.end(opRef{1, 1}, outcomeOK, 0) }(),
		"pending is ''":   l.end(opRef{1, 1}, "", 0),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if c := l.counts(); c.Writes != 1 || c.Acked != 1 || c.Keys != 1 {
		t.Errorf("counts = %+v", c)
	}
}

func TestCheck(t *testing.T) {
	l := ledgerOf(t, map[string][]write{
		"kept":    {{opPut, "a", outcomeOK}},
		"lost":    {{opPut, "a", outcomeOK}},
		"stale":   {{opPut, "a", outcomeOK}, {opPut, "b", outcomeOK}},
		"back":    {{opPut, "a", outcomeOK}, {opDelete, "", outcomeOK}},
		"unsure":  {{opPut, "a", outcomeOK}, {opDelete, "", outcomeFailed}},
		"unread":  {{opPut, "a", outcomeOK}},
		"twoways": {{opPut, "a", outcomeOK}, {opPut, "b", outcomeFailed}},
	})
	h1 := map[string]readResult{
		"kept": present("a"), "lost": absent, "stale": present("a"), "back": present("a"),
		"unsure": absent, "unread": {Err: "timeout"}, "twoways": present("a"),
	}
	h2 := map[string]readResult{
		"kept": present("a"), "lost": present("a"), "stale": present("b"), "back": absent,
		"unsure": absent, "twoways": present("b"), // "unread" missing
	}
	res := l.check(map[string]map[string]readResult{"h1": h1, "h2": h2})
	want := checkResult{Keys: 7, Reads: 14, Lost: 1, Stale: 2, Resurrected: 1, Unreadable: 1, Disagree: 4}
	res.Examples, want.Examples = nil, nil
	if res.Keys != want.Keys || res.Reads != want.Reads || res.Lost != want.Lost || res.Stale != want.Stale ||
		res.Resurrected != want.Resurrected || res.Unreadable != want.Unreadable || res.Disagree != want.Disagree {
		t.Errorf("check = %+v\nwant    %+v", res, want)
	}
	full := l.check(map[string]map[string]readResult{"h1": h1, "h2": h2})
	text := strings.Join(full.Examples, "\n")
	for _, s := range []string{
		`lost: want "a"; read absent on h1 (lost); "a" on h2`,
		`stale: want "b"; read "a" on h1 (stale); "b" on h2`,
		`back: want absent; read "a" on h1 (came back); absent on h2`,
		`unread: want "a"; read error timeout on h1 (unreadable); error no answer on h2 (unreadable)`,
		`twoways: want "a" or "b"; read "a" on h1; "b" on h2`,
	} {
		if !strings.Contains(text, s) {
			t.Errorf("examples lack %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "kept") || strings.Contains(text, "unsure") {
		t.Errorf("examples name keys read right everywhere:\n%s", text)
	}
}

func TestCheckByClass(t *testing.T) {
	cold, warm, hot := keyName(1, 0, 0), keyName(1, 0, 1), keyName(1, 0, 2)
	l := ledgerOf(t, map[string][]write{
		cold: {{opAdd, "a", outcomeOK}},
		warm: {{opPut, "a", outcomeOK}, {opPut, "b", outcomeOK}},
		hot:  {{opPut, "a", outcomeOK}},
	})
	res := l.check(map[string]map[string]readResult{"h1": {cold: absent, warm: present("a"), hot: present("a")}})
	want := map[string]classCounts{classCold: {1, 1, 0}, classWarm: {1, 0, 1}, classHot: {1, 0, 0}}
	for c, w := range want {
		if got := res.ByClass[c]; got == nil || *got != w {
			t.Errorf("class %s: %+v, want %+v", c, got, w)
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
