package ghost

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestPeerOfAnotherVersionStaysOut(t *testing.T) {
	c := newCluster(t, 2, true)
	cfg := testConfig(nil)
	cfg.Peers = []string{c.nodes[0].Addr()}
	cfg.protocolVersion = ProtocolVersion + 1
	odd, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer odd.Close()
	ctx := context.Background()
	// Join's push/pull has run both ways: each side refused the other.
	// The cache protocol refuses it too.
	if _, err := dialPeer(ctx, c.nodes[0].peerSetup(), odd.Addr()); !errors.Is(err, ErrProtocolVersion) {
		t.Fatalf("dial to a node of another version: %v", err)
	}
	for _, n := range c.nodes {
		if slices.Contains(n.Members(), odd.Addr()) {
			t.Fatalf("%s let a node of another version in", n.Addr())
		}
	}
	if len(odd.Members()) != 1 {
		t.Fatalf("the odd node sees %v", odd.Members())
	}
	for i := range 20 {
		k := fmt.Sprint("v", i)
		if err := c.nodes[1].Put(ctx, k, i, NoExpiry); err != nil {
			t.Fatalf("cluster stopped serving: %v", err)
		}
	}
}
