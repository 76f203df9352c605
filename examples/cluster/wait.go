package main

import (
	"context"
	"fmt"
	"time"
)

// trafficInterval is the pace of the traffic that keeps the dashboards
// moving while the cluster stays up.
const trafficInterval = 20 * time.Millisecond

// sayURLs prints where each node serves its dashboard and its metrics.
func sayURLs(say func(string, ...any), nodes []*nodeProc) {
	say("dashboards and Prometheus metrics:")
	for _, p := range nodes {
		say("  node %d  http://%s/dashboard  http://%s/metrics", p.num, p.addr, p.addr)
	}
}

// stayUp keeps the cluster up with a little traffic until ctx ends
// (Ctrl-C).
func stayUp(ctx context.Context, nodes []*nodeProc, say func(string, ...any)) error {
	say("\n== The cluster stays up until Ctrl-C")
	sayURLs(say, nodes)
	say("or from a shell: go run ./cmd/ghostctl -addr %s top", nodes[0].addr)
	say("meanwhile a put or get goes to a node every %v; Ctrl-C to stop", trafficInterval)
	traffic(ctx, nodes)
	return nil
}

// traffic sends puts and gets to the nodes in turn until ctx ends. A call
// under way when ctx ends is finished, so that no reply is left unread.
func traffic(ctx context.Context, nodes []*nodeProc) {
	calls := context.WithoutCancel(ctx)
	tick := time.NewTicker(trafficInterval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		// One put in four fills 500 keys in turn; gets ask for 560 keys,
		// so that about one in ten misses once the keys are filled.
		p := nodes[i%len(nodes)]
		command := fmt.Sprintf("get item:%d", i*37%560)
		if i%4 == 0 {
			command = fmt.Sprintf("put item:%d value %d", i/4%500, i)
		}
		if _, err := p.call(calls, command); err != nil {
			return
		}
	}
}
