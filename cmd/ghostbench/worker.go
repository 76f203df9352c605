package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/ghostdb/ghost/internal/latency"
	"github.com/maypok86/otter/v2"
)

// A worker is one process of the GhostDB cluster under test. ghostbench
// starts it as a copy of itself with -worker, then talks to it in JSON
// lines: commands on its stdin, one reply per command on its stdout. The
// worker embeds a node and runs the load of a cell against that node, or
// against memcached, Redis or a sync.Map, so every target is driven from a
// process of the same kind. It ends when its stdin closes, and on Linux
// when ghostbench dies. procs.go is ghostbench's side; paced.go the load
// that runs while ghostbench changes the cluster.

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
	Secret    []byte  `json:"secret,omitempty"` // the cluster's SecretKey, if any
	Seed      uint64  `json:"seed"`
	// Replicas is the node's Config.Replicas; 0 leaves GhostDB's default.
	Replicas int `json:"replicas,omitempty"`
	// MaxKeys and MaxBytes are the node's limits; 0 means max(65536,
	// 2×Keys) keys and GhostDB's default bytes.
	MaxKeys  int   `json:"max_keys,omitempty"`
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Gossip is the failure-detection profile: gossipLAN or gossipFast.
	Gossip string `json:"gossip,omitempty"`
	// NearCacheKeys is the node's Config.NearCacheKeys: 0, no near cache.
	NearCacheKeys int `json:"near_cache_keys,omitempty"`
}

// Gossip profiles of a worker.
const (
	gossipLAN  = "lan"  // memberlist's DefaultLANConfig, what GhostDB uses unless told
	gossipFast = "fast" // ghost.FastGossip
)

// Commands a worker obeys.
const (
	cmdPrefill   = "prefill"    // store every key of the target this worker is responsible for
	cmdRun       = "run"        // run the load of one cell and report it
	cmdPaceStart = "pace-start" // start a paced load in the background (paced.go)
	cmdPaceStop  = "pace-stop"  // stop it and report its timeline
	cmdWaitSafe  = "wait-safe"  // wait until the node sees Members members and is Safe
	cmdStats     = "stats"      // the node's own watchdog and snitch figures
	cmdStampede  = "stampede"   // GetOrLoad of cold keys from many callers (near.go)
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
	// Batch makes every call a get of this many distinct keys (multi.go);
	// ops then count keys, and latencies are per call.
	Batch int `json:"batch,omitempty"`
	// Rate is the ops/s of a paced load; its Conc bounds the ops in flight.
	Rate float64 `json:"rate,omitempty"`
	// Members is how many members wait-safe waits for the node to see.
	Members int `json:"members,omitempty"`
	// Prefix and Rounds are the stampede's (near.go): Rounds cold keys
	// named from Prefix, each read by Conc callers at once.
	Prefix string `json:"prefix,omitempty"`
	Rounds int    `json:"rounds,omitempty"`
}

// reply is one line a worker writes: first a ready line, then one per
// command.
type reply struct {
	Ready  bool        `json:"ready,omitempty"`
	Addr   string      `json:"addr,omitempty"`
	Err    string      `json:"err,omitempty"`
	Result *cellResult `json:"result,omitempty"`
	// Began and Joined are when the ready worker called ghost.Join and
	// when it returned, in Unix nanoseconds.
	Began    int64            `json:"began_ns,omitempty"`
	Joined   int64            `json:"joined_ns,omitempty"`
	Wait     *waitResult      `json:"wait,omitempty"`
	Timeline *timelineResult  `json:"timeline,omitempty"`
	Stats    map[string]int64 `json:"stats,omitempty"`
	// Loads is how many loader calls a stampede made in this process.
	Loads int64 `json:"loads,omitempty"`
}

// waitResult is when, in Unix nanoseconds, a node first saw the members
// it was told to wait for, and when it was Safe after that.
type waitResult struct {
	Members int64 `json:"members_ns"`
	Safe    int64 `json:"safe_ns"`
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
	// Forwarded is the calls the GhostDB node sent to other members
	// while the cell was measured (its watchdog's Forwarded).
	Forwarded int64 `json:"forwarded,omitempty"`
	// NearHits and NearReads are its Gets answered from its near cache,
	// and those it sent asking for a near lease.
	NearHits  int64 `json:"near_hits,omitempty"`
	NearReads int64 `json:"near_reads,omitempty"`
}

// worker is the state of a worker process.
type worker struct {
	cfg     workerConfig
	node    *ghost.Node
	keys    []string
	value   []byte
	syncMap sync.Map
	otter   *otter.Cache[string, []byte] // made by the first command for it
	paced   *pacedLoad                   // the background load, while one runs
}

// runWorker is main for a worker process.
func runWorker(ctx context.Context, raw string) error {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	if dir := os.Getenv("GHOSTBENCH_CPUPROFILE"); dir != "" {
		// A CPU profile of the worker's whole life, for the profiles
		// performance.md asks of a change to the data path.
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d-%d.pprof", cfg.ID, os.Getpid())))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	w := &worker{cfg: cfg, keys: keyNames(cfg.Keys), value: make([]byte, cfg.ValueSize)}
	for i := range w.value {
		w.value[i] = byte('a' + i%26)
	}
	out := json.NewEncoder(os.Stdout)
	joinCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ready, err := w.join(joinCtx)
	if err != nil {
		_ = out.Encode(reply{Err: err.Error()})
		return err
	}
	defer w.node.Close()
	defer w.stopPaced() // before Close
	if err := out.Encode(ready); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd command
		var rep reply
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			rep.Err = fmt.Sprintf("bad command: %v", err)
		} else {
			rep = w.do(ctx, cmd)
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

// join starts the node and waits until it sees the whole cluster. Its
// reply is the worker's ready line.
func (w *worker) join(ctx context.Context) (reply, error) {
	cfg := ghost.Config{
		Addr:           w.cfg.Addr,
		PeersFile:      w.cfg.NodesFile,
		RejoinInterval: 100 * time.Millisecond,
		Replicas:       w.cfg.Replicas,
		MaxKeys:        w.cfg.MaxKeys,
		SecretKey:      w.cfg.Secret,
		MaxBytes:       w.cfg.MaxBytes,
		// Every worker ends at once when ghostbench is done: handing
		// partitions to each other on the way out is wasted work.
		CloseTimeout: time.Second,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	cfg.MaxKeys = w.maxKeys()
	cfg.NearCacheKeys = w.cfg.NearCacheKeys
	switch w.cfg.Gossip {
	case "", gossipLAN:
	case gossipFast:
		cfg.Gossip = ghost.FastGossip
	default:
		return reply{}, fmt.Errorf("unknown gossip profile %q", w.cfg.Gossip)
	}
	began := time.Now()
	n, err := ghost.Join(ctx, cfg)
	if err != nil {
		return reply{}, err
	}
	joined := time.Now()
	for len(n.Members()) != w.cfg.Nodes {
		select {
		case <-ctx.Done():
			n.Close()
			return reply{}, fmt.Errorf("node %s sees %d of %d members: %w", n.Addr(), len(n.Members()), w.cfg.Nodes, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	w.node = n
	return reply{Ready: true, Addr: n.Addr(), Began: began.UnixNano(), Joined: joined.UnixNano()}, nil
}

// maxKeys is the node's MaxKeys, and the otter floor's MaximumSize.
func (w *worker) maxKeys() int {
	if w.cfg.MaxKeys != 0 {
		return w.cfg.MaxKeys
	}
	return max(65536, 2*w.cfg.Keys)
}

// keyNames returns the names of the benchmark's keys.
func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key:%08d", i)
	}
	return keys
}

// do carries out one command and returns the reply to it.
func (w *worker) do(ctx context.Context, cmd command) reply {
	var rep reply
	var err error
	switch cmd.Cmd {
	case cmdPrefill, cmdRun:
		rep.Result, err = w.drive(ctx, cmd)
	case cmdPaceStart:
		err = w.startPaced(ctx, cmd)
	case cmdPaceStop:
		rep.Timeline, err = w.stopPaced()
	case cmdWaitSafe:
		rep.Wait, err = w.waitSafe(ctx, cmd)
	case cmdStats:
		rep.Stats, err = w.nodeStats(ctx)
	case cmdStampede:
		rep.Loads, err = w.stampede(ctx, cmd)
	default:
		err = fmt.Errorf("unknown command %q", cmd.Cmd)
	}
	if err != nil {
		rep.Err = err.Error()
	}
	return rep
}

// drive prefills a target or runs the load of a cell on it.
func (w *worker) drive(ctx context.Context, cmd command) (*cellResult, error) {
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
		if _, ok := cl.(batchClient); cmd.Batch > 0 && !ok {
			return nil, fmt.Errorf("target %s has no batch get", cmd.Target)
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
	case targetFloor:
		return newFloorClient(cmd.Addr)
	case targetSyncMap:
		return syncMapClient{&w.syncMap}, nil
	case targetOtter:
		// Commands run one at a time, so the first made is the only one.
		if w.otter == nil {
			w.otter = otter.Must(&otter.Options[string, []byte]{MaximumSize: w.maxKeys(), InitialCapacity: w.cfg.Keys})
		}
		return otterClient{w.otter}, nil
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
	bc, batch := cl.(batchClient)
	batch = batch && cmd.Batch > 0
	for g := range cmd.Conc {
		stats[g] = &loopStats{}
		if batch {
			wg.Go(func() { w.batchLoop(ctx, bc, keys, cmd, uint64(g), &phase, stats[g]) })
		} else {
			wg.Go(func() { w.loop(ctx, cl, keys, cmd, uint64(g), &phase, stats[g]) })
		}
	}
	time.Sleep(cmd.Warmup)
	var before ghost.WatchdogStats
	if cmd.Target == targetGhost {
		before = w.node.Watchdog()
	}
	phase.Store(phaseMeasure)
	start := time.Now()
	time.Sleep(cmd.Duration)
	phase.Store(phaseStop)
	elapsed := time.Since(start)
	var after ghost.WatchdogStats
	if cmd.Target == targetGhost {
		after = w.node.Watchdog()
	}
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
		Forwarded: after.Forwarded - before.Forwarded, NearHits: after.NearHits - before.NearHits, NearReads: after.NearReads - before.NearReads,
	}
	if total.firstErr != nil {
		res.FirstErr = total.firstErr.Error()
	}
	return res
}

// picker returns the random source of load goroutine id and a function
// that picks its next key from keys in the configured distribution.
func (w *worker) picker(keys []string, id uint64) (*rand.Rand, func() string) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed+uint64(w.cfg.ID), id))
	if w.cfg.Dist == "zipf" && len(keys) > 1 {
		z := rand.NewZipf(rng, w.cfg.ZipfS, 1, uint64(len(keys)-1))
		return rng, func() string { return keys[z.Uint64()] }
	}
	return rng, func() string { return keys[rng.IntN(len(keys))] }
}

// loop is one closed-loop load goroutine.
func (w *worker) loop(ctx context.Context, cl client, keys []string, cmd command, id uint64, phase *atomic.Int32, st *loopStats) {
	rng, next := w.picker(keys, id)
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
		hit, err := w.op(ctx, cl, key, isGet)
		if ph != phaseMeasure {
			continue
		}
		if timed {
			st.hist.Record(time.Since(t0))
		}
		var gets, hits int64
		if isGet {
			gets = 1
			if hit {
				hits = 1
			}
		}
		st.count(1, gets, hits, err)
	}
}

// count adds a measured call of ops ops, gets of them gets that found
// hits keys.
func (st *loopStats) count(ops, gets, hits int64, err error) {
	st.ops += ops
	st.gets += gets
	st.hits += hits
	if err != nil {
		st.errors++
		if st.firstErr == nil {
			st.firstErr = err
		}
	}
}

// op runs one get, or one set of the worker's value, on key.
func (w *worker) op(ctx context.Context, cl client, key string, isGet bool) (hit bool, err error) {
	if isGet {
		return cl.get(ctx, key)
	}
	return false, cl.set(ctx, key, w.value)
}

// safePoll is how often wait-safe looks at the node: the resolution of
// the times it reports.
const safePoll = 5 * time.Millisecond

// waitSafe waits, at most cmd.Duration, until the node sees cmd.Members
// members and then until it is Safe, and reports when it saw each.
func (w *worker) waitSafe(ctx context.Context, cmd command) (*waitResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cmd.Duration)
	defer cancel()
	tick := time.NewTicker(safePoll)
	defer tick.Stop()
	var res waitResult
	for {
		now := time.Now().UnixNano()
		if res.Members == 0 && len(w.node.Members()) == cmd.Members {
			res.Members = now
		}
		if res.Members != 0 && w.node.Safe() {
			res.Safe = now
			return &res, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, w.notSafe(cmd)
		}
	}
}

// notSafe describes a node that did not become Safe in time.
func (w *worker) notSafe(cmd command) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := w.nodeStats(ctx)
	var table string
	if err == nil {
		table = fmt.Sprintf(" (table version %d, %d partitions short of copies, %d transfers in flight)",
			st["TableVersion"], st["PartitionsShort"], st["TransfersInFlight"])
	}
	return fmt.Errorf("node %s sees %d members (waiting for %d) and is not Safe after %v%s",
		w.node.Addr(), len(w.node.Members()), cmd.Members, cmd.Duration, table)
}

// nodeStats returns the node's own figures from its latest watchdog and
// snitch samples (PairsMoved, Evicted, Keys...).
func (w *worker) nodeStats(ctx context.Context) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out := map[string]int64{}
	for _, metrics := range []func(context.Context) ([]ghost.NodeMetrics, error){w.node.WatchdogMetrics, w.node.SnitchMetrics} {
		nodes, err := metrics(ctx) // an error names members that did not answer: not ours
		i := slices.IndexFunc(nodes, func(m ghost.NodeMetrics) bool { return m.Node == w.node.Addr() && len(m.Data) > 0 })
		if i < 0 {
			return nil, fmt.Errorf("no metrics from this node: %v", err)
		}
		maps.Copy(out, nodes[i].Data[len(nodes[i].Data)-1].Figures())
	}
	return out, nil
}
