package main

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestNthKeyCoversEveryWriterKey(t *testing.T) {
	spec := loadSpec{Writers: 2, Keys: 3, WriterHosts: 4}
	want := map[string]bool{}
	for h := 1; h <= spec.WriterHosts; h++ {
		for w := range spec.Writers {
			for i := range spec.Keys {
				want[keyName(h, w, i)] = true
			}
		}
	}
	got := map[string]bool{}
	for n := range spec.WriterHosts * spec.Writers * spec.Keys {
		k := spec.nthKey(n)
		if !want[k] || got[k] {
			t.Errorf("nthKey(%d) = %q: not a writer's key, or twice", n, k)
		}
		got[k] = true
	}
	if len(got) != len(want) {
		t.Errorf("%d keys read, %d written", len(got), len(want))
	}
}

func TestKeyClasses(t *testing.T) {
	for i, want := range []string{classCold, classWarm, classHot, classCold} {
		k := keyName(2, 1, i)
		if got := classOfKey(k); got != want || keyClass(i) != want {
			t.Errorf("key %d (%s): class %q, want %q", i, k, got, want)
		}
	}
	if c := classOfKey("kept"); c != "" {
		t.Errorf("a key of no class has class %q", c)
	}
}

func TestPickKeyLeavesColdAndFrozenWarmAlone(t *testing.T) {
	l := &load{spec: loadSpec{Keys: 9}}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[string]int{}
	for range 1000 {
		i, ok := l.pickKey(rng)
		if ok {
			seen[keyClass(i)]++
		}
	}
	if seen[classCold] != 0 || seen[classWarm] == 0 || seen[classHot] == 0 {
		t.Errorf("picked %v, want warm and hot keys only", seen)
	}
	l.frozen.Store(true)
	clear(seen)
	for range 1000 {
		if i, ok := l.pickKey(rng); ok {
			seen[keyClass(i)]++
		}
	}
	if seen[classHot] == 0 || len(seen) != 1 {
		t.Errorf("frozen: picked %v, want hot keys only", seen)
	}
}

func TestChooseWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	count := func(held map[int]bool) map[opKind]int {
		c := map[opKind]int{}
		for range 10000 {
			c[chooseWrite(rng, held, 0)]++
		}
		return c
	}
	if c := count(map[int]bool{0: true}); c[opAdd] != 0 || c[opDelete] < 2000 || c[opPut] < 7000 {
		t.Errorf("held key: %v, want puts and deletes, no adds", c)
	}
	if c := count(map[int]bool{}); c[opAdd] != 0 {
		t.Errorf("unknown key: %v, want no adds (an Add's NOT_STORED would say little)", c)
	}
	if c := count(map[int]bool{0: false}); c[opAdd] < 4000 || c[opDelete] == 0 {
		t.Errorf("absent key: %v, want about half adds", c)
	}
}

func TestSlotRecorder(t *testing.T) {
	var r slotRecorder
	t0 := time.Unix(1_800_000_000, 0)
	r.reset(3, t0)
	if s := r.take(t0.Add(slotLength)); s != nil {
		t.Errorf("an empty slot was reported: %+v", s)
	}
	r.record(t0, time.Millisecond, nil)
	r.record(t0.Add(10*time.Millisecond), 2*time.Millisecond, errors.New("first"))
	r.record(t0.Add(20*time.Millisecond), 3*time.Millisecond, errors.New("second"))
	s := r.take(t0.Add(slotLength))
	if s == nil || s.Host != 3 || s.Ops != 3 || s.Failed != 2 || s.FirstErr != "first" {
		t.Fatalf("slot %+v", s)
	}
	if s.FirstFail != t0.Add(12*time.Millisecond).UnixMilli() || s.LastFail != t0.Add(23*time.Millisecond).UnixMilli() {
		t.Errorf("failures at %d..%d", s.FirstFail-t0.UnixMilli(), s.LastFail-t0.UnixMilli())
	}
	if next := r.take(t0.Add(2 * slotLength)); next != nil {
		t.Errorf("the slot was not reset: %+v", next)
	}
}

func TestPickTTL(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	spec := loadSpec{TTLShare: 30, TTLMin: time.Second, TTLMax: 2 * time.Second}
	with := 0
	for range 10000 {
		switch d := spec.pickTTL(rng, opPut); {
		case d == 0:
		case d < time.Second || d > 2*time.Second:
			t.Fatalf("ttl %v outside 1s-2s", d)
		default:
			with++
		}
		if d := spec.pickTTL(rng, opDelete); d != 0 {
			t.Fatalf("a delete with ttl %v", d)
		}
	}
	if with < 2500 || with > 3500 {
		t.Errorf("%d of 10000 puts with a TTL, want about 3000", with)
	}
	if d := (loadSpec{}).pickTTL(rng, opPut); d != 0 {
		t.Errorf("no share, yet ttl %v", d)
	}
}

func TestBeliefForgetsExpiredKeys(t *testing.T) {
	b := belief{held: map[int]bool{}, expires: map[int]time.Time{}}
	end := time.Unix(100, 0)
	b.learn(1, opPut, time.Second, outcomeOK, end)
	b.age(1, end.Add(time.Second)) // the deadline may not have passed
	if h, ok := b.held[1]; !ok || !h {
		t.Errorf("before its TTL surely ran out: held %v, %v", h, ok)
	}
	b.age(1, end.Add(2*time.Second))
	if h, ok := b.held[1]; !ok || h {
		t.Errorf("after its TTL: held %v, %v; want known absent, so that the writer adds it", h, ok)
	}
	b.learn(2, opPut, time.Second, outcomeOK, end)
	b.learn(2, opPut, 0, outcomeOK, end)
	b.age(2, end.Add(time.Hour))
	if !b.held[2] {
		t.Error("a put without a TTL after one with: forgotten")
	}
	b.learn(3, opPut, time.Second, outcomeFailed, end)
	if _, ok := b.held[3]; ok {
		t.Error("a failed put: the key should be unknown")
	}
}
