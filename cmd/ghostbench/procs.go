package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ghostbench's side of the workers: a proc carries commands to one worker
// process; a cluster starts a set of them that share a node file, starts
// more that join it, and stops or kills them.

// proc is a worker process as ghostbench sees it.
type proc struct {
	id      int
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies *json.Decoder
	exited  chan struct{}
	addr    string
	mu      sync.Mutex // one command at a time
}

// call is a command for one worker.
type call struct {
	p   *proc
	cmd command
}

// pid is the worker's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// call sends cmd and waits at most timeout for the reply.
func (p *proc) call(ctx context.Context, cmd command, timeout time.Duration) (reply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line, err := json.Marshal(cmd)
	if err != nil {
		return reply{}, err
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		return reply{}, fmt.Errorf("process %d: %w", p.id, err)
	}
	rep, err := p.read(ctx, timeout)
	if err != nil {
		return reply{}, err
	}
	if rep.Err != "" {
		return reply{}, fmt.Errorf("process %d: %s", p.id, rep.Err)
	}
	return rep, nil
}

// read waits for the worker's next reply line. On a timeout the worker is
// killed, as its stream can no longer be trusted.
func (p *proc) read(ctx context.Context, timeout time.Duration) (reply, error) {
	type decoded struct {
		rep reply
		err error
	}
	got := make(chan decoded, 1)
	go func() {
		var d decoded
		d.err = p.replies.Decode(&d.rep)
		got <- d
	}()
	select {
	case d := <-got:
		if d.err != nil {
			return reply{}, fmt.Errorf("process %d: reading its reply: %w", p.id, d.err)
		}
		return d.rep, nil
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		return reply{}, ctx.Err()
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		return reply{}, fmt.Errorf("process %d: no reply within %v", p.id, timeout)
	}
}

// callAll sends each call at once and waits for every reply, in the order
// of calls.
func callAll(ctx context.Context, calls []call, timeout time.Duration) ([]reply, error) {
	reps := make([]reply, len(calls))
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() { reps[i], errs[i] = c.p.call(ctx, c.cmd, timeout) })
	}
	wg.Wait()
	return reps, errors.Join(errs...)
}

// cluster is a set of worker processes, each running a GhostDB node.
type cluster struct {
	dir       string
	nodesFile string
	base      workerConfig // what every worker is started with, but ID, Addr and Nodes
	procs     []*proc
	ended     sync.Once
}

// startCluster starts nodes workers configured as base that share a node
// file in a temporary directory, and waits until each sees all of them.
func startCluster(ctx context.Context, base workerConfig, nodes int) (*cluster, error) {
	dir, err := os.MkdirTemp("", "ghostbench-")
	if err != nil {
		return nil, err
	}
	cl := &cluster{dir: dir, nodesFile: filepath.Join(dir, "nodes.conf"), base: base}
	addrs := make([]string, nodes)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			cl.stop()
			return nil, err
		}
	}
	if err := os.WriteFile(cl.nodesFile, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		cl.stop()
		return nil, err
	}
	for i, addr := range addrs {
		if _, err := cl.spawn(i, addr, nodes, base.Keys); err != nil {
			cl.stop()
			return nil, err
		}
	}
	for _, p := range cl.procs {
		if _, err := p.awaitReady(ctx); err != nil {
			cl.stop()
			return nil, err
		}
	}
	return cl, nil
}

// grow starts one more worker, which joins the cluster, and returns it
// with its ready line once it sees every member. It holds no keys of its
// own: it only serves.
func (cl *cluster) grow(ctx context.Context) (*proc, reply, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, reply{}, err
	}
	p, err := cl.spawn(len(cl.procs), addr, len(cl.procs)+1, 0)
	if err != nil {
		return nil, reply{}, err
	}
	rep, err := p.awaitReady(ctx)
	return p, rep, err
}

// spawn starts worker id on addr, to wait for a cluster of nodes members.
func (cl *cluster) spawn(id int, addr string, nodes, keys int) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	wc := cl.base
	wc.ID, wc.Addr, wc.NodesFile, wc.Nodes, wc.Keys = id, addr, cl.nodesFile, nodes, keys
	cfg, _ := json.Marshal(wc)
	p := &proc{id: id, cmd: exec.Command(self, "-worker", string(cfg)), exited: make(chan struct{})}
	p.cmd.SysProcAttr = childAttr()
	p.cmd.Stderr = os.Stderr
	stdout, err := p.cmd.StdoutPipe()
	if err == nil {
		p.stdin, err = p.cmd.StdinPipe()
	}
	if err == nil {
		err = p.cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("start process %d: %w", id, err)
	}
	p.replies = json.NewDecoder(stdout)
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	cl.procs = append(cl.procs, p)
	return p, nil
}

// awaitReady reads the worker's first line, which says it has joined.
func (p *proc) awaitReady(ctx context.Context) (reply, error) {
	rep, err := p.read(ctx, time.Minute)
	if err == nil && !rep.Ready {
		err = fmt.Errorf("process %d: %s", p.id, rep.Err)
	}
	if err != nil {
		return reply{}, err
	}
	p.addr = rep.Addr
	return rep, nil
}

// freeAddr returns a loopback address for a node.
func freeAddr() (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}

// pids returns the workers' process ids.
func (cl *cluster) pids() []int {
	out := make([]int, len(cl.procs))
	for i, p := range cl.procs {
		out[i] = p.pid()
	}
	return out
}

// stop closes every worker's stdin, which ends it, kills those still there
// after five seconds, and removes the node file.
func (cl *cluster) stop() { cl.end(5 * time.Second) }

// kill ends every worker with SIGKILL at once: for clusters whose pairs
// are of no further use, so that their nodes do not hand them off to each
// other on the way out.
func (cl *cluster) kill() { cl.end(0) }

func (cl *cluster) end(grace time.Duration) {
	cl.ended.Do(func() {
		for _, p := range cl.procs {
			_ = p.stdin.Close()
		}
		deadline := time.Now().Add(grace)
		for _, p := range cl.procs {
			select {
			case <-p.exited:
			case <-time.After(time.Until(deadline)):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
		_ = os.RemoveAll(cl.dir)
	})
}
