package ghost

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ghostdb/ghost/internal/poll"
	"github.com/hashicorp/memberlist"
)

// Shared test helpers: clusters of real nodes in one process.

// testGossip tunes memberlist for tests: news spreads in tens of
// milliseconds, and a node must stay silent for several seconds before it
// is declared dead, so that a machine loaded by the race detector and
// parallel tests never drops a live node from the ring mid-test.
func testGossip(mc *memberlist.Config) {
	mc.ProbeInterval = time.Second
	mc.ProbeTimeout = 800 * time.Millisecond
	mc.SuspicionMult = 4
	mc.GossipInterval = 30 * time.Millisecond
	mc.PushPullInterval = time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.GossipToTheDeadTime = time.Second
}

// fastFailureDetection is for the tests of failures: a dead node is noticed
// in a second or two.
func fastFailureDetection(cfg *Config) {
	cfg.Gossip = func(mc *memberlist.Config) {
		testGossip(mc)
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 150 * time.Millisecond
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 2
	}
}

// testConfig is a node configuration for tests; tcp picks real sockets on
// 127.0.0.1, otherwise net carries the traffic.
func testConfig(net *MemNetwork) Config {
	return Config{
		Addr:           "127.0.0.1:0",
		Network:        net,
		Gossip:         testGossip,
		RejoinInterval: 100 * time.Millisecond,
		RequestTimeout: 5 * time.Second, // generous: a loaded CI machine under -race is slow
	}
}

// cluster is a set of nodes started together.
type cluster struct {
	t     testing.TB
	net   *MemNetwork // nil for real TCP
	nodes []*Node
}

// newCluster starts size nodes, each joining the first, and waits until
// every node sees all of them. With tcp the nodes talk over 127.0.0.1.
func newCluster(t testing.TB, size int, tcp bool, tune ...func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t}
	if !tcp {
		c.net = NewMemNetwork()
	}
	for range size {
		c.add(tune...)
	}
	c.waitConverged()
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Close()
		}
	})
	return c
}

// add starts one more node that joins the first one.
func (c *cluster) add(tune ...func(*Config)) *Node {
	c.t.Helper()
	cfg := testConfig(c.net)
	if len(c.nodes) > 0 {
		cfg.Peers = []string{c.nodes[0].Addr()}
	}
	for _, f := range tune {
		f(&cfg)
	}
	n, err := Join(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("Join: %v", err)
	}
	c.nodes = append(c.nodes, n)
	return n
}

// live returns the nodes that have not been stopped.
func (c *cluster) live() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if !n.closed.Load() {
			out = append(out, n)
		}
	}
	return out
}

// waitConverged waits until every live node lists exactly the live nodes.
func (c *cluster) waitConverged() {
	c.t.Helper()
	var want []string
	for _, n := range c.live() {
		want = append(want, n.Addr())
	}
	slices.Sort(want)
	waitFor(c.t, 10*time.Second, func() error {
		for _, n := range c.live() {
			if got := n.Members(); !slices.Equal(got, want) {
				return fmt.Errorf("%s sees %v, want %v", n.Addr(), got, want)
			}
		}
		return nil
	})
}

// waitFor polls cond until it returns nil, failing the test at the deadline
// with cond's last error.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, cond)
}

// keyOwnedBy returns a key whose owner is n and not from.
func (c *cluster) keyOwnedBy(n *Node, prefix string) string {
	c.t.Helper()
	for i := range 100000 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if n.Owner(k) == n.Addr() {
			return k
		}
	}
	c.t.Fatalf("no key owned by %s", n.Addr())
	return ""
}
