package main

import (
	"testing"
	"time"
)

// The shared keys' calls, as node processes report them, and the final
// reads become one history: an open write (its process died) may or may
// not have landed, and a final read that shows an overwritten value is
// caught.
func TestSharedHistory(t *testing.T) {
	call := func(s *sharedLog, epoch int, id int64, key string, kind opKind, value string, at, end int64, res outcome, read string) {
		t.Helper()
		ref := opRef{Epoch: epoch, ID: id}
		mustOK(t, s.begin(message{Ref: ref, Key: key, Kind: kind, Value: value, At: at}))
		if end != 0 {
			mustOK(t, s.end(message{Ref: ref, Result: res, Value: read, At: end}))
		}
	}
	build := func() *sharedLog {
		var s sharedLog
		k := sharedKey(0)
		call(&s, 1, 1, k, opPut, "e1.1", 10, 20, outcomeOK, "")
		call(&s, 2, 1, k, opGet, "", 30, 40, outcomeOK, "e1.1")
		call(&s, 2, 2, k, opAdd, "e2.2", 50, 60, outcomeNotStored, "")
		call(&s, 3, 1, k, opPut, "e3.1", 70, 0, "", "") // its process died
		call(&s, 1, 2, k, opDelete, "", 80, 90, outcomeFailed, "")
		call(&s, 2, 3, sharedKey(1), opDelete, "", 80, 90, outcomeNotFound, "")
		return &s
	}
	final := func(value string) map[string]map[string]readResult {
		return map[string]map[string]readResult{
			"host1": {sharedKey(0): {Present: value != "", Value: value, Start: 100, End: 110}, sharedKey(1): {Start: 100, End: 110}},
			"host2": {sharedKey(0): {Err: "no quorum"}},
		}
	}
	for _, c := range []struct {
		final string
		ok    bool
	}{
		{"e1.1", true},  // neither open write landed
		{"e3.1", true},  // the dead process's put did
		{"", true},      // the failed delete did
		{"e2.2", false}, // refused: NOT_STORED
	} {
		s := build()
		if s.len() != 6 {
			t.Fatalf("%d calls logged, want 6", s.len())
		}
		v := s.history(final(c.final), 2).Check(10 * time.Second)
		if v.Linearizable() != c.ok {
			t.Errorf("final read %q: %s, want linearizable %v", c.final, v, c.ok)
		}
	}
	var s sharedLog
	call(&s, 1, 1, sharedKey(0), opPut, "v", 1, 2, outcomeOK, "")
	if err := s.begin(message{Ref: opRef{1, 1}}); err == nil {
		t.Error("a call begun twice was taken")
	}
	if err := s.end(message{Ref: opRef{9, 9}}); err == nil {
		t.Error("an end without a beginning was taken")
	}
}
