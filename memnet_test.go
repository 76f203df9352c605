package ghost

import (
	"context"
	"testing"
	"time"
)

// The in-memory network cuts and heals as a real one would: Isolate and
// Split stop connections and packets across the cut, Heal restores them,
// and blockConns stops connections but lets packets through (a firewall
// open only to UDP).
func TestMemNetworkCutsAndHeals(t *testing.T) {
	net := NewMemNetwork()
	a, err := net.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	b, err := net.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if _, err := net.listen(a.addr()); err == nil {
		t.Fatal("two endpoints listen on one address")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	connects := func() bool {
		go func() {
			if c, err := b.accept(); err == nil {
				c.Close()
			}
		}()
		c, err := a.dial(ctx, b.addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	// Delivery is synchronous: once writePacket returns, the packet waits
	// in b's queue or was dropped.
	packet := func() bool {
		_ = a.writePacket([]byte("ping"), b.addr())
		select {
		case p := <-b.(*memEndpoint).packets:
			return string(p.data) == "ping"
		default:
			return false
		}
	}
	if !connects() || !packet() {
		t.Fatal("two endpoints on one network do not reach each other")
	}
	net.Isolate(b.addr())
	if connects() || packet() {
		t.Error("an isolated endpoint is reached")
	}
	net.Heal(b.addr())
	if !connects() {
		t.Error("a healed endpoint is not reached")
	}
	net.blockConns(b.addr())
	if connects() {
		t.Error("a connection reached an endpoint whose connections are blocked")
	}
	if !packet() {
		t.Error("packets do not reach an endpoint whose connections alone are blocked")
	}
}
