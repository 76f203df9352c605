package ghost_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/prometheus/client_golang/prometheus"
)

// A node on 127.0.0.1 with a port picked by the system. In production every
// node uses the default address, ":7991", and a shared PeersFile.
func ExampleJoin() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	if err := node.Put(ctx, "greeting", "hello", ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}
	it, err := node.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(it.Value)
	fmt.Println("members:", len(node.Members()))
	// Output:
	// hello
	// members: 1
}

// Cache-aside: read the cache, and on a miss compute the value and store it
// for the next caller.
func ExampleNode_Get() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	price := func(ticker string) (float64, error) {
		it, err := node.Get(ctx, "price:"+ticker)
		if err == nil {
			var p float64
			return p, it.Decode(&p)
		}
		if !errors.Is(err, ghost.ErrCacheMiss) {
			return 0, err // the cache itself failed
		}
		fmt.Println("miss:", ticker)
		p := 3116.42 // a slow database query, in a real program
		return p, node.Put(ctx, "price:"+ticker, p, 5*time.Minute)
	}

	for range 2 {
		p, err := price("AMZN")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("AMZN", p)
	}
	// Output:
	// miss: AMZN
	// AMZN 3116.42
	// AMZN 3116.42
}

// A page that shows many items reads them in one call: GetMulti sends one
// request per member that holds some of the keys, all at once. Misses are
// simply absent from the result.
func ExampleNode_GetMulti() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	err = node.PutMulti(ctx, map[string]any{"item:1": "lamp", "item:2": "desk"}, time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	items, err := node.GetMulti(ctx, []string{"item:1", "item:2", "item:3"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(items), items["item:1"].Value, items["item:2"].Value)

	// A batch's failed keys come back in a *BatchError; errors.Is sees
	// through it.
	err = node.DeleteMulti(ctx, []string{"item:1", "item:3"})
	var be *ghost.BatchError
	if errors.As(err, &be) {
		fmt.Println(errors.Is(err, ghost.ErrNotFound), ghost.Message(ghost.OpDelete, be.Keys["item:3"]))
	}
	// Output:
	// 2 lamp desk
	// true NOT_FOUND
}

// GetAs reads a value straight into a Go type, without the untyped Value
// of an Item.
func ExampleGetAs() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	type session struct {
		User  string
		Roles []string
	}
	if err := node.Put(ctx, "session:42", session{User: "ada", Roles: []string{"admin"}}, time.Hour); err != nil {
		log.Fatal(err)
	}
	s, err := ghost.GetAs[session](ctx, node, "session:42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.User, s.Roles)
	_, err = ghost.GetAs[session](ctx, node, "session:43")
	fmt.Println(errors.Is(err, ghost.ErrCacheMiss))
	// Output:
	// ada [admin]
	// true
}

// Add stores a pair only when the key is free; a second Add of the same key
// returns ErrNotStored, the NOT_STORED of GhostDB.
func ExampleNode_Add() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	err = node.Add(ctx, "lock:report", "worker-1", 30*time.Second)
	fmt.Println(ghost.Message(ghost.OpAdd, err))
	err = node.Add(ctx, "lock:report", "worker-2", 30*time.Second)
	fmt.Println(ghost.Message(ghost.OpAdd, err), errors.Is(err, ghost.ErrNotStored))
	// Output:
	// STORED
	// NOT_STORED true
}

// Delete removes a pair (REMOVED); deleting it again returns ErrNotFound
// (NOT_FOUND).
func ExampleNode_Delete() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	if err := node.Put(ctx, "session:9", "token", time.Hour); err != nil {
		log.Fatal(err)
	}
	err = node.Delete(ctx, "session:9")
	fmt.Println(ghost.Message(ghost.OpDelete, err))
	err = node.Delete(ctx, "session:9")
	fmt.Println(ghost.Message(ghost.OpDelete, err), errors.Is(err, ghost.ErrNotFound))
	// Output:
	// REMOVED
	// NOT_FOUND true
}

// Values of any type msgpack can encode are stored; Decode reads one back
// into its Go type. Item.Value holds the same value decoded without a type:
// a struct comes back there as a map of its fields.
func ExampleItem_Decode() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	type Stock struct {
		Ticker string
		Price  float64
		Volume int
	}
	in := Stock{Ticker: "AMZN", Price: 3116.42, Volume: 4200000}
	if err := node.Put(ctx, "stock:AMZN", in, ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}

	it, err := node.Get(ctx, "stock:AMZN")
	if err != nil {
		log.Fatal(err)
	}
	var out Stock
	if err := it.Decode(&out); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", out)
	fmt.Println(out == in)
	fmt.Println(it.Value.(map[string]any)["Ticker"])
	// Output:
	// {Ticker:AMZN Price:3116.42 Volume:4200000}
	// true
	// AMZN
}

// Message turns the result of any call into its GhostDB word, for logs and
// for programs that expect the original SDKs' messages.
func ExampleMessage() {
	fmt.Println(ghost.Message(ghost.OpPut, nil))
	fmt.Println(ghost.Message(ghost.OpGet, nil))
	fmt.Println(ghost.Message(ghost.OpGet, ghost.ErrCacheMiss))
	fmt.Println(ghost.Message(ghost.OpAdd, ghost.ErrNotStored))
	fmt.Println(ghost.Message(ghost.OpDelete, nil))
	fmt.Println(ghost.Message(ghost.OpDelete, ghost.ErrNotFound))
	fmt.Println(ghost.Message(ghost.OpFlush, nil))
	fmt.Println(ghost.Message(ghost.OpFlush, fmt.Errorf("%w: 10.0.0.7:7991: timeout", ghost.ErrFlush)))
	// Output:
	// STORED
	// OK
	// CACHE_MISS
	// NOT_STORED
	// REMOVED
	// NOT_FOUND
	// FLUSHED
	// ERR_FLUSH
}

// A cluster of three nodes in one process, over an in-memory network: the
// way to test code that uses GhostDB without opening sockets. Each node
// joins the first; gossip spreads the news to the others.
func ExampleNewMemNetwork() {
	ctx := context.Background()
	network := ghost.NewMemNetwork()
	var nodes []*ghost.Node
	for range 3 {
		cfg := ghost.Config{Addr: "127.0.0.1:0", Network: network}
		if len(nodes) > 0 {
			cfg.Peers = []string{nodes[0].Addr()}
		}
		n, err := ghost.Join(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}

	// Membership spreads by gossip: wait until every node lists all three.
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for len(n.Members()) < 3 {
			if time.Now().After(deadline) {
				log.Fatalf("%s sees only %v", n.Addr(), n.Members())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Println(nodes[2].Members())

	// Any node serves any key: writes on one are read on the others.
	if err := nodes[0].Put(ctx, "color", "teal", ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}
	for _, n := range nodes[1:] {
		it, err := n.Get(ctx, "color")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(n.Addr(), it.Value)
	}
	// Output:
	// [127.0.0.1:20000 127.0.0.1:20001 127.0.0.1:20002]
	// 127.0.0.1:20001 teal
	// 127.0.0.1:20002 teal
}

// A rolling restart: before a node is stopped, WaitSafe makes sure every
// partition has its copies; Leave hands the node's partitions to the
// others, so nothing it held is lost.
func ExampleNode_WaitSafe() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	network := ghost.NewMemNetwork()
	var nodes []*ghost.Node
	for range 3 {
		cfg := ghost.Config{Addr: "127.0.0.1:0", Network: network} // Replicas: 2 by default
		if len(nodes) > 0 {
			cfg.Peers = []string{nodes[0].Addr()}
		}
		n, err := ghost.Join(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitSafe(ctx); err != nil {
			log.Fatal(err)
		}
	}
	for i := range 100 {
		if err := nodes[0].Put(ctx, fmt.Sprint("user:", i), i, ghost.NoExpiry); err != nil {
			log.Fatal(err)
		}
	}

	// Stop node 2 the graceful way, then wait until the survivors are Safe.
	if err := nodes[2].Leave(ctx); err != nil {
		log.Fatal(err)
	}
	for _, n := range nodes[:2] {
		if err := n.WaitSafe(ctx); err != nil {
			log.Fatal(err)
		}
	}
	found := 0
	for i := range 100 {
		if _, err := nodes[1].Get(ctx, fmt.Sprint("user:", i)); err == nil {
			found++
		}
	}
	fmt.Println(nodes[1].Members(), found, "of 100 pairs")
	// Output:
	// [127.0.0.1:20000 127.0.0.1:20001] 100 of 100 pairs
}

func ExampleNodeAddr() {
	for _, s := range []string{"10.0.0.7", "10.0.0.7:7000", "fd00::7", "Cache-3.internal", "10.0.0.7:99999"} {
		addr, err := ghost.NodeAddr(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(addr)
	}
	// Output:
	// 10.0.0.7:7991
	// 10.0.0.7:7000
	// [fd00::7]:7991
	// cache-3.internal:7991
	// error: ghost: address "10.0.0.7:99999": port "99999" is not a number from 1 to 65535
}

// An application serves the node's metrics beside its own, from its own
// registry: one scrape covers both.
func ExampleNode_Collector() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0", Network: ghost.NewMemNetwork()})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(node.Collector())
	// and, to serve them: http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	if err := node.Put(ctx, "color", "teal", ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}
	_, _ = node.Get(ctx, "shape") // a miss
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		switch m := f.GetMetric()[0]; f.GetName() {
		case "ghost_pairs", "ghost_members":
			fmt.Println(f.GetName(), m.GetGauge().GetValue())
		case "ghost_cache_misses_total", "ghost_stored_total":
			fmt.Println(f.GetName(), m.GetCounter().GetValue())
		}
	}
	// Output:
	// ghost_cache_misses_total 1
	// ghost_members 1
	// ghost_pairs 1
	// ghost_stored_total 1
}

// ghostctl and other tools find a cluster as its nodes do, from the node
// list.
func ExampleReadNodeList() {
	f, err := os.CreateTemp("", "nodes-*.conf")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	fmt.Fprint(f, "# GhostDB nodes\n10.0.0.7\n10.0.0.8:7000  # another port\n[fd00::7]:7991\n")
	f.Close()

	addrs, err := ghost.ReadNodeList(context.Background(), f.Name())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(addrs)
	// Output:
	// [10.0.0.7:7991 10.0.0.8:7000 [fd00::7]:7991]
}

// Quick failure detection: a crashed node is declared dead in about a
// second instead of the LAN defaults' five or more, and its partitions'
// backups take over then.
func ExampleFastGossip() {
	cfg := ghost.Config{PeersFile: "/etc/ghostdb/nodes.conf", Gossip: ghost.FastGossip}
	fmt.Println(cfg.Gossip != nil)
	// Output: true
}

// A node with a DataDir comes back warm: what it held when it left is
// offered back to the cluster by the next Join on the same directory. Here
// a cluster of one stops and starts again.
func ExampleConfig_dataDir() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ghostdb-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := ghost.Config{Addr: "127.0.0.1:0", DataDir: dir}

	node, err := ghost.Join(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Put(ctx, "config:v2", "blue-green", ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}
	if err := node.Close(); err != nil { // writes the last snapshot
		log.Fatal(err)
	}

	node, err = ghost.Join(ctx, cfg) // a new process, on the same DataDir
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	if err := node.WaitSafe(ctx); err != nil { // the snapshot is restored
		log.Fatal(err)
	}
	it, err := node.Get(ctx, "config:v2")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(it.Value)
	// Output:
	// blue-green
}

// GetOrLoad is cache-aside in one call, and one load per key in the whole
// cluster: however many goroutines, on however many nodes, miss a key at
// once, one of them runs the loader and the others wait for its value.
func ExampleNode_GetOrLoad() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	loadPrice := func(ctx context.Context, key string) (any, time.Duration, error) {
		fmt.Println("loading", key)
		return 3116.42, 5 * time.Minute, nil // a slow database query, in a real program
	}
	for range 2 {
		it, err := node.GetOrLoad(ctx, "price:AMZN", loadPrice)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(it.Value)
	}
	// Output:
	// loading price:AMZN
	// 3116.42
	// 3116.42
}

// GetOrLoadAs loads and returns a typed value.
func ExampleGetOrLoadAs() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	type user struct {
		Name  string
		Admin bool
	}
	u, err := ghost.GetOrLoadAs(ctx, node, "user:42", func(ctx context.Context, key string) (user, time.Duration, error) {
		return user{Name: "Ada", Admin: true}, time.Hour, nil // from the users table
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", u)
	// Output:
	// {Name:Ada Admin:true}
}

// A near cache keeps the keys a node reads often from other owners in its
// own process. A write anywhere drops the near copies before it takes
// effect, so a read after it returns it.
func ExampleConfig_nearCache() {
	ctx := context.Background()
	network := ghost.NewMemNetwork()
	var nodes []*ghost.Node
	for range 2 {
		cfg := ghost.Config{Addr: "127.0.0.1:0", Network: network, NearCacheKeys: 10_000}
		if len(nodes) > 0 {
			cfg.Peers = []string{nodes[0].Addr()}
		}
		n, err := ghost.Join(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	owner, reader := nodes[0], nodes[1]
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := reader.WaitSafe(wctx); err != nil {
		log.Fatal(err)
	}
	key := "" // a key the other node owns
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("price:", i); reader.Owner(k) == owner.Addr() {
			key = k
		}
	}
	if err := owner.Put(ctx, key, 3116.42, ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}
	for range 5 {
		if _, err := reader.Get(ctx, key); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("near hits:", reader.Watchdog().NearHits > 0)

	if err := owner.Put(ctx, key, 3120.00, ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}
	it, err := reader.Get(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(it.Value)
	// Output:
	// near hits: true
	// 3120
}
