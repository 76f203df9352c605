package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/ghostdb/ghost/internal/poll"
	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

// The cluster under the browser test, and what the test reads of it. This
// package is outside the root module (see doc.go), so it sees the cluster
// only as users do: through the methods of *ghost.Node, the metrics calls
// and the dashboard's JSON endpoint.

// TestMain fails the run if anything the test started is still running at
// the end: the nodes, the browser and chromedp's goroutines. As in the root
// package, memberlist.Shutdown does not wait for a probe already under way:
// it ends by itself within a probe interval.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

// stateAlive is how the dashboard shows a member that answers (the root
// package's view.go).
const stateAlive = "alive"

// testGossip tunes memberlist as the root package's tests do
// (cluster_test.go): news spreads in tens of milliseconds, and a node must
// stay silent for several seconds before it is declared dead, so that a
// machine loaded by the race detector and the other packages' tests never
// drops a live node mid-test.
func testGossip(mc *memberlist.Config) {
	mc.ProbeInterval = time.Second
	mc.ProbeTimeout = 800 * time.Millisecond
	mc.SuspicionMult = 4
	mc.GossipInterval = 30 * time.Millisecond
	mc.PushPullInterval = time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.GossipToTheDeadTime = time.Second
}

// cluster is a set of nodes on 127.0.0.1 started together.
type cluster struct {
	nodes []*ghost.Node
}

// newCluster starts size nodes over TCP on 127.0.0.1, each joining the
// first, and waits until every node lists all of them and is Safe: its
// partition table holds exactly the live members, every partition has its
// copies, and no transfer is under way. The nodes are closed when the test
// ends.
func newCluster(t *testing.T, size int) *cluster {
	t.Helper()
	c := &cluster{}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Close()
		}
	})
	for range size {
		cfg := ghost.Config{
			Addr:           "127.0.0.1:0",
			Gossip:         testGossip,
			RejoinInterval: 100 * time.Millisecond,
			RequestTimeout: 5 * time.Second, // generous: a loaded CI machine under -race is slow
			CloseTimeout:   3 * time.Second,
		}
		if len(c.nodes) > 0 {
			cfg.Peers = []string{c.nodes[0].Addr()}
		}
		n, err := ghost.Join(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		c.nodes = append(c.nodes, n)
	}
	var want []string
	for _, n := range c.nodes {
		want = append(want, n.Addr())
	}
	slices.Sort(want)
	waitFor(t, 20*time.Second, func() error {
		for _, n := range c.nodes {
			if got := n.Members(); !slices.Equal(got, want) {
				return fmt.Errorf("%s sees %v, want %v", n.Addr(), got, want)
			}
			if !n.Safe() {
				return fmt.Errorf("%s is not Safe", n.Addr())
			}
		}
		return nil
	})
	return c
}

// waitFor polls cond until it returns nil, failing the test at the deadline
// with cond's last error.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, cond)
}

// pairsHeld returns the pairs each member holds now, by address: the Keys
// figure of the sample that n's SnitchMetrics takes on every member at call
// time.
func pairsHeld(ctx context.Context, n *ghost.Node) (map[string]int64, error) {
	metrics, err := n.SnitchMetrics(ctx)
	if err != nil {
		return nil, err
	}
	held := make(map[string]int64, len(metrics))
	for _, m := range metrics {
		if len(m.Data) == 0 {
			return nil, fmt.Errorf("%s: no snitch sample", m.Node)
		}
		s := m.Data[len(m.Data)-1].Snitch
		if s == nil {
			return nil, fmt.Errorf("%s: no snitch figures in its sample", m.Node)
		}
		held[m.Node] = s.Keys
	}
	return held, nil
}

// partitionOwners returns the owner of each partition by n's partition
// table, indexed by partition, as n's GET /dashboard/data reports it.
func partitionOwners(ctx context.Context, n *ghost.Node) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Addr()+"/dashboard/data", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	var data struct {
		Partitions []struct {
			Owner string `json:"owner"`
		} `json:"partitions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&data); err != nil {
		return nil, fmt.Errorf("GET %s: %w", req.URL, err)
	}
	owners := make([]string, len(data.Partitions))
	for i, p := range data.Partitions {
		owners[i] = p.Owner
	}
	return owners, nil
}
