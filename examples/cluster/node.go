package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ghostdb/ghost"
)

// nodeFlag, as the first argument, makes the program a node process: the
// parent starts its nodes this way. It is not meant to be typed.
const nodeFlag = "-node"

// reply is a node process's answer to one command: one JSON line.
type reply struct {
	Addr  string        `json:"addr,omitempty"`  // READY: the node's address
	Msg   string        `json:"msg,omitempty"`   // the GhostDB message of the call
	Key   string        `json:"key,omitempty"`   // keyfor: the key found
	Value string        `json:"value,omitempty"` // get: the value read
	Owner string        `json:"owner,omitempty"` // get, put: the key's owner
	Addrs []string      `json:"addrs,omitempty"` // ping, members
	Lines []nodeLine    `json:"lines,omitempty"` // metrics: one summary per node
	Took  time.Duration `json:"took,omitempty"`  // how long the call took
	Err   string        `json:"err,omitempty"`   // the command could not run
}

// runNode is the body of a node process. It joins the cluster, prints a
// READY line, then answers the commands read from stdin, one per line, with
// JSON lines on stdout:
//
//	put KEY VALUE     Put with no expiry
//	get KEY           Get
//	keyfor ADDR PFX   a key "PFX:n" owned by the node at ADDR
//	members           Members
//	safe              WaitSafe: every partition has its copies
//	ping              Ping
//	snitch            SnitchMetrics, summarised
//	watchdog          WatchdogMetrics, summarised
//	quit              Leave, then exit
//
// When stdin closes, the parent is gone: the node leaves and the process
// exits.
func runNode(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	peers := fs.String("peers", "", "node file")
	if err := fs.Parse(args); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	node, err := ghost.Join(ctx, ghost.Config{
		Addr:      *addr,
		PeersFile: *peers,
		// A crashed process is declared dead in about a second.
		Gossip: ghost.FastGossip,
		// Nodes start at the same moment and may miss each other on the
		// first try: try the node file again soon.
		RejoinInterval: 250 * time.Millisecond,
		RequestTimeout: time.Second,
	})
	if err != nil {
		return err
	}

	out := json.NewEncoder(stdout)
	if err := out.Encode(reply{Msg: "READY", Addr: node.Addr()}); err != nil {
		node.Close()
		return err
	}
	in := bufio.NewScanner(stdin)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		if line == "quit" {
			// Leave hands this node's partitions off before it goes.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := node.Leave(ctx)
			cancel()
			r := reply{Msg: "BYE"}
			if err != nil {
				r.Err = err.Error()
			}
			return out.Encode(r)
		}
		if err := out.Encode(command(node, line)); err != nil {
			node.Close()
			return err
		}
	}
	return node.Close()
}

// command runs one command line on node.
func command(node *ghost.Node, line string) reply {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	args := strings.SplitN(line, " ", 3)
	start := time.Now()
	var r reply
	switch {
	case args[0] == "put" && len(args) == 3:
		err := node.Put(ctx, args[1], args[2], ghost.NoExpiry)
		r = reply{Msg: ghost.Message(ghost.OpPut, err), Owner: node.Owner(args[1])}
	case args[0] == "get" && len(args) == 2:
		it, err := node.Get(ctx, args[1])
		r = reply{Msg: ghost.Message(ghost.OpGet, err), Owner: node.Owner(args[1])}
		if err == nil {
			if err := it.Decode(&r.Value); err != nil {
				r.Err = err.Error()
			}
		}
	case args[0] == "keyfor" && len(args) == 3:
		for i := range 100000 {
			if k := fmt.Sprintf("%s:%d", args[2], i); node.Owner(k) == args[1] {
				r.Key = k
				break
			}
		}
		if r.Key == "" {
			r.Err = "no key owned by " + args[1]
		}
	case line == "members":
		r.Addrs = node.Members()
	case line == "safe":
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := node.WaitSafe(ctx); err != nil {
			r.Err = err.Error()
		} else {
			r.Msg = "SAFE"
		}
	case line == "ping":
		addrs, err := node.Ping(ctx)
		r = reply{Msg: ghost.Message(ghost.OpPing, err), Addrs: addrs}
	case line == "snitch":
		ms, err := node.SnitchMetrics(ctx)
		r = reply{Msg: ghost.Message(ghost.OpSnitchMetrics, err), Lines: summarize(ms, snitchSummary)}
	case line == "watchdog":
		ms, err := node.WatchdogMetrics(ctx)
		r = reply{Msg: ghost.Message(ghost.OpWatchdogMetrics, err), Lines: summarize(ms, watchdogSummary)}
	default:
		r.Err = fmt.Sprintf("unknown command %q", line)
	}
	r.Took = time.Since(start)
	return r
}

// nodeLine is a line of text about one node.
type nodeLine struct {
	Node string `json:"node"`
	Text string `json:"text"`
}

// summarize turns each node's metrics into one line, from its latest
// sample: the one taken at call time.
func summarize(ms []ghost.NodeMetrics, f func(ghost.Sample) string) []nodeLine {
	var lines []nodeLine
	for _, m := range ms {
		if len(m.Data) > 0 {
			lines = append(lines, nodeLine{Node: m.Node, Text: f(m.Data[len(m.Data)-1])})
		}
	}
	return lines
}

func snitchSummary(s ghost.Sample) string {
	v := s.Snitch
	return fmt.Sprintf("keys %d (%d B)  heap %.1f MiB  goroutines %d  GCs %d  CPU %d ms",
		v.Keys, v.Bytes, float64(v.HeapAlloc)/(1<<20), v.Goroutines, v.NumGC, v.CPUMicros/1000)
}

func watchdogSummary(s ghost.Sample) string {
	v := s.Watchdog
	return fmt.Sprintf("requests %d (get %d, put %d)  stored %d  misses %d  forwarded %d",
		v.TotalRequests, v.GetRequests, v.PutRequests, v.Stored, v.CacheMiss, v.Forwarded)
}
