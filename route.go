package ghost

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The data path: a key's call goes to its partition's primary by this
// node's table (reads fall back to the other in-sync copies), locally or in
// one hop. A holder that answers "wrong owner" or "stale table" makes the
// caller fetch the newer table and try again, within RequestTimeout.

// read answers a Get. When this node is the key's primary it reads its own
// copy in place, as tryHolders would but without building a request:
// that is the call an embedded cache exists for, and it must cost little
// more than a map lookup.
func (n *Node) read(ctx context.Context, key string) ([]byte, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil { // a local read would not look at ctx
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	h := hashKey(key)
	p := n.partitionOfHash(h)
	if t := n.table.Load(); t.isPrimary(p) && (t.version != 0 || n.peerCount.Load() == 0) && !n.refuses(OpGet) && n.servesOwnReads() {
		start := timeLocalRead()
		v, ok := n.readLocal(ctx, p, h, key)
		n.latency.observe(OpGet, false, start)
		if !ok {
			return nil, ErrCacheMiss
		}
		return v, nil
	}
	if c := n.near; c != nil {
		if v, ok := c.get(h, key); ok {
			return v, nil
		}
		if c.admit(h, key) {
			start := time.Now()
			v, err := n.readNear(ctx, p, h, key)
			n.latency.observe(OpGet, true, start)
			return v, err
		}
	}
	resp, err := n.routeTo(ctx, p, &request{op: OpGet, key: key})
	return resp.value, err
}

// route sends a key request where its partition is served and returns the
// reply.
func (n *Node) route(ctx context.Context, req *request) (response, error) {
	if n.closed.Load() {
		return response{}, ErrClosed
	}
	if err := ctx.Err(); err != nil { // a local write would not look at ctx
		return response{}, err
	}
	if err := checkKey(req.key); err != nil {
		return response{}, err
	}
	return n.routeTo(ctx, n.partitionOf(req.key), req)
}

// routeTo is route for a checked key of partition p. It tries again while
// the table may change under it (callDeadline): a write the primary could
// not copy goes again with its request id, so it is decided once.
func (n *Node) routeTo(ctx context.Context, p int, req *request) (response, error) {
	if n.refuses(req.op) {
		return response{}, fmt.Errorf("%w: %w", ErrNoMoreServers, ErrNoQuorum)
	}
	start := time.Now()
	pace := n.callBackoff(ctx, start)
	for {
		resp, err, retry, forwarded := n.tryHolders(ctx, p, req)
		if !retry {
			if err == nil || resp.status != statusOK {
				n.latency.observe(req.op, forwarded, start) // answered, a miss included
			}
			return resp, err
		}
		switch werr := pace.wait(ctx, n.done, n.tableChanged.wait()); {
		case werr == nil:
		case !errors.Is(werr, errRetriesSpent):
			return response{}, werr
		case errors.Is(err, ErrReplication):
			return response{}, err // reached the primary: not "no server"
		default:
			return response{}, fmt.Errorf("%w: for key %q: %w", ErrNoMoreServers, req.key, err)
		}
	}
}

// tryHolders makes one attempt at req under the current table: a write
// goes to the primary only, a read to each in-sync copy in turn. retry
// says the table may change and a later attempt may succeed; forwarded,
// that the answer came from another node.
func (n *Node) tryHolders(ctx context.Context, p int, req *request) (resp response, err error, retry, forwarded bool) {
	t := n.routingTable()
	req.tver = t.version
	holders := t.owners[p]
	if req.op != OpGet && req.op != opNearGet {
		holders = holders[:1]
	}
	var lastErr error
	for _, i := range holders {
		m := t.members[i]
		if m.name == n.self.name {
			resp = n.serve(ctx, req)
		} else {
			pool := n.peers.get(m.addr)
			if pool.suspect() && len(holders) > 1 {
				continue
			}
			n.stats.forwarded.Add(1)
			var callErr error
			resp, callErr = pool.call(ctx, req)
			if callErr != nil {
				if ctx.Err() != nil {
					return response{}, ctx.Err(), false, true
				}
				n.stats.forwardErrors.Add(1)
				pool.markSuspect()
				n.log.Warn("ghost: peer failed a call; trying the next", "peer", m.addr, "err", callErr)
				lastErr = fmt.Errorf("%s: %w", m.addr, callErr)
				continue
			}
		}
		switch resp.status {
		case statusWrongOwner, statusStale:
			n.learnVersion(resp.tver)
			err := fmt.Errorf("%s holds table %d, we route with %d", m.addr, resp.tver, t.version)
			if (req.op == OpGet || req.op == opNearGet) && resp.tver <= t.version {
				// Not a newer table: a process started since on the
				// member's address (a crash replaced before the table
				// dropped it), or one behind. Another copy may serve.
				lastErr = err
				continue
			}
			return resp, err, true, false
		case statusNoQuorum: // cut off: another copy, or a later table, may serve
			lastErr = fmt.Errorf("%s: %w", m.addr, ErrNoQuorum)
			continue
		case statusReplicaFailed:
			// The primary decided the write, but a copy did not confirm it
			// (it died, and the table has not dropped it yet): sent again
			// with the same request id, it is decided once and acknowledged
			// once the copies, under the next table, have it.
			_, err := resp.result()
			return resp, err, true, false
		}
		forwarded = m.name != n.self.name
		resp, err = resp.result()
		return resp, err, false, forwarded
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no copy of partition %d could be reached", p)
	}
	return resp, lastErr, true, false
}

// routingTable is the table to route with: this node's, unless it has
// just joined and holds none yet (the table of a node alone says it owns
// everything); then it asks the cluster for its table first.
func (n *Node) routingTable() *table {
	t := n.table.Load()
	if t.version == 0 && n.peerCount.Load() > 0 {
		n.fetchNewer(1)
		t = n.table.Load()
	}
	return t
}

type broadcastResult struct {
	addr  string
	value []byte
	err   error
}

// broadcast sends op to every live member at once, this node included, and
// returns their replies in member order. A flush carries a version, so
// that copies of older pairs still travelling are refused afterwards, and
// goes to the members of the partition table too: a member this node's
// gossip has not told it of yet may hold copies.
func (n *Node) broadcast(ctx context.Context, op Op) []broadcastResult {
	live, _ := n.liveView()
	req := request{op: op}
	if op == OpFlush {
		req.ver = n.store.versions.next()
		for _, m := range n.table.Load().members {
			if !slices.ContainsFunc(live, func(l member) bool { return l.name == m.name }) {
				live = append(live, m)
			}
		}
	}
	out := make([]broadcastResult, len(live))
	var wg sync.WaitGroup
	for i, m := range live {
		out[i].addr = m.addr
		if m.name == n.self.name {
			resp, err := n.serve(ctx, &req).result()
			out[i].value, out[i].err = resp.value, err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := req
			resp, err := n.peers.get(m.addr).call(ctx, &r)
			if err == nil {
				resp, err = resp.result()
			}
			out[i].value, out[i].err = resp.value, err
		}()
	}
	wg.Wait()
	return out
}
