package ghost

import (
	"context"
	"errors"
	"testing"
)

func TestSmoke(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		c := newCluster(t, 3, tcp)
		ctx := context.Background()
		for _, owner := range c.nodes {
			k := c.keyOwnedBy(owner, "smoke")
			for _, from := range c.nodes {
				if err := from.Put(ctx, k, "v-"+from.Addr(), NoExpiry); err != nil {
					t.Fatal(err)
				}
				it, err := from.Get(ctx, k)
				if err != nil || it.Value != "v-"+from.Addr() {
					t.Fatalf("get %v %v", it, err)
				}
			}
		}
		if _, err := c.nodes[0].Get(ctx, "nope"); !errors.Is(err, ErrCacheMiss) {
			t.Fatal(err)
		}
		up, err := c.nodes[1].Ping(ctx)
		if err != nil || len(up) != 3 {
			t.Fatal(up, err)
		}
	}
}
