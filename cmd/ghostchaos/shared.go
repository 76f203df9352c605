package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/ghostdb/ghost/internal/linearize"
)

// Shared keys: the ledger gives each key one writer, which hides what
// happens when several nodes write one key at once. Beside it, every main
// host runs a shared client that puts, adds, deletes and reads a few keys
// that every host's client writes, and reports each call with the times
// that bound it. The suite checks each shared key's history, the final
// reads included, for linearizability (internal/linearize): every answer
// must fit one order of the calls that respects their real-time order.
// The hosts share one clock: they are namespaces of one machine.

// opGet is a shared client's read (the ledger's writers only write).
const opGet opKind = "get"

// outcomeMiss: a shared client's read found no pair.
const outcomeMiss outcome = "miss"

// sharedKey is shared key i.
func sharedKey(i int) string { return fmt.Sprintf("shared-%d", i) }

// sharedPause is how long a shared client waits after a failed call: a
// failed write stays open to the end of the history, and a host cut off
// for seconds must not fill it with them.
const sharedPause = 250 * time.Millisecond

// sharedClient calls the shared keys until the load ends: reads and
// puts mostly, some adds and deletes.
func (l *load) sharedClient() {
	rng := rand.New(rand.NewPCG(uint64(l.cfg.Epoch), 7))
	next := time.Now()
	for l.pace(&next, l.spec.SharedEvery) {
		key := sharedKey(rng.IntN(l.spec.Shared))
		kind := opGet
		switch n := rng.IntN(100); {
		case n < 35:
			kind = opPut
		case n < 45:
			kind = opAdd
		case n < 60:
			kind = opDelete
		}
		if res := l.sharedCall(key, kind); res == outcomeFailed {
			next = next.Add(sharedPause)
		}
	}
}

// sharedCall makes one call on a shared key, reported before and after.
func (l *load) sharedCall(key string, kind opKind) outcome {
	ref := opRef{Epoch: l.cfg.Epoch, ID: l.nextID.Add(1)}
	var value string
	if kind == opPut || kind == opAdd {
		value = fmt.Sprintf("e%d.%d", ref.Epoch, ref.ID)
	}
	l.out.send(message{T: msgSharedBegin, Ref: ref, Key: key, Kind: kind, Value: value, At: time.Now().UnixNano()})
	var res outcome
	var read string
	start := time.Now()
	if kind == opGet {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		r := l.readShared(ctx, key)
		cancel()
		var err error
		switch {
		case r.Err != "":
			res, err = outcomeFailed, errors.New(r.Err)
		case r.Present:
			res, read = outcomeOK, r.Value
		default:
			res = outcomeMiss
		}
		l.slots.record(start, time.Since(start), err)
	} else {
		res = l.write(key, kind, value, 0)
	}
	l.out.send(message{T: msgSharedEnd, Ref: ref, Result: res, Value: read, At: time.Now().UnixNano()})
	return res
}

// readShared reads a shared key once.
func (l *load) readShared(ctx context.Context, key string) readResult {
	it, err := l.node.Get(ctx, key)
	switch {
	case errors.Is(err, ghost.ErrCacheMiss):
		return readResult{}
	case err != nil:
		return readResult{Err: err.Error()}
	}
	var v string
	if err := it.Decode(&v); err != nil {
		return readResult{Err: fmt.Sprintf("decode: %v", err)}
	}
	return readResult{Present: true, Value: v}
}

// sharedCallRecord is one shared call as the suite heard of it.
type sharedCallRecord struct {
	key, value string // value: a put's or add's
	kind       opKind
	call, ret  int64 // unix ns; ret 0: no end heard (the process died)
	res        outcome
	read       string // a read's value on a hit
}

// sharedLog is every shared call of a scenario. It is safe for concurrent
// use.
type sharedLog struct {
	mu    sync.Mutex
	calls map[opRef]*sharedCallRecord
}

func (s *sharedLog) begin(m message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[opRef]*sharedCallRecord{}
	}
	if _, dup := s.calls[m.Ref]; dup {
		return fmt.Errorf("shared call %v begun twice", m.Ref)
	}
	s.calls[m.Ref] = &sharedCallRecord{key: m.Key, value: m.Value, kind: m.Kind, call: m.At}
	return nil
}

func (s *sharedLog) end(m message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[m.Ref]
	if !ok || c.ret != 0 {
		return fmt.Errorf("shared call %v ended without a beginning, or twice", m.Ref)
	}
	c.ret, c.res, c.read = m.At, m.Result, m.Value
	return nil
}

// len is the number of calls heard of.
func (s *sharedLog) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// history is the calls as a history to check, with the final reads of
// the shared keys (byHost: what each host read) as reads of their own.
// A call with no end heard is a failed one.
func (s *sharedLog) history(byHost map[string]map[string]readResult, keys int) *linearize.History {
	h := &linearize.History{}
	s.mu.Lock()
	for ref, c := range s.calls {
		in := linearize.Input{Key: c.key, Value: c.value}
		var out linearize.Output
		switch c.kind {
		case opPut:
			in.Kind, out.Done = linearize.Put, true
		case opAdd:
			in.Kind, out.Done = linearize.Add, c.res == outcomeOK
		case opDelete:
			in.Kind, out.Done = linearize.Delete, c.res == outcomeOK
		default:
			in.Kind, out.Done, out.Value = linearize.Get, c.res == outcomeOK, c.read
		}
		out.Unknown = c.ret == 0 || !(c.res.acked() || c.res == outcomeMiss)
		h.Add(ref.Epoch, in, c.call, c.ret, out)
	}
	s.mu.Unlock()
	client := -1 // the final reads: a client of their own per host
	for _, reads := range byHost {
		for i := range keys {
			r, ok := reads[sharedKey(i)]
			if !ok || r.Err != "" || r.Start == 0 {
				continue
			}
			h.Add(client, linearize.Input{Kind: linearize.Get, Key: sharedKey(i)}, r.Start, r.End, linearize.Output{Done: r.Present, Value: r.Value})
		}
		client--
	}
	return h
}

// sharedCheckTimeout bounds the linearizability check of one scenario.
const sharedCheckTimeout = 2 * time.Minute

// sharedVerdict is what the check of the shared keys found, for the
// report.
type sharedVerdict struct {
	Calls        int     `json:"calls"`
	Keys         int     `json:"keys"`
	Linearizable bool    `json:"linearizable"`
	Result       string  `json:"result"`            // what the check found, in words
	Report       string  `json:"report,omitempty"`  // an illegal history: the file of its excerpt, its view beside it
	Excerpt      string  `json:"excerpt,omitempty"` // an illegal history's calls up to the first that cannot be ordered
	Seconds      float64 `json:"check_seconds"`     // how long the check took
	// Allowed says why a history that is not linearizable does not fail
	// the scenario (scenario.startsAfresh); empty otherwise.
	Allowed string `json:"allowed,omitempty"`
}

// cell is the table's linearizable column: yes or no, and how many calls.
func (v *sharedVerdict) cell() string {
	switch {
	case v == nil:
		return "-"
	case v.Linearizable:
		return fmt.Sprintf("yes (%d calls)", v.Calls)
	case v.Allowed != "":
		return fmt.Sprintf("no, allowed (%d calls)", v.Calls)
	case v.Excerpt != "":
		return fmt.Sprintf("NO (%d calls)", v.Calls)
	}
	return fmt.Sprintf("undecided (%d calls)", v.Calls)
}

// checkShared checks the shared keys' history, with the final reads, and
// writes a report of an illegal one to the temporary directory.
func (c *cluster) checkShared(reads map[string]map[string]readResult) *sharedVerdict {
	if c.s.opts.shared == 0 || c.rec.shared.len() == 0 {
		return nil
	}
	began := time.Now()
	v := c.rec.shared.history(reads, c.s.opts.shared).Check(sharedCheckTimeout)
	out := &sharedVerdict{Calls: v.Calls, Keys: v.Keys, Linearizable: v.Linearizable(), Result: v.String(), Excerpt: v.Excerpt, Seconds: time.Since(began).Seconds()}
	if !out.Linearizable && c.sc.startsAfresh {
		out.Allowed = "the majority starts afresh the partitions whose every copy is across the split, and their keys read as misses until the heal (replication.md)"
	}
	if v.Excerpt != "" {
		path, err := v.WriteReport(os.TempDir(), fmt.Sprintf("ghostchaos-%s-%d", c.sc.name, time.Now().Unix()))
		if err != nil {
			c.s.logf("%s: writing the history's report: %v", c.sc.name, err)
		}
		out.Report = path
	}
	c.s.logf("%s: shared keys %s, checked in %.1fs", c.sc.name, out.Result, out.Seconds)
	return out
}
