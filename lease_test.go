package ghost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// A node cut off from the rest serves reads of its own copies only until
// its lease lapses, and the majority drops it only after that: no read
// through it returns a value older than a write the majority acknowledged
// before the read began. (The fault suite's shared keys saw a cut-off node
// serve an overwritten value for a second or more: gossip told it late
// that it was alone.)
func TestCutOffNodeServesNoReadAfterTheMajorityMovesOn(t *testing.T) {
	c := newCluster(t, 5, false, fastFailureDetection)
	victim := c.nodes[4]
	k := c.keyOwnedBy(victim, "leased")
	ctx := context.Background()
	if err := c.nodes[0].Put(ctx, k, "old", NoExpiry); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if !victim.servesOwnReads() {
			return errors.New("the victim holds no lease yet")
		}
		return nil
	})
	type read struct {
		start time.Time
		value any
		err   error
	}
	var mu sync.Mutex
	var reads []read
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			it, err := victim.Get(rctx, k)
			cancel()
			mu.Lock()
			reads = append(reads, read{start, it.Value, err})
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	})
	c.net.Isolate(victim.Addr())
	// The majority drops the victim and overwrites the key.
	var acked time.Time
	waitFor(t, 20*time.Second, func() error {
		if err := c.nodes[0].Put(ctx, k, "new", NoExpiry); err != nil {
			return err
		}
		acked = time.Now()
		return nil
	})
	// Reads through the victim for a while after.
	time.Sleep(victim.leaseTerm())
	close(stop)
	wg.Wait()
	c.net.Heal(victim.Addr())
	served := 0
	for _, r := range reads {
		if r.start.Before(acked) {
			continue
		}
		if r.err == nil {
			served++
			if r.value != "new" {
				t.Errorf("a read through the cut-off node %v after the write was acknowledged got %v", r.start.Sub(acked), r.value)
			}
		}
	}
	t.Logf("%d reads through the cut-off node after the write, %d answered", len(reads), served)
	if victim.servesOwnReads() {
		t.Error("the cut-off node still holds its lease")
	}
}

// A node's lease needs answers from a majority of its table: with two of
// five members gone it keeps it, with three it loses it; a node alone or
// with one other needs none.
func TestLeaseNeedsAMajority(t *testing.T) {
	c := newCluster(t, 5, false, fastFailureDetection)
	n := c.nodes[0]
	waitFor(t, 10*time.Second, func() error {
		if !n.servesOwnReads() {
			return errors.New("no lease yet")
		}
		return nil
	})
	c.net.Split(n.Addr(), c.nodes[1].Addr(), c.nodes[2].Addr())
	time.Sleep(2 * n.leaseTerm()) // a term without the others: still a majority
	if !n.servesOwnReads() {
		t.Fatal("lease lapsed with a majority (3 of 5) in reach")
	}
	c.net.Heal(n.Addr())
	c.net.Heal(c.nodes[1].Addr())
	c.net.Heal(c.nodes[2].Addr())
	c.net.Split(n.Addr(), c.nodes[1].Addr())
	waitFor(t, 10*time.Second, func() error {
		if n.servesOwnReads() {
			return fmt.Errorf("lease held with 2 of 5 in reach")
		}
		return nil
	})
}

// TestVouchesOnlyForLiveMembersOnProbation: a member's ping counts toward
// another's lease only while the other is in its table, alive to its
// gossip, and not back from the dead for less than a lease term.
func TestVouchesOnlyForLiveMembersOnProbation(t *testing.T) {
	c := newCluster(t, 3, false)
	n, other := c.nodes[0], c.nodes[1]
	ping := func(name string) bool {
		resp := n.servePing(context.Background(), &request{op: OpPing, key: name})
		return len(resp.value) == 0
	}
	if !ping(other.name) {
		t.Fatal("no vouch for a live member")
	}
	if ping("127.0.0.1:1#gone") {
		t.Fatal("a vouch for a stranger")
	}
	n.gossipMu.Lock()
	n.backAt[other.name] = time.Now()
	n.gossipMu.Unlock()
	if ping(other.name) {
		t.Fatal("a vouch for a member back from the dead this moment")
	}
	n.gossipMu.Lock()
	n.backAt[other.name] = time.Now().Add(-n.leaseTerm())
	n.gossipMu.Unlock()
	if !ping(other.name) {
		t.Fatal("no vouch a lease term after its return")
	}
}
