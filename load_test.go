package ghost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedLoader is a loader that counts its calls and holds each until the
// test lets it go.
type gatedLoader struct {
	calls   atomic.Int64
	release chan struct{}
	result  func(call int64) (any, error)
}

func newGatedLoader(result func(call int64) (any, error)) *gatedLoader {
	return &gatedLoader{release: make(chan struct{}), result: result}
}

func (g *gatedLoader) load(ctx context.Context, key string) (any, time.Duration, error) {
	call := g.calls.Add(1)
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	v, err := g.result(call)
	return v, NoExpiry, err
}

// waiting sums the calls waiting for another's load on every node.
func (c *cluster) waiting() (sum int64) {
	for _, n := range c.live() {
		sum += n.loads.waiting.Load()
	}
	return sum
}

func TestGetOrLoadLoadsOncePerCluster(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := context.Background()
	key := c.keyOwnedBy(c.nodes[2], "load")
	g := newGatedLoader(func(int64) (any, error) { return "from the database", nil })
	var mu sync.Mutex
	var got []any
	var errs []error
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		for range 5 {
			wg.Go(func() {
				it, err := n.GetOrLoad(ctx, key, g.load)
				mu.Lock()
				got, errs = append(got, it.Value), append(errs, err)
				mu.Unlock()
			})
		}
	}
	// Every caller but the loader's, from every node, waits at the owner.
	waitFor(t, 10*time.Second, func() error {
		if w := c.waiting(); g.calls.Load() != 1 || w != 14 {
			return fmt.Errorf("%d loads, %d callers waiting", g.calls.Load(), w)
		}
		return nil
	})
	close(g.release)
	wg.Wait()
	if g.calls.Load() != 1 {
		t.Fatalf("the loader ran %d times", g.calls.Load())
	}
	for i := range got {
		if errs[i] != nil || got[i] != "from the database" {
			t.Fatalf("caller %d: %v, %v", i, got[i], errs[i])
		}
	}
	for _, n := range c.nodes {
		if it, err := n.Get(ctx, key); err != nil || it.Value != "from the database" {
			t.Fatalf("Get via %s after the load: %v, %v", n.Addr(), it.Value, err)
		}
	}
	// A hit loads nothing.
	if _, err := c.nodes[0].GetOrLoad(ctx, key, func(context.Context, string) (any, time.Duration, error) {
		t.Error("loaded a key the cache holds")
		return nil, 0, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestGetOrLoadFailuresReachEveryWaiter: an error and a panic of the loader
// fail every caller that waited for it, cache nothing, and leave the next
// call free to load.
func TestGetOrLoadFailuresReachEveryWaiter(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := context.Background()
	errDB := errors.New("database down")
	for _, tc := range []struct {
		name string
		fail func(int64) (any, error)
	}{
		{"error", func(int64) (any, error) { return nil, errDB }},
		{"panic", func(int64) (any, error) { panic("loader bug") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := c.keyOwnedBy(c.nodes[1], "fail-"+tc.name)
			g := newGatedLoader(tc.fail)
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range errs {
				wg.Go(func() { _, errs[i] = c.nodes[i%3].GetOrLoad(ctx, key, g.load) })
			}
			waitFor(t, 10*time.Second, func() error {
				if w := c.waiting(); g.calls.Load() != 1 || w != 5 {
					return fmt.Errorf("%d loads, %d callers waiting", g.calls.Load(), w)
				}
				return nil
			})
			close(g.release)
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, ErrLoad) {
					t.Errorf("caller %d: %v, want ErrLoad", i, err)
				}
			}
			if g.calls.Load() != 1 {
				t.Errorf("the loader ran %d times", g.calls.Load())
			}
			if _, err := c.nodes[0].Get(ctx, key); !errors.Is(err, ErrCacheMiss) {
				t.Errorf("a failed load cached something: %v", err)
			}
			it, err := c.nodes[2].GetOrLoad(ctx, key, func(context.Context, string) (any, time.Duration, error) {
				return "second try", NoExpiry, nil
			})
			if err != nil || it.Value != "second try" {
				t.Errorf("the next load: %v, %v", it.Value, err)
			}
		})
	}
	t.Run("the holder sees its own error", func(t *testing.T) {
		key := c.keyOwnedBy(c.nodes[0], "own-error")
		_, err := c.nodes[1].GetOrLoad(ctx, key, func(context.Context, string) (any, time.Duration, error) {
			return nil, 0, errDB
		})
		if !errors.Is(err, errDB) || !errors.Is(err, ErrLoad) {
			t.Fatalf("GetOrLoad: %v, want the loader's error and ErrLoad", err)
		}
	})
}

// TestGetOrLoadCancelledHolderFailsNoOne: the caller running the loader
// gives up; a caller that waited for it loads in its place.
func TestGetOrLoadCancelledHolderFailsNoOne(t *testing.T) {
	c := newCluster(t, 3, false)
	key := c.keyOwnedBy(c.nodes[0], "cancel")
	g := newGatedLoader(func(call int64) (any, error) { return fmt.Sprint("load ", call), nil })
	holderCtx, cancel := context.WithCancel(context.Background())
	holderErr := make(chan error, 1)
	go func() {
		_, err := c.nodes[1].GetOrLoad(holderCtx, key, g.load)
		holderErr <- err
	}()
	waitFor(t, 10*time.Second, func() error {
		if g.calls.Load() != 1 {
			return errors.New("no load yet")
		}
		return nil
	})
	waiter := make(chan Item, 1)
	go func() {
		it, err := c.nodes[2].GetOrLoad(context.Background(), key, g.load)
		if err != nil {
			t.Errorf("the waiter: %v", err)
		}
		waiter <- it
	}()
	waitFor(t, 10*time.Second, func() error {
		if c.waiting() != 1 {
			return errors.New("the waiter is not waiting yet")
		}
		return nil
	})
	cancel()
	if err := <-holderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the holder: %v, want context.Canceled", err)
	}
	waitFor(t, 10*time.Second, func() error {
		if g.calls.Load() != 2 {
			return errors.New("the waiter did not take the load over")
		}
		return nil
	})
	close(g.release)
	if it := <-waiter; it.Value != "load 2" {
		t.Fatalf("the waiter read %v", it.Value)
	}
}

// TestGetOrLoadWriteWins: a Put or a Delete of the key while its load runs
// wins; the load's value is never stored over it.
func TestGetOrLoadWriteWins(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := context.Background()
	for _, write := range []string{"put", "delete"} {
		t.Run(write, func(t *testing.T) {
			key := c.keyOwnedBy(c.nodes[2], "wins-"+write)
			g := newGatedLoader(func(call int64) (any, error) { return fmt.Sprint("stale load ", call), nil })
			done := make(chan Item, 1)
			go func() {
				it, err := c.nodes[0].GetOrLoad(ctx, key, g.load)
				if err != nil {
					t.Errorf("GetOrLoad: %v", err)
				}
				done <- it
			}()
			waitFor(t, 10*time.Second, func() error {
				if g.calls.Load() != 1 {
					return errors.New("no load yet")
				}
				return nil
			})
			want := "written meanwhile"
			if write == "put" {
				if err := c.nodes[1].Put(ctx, key, want, NoExpiry); err != nil {
					t.Fatal(err)
				}
			} else {
				want = "stale load 2" // loaded again, after the delete
				if err := c.nodes[1].Delete(ctx, key); !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}
			close(g.release)
			if it := <-done; it.Value != want {
				t.Fatalf("GetOrLoad returned %v, want %v", it.Value, want)
			}
			if it, err := c.nodes[2].Get(ctx, key); err != nil || it.Value != want {
				t.Fatalf("the cache holds %v (%v), want %v", it.Value, err, want)
			}
		})
	}
}

// TestGetOrLoadOwnerDiesMidLoad: the key's primary crashes while a caller
// loads and another waits; both get the value from the new primary.
func TestGetOrLoadOwnerDiesMidLoad(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := c.nodes[2]
	key := c.keyOwnedBy(owner, "dies")
	g := newGatedLoader(func(int64) (any, error) { return "loaded", nil })
	results := make(chan error, 2)
	for _, n := range c.nodes[:2] {
		go func() {
			it, err := n.GetOrLoad(ctx, key, g.load)
			if err == nil && it.Value != "loaded" {
				err = fmt.Errorf("read %v", it.Value)
			}
			results <- err
		}()
	}
	waitFor(t, 10*time.Second, func() error {
		if g.calls.Load() != 1 || owner.loads.waiting.Load() != 1 {
			return fmt.Errorf("%d loads, %d waiting", g.calls.Load(), owner.loads.waiting.Load())
		}
		return nil
	})
	owner.halt()
	close(g.release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if n := g.calls.Load(); n > 2 {
		t.Fatalf("the loader ran %d times", n)
	}
}

func TestGetOrLoadAs(t *testing.T) {
	c := newCluster(t, 2, false)
	type user struct{ Name string }
	ctx := context.Background()
	key := c.keyOwnedBy(c.nodes[1], "user")
	u, err := GetOrLoadAs(ctx, c.nodes[0], key, func(context.Context, string) (user, time.Duration, error) {
		return user{Name: "ada"}, time.Hour, nil
	})
	if err != nil || u.Name != "ada" {
		t.Fatalf("GetOrLoadAs: %+v, %v", u, err)
	}
	again, err := GetAs[user](ctx, c.nodes[1], key)
	if err != nil || again != u {
		t.Fatalf("GetAs after the load: %+v, %v", again, err)
	}
}

// TestGetOrLoadRefreshesAhead: a key read within RefreshAhead of its
// expiry is reloaded once, in the background, while every caller on every
// node keeps reading the current value: it never reads as a miss.
func TestGetOrLoadRefreshesAhead(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) { cfg.RefreshAhead = time.Second })
	ctx := context.Background()
	key := c.keyOwnedBy(c.nodes[1], "hot")
	var loads atomic.Int64
	load := func(context.Context, string) (any, time.Duration, error) {
		return fmt.Sprint("v", loads.Add(1)), 1500 * time.Millisecond, nil
	}
	if it, err := c.nodes[0].GetOrLoad(ctx, key, load); err != nil || it.Value != "v1" {
		t.Fatalf("first load: %v, %v", it.Value, err)
	}
	// Read from every node until the refreshed value shows: v1 all along
	// (v1 has 1.5 s to live; the refresh starts in its last second).
	waitFor(t, 10*time.Second, func() error {
		var wg sync.WaitGroup
		seen := make([]any, len(c.nodes))
		for i, n := range c.nodes {
			wg.Go(func() {
				it, err := n.GetOrLoad(ctx, key, load)
				if err != nil {
					t.Errorf("GetOrLoad via %s: %v", n.Addr(), err)
				}
				seen[i] = it.Value
			})
		}
		wg.Wait()
		for _, v := range seen {
			if v != "v2" {
				return fmt.Errorf("read %v", seen)
			}
		}
		return nil
	})
	if n := loads.Load(); n != 2 {
		t.Fatalf("%d loads, want the first and one refresh", n)
	}
}

// The stampede: 5 nodes, 500 callers spread over them, one missing
// key whose loader takes 200 ms. The loader runs once; all 500 get its
// value.
func TestGetOrLoadStampedeOf500(t *testing.T) {
	c := newCluster(t, 5, false)
	ctx := context.Background()
	var calls atomic.Int64
	load := func(ctx context.Context, key string) (any, time.Duration, error) {
		calls.Add(1)
		time.Sleep(200 * time.Millisecond)
		return "loaded", NoExpiry, nil
	}
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for i := range 500 {
		n := c.nodes[i%len(c.nodes)]
		wg.Go(func() {
			if it, err := n.GetOrLoad(ctx, "cold", load); err != nil || it.Value != "loaded" {
				wrong.Add(1)
				t.Errorf("GetOrLoad via %s: %v, %v", n.Addr(), it.Value, err)
			}
		})
	}
	wg.Wait()
	if got := calls.Load(); got != 1 || wrong.Load() != 0 {
		t.Fatalf("the loader ran %d times; %d of 500 callers got no value", got, wrong.Load())
	}
}

// A hot key of TTL 1 s read at full speed from every node for 30 s is
// loaded about 30 times (RefreshAhead reloads it just before it expires,
// once in the cluster; StaleWhileRevalidate covers a reload that comes
// late), and no reader waits on a load after the first.
func TestGetOrLoadHotKeyLoadsOncePerTTL(t *testing.T) {
	const (
		ttl     = time.Second
		reading = 30 * time.Second
	)
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.RefreshAhead = 30 * time.Millisecond
		cfg.StaleWhileRevalidate = ttl
	})
	ctx := context.Background()
	var loads atomic.Int64
	load := func(context.Context, string) (any, time.Duration, error) {
		return loads.Add(1), ttl, nil
	}
	if _, err := c.nodes[0].GetOrLoad(ctx, "hot", load); err != nil {
		t.Fatal(err)
	}
	first := loads.Load()
	waits := func() (sum int64) {
		for _, n := range c.nodes {
			sum += n.Watchdog().LoadWaits
		}
		return sum
	}
	waitsBefore := waits()
	start := time.Now()
	var reads, failed atomic.Int64
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		for range 2 {
			wg.Go(func() {
				for time.Since(start) < reading {
					if _, err := n.GetOrLoad(ctx, "hot", load); err != nil {
						failed.Add(1)
					}
					reads.Add(1)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	got, want := loads.Load()-first, float64(elapsed)/float64(ttl)
	t.Logf("%d reads in %v: %d loads, %d waits", reads.Load(), elapsed.Round(time.Millisecond), got, waits()-waitsBefore)
	if failed.Load() != 0 {
		t.Errorf("%d reads failed", failed.Load())
	}
	if float64(got) > want*1.1 || float64(got) < want*0.9 {
		t.Errorf("%d loads in %v with a TTL of %v, want %.0f ± 10%%", got, elapsed, ttl, want)
	}
	if w := waits() - waitsBefore; w != 0 {
		t.Errorf("%d reads waited on a load after the first", w)
	}
}

// With StaleWhileRevalidate, GetOrLoad serves an expired pair while one
// caller reloads it, from every node; Get sees it gone.
func TestGetOrLoadServesStaleWhileRevalidating(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) { cfg.StaleWhileRevalidate = time.Minute })
	ctx := context.Background()
	key := c.keyOwnedBy(c.nodes[1], "stale")
	if _, err := c.nodes[0].GetOrLoad(ctx, key, func(context.Context, string) (any, time.Duration, error) {
		return "old", 50 * time.Millisecond, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if _, err := c.nodes[0].Get(ctx, key); !errors.Is(err, ErrCacheMiss) {
			return fmt.Errorf("Get: %v, want a miss once expired", err)
		}
		return nil
	})
	g := newGatedLoader(func(int64) (any, error) { return "new", nil })
	for _, n := range c.nodes {
		for range 3 {
			if it, err := n.GetOrLoad(ctx, key, g.load); err != nil || it.Value != "old" {
				t.Fatalf("GetOrLoad via %s while reloading: %v, %v", n.Addr(), it.Value, err)
			}
		}
	}
	if calls := g.calls.Load(); calls != 1 {
		t.Fatalf("%d reloads, want one", calls)
	}
	close(g.release)
	waitFor(t, 5*time.Second, func() error {
		if it, err := c.nodes[2].Get(ctx, key); err != nil || it.Value != "new" {
			return fmt.Errorf("Get after the reload: %v, %v", it.Value, err)
		}
		return nil
	})
}

// With LoadErrorTTL, a loader's failure is served to the callers that come
// within it without a load; a write of the key ends it.
func TestGetOrLoadCachesFailuresForLoadErrorTTL(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) { cfg.LoadErrorTTL = time.Minute })
	ctx := context.Background()
	key := c.keyOwnedBy(c.nodes[1], "negative")
	var calls atomic.Int64
	failing := func(context.Context, string) (any, time.Duration, error) {
		calls.Add(1)
		return nil, 0, errors.New("database down")
	}
	for _, n := range c.nodes {
		if _, err := n.GetOrLoad(ctx, key, failing); !errors.Is(err, ErrLoad) {
			t.Fatalf("GetOrLoad via %s: %v, want ErrLoad", n.Addr(), err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("the failing loader ran %d times within LoadErrorTTL", got)
	}
	if err := c.nodes[0].Put(ctx, key, "written", NoExpiry); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[0].Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	it, err := c.nodes[2].GetOrLoad(ctx, key, func(context.Context, string) (any, time.Duration, error) {
		return "loaded", NoExpiry, nil
	})
	if err != nil || it.Value != "loaded" {
		t.Fatalf("GetOrLoad after a write: %v, %v", it.Value, err)
	}
}
