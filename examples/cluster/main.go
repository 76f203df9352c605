// Command cluster runs a real GhostDB cluster of several processes on this
// machine and walks through what it does:
//
//	go run ./examples/cluster            # 3 node processes
//	go run ./examples/cluster -nodes 5
//	go run ./examples/cluster -wait      # then stay up until Ctrl-C
//
// It writes a node file listing one free 127.0.0.1 port per node, starts
// one OS process per node (this program again, each embedding a node that
// joins with Config.PeersFile), then, driving them over their stdin and
// stdout:
//
//   - writes a key on one node and reads it on another, for keys owned by a
//     third node and by the writer;
//   - prints Ping and a summary of the snitch and watchdog metrics;
//   - kills one node with SIGKILL, as a crash would, and shows the others
//     notice it within seconds and keep serving every pair, the dead node's
//     included (each pair has a backup), and are Safe again soon after;
//   - restarts the killed node on its address, then does a rolling restart
//     of every node (Leave, new process, WaitSafe), reading a pair after
//     each step;
//   - shuts the nodes down with Leave.
//
// It prints each node's dashboard and Prometheus metrics URLs. With -wait,
// before shutting down, it keeps the cluster up, with a little traffic,
// until Ctrl-C, so that you can open them.
//
// All traffic stays on 127.0.0.1. Node processes die with the program.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	// callTimeout bounds one command to a node process.
	callTimeout = 5 * time.Second
	// formTimeout bounds how long the nodes have to find each other, and
	// the survivors to agree that the killed node is gone.
	formTimeout = 10 * time.Second
	// pollInterval is how often membership is checked while waiting.
	pollInterval = 50 * time.Millisecond
)

func main() {
	log.SetFlags(0)
	if len(os.Args) > 1 && os.Args[1] == nodeFlag {
		// Ctrl-C reaches the whole process group: leave it to the parent,
		// which then closes our stdin so that we leave the cluster.
		signal.Ignore(os.Interrupt)
		if err := runNode(os.Args[2:], os.Stdin, os.Stdout); err != nil {
			log.Fatalf("node: %v", err)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.Fatalf("cluster: %v", err)
	}
}

// run is the demo: it starts the node processes, drives them and reports
// to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(out)
	size := fs.Int("nodes", 3, "number of node processes, at least 3")
	wait := fs.Bool("wait", false, "before shutting down, stay up with light traffic until Ctrl-C, to look at the dashboards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size < 3 {
		return fmt.Errorf("-nodes %d: want at least 3 (a writer, a reader and a node to kill)", *size)
	}
	begin := time.Now()
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ghost-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The node file: every node reads the same list.
	addrs, err := freeAddrs(*size)
	if err != nil {
		return err
	}
	nodeFile := filepath.Join(dir, "nodes.conf")
	text := "# GhostDB node list: one address per line\n" + strings.Join(addrs, "\n") + "\n"
	if err := os.WriteFile(nodeFile, []byte(text), 0o644); err != nil {
		return err
	}
	say("GhostDB cluster demo: %d node processes on 127.0.0.1", *size)
	say("node file %s:\n  %s", nodeFile, strings.ReplaceAll(strings.TrimSpace(text), "\n", "\n  "))

	nodes := make([]*nodeProc, *size)
	defer func() {
		for _, p := range nodes {
			if p != nil {
				p.stop()
			}
		}
	}()
	for i, addr := range addrs {
		if nodes[i], err = startNode(ctx, exe, i+1, addr, nodeFile); err != nil {
			return err
		}
	}
	say("node processes:")
	for _, p := range nodes {
		r, err := p.read(ctx)
		if err != nil {
			return fmt.Errorf("node %d: %w", p.num, err)
		}
		if r.Msg != "READY" {
			return fmt.Errorf("node %d: want READY, got %+v", p.num, r)
		}
		say("  node %d  pid %-7d %s", p.num, p.cmd.Process.Pid, p.addr)
	}
	sayURLs(say, nodes)
	name := func(addr string) string {
		for _, p := range nodes {
			if p.addr == addr {
				return fmt.Sprintf("node %d", p.num)
			}
		}
		return addr
	}

	if err := waitMembers(ctx, nodes, addrs); err != nil {
		return err
	}
	if err := waitSafe(ctx, nodes); err != nil {
		return err
	}
	say("cluster formed in %v: every node lists %d members and is Safe", since(begin), *size)

	writer, reader, victim := nodes[0], nodes[1], nodes[len(nodes)-1]
	say("\n== Write on node %d, read on node %d", writer.num, reader.num)
	r, err := writer.call(ctx, "keyfor "+victim.addr+" user")
	if err != nil {
		return err
	}
	lostKey := r.Key
	r, err = writer.call(ctx, "keyfor "+writer.addr+" city")
	if err != nil {
		return err
	}
	keptKey := r.Key
	say("%s is owned by node %d: node %d forwards the put, node %d the get, one hop each", lostKey, victim.num, writer.num, reader.num)
	for _, kv := range [][2]string{{lostKey, "Ada Lovelace"}, {keptKey, "Dublin"}} {
		r, err := writer.call(ctx, "put "+kv[0]+" "+kv[1])
		if err != nil {
			return err
		}
		say("node %d  put %-9s %-14q -> %-19s owner %s  %v", writer.num, kv[0], kv[1], r.Msg, name(r.Owner), r.Took.Round(time.Microsecond))
		if r, err = reader.call(ctx, "get "+kv[0]); err != nil {
			return err
		}
		say("node %d  get %-9s %-14s -> %-19s owner %s  %v", reader.num, kv[0], "", r.Msg+" "+r.Value, name(r.Owner), r.Took.Round(time.Microsecond))
	}

	say("\n== Ping and metrics")
	if r, err = reader.call(ctx, "ping"); err != nil {
		return err
	}
	say("node %d  ping: %s (%d of %d nodes answered)", reader.num, strings.Join(r.Addrs, " "), len(r.Addrs), *size)
	if r, err = reader.call(ctx, "snitch"); err != nil {
		return err
	}
	say("snitch metrics (system), now, per node:")
	for _, l := range byNode(r.Lines, addrs) {
		say("  %-6s %s", name(l.Node), l.Text)
	}
	if r, err = reader.call(ctx, "watchdog"); err != nil {
		return err
	}
	say("watchdog metrics (application), counts since start, per node:")
	for _, l := range byNode(r.Lines, addrs) {
		say("  %-6s %s", name(l.Node), l.Text)
	}

	say("\n== Crash: SIGKILL node %d (pid %d), no Leave", victim.num, victim.cmd.Process.Pid)
	killed := time.Now()
	if err := victim.kill(); err != nil {
		return err
	}
	survivors := nodes[:len(nodes)-1]
	if err := waitMembers(ctx, survivors, addrs[:len(addrs)-1]); err != nil {
		return err
	}
	if r, err = writer.call(ctx, "ping"); err != nil {
		return err
	}
	say("node %d  ping after %v: %s (%d of %d nodes answered)", writer.num, since(killed), strings.Join(r.Addrs, " "), len(r.Addrs), *size)

	say("every survivor lists %d members", len(survivors))
	if err := waitOwnerMoved(ctx, reader, lostKey, victim.addr); err != nil {
		return err
	}
	say("node %d  the table dropped the dead node %v after the kill (gossip, then one read-lease term)", reader.num, since(killed))

	say("\n== The survivors keep serving: every pair has a backup (Replicas 2)")
	for _, k := range []string{keptKey, lostKey} {
		if r, err = reader.call(ctx, "get "+k); err != nil {
			return err
		}
		say("node %d  get %-9s -> %-19s owner %s", reader.num, k, r.Msg+" "+r.Value, name(r.Owner))
	}
	say("        (%s was owned by node %d: its backup was promoted, nothing was copied first)", lostKey, victim.num)
	if err := waitSafe(ctx, survivors); err != nil {
		return err
	}
	say("the survivors are Safe %v after the kill: every partition has its 2 copies again", since(killed))

	say("\n== Node %d restarts on its address and joins as a new member", victim.num)
	restarted := time.Now()
	if nodes[len(nodes)-1], err = restartNode(ctx, exe, victim, nodeFile); err != nil {
		return err
	}
	if err := waitMembers(ctx, nodes, addrs); err != nil {
		return err
	}
	if err := waitSafe(ctx, nodes); err != nil {
		return err
	}
	say("node %d is back and the cluster Safe after %v: the partitions that moved to it were streamed", victim.num, since(restarted))

	say("\n== Rolling restart: each node in turn leaves, handing its partitions off,")
	say("   restarts on its address, and the cluster is Safe before the next")
	for i, p := range nodes {
		began := time.Now()
		if err := p.quit(ctx); err != nil {
			return fmt.Errorf("node %d: %w", p.num, err)
		}
		if nodes[i], err = restartNode(ctx, exe, p, nodeFile); err != nil {
			return err
		}
		if err := waitMembers(ctx, nodes, addrs); err != nil {
			return err
		}
		if err := waitSafe(ctx, nodes); err != nil {
			return err
		}
		other := nodes[(i+1)%len(nodes)]
		if r, err = other.call(ctx, "get "+lostKey); err != nil {
			return err
		}
		say("node %d restarted, Safe after %v; node %d  get %s -> %s", p.num, since(began), other.num, lostKey, r.Msg+" "+r.Value)
	}
	survivors = nodes

	if *wait {
		if err := stayUp(ctx, nodes, say); err != nil {
			return err
		}
		ctx = context.WithoutCancel(ctx) // Ctrl-C ended the wait; now leave
	}

	say("\n== Shutdown")
	for _, p := range survivors {
		if err := p.quit(ctx); err != nil {
			return fmt.Errorf("node %d: %w", p.num, err)
		}
		say("node %d left the cluster", p.num)
	}
	say("demo finished in %v", since(begin))
	return nil
}

// waitSafe asks each node to wait until it is Safe.
func waitSafe(ctx context.Context, nodes []*nodeProc) error {
	for _, p := range nodes {
		if _, err := p.call(ctx, "safe"); err != nil {
			return err
		}
	}
	return nil
}

// restartNode starts a new node process on the address of p, which has
// stopped, and waits until it is ready.
func restartNode(ctx context.Context, exe string, p *nodeProc, nodeFile string) (*nodeProc, error) {
	np, err := startNode(ctx, exe, p.num, p.addr, nodeFile)
	if err != nil {
		return nil, err
	}
	if r, err := np.read(ctx); err != nil || r.Msg != "READY" {
		np.stop()
		return nil, fmt.Errorf("node %d after restart: %+v %v", p.num, r, err)
	}
	return np, nil
}

// waitMembers polls the nodes until each lists exactly want, or fails at
// formTimeout with what the last node that disagreed saw.
func waitMembers(ctx context.Context, nodes []*nodeProc, want []string) error {
	want = slices.Sorted(slices.Values(want))
	deadline := time.Now().Add(formTimeout)
	for {
		var lastErr error
		for _, p := range nodes {
			r, err := p.call(ctx, "members")
			if err != nil {
				return err
			}
			if !slices.Equal(r.Addrs, want) {
				lastErr = fmt.Errorf("node %d lists %v, want %v", p.num, r.Addrs, want)
				break
			}
		}
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("membership did not settle in %v: %w", formTimeout, lastErr)
		}
		select {
		case <-time.After(pollInterval):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitOwnerMoved waits until p's table gives key an owner other than gone:
// the table that drops a dead member follows gossip by a read-lease term.
func waitOwnerMoved(ctx context.Context, p *nodeProc, key, gone string) error {
	deadline := time.Now().Add(formTimeout)
	for {
		r, err := p.call(ctx, "get "+key)
		if err != nil {
			return err
		}
		if r.Owner != gone {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the table still gives %s to the dead node %s after %v", key, gone, formTimeout)
		}
		select {
		case <-time.After(pollInterval):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// freeAddrs returns n distinct 127.0.0.1 addresses whose port is free for
// both TCP and UDP, as a node needs.
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(addrs) < n; tries++ {
		if tries == 100*n {
			return nil, errors.New("no free ports on 127.0.0.1")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, ln)
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			continue // UDP port taken: try another
		}
		held = append(held, pc)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// byNode sorts lines in the order of addrs: by node number.
func byNode(lines []nodeLine, addrs []string) []nodeLine {
	slices.SortFunc(lines, func(a, b nodeLine) int {
		return slices.Index(addrs, a.Node) - slices.Index(addrs, b.Node)
	})
	return lines
}

// errNodeExited reports a node process that stopped answering.
var errNodeExited = errors.New("node process exited")

// since is the time since t, rounded for printing.
func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }

// nodeProc is a running node process.
type nodeProc struct {
	num   int // 1-based, for messages
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string   // its stdout, line by line; closed at EOF
	done  chan struct{} // closed once the process has exited
}

// startNode starts a node process listening on addr.
func startNode(ctx context.Context, exe string, num int, addr, nodeFile string) (*nodeProc, error) {
	cmd := exec.Command(exe, nodeFlag, "-addr", addr, "-peers", nodeFile)
	cmd.Stderr = os.Stderr
	dieWithParent(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %d: %w", num, err)
	}
	p := &nodeProc{num: num, addr: addr, cmd: cmd, stdin: stdin, lines: make(chan string), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		// Wait only once stdout is drained, as exec requires.
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// call sends one command and returns the node's reply.
func (p *nodeProc) call(ctx context.Context, command string) (reply, error) {
	if _, err := fmt.Fprintln(p.stdin, command); err != nil {
		return reply{}, fmt.Errorf("node %d: %s: %w", p.num, command, err)
	}
	r, err := p.read(ctx)
	if err != nil {
		return reply{}, fmt.Errorf("node %d: %s: %w", p.num, command, err)
	}
	if r.Err != "" {
		return r, fmt.Errorf("node %d: %s: %s", p.num, command, r.Err)
	}
	return r, nil
}

// read reads the node's next reply.
func (p *nodeProc) read(ctx context.Context) (reply, error) {
	var r reply
	select {
	case line, ok := <-p.lines:
		if !ok {
			return r, errNodeExited
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return r, fmt.Errorf("bad reply %q: %w", line, err)
		}
		return r, nil
	case <-time.After(callTimeout):
		return r, fmt.Errorf("no reply in %v", callTimeout)
	case <-ctx.Done():
		return r, ctx.Err()
	}
}

// kill kills the process with SIGKILL and waits for it to be gone.
func (p *nodeProc) kill() error {
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	p.drain()
	<-p.done
	return nil
}

// quit asks the node to leave the cluster and waits for the process to
// exit.
func (p *nodeProc) quit(ctx context.Context) error {
	r, err := p.call(ctx, "quit")
	if err != nil {
		return err
	}
	if r.Msg != "BYE" {
		return fmt.Errorf("quit: want BYE, got %+v", r)
	}
	p.stdin.Close()
	p.drain()
	select {
	case <-p.done:
	case <-time.After(callTimeout):
		return errors.New("did not exit after quit")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("exited with status %d", code)
	}
	return nil
}

// stop ends the process however it is: closing stdin makes a node leave
// and exit; one that does not within callTimeout is killed.
func (p *nodeProc) stop() {
	p.stdin.Close()
	p.drain()
	select {
	case <-p.done:
	case <-time.After(callTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// drain discards the rest of the node's output in the background, so that
// its reader can reach EOF.
func (p *nodeProc) drain() {
	go func() {
		for range p.lines {
		}
	}()
}
