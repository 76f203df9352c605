package main

import (
	"bufio"
	"context"
	cryptorand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/ghostdb/ghost/internal/latency"
)

// A worker is one process of the GhostDB cluster under test. ghostbench
// starts it as a copy of itself with -worker, then talks to it in JSON
// lines: commands on its stdin, one reply per command on its stdout. The
// worker embeds a node and runs the load of a cell against that node, or
// against memcached, Redis or a sync.Map, so every target is driven from a
// process of the same kind. It ends when its stdin closes, and on Linux
// when ghostbench dies.
//
// The second half of this file is ghostbench's side: proc and cluster
// start the workers and carry commands to them.

// workerConfig is what a worker is started with, as JSON in -worker.
type workerConfig struct {
	ID        int     `json:"id"`
	Addr      string  `json:"addr"`       // the node's host:port
	NodesFile string  `json:"nodes_file"` // the node list shared by the cluster
	Nodes     int     `json:"nodes"`      // cluster size to wait for
	Keys      int     `json:"keys"`
	ValueSize int     `json:"value_size"`
	Dist      string  `json:"dist"` // uniform or zipf
	ZipfS     float64 `json:"zipf_s"`
	Seed      uint64  `json:"seed"`
	Secret    []byte  `json:"secret,omitempty"` // the cluster's SecretKey, if any
}

// Commands a worker obeys.
const (
	cmdPrefill = "prefill" // store every key of the target this worker is responsible for
	cmdRun     = "run"     // run the load of one cell and report it
)

// Key sets of GhostDB cells, as seen from the worker running the load.
const (
	keysAll    = "all"    // every key
	keysLocal  = "local"  // keys this worker's node owns
	keysRemote = "remote" // keys another node owns: every op is forwarded
)

// command is one line a worker reads.
type command struct {
	Cmd      string        `json:"cmd"`
	Target   string        `json:"target"`
	Addr     string        `json:"addr,omitempty"` // memcached or Redis
	Keys     string        `json:"keys,omitempty"` // GhostDB key set
	Conc     int           `json:"conc,omitempty"`
	GetPct   int           `json:"get_pct,omitempty"`
	Warmup   time.Duration `json:"warmup,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	// SampleEvery times one op in this many, so that reading the clock
	// does not dominate in-process targets.
	SampleEvery int `json:"sample_every,omitempty"`
}

// reply is one line a worker writes: first a ready line, then one per
// command.
type reply struct {
	Ready  bool        `json:"ready,omitempty"`
	Addr   string      `json:"addr,omitempty"`
	Err    string      `json:"err,omitempty"`
	Result *cellResult `json:"result,omitempty"`
}

// cellResult is what one worker measured in one cell.
type cellResult struct {
	Ops      int64      `json:"ops"`
	Gets     int64      `json:"gets"`
	Hits     int64      `json:"hits"`
	Errors   int64      `json:"errors"`
	Seconds  float64    `json:"seconds"` // length of the measured interval
	Hist     [][2]int64 `json:"hist"`    // latencies of the sampled ops
	FirstErr string     `json:"first_err,omitempty"`
}

// worker is the state of a worker process.
type worker struct {
	cfg     workerConfig
	node    *ghost.Node
	keys    []string
	value   []byte
	syncMap sync.Map
}

// runWorker is main for a worker process.
func runWorker(ctx context.Context, raw string) error {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	w := &worker{cfg: cfg, keys: keyNames(cfg.Keys), value: make([]byte, cfg.ValueSize)}
	for i := range w.value {
		w.value[i] = byte('a' + i%26)
	}
	out := json.NewEncoder(os.Stdout)
	joinCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.join(joinCtx); err != nil {
		_ = out.Encode(reply{Err: err.Error()})
		return err
	}
	defer w.node.Close()
	if err := out.Encode(reply{Ready: true, Addr: w.node.Addr()}); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd command
		var rep reply
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			rep.Err = fmt.Sprintf("bad command: %v", err)
		} else if rep.Result, err = w.do(ctx, cmd); err != nil {
			rep.Err = err.Error()
		}
		if err := out.Encode(rep); err != nil {
			return err
		}
	}
	if err := in.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil // stdin closed: ghostbench is done
}

// join starts the node and waits until it sees the whole cluster.
func (w *worker) join(ctx context.Context) error {
	n, err := ghost.Join(ctx, ghost.Config{
		Addr:           w.cfg.Addr,
		PeersFile:      w.cfg.NodesFile,
		RejoinInterval: 100 * time.Millisecond,
		MaxKeys:        max(65536, 2*w.cfg.Keys),
		SecretKey:      w.cfg.Secret,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return err
	}
	for len(n.Members()) != w.cfg.Nodes {
		select {
		case <-ctx.Done():
			n.Close()
			return fmt.Errorf("node %s sees %d of %d members: %w", n.Addr(), len(n.Members()), w.cfg.Nodes, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	w.node = n
	return nil
}

// keyNames returns the names of the benchmark's keys.
func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%08d", i)
	}
	return keys
}

// do carries out one command.
func (w *worker) do(ctx context.Context, cmd command) (*cellResult, error) {
	cl, err := w.client(cmd)
	if err != nil {
		return nil, err
	}
	defer cl.close()
	switch cmd.Cmd {
	case cmdPrefill:
		keys := w.keys
		if cmd.Target == targetGhost {
			keys = w.keySet(keysLocal) // each node stores its own share
		}
		return nil, prefill(ctx, cl, keys, w.value)
	case cmdRun:
		keys := w.keys
		if cmd.Target == targetGhost {
			keys = w.keySet(cmd.Keys)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("no keys in set %q on a cluster of %d", cmd.Keys, w.cfg.Nodes)
		}
		return w.load(ctx, cl, keys, cmd), nil
	}
	return nil, fmt.Errorf("unknown command %q", cmd.Cmd)
}

// client connects to the target of cmd.
func (w *worker) client(cmd command) (client, error) {
	conns := max(cmd.Conc, 16)
	switch cmd.Target {
	case targetGhost:
		return ghostClient{w.node}, nil
	case targetMemcached:
		return newMemcachedClient(cmd.Addr, conns), nil
	case targetRedis:
		return newRedisClient(cmd.Addr, conns), nil
	case targetSyncMap:
		return syncMapClient{&w.syncMap}, nil
	}
	return nil, fmt.Errorf("unknown target %q", cmd.Target)
}

// keySet returns the benchmark's keys that set names, from this node's
// point of view.
func (w *worker) keySet(set string) []string {
	if set == keysAll || set == "" {
		return w.keys
	}
	self := w.node.Addr()
	var out []string
	for _, k := range w.keys {
		if local := w.node.Owner(k) == self; local == (set == keysLocal) {
			out = append(out, k)
		}
	}
	return out
}

// prefill stores value under every key, from 16 goroutines.
func prefill(ctx context.Context, cl client, keys []string, value []byte) error {
	const goroutines = 16
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := g; i < len(keys); i += goroutines {
				if err := cl.set(ctx, keys[i], value); err != nil {
					errs[g] = fmt.Errorf("prefill %s: %w", keys[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Phases of a cell's load.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// loopStats is what one load goroutine counted.
type loopStats struct {
	hist                    latency.Histogram
	ops, gets, hits, errors int64
	firstErr                error
}

// load runs cmd.Conc closed-loop goroutines on keys: each issues its next
// op as soon as the last one returns. Ops of the warm-up are not counted.
func (w *worker) load(ctx context.Context, cl client, keys []string, cmd command) *cellResult {
	var phase atomic.Int32
	stats := make([]*loopStats, cmd.Conc)
	var wg sync.WaitGroup
	for g := range cmd.Conc {
		stats[g] = &loopStats{}
		wg.Go(func() { w.loop(ctx, cl, keys, cmd, uint64(g), &phase, stats[g]) })
	}
	time.Sleep(cmd.Warmup)
	phase.Store(phaseMeasure)
	start := time.Now()
	time.Sleep(cmd.Duration)
	phase.Store(phaseStop)
	elapsed := time.Since(start)
	wg.Wait()

	var total loopStats
	for _, s := range stats {
		total.hist.Merge(&s.hist)
		total.ops += s.ops
		total.gets += s.gets
		total.hits += s.hits
		total.errors += s.errors
		if total.firstErr == nil {
			total.firstErr = s.firstErr
		}
	}
	res := &cellResult{
		Ops: total.ops, Gets: total.gets, Hits: total.hits, Errors: total.errors,
		Seconds: elapsed.Seconds(), Hist: total.hist.Sparse(),
	}
	if total.firstErr != nil {
		res.FirstErr = total.firstErr.Error()
	}
	return res
}

// loop is one closed-loop load goroutine.
func (w *worker) loop(ctx context.Context, cl client, keys []string, cmd command, id uint64, phase *atomic.Int32, st *loopStats) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed+uint64(w.cfg.ID), id))
	next := func() string { return keys[rng.IntN(len(keys))] }
	if w.cfg.Dist == "zipf" && len(keys) > 1 {
		z := rand.NewZipf(rng, w.cfg.ZipfS, 1, uint64(len(keys)-1))
		next = func() string { return keys[z.Uint64()] }
	}
	sampleEvery := max(cmd.SampleEvery, 1)
	for i := 0; ; i++ {
		ph := phase.Load()
		if ph == phaseStop {
			return
		}
		key := next()
		isGet := rng.IntN(100) < cmd.GetPct
		timed := ph == phaseMeasure && i%sampleEvery == 0
		var t0 time.Time
		if timed {
			t0 = time.Now()
		}
		var hit bool
		var err error
		if isGet {
			hit, err = cl.get(ctx, key)
		} else {
			err = cl.set(ctx, key, w.value)
		}
		if ph != phaseMeasure {
			continue
		}
		if timed {
			st.hist.Record(time.Since(t0))
		}
		st.ops++
		if isGet {
			st.gets++
			if hit {
				st.hits++
			}
		}
		if err != nil {
			st.errors++
			if st.firstErr == nil {
				st.firstErr = err
			}
		}
	}
}

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
func (p *proc) call(ctx context.Context, cmd command, timeout time.Duration) (*cellResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("process %d: %w", p.id, err)
	}
	rep, err := p.read(ctx, timeout)
	if err != nil {
		return nil, err
	}
	if rep.Err != "" {
		return nil, errors.New(rep.Err)
	}
	return rep.Result, nil
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

// cluster is the set of worker processes, each running a GhostDB node.
type cluster struct {
	dir   string
	procs []*proc
}

// startCluster starts o.nodes workers that share a node file in a
// temporary directory, and waits until each sees all of them.
func startCluster(ctx context.Context, o options) (*cluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ghostbench-")
	if err != nil {
		return nil, err
	}
	cl := &cluster{dir: dir}
	addrs := make([]string, o.nodes)
	for i := range addrs {
		port, err := freePort()
		if err != nil {
			cl.stop()
			return nil, err
		}
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	nodesFile := filepath.Join(dir, "nodes.conf")
	if err := os.WriteFile(nodesFile, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		cl.stop()
		return nil, err
	}
	var secret []byte
	if o.secret {
		secret = make([]byte, 32)
		_, _ = cryptorand.Read(secret)
	}
	for i, addr := range addrs {
		cfg, _ := json.Marshal(workerConfig{
			ID: i, Addr: addr, NodesFile: nodesFile, Nodes: o.nodes, Keys: o.keys,
			ValueSize: o.valueSize, Dist: o.dist, ZipfS: o.zipfS, Seed: o.seed, Secret: secret,
		})
		p := &proc{id: i, cmd: exec.Command(self, "-worker", string(cfg)), exited: make(chan struct{})}
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
			cl.stop()
			return nil, fmt.Errorf("start process %d: %w", i, err)
		}
		p.replies = json.NewDecoder(stdout)
		go func() { _ = p.cmd.Wait(); close(p.exited) }()
		cl.procs = append(cl.procs, p)
	}
	for _, p := range cl.procs {
		rep, err := p.read(ctx, time.Minute)
		if err == nil && !rep.Ready {
			err = fmt.Errorf("process %d: %s", p.id, rep.Err)
		}
		if err != nil {
			cl.stop()
			return nil, err
		}
		p.addr = rep.Addr
	}
	return cl, nil
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
func (cl *cluster) stop() {
	for _, p := range cl.procs {
		_ = p.stdin.Close()
	}
	deadline := time.After(5 * time.Second)
	for _, p := range cl.procs {
		select {
		case <-p.exited:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	_ = os.RemoveAll(cl.dir)
}
