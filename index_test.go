package ghost

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// The index agrees with a map through inserts, updates and deletes that
// grow it, fill it with deleted markers and shrink it.
func TestIndexMatchesAMap(t *testing.T) {
	var ix index
	model := map[string]*entry{}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20000 {
		k := fmt.Sprint("k", rng.IntN(600))
		switch rng.IntN(3) {
		case 0, 1:
			e := &entry{key: k, version: uint64(round)}
			ix.store(hashKey(k), e)
			model[k] = e
		case 2:
			ix.delete(hashKey(k), k)
			delete(model, k)
		}
		if round%1000 == 0 {
			checkIndex(t, &ix, model)
		}
	}
	checkIndex(t, &ix, model)
	for k := range model {
		ix.delete(hashKey(k), k)
	}
	checkIndex(t, &ix, map[string]*entry{})
	ix.clear()
	if ix.load(hashKey("k1"), "k1") != nil {
		t.Fatal("a cleared index holds a key")
	}
}

func checkIndex(t *testing.T, ix *index, model map[string]*entry) {
	t.Helper()
	for i := range 600 {
		k := fmt.Sprint("k", i)
		if got, want := ix.load(hashKey(k), k), model[k]; got != want {
			t.Fatalf("load %s = %v, want %v", k, got, want)
		}
	}
	seen := 0
	ix.each(func(e *entry) {
		seen++
		if model[e.key] != e {
			t.Fatalf("each gave %s, not in the model", e.key)
		}
	})
	if seen != len(model) {
		t.Fatalf("each gave %d entries, want %d", seen, len(model))
	}
}

// Readers running beside a writer always find the keys the writer never
// deletes, whatever it grows or reuses (run with -race).
func TestIndexReadersBesideAWriter(t *testing.T) {
	var ix index
	var mu sync.Mutex
	for i := range 100 {
		k := fmt.Sprint("stable", i)
		ix.store(hashKey(k), &entry{key: k})
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for i := range 100 {
					k := fmt.Sprint("stable", i)
					if e := ix.load(hashKey(k), k); e == nil || e.key != k {
						t.Errorf("lost %s", k)
						return
					}
				}
			}
		}()
	}
	for i := range 20000 {
		k := fmt.Sprint("churn", i%700)
		mu.Lock()
		if i%3 == 2 {
			ix.delete(hashKey(k), k)
		} else {
			ix.store(hashKey(k), &entry{key: k})
		}
		if i%50 == 0 {
			s := fmt.Sprint("stable", i%100)
			ix.store(hashKey(s), &entry{key: s}) // an update in place
		}
		mu.Unlock()
	}
	stop.Store(true)
	wg.Wait()
}
