package ghost

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestLeaveIsSeenAtOnce(t *testing.T) {
	c := newCluster(t, 3, true)
	leaver := c.nodes[1]
	if err := leaver.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, func() error {
		for _, n := range []*Node{c.nodes[0], c.nodes[2]} {
			if slices.Contains(n.Members(), leaver.Addr()) {
				return fmt.Errorf("%s still lists %s", n.Addr(), leaver.Addr())
			}
		}
		return nil
	})
	if err := leaver.Leave(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Leave: %v", err)
	}
	if err := leaver.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after Leave: %v", err)
	}
	ctx := context.Background()
	if _, err := leaver.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Leave: %v", err)
	}
	if err := leaver.Put(ctx, "k", 1, NoExpiry); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Leave: %v", err)
	}
	if _, err := leaver.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Leave: %v", err)
	}
}

func TestUnreachableSeedsDoNotStopJoin(t *testing.T) {
	mem := NewMemNetwork()
	cfg := testConfig(mem)
	cfg.Peers = []string{"127.0.0.1:30001"} // nobody there yet
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := Join(ctx, cfg)
	if err != nil {
		t.Fatalf("Join with an unreachable seed: %v", err)
	}
	defer a.Close()
	if got := a.Members(); len(got) != 1 {
		t.Fatalf("members %v, want only itself", got)
	}
	later := testConfig(mem)
	later.Addr = "127.0.0.1:30001"
	b, err := Join(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// a keeps retrying its seed, and finds b.
	waitFor(t, 5*time.Second, func() error {
		if len(a.Members()) != 2 || len(b.Members()) != 2 {
			return fmt.Errorf("a sees %v, b sees %v", a.Members(), b.Members())
		}
		return nil
	})
}

func TestPeersFileIsReread(t *testing.T) {
	mem := NewMemNetwork()
	dir := t.TempDir()
	file := filepath.Join(dir, "nodes.conf")
	write := func(lines ...string) {
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# empty cluster for now", "")
	ctx := context.Background()
	cfg := testConfig(mem)
	cfg.PeersFile = file
	cfg.PeersRefresh = 50 * time.Millisecond
	a, err := Join(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Join(ctx, testConfig(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The file now names b, and a itself, which is harmless.
	write(a.Addr(), b.Addr()+" # added later")
	waitFor(t, 5*time.Second, func() error {
		if len(a.Members()) != 2 || len(b.Members()) != 2 {
			return fmt.Errorf("a sees %v, b sees %v", a.Members(), b.Members())
		}
		return nil
	})
}

func TestPeersFileFromURL(t *testing.T) {
	seed, err := Join(context.Background(), testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# served node list\n%s\n", seed.Addr())
	}))
	defer srv.Close()
	cfg := testConfig(nil)
	cfg.PeersFile = srv.URL + "/nodes.conf"
	n, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitFor(t, 5*time.Second, func() error {
		if len(n.Members()) != 2 {
			return fmt.Errorf("members %v", n.Members())
		}
		return nil
	})

	gone := httptest.NewServer(http.NotFoundHandler())
	defer gone.Close()
	missing := testConfig(nil)
	missing.PeersFile = gone.URL + "/nodes.conf"
	if _, err := Join(context.Background(), missing); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Join with a node list URL that answers 404: %v", err)
	}
}

// A death heard second-hand (here: gossip's word, with no probe failed by
// this node) must not make a member plan a table without the member named
// while it still answers: that member may be the coordinator, publishing
// tables of the same versions. Of two nodes, the younger is told the older
// is dead; it would otherwise take over and drop it at once, since a table
// of two members needs no majority to change.
func TestRumouredDeathChangesNoTable(t *testing.T) {
	c := newCluster(t, 2, false)
	older, younger := c.nodes[0], c.nodes[1]
	if coordinatorOf([]member{older.self, younger.self}).name != older.self.name {
		t.Fatal("the first node started is not the coordinator")
	}
	before := younger.table.Load()
	if len(before.members) != 2 {
		t.Fatalf("the table has %d members, want 2", len(before.members))
	}
	younger.peerDown(&memberlist.Node{Name: older.name})
	if live, _ := younger.liveView(); len(live) != 1 {
		t.Fatalf("the younger node still sees %d members", len(live))
	}
	younger.coordinate(&coordinatorState{})
	if after := younger.table.Load(); after.version != before.version || after.index(older.name) < 0 {
		t.Fatalf("the younger node published table %d (%d members) on a rumour", after.version, len(after.members))
	}

	// The probe asks for the member by name: a process started since on
	// its address is someone else.
	if !younger.answers(older.self) {
		t.Error("the older node does not answer as itself")
	}
	if younger.answers(member{name: "someone-else", addr: older.Addr()}) {
		t.Error("a node answered for a member of another name")
	}
}

// A coordinator cut off from the others must not drop them one at a time
// as gossip declares each dead: every step would keep a majority of the
// table before it (4 of 5, 3 of 4, 2 of 3, then a table of two), until it
// held every partition alone and acknowledged writes no other node saw.
// Before a change it asks the members directly, and a majority of the
// table must answer.
func TestCutOffCoordinatorKeepsItsTable(t *testing.T) {
	c := newCluster(t, 5, false)
	c.waitConverged()
	coord := c.nodes[0]
	st := &coordinatorState{}
	coord.coordinate(st) // knows every member: no table to fetch later
	before := coord.table.Load()
	c.net.Isolate(coord.Addr())
	for _, n := range slices.Backward(c.nodes[1:]) {
		coord.peerDown(&memberlist.Node{Name: n.name})
		coord.coordinate(st)
		if got := coord.table.Load(); got.version != before.version || len(got.members) != 5 {
			t.Fatalf("with %s gone by gossip, the cut-off coordinator published table %d of %d members", n.Addr(), got.version, len(got.members))
		}
	}
	key := c.keyOwnedBy(coord, "cutoff")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := coord.Put(ctx, key, 1, NoExpiry); err == nil {
		t.Fatal("the cut-off coordinator acknowledged a write")
	}
}
