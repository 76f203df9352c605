package main

import (
	"strings"
	"testing"
)

func TestRecorderRoutesReports(t *testing.T) {
	rec := newRecorder()
	h := &host{num: 2}
	ref := opRef{Epoch: 3, ID: 1}
	rec.report(h, message{T: msgBegin, Ref: ref, Key: "h2-w0-1", Kind: opPut, Value: "e3.1"})
	rec.report(h, message{T: msgEnd, Ref: ref, Result: outcomeOK})
	rec.report(h, message{T: msgSlot, Slot: &slot{Host: 2, Ops: 5}})
	rec.report(h, message{T: msgEnd, Ref: opRef{Epoch: 3, ID: 9}, Result: outcomeOK}) // never begun
	rec.report(h, message{T: "zz"})
	if c := rec.ledger.counts(); c.Acked != 1 || c.Keys != 1 {
		t.Errorf("ledger counts %+v", c)
	}
	if len(rec.slots) != 1 || rec.slots[0].Ops != 5 {
		t.Errorf("slots %+v", rec.slots)
	}
	if len(rec.bad) != 2 || !strings.HasPrefix(rec.bad[0], "host2: ") {
		t.Errorf("bad reports %q", rec.bad)
	}
}
