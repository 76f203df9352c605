package ghost

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Safe holds once every partition has its copies, and not while a member
// holding some is gone and the table has not replaced its copies; WaitSafe
// waits for it within its context.
func TestSafeFollowsTheCopies(t *testing.T) {
	c := newCluster(t, 3, false, fastFailureDetection)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if err := n.WaitSafe(ctx); err != nil {
			t.Fatalf("%s: %v", n.Addr(), err)
		}
	}
	c.nodes[2].halt()
	waitFor(t, 10*time.Second, func() error {
		if c.nodes[0].Safe() {
			return errors.New("Safe with a member gone")
		}
		return nil
	})
	short, stop := context.WithTimeout(context.Background(), time.Millisecond)
	defer stop()
	if err := c.nodes[0].WaitSafe(short); err == nil {
		t.Log("the survivors were Safe again at once") // possible on a fast machine
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSafe with a short context: %v", err)
	}
	if err := c.nodes[0].WaitSafe(ctx); err != nil {
		t.Fatalf("WaitSafe after the table dropped the dead member: %v", err)
	}
	c.nodes[1].Close()
	if err := c.nodes[1].WaitSafe(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitSafe on a closed node: %v, want ErrClosed", err)
	}
}
