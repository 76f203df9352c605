package ghost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// GetOrLoad: one load per key in the whole cluster. A caller that misses
// asks the key's primary for a load lease (opLoad). The primary answers
// with the value when it holds one; otherwise it grants the lease to the
// first caller, who runs the loader in its own process and sends the value
// back (opLoadFill), while every other caller, whichever node it calls
// from, waits at the primary for the lease to resolve and then reads the
// value the first one stored.
//
// The lease carries the version the primary's clock had when it was
// granted, and the fill is stored only when the key has no live pair and
// no entry newer than that: a Put or Delete of the key while the load runs
// (a database update and its invalidation) wins, and the load's result is
// dropped. A fill that reaches a new primary (the first died mid-load) is
// judged the same way, by the versions its copies carry.
//
// A loader that fails (or panics) fails its waiters too, with its error's
// text, and nothing is cached; one whose caller gives up (its context
// ends) hands the lease to a waiter. A holder that vanishes without a word
// holds the lease for Config.LoadTimeout at most.

// Loader loads the value of key when the cache has none: from a database,
// a service, a computation. It returns the value to store, and its TTL as
// Put takes it (NoExpiry, 0 for Config.DefaultTTL, or a duration). ctx is
// the context of the call that runs it.
type Loader func(ctx context.Context, key string) (value any, ttl time.Duration, err error)

// ErrLoad: the loader of GetOrLoad failed or panicked, in this call or in
// the call of another caller whose load this one waited for (then the
// error carries that loader's error as text).
var ErrLoad = errors.New("ghost: the loader failed")

// errLoadYours: the primary granted this caller the key's load lease.
var errLoadYours = errors.New("ghost: load lease granted")

// errLoadRefresh: the primary returned the key's value with its load
// lease, to refresh it ahead of its expiry (Config.RefreshAhead).
var errLoadRefresh = errors.New("ghost: refresh lease granted")

// fillRefresh marks a fill that refreshes a live pair: it replaces it.
const fillRefresh = 1

// errLoadWait: another caller's load of the key is still running; ask
// again. A call waits at the primary for at most half of RequestTimeout at
// a time, so that no connection holds a call long enough for its reaper
// to take the peer for stuck (client.go).
var errLoadWait = errors.New("ghost: load still running")

// Flags of opLoadRelease.
const (
	releaseFailed    = 1 // the loader failed: its waiters fail with its error
	releaseAbandoned = 0 // the caller gave up: a waiter takes the lease
)

// GetOrLoad returns the value stored under key; on a miss it calls load
// once in the whole cluster, stores what it returns (with its TTL and
// copies, as Put does) and returns it to every caller that asked
// meanwhile. Each caller waits within its own ctx. A loader error reaches
// every waiter (errors.Is(err, ErrLoad) for those of other callers) and is
// not cached. A Put or Delete of the key while load runs wins: the load's
// value is not stored, and the call reads the key again.
func (n *Node) GetOrLoad(ctx context.Context, key string, load Loader) (Item, error) {
	raw, err := n.getOrLoad(ctx, key, load)
	return itemOf(key, raw, err)
}

// GetOrLoadAs is GetOrLoad for a value of type T, as GetAs is Get's: the
// loader returns a T, and the value comes back decoded into one.
func GetOrLoadAs[T any](ctx context.Context, n *Node, key string, load func(ctx context.Context, key string) (T, time.Duration, error)) (T, error) {
	var v T
	raw, err := n.getOrLoad(ctx, key, func(ctx context.Context, key string) (any, time.Duration, error) {
		return load(ctx, key)
	})
	if err != nil {
		return v, err
	}
	if err := decodeInto(raw, &v); err != nil {
		return v, fmt.Errorf("ghost: decode value of %q into %T: %w", key, v, err)
	}
	return v, nil
}

func (n *Node) getOrLoad(ctx context.Context, key string, load Loader) ([]byte, error) {
	if n.cfg.RefreshAhead == 0 {
		if raw, err := n.read(ctx, key); !errors.Is(err, ErrCacheMiss) {
			return raw, err
		}
	}
	for {
		resp, err := n.route(ctx, &request{op: opLoad, key: key, rid: n.requestIDs.id()})
		if errors.Is(err, errLoadWait) {
			continue
		}
		if cerr := ctx.Err(); err != nil && cerr != nil {
			return nil, cerr
		}
		if errors.Is(err, errLoadRefresh) && len(resp.value) >= 8 {
			grant, raw := binary.BigEndian.Uint64(resp.value), resp.value[8:]
			n.refresh(key, grant, load)
			return raw, nil
		}
		if !errors.Is(err, errLoadYours) {
			return resp.value, err
		}
		if len(resp.value) != 8 {
			return nil, fmt.Errorf("ghost: a load lease without its version (%d bytes)", len(resp.value))
		}
		raw, stored, err := n.runLoad(ctx, key, binary.BigEndian.Uint64(resp.value), 0, load)
		if err != nil || stored {
			return raw, err
		}
		// A write of the key won over the load: read what it left.
	}
}

// runLoad runs load as the holder of key's lease granted at version
// grant, and stores its value. stored is false when a write of the key
// came first; the lease is then resolved, and the caller reads again.
func (n *Node) runLoad(ctx context.Context, key string, grant uint64, fill uint8, load Loader) (raw []byte, stored bool, err error) {
	n.stats.loads.Add(1)
	if fill == fillRefresh {
		n.stats.refreshes.Add(1)
	}
	value, ttl, err := callLoader(ctx, key, load)
	if err == nil {
		ttl, err = n.checkTTL(ttl)
	}
	if err == nil {
		raw, err = n.encodeValue(key, value)
	}
	if err != nil {
		if ctx.Err() != nil {
			n.releaseLoad(key, grant, releaseAbandoned, "")
			return nil, false, err
		}
		n.releaseLoad(key, grant, releaseFailed, err.Error())
		if !errors.Is(err, ErrLoad) {
			err = fmt.Errorf("%w: %w", ErrLoad, err)
		}
		return nil, false, err
	}
	_, err = n.route(ctx, &request{op: opLoadFill, key: key, value: raw, ttl: int64(ttl), ver: grant, rid: n.requestIDs.id(), flags: fill})
	switch {
	case errors.Is(err, ErrNotStored):
		return nil, false, nil
	case err != nil:
		// Loaded, but not cached: the caller has its value all the same,
		// and a waiter takes the lease.
		n.releaseLoad(key, grant, releaseAbandoned, "")
		n.log.Warn("ghost: could not store a loaded value", "key", key, "err", err)
	}
	return raw, true, nil
}

// refresh runs load in the background as the holder of key's refresh
// lease granted at grant, within LoadTimeout, and replaces the pair with
// its value unless a write of the key came first.
func (n *Node) refresh(key string, grant uint64, load Loader) {
	n.goBackground(func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LoadTimeout)
		defer cancel()
		go func() { // the node closing ends the refresh
			select {
			case <-n.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, _, err := n.runLoad(ctx, key, grant, fillRefresh, load); err != nil {
			n.log.Warn("ghost: could not refresh a key ahead of its expiry", "key", key, "err", err)
		}
	})
}

// callLoader calls load, turning a panic into an error.
func callLoader(ctx context.Context, key string, load Loader) (value any, ttl time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: panic: %v", ErrLoad, r)
		}
	}()
	return load(ctx, key)
}

// releaseLoad tells key's primary that the lease granted at grant ends
// without a value: failed (its waiters fail with msg) or abandoned.
func (n *Node) releaseLoad(key string, grant uint64, how uint8, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	if _, err := n.route(ctx, &request{op: opLoadRelease, key: key, ver: grant, flags: how, value: []byte(msg)}); err != nil {
		n.log.Debug("ghost: could not release a load lease; it runs out by itself", "key", key, "err", err)
	}
}

// loadLeases are the load leases a primary has granted, by key, and the
// loads that failed lately (Config.LoadErrorTTL).
type loadLeases struct {
	mu       sync.Mutex
	leases   map[string]*loadLease
	failures map[string]loadFailure
	failed   atomic.Int64 // len(failures): writes skip the lock when 0
	waiting  atomic.Int64 // calls waiting for another's load
}

// loadFailure is a failed load remembered: its error, and until when.
type loadFailure struct {
	msg   string
	until time.Time
}

// remember keeps key's failed load for ttl.
func (ll *loadLeases) remember(key, msg string, ttl time.Duration) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if ll.failures == nil {
		ll.failures = map[string]loadFailure{}
	}
	now := time.Now()
	if len(ll.failures) >= 4096 { // a bound: the ended go, and if none had, all
		maps.DeleteFunc(ll.failures, func(_ string, f loadFailure) bool { return !now.Before(f.until) })
		if len(ll.failures) >= 4096 {
			clear(ll.failures)
		}
	}
	ll.failures[key] = loadFailure{msg: msg, until: now.Add(ttl)}
	ll.failed.Store(int64(len(ll.failures)))
}

// failure returns key's remembered failed load, if it has not ended.
func (ll *loadLeases) failure(key string) (string, bool) {
	if ll.failed.Load() == 0 {
		return "", false
	}
	ll.mu.Lock()
	defer ll.mu.Unlock()
	f, ok := ll.failures[key]
	if ok && !time.Now().Before(f.until) {
		delete(ll.failures, key)
		ll.failed.Store(int64(len(ll.failures)))
		ok = false
	}
	return f.msg, ok
}

// forget drops key's remembered failure: a write of the key came.
func (ll *loadLeases) forget(key string) {
	if ll.failed.Load() == 0 {
		return
	}
	ll.mu.Lock()
	delete(ll.failures, key)
	ll.failed.Store(int64(len(ll.failures)))
	ll.mu.Unlock()
}

type loadLease struct {
	grant   uint64        // the version when it was granted
	holder  uint64        // the request id of the call it was granted to
	expires time.Time     // LoadTimeout after the grant: then a waiter takes it
	done    chan struct{} // closed when it is resolved
	failed  string        // the loader's error, when it failed
}

// claim returns key's lease, granting it at grant to the call rid when
// none is held; mine says this call holds it.
func (ll *loadLeases) claim(key string, rid, grant uint64, expires time.Time) (l *loadLease, mine bool) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if l := ll.leases[key]; l != nil && time.Now().Before(l.expires) {
		return l, l.holder == rid && rid != 0
	} else if l != nil {
		ll.resolveLocked(key, l, "")
	}
	if ll.leases == nil {
		ll.leases = map[string]*loadLease{}
	}
	l = &loadLease{grant: grant, holder: rid, expires: expires, done: make(chan struct{})}
	ll.leases[key] = l
	return l, true
}

// resolve ends key's lease granted at grant (any lease of key when grant
// is 0), waking its waiters; failed is the loader's error, if it failed.
func (ll *loadLeases) resolve(key string, grant uint64, failed string) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if l := ll.leases[key]; l != nil && (grant == 0 || l.grant == grant) {
		ll.resolveLocked(key, l, failed)
	}
}

func (ll *loadLeases) resolveLocked(key string, l *loadLease, failed string) {
	l.failed = failed
	close(l.done)
	delete(ll.leases, key)
}

// serveLoad answers a load request on the key's primary: the value, the
// lease, or, when another call holds the lease, the outcome of its load.
func (n *Node) serveLoad(ctx context.Context, req *request) response {
	if resp, bad := badKey(req); bad {
		return resp
	}
	h := hashKey(req.key)
	p := n.partitionOfHash(h)
	patience := time.NewTimer(n.cfg.RequestTimeout / 2)
	defer patience.Stop()
	for {
		t := n.table.Load()
		if req.tver > t.version || !t.isPrimary(p) {
			return n.refuse(req, t, "a load")
		}
		if n.refuses(req.op) || !n.awaitLease(ctx) {
			return response{id: req.id, status: statusNoQuorum, tver: t.version}
		}
		if v, ok := n.readLocal(ctx, p, h, req.key); ok {
			if resp, refresh := n.offerRefresh(req, p, t, v, false); refresh {
				return resp
			}
			return response{id: req.id, value: v, tver: t.version}
		}
		if v, ok := n.store.stale(p, req.key); ok {
			// Expired, within StaleWhileRevalidate: served while one
			// caller reloads it.
			if resp, refresh := n.offerRefresh(req, p, t, v, true); refresh {
				return resp
			}
			return response{id: req.id, value: v, tver: t.version}
		}
		if msg, ok := n.loads.failure(req.key); ok {
			return response{id: req.id, status: statusLoadFailed, msg: msg, tver: t.version}
		}
		grant := n.store.versions.next()
		l, mine := n.loads.claim(req.key, req.rid, grant, time.Now().Add(n.cfg.LoadTimeout))
		if mine {
			return response{id: req.id, status: statusLoadYours, value: binary.BigEndian.AppendUint64(nil, l.grant), tver: t.version}
		}
		changed := n.tableChanged.wait()
		expiry := time.NewTimer(time.Until(l.expires))
		n.loads.waiting.Add(1)
		n.stats.loadWaits.Add(1)
		impatient := false
		select {
		case <-l.done:
		case <-expiry.C: // the holder vanished: the next round takes the lease over
		case <-changed: // no longer the primary, maybe
		case <-patience.C:
			impatient = true
		case <-ctx.Done():
		case <-n.done:
		}
		n.loads.waiting.Add(-1)
		expiry.Stop()
		switch {
		case ctx.Err() != nil:
			return response{id: req.id, status: statusError, msg: "ghost: gave up waiting for a load", tver: t.version}
		case n.closed.Load(): // leaving: the caller asks the next primary
			return response{id: req.id, status: statusWrongOwner, tver: t.version}
		case impatient && !isClosed(l.done):
			return response{id: req.id, status: statusLoadWait, tver: t.version}
		}
		if isClosed(l.done) && l.failed != "" {
			return response{id: req.id, status: statusLoadFailed, msg: l.failed, tver: t.version}
		}
	}
}

// offerRefresh lends the caller of a load that found value v the key's
// lease to refresh it, when the pair has less than RefreshAhead to live
// (or has expired: stale) and no one holds the lease.
func (n *Node) offerRefresh(req *request, p int, t *table, v []byte, stale bool) (response, bool) {
	if !stale {
		if n.cfg.RefreshAhead == 0 {
			return response{}, false
		}
		expires := n.store.expiresOf(p, req.key)
		if expires == 0 || expires-n.store.now() > int64(n.cfg.RefreshAhead) {
			return response{}, false
		}
	}
	l, mine := n.loads.claim(req.key, req.rid, n.store.versions.next(), time.Now().Add(n.cfg.LoadTimeout))
	if !mine {
		return response{}, false
	}
	value := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(v)), l.grant)
	return response{id: req.id, status: statusLoadRefresh, value: append(value, v...), tver: t.version}, true
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// serveLoadRelease ends a lease without a value (runLoad).
func (n *Node) serveLoadRelease(_ context.Context, req *request) response {
	if resp, bad := badKey(req); bad {
		return resp
	}
	failed := ""
	if req.flags == releaseFailed {
		failed = string(req.value)
		if failed == "" {
			failed = "no reason given"
		}
		if n.cfg.LoadErrorTTL > 0 {
			n.loads.remember(req.key, failed, n.cfg.LoadErrorTTL)
		}
	}
	n.loads.resolve(req.key, req.ver, failed)
	return response{id: req.id, tver: n.table.Load().version}
}
