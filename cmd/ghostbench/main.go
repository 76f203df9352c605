// Command ghostbench measures GhostDB side by side with memcached and Redis,
// in one run, and reports the results as ratios.
//
// It starts a GhostDB cluster of -nodes processes on 127.0.0.1 (copies of
// itself, each embedding a node) and, when their binaries are on PATH,
// memcached and redis-server on free loopback ports with persistence off.
// Every target gets the same closed-loop workload, driven from a cluster
// process: -keys keys prefilled with -value-byte values, gets and sets in
// -ratio, -conc callers at once, uniform or Zipf keys. Cells (a target, a
// scenario and a concurrency) run for -duration after -warmup, interleaved
// over -passes passes, and the table reports per cell the median and range
// of ops/s, latency percentiles, CPU per op and the ratio of GhostDB to
// memcached and Redis. It ends with the targets as PASS or FAIL
// lines (SKIP when a target was not measured).
//
// GhostDB scenarios:
//
//	forwarded   every op is for a key another process owns: one hop each
//	owner-local every op is for a key the calling process owns
//	cluster     uniform keys, load from every process at once (aggregate)
//	GetMulti    Node.GetMulti of 100 distinct keys from one process (most of
//	            them remote), against memcached's GetMulti and Redis's MGET
//	            of 100 keys; these rows count keys/s, with latency per call
//
// The floor rows are a sync.Map and an otter cache (the local cache a Go
// user would pick instead) in the load process, get only, for the targets
// "owner-local Get ≤ 2× sync.Map Get" and "≤ 1.5× otter Get".
//
// The GhostDB clusters keep -replicas copies of each pair (2, GhostDB's
// default). -scenarios picks what runs besides that table:
//
//	base      the table above
//	replicas  forwarded sets, and forwarded get/set, on a second cluster
//	          with Replicas 1: the put cost of the extra copies
//	join      a node joins a cluster holding -join-keys pairs under a
//	          paced load: time to Safe, pairs moved, p99 before and during
//	kill      SIGKILL of a node holding about -kill-keys×replicas/nodes
//	          pairs: failure-detection time and time to Safe again
//
// The join and kill run after the cells, each on a cluster of its own
// (events.go), once per -event-runs.
//
// Usage:
//
//	ghostbench [-targets ghost,memcached,redis] [-scenarios base,replicas] [-nodes 3] [-conc 1,16,64] [-secret] [-json out.json]
//
// The Markdown table goes to stdout, progress to stderr.
package main

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line flags.
type options struct {
	targets   []string
	nodes     int
	keys      int
	valueSize int
	getPct    int
	ratio     string
	conc      []int
	dist      string
	zipfS     float64
	duration  time.Duration
	warmup    time.Duration
	passes    int
	jsonOut   string
	seed      uint64
	secret    bool

	scenarios    []string
	replicas     int
	eventNodes   int
	joinKeys     int
	killKeys     int
	nearKeys     int
	killGossip   []string
	paceRate     float64
	steady       time.Duration
	eventRuns    int
	eventTimeout time.Duration
}

// Scenarios, as -scenarios names them.
const (
	scenarioBase     = "base"
	scenarioReplicas = "replicas"
	scenarioJoin     = "join"
	scenarioKill     = "kill"
	scenarioNear     = "near"
)

func main() {
	worker := flag.String("worker", "", "internal: run as a GhostDB cluster process with this JSON configuration")
	floorServer := flag.Bool("floor-server", false, "internal: run as the floor's server (floor.go), answering gets with -value bytes")
	var o options
	targets := flag.String("targets", "ghost,memcached,redis,floor", "comma-separated targets: ghost (GhostDB and the sync.Map and otter floors), memcached, redis, floor (a Go request/response over loopback, floor.go)")
	conc := flag.String("conc", "1,16,64", "comma-separated concurrencies: callers per load process")
	scenarios := flag.String("scenarios", "base,replicas", "comma-separated: base, replicas, near, join, kill, or all")
	flag.IntVar(&o.nearKeys, "near-keys", 10_000, "near: Config.NearCacheKeys of the cluster with a near cache")
	killGossip := flag.String("kill-gossip", "lan,fast", "comma-separated gossip profiles to run the kill with: lan (memberlist's defaults), fast (examples/cluster's)")
	flag.IntVar(&o.replicas, "replicas", 2, "Config.Replicas of the GhostDB clusters (the replicas scenario compares with 1)")
	flag.IntVar(&o.eventNodes, "event-nodes", 3, "join: nodes before the join; kill: nodes after the kill")
	flag.IntVar(&o.joinKeys, "join-keys", 2_000_000, "pairs in the cluster a node joins (with Replicas 2, 3 nodes: about half move to the new node)")
	flag.IntVar(&o.killKeys, "kill-keys", 200_000, "pairs in the cluster a node is killed in (the node holds about replicas/nodes of them)")
	flag.Float64Var(&o.paceRate, "pace-rate", 2000, "ops/s of the paced get/set load (an open loop from worker 0) during a join or kill")
	flag.DurationVar(&o.steady, "steady", 5*time.Second, "paced load measured before a join or kill, after -warmup")
	flag.IntVar(&o.eventRuns, "event-runs", 1, "runs of each join and kill")
	flag.DurationVar(&o.eventTimeout, "event-timeout", 5*time.Minute, "longest wait for a cluster to be Safe")
	flag.IntVar(&o.nodes, "nodes", 3, "GhostDB cluster processes")
	flag.IntVar(&o.keys, "keys", 100_000, "keys, prefilled before the first cell")
	flag.IntVar(&o.valueSize, "value", 100, "value size in bytes")
	flag.StringVar(&o.ratio, "ratio", "9:1", "get:set ratio")
	flag.StringVar(&o.dist, "dist", "uniform", "key distribution: uniform or zipf")
	flag.Float64Var(&o.zipfS, "zipf-s", 1.1, "Zipf exponent s (> 1) with -dist zipf")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "measured time per cell")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up per cell, not measured")
	flag.IntVar(&o.passes, "passes", 3, "passes over all cells; targets are interleaved in each")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file (- for stdout, in place of the table)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the key choices")
	flag.BoolVar(&o.secret, "secret", false, "run the GhostDB clusters with a SecretKey: TLS between nodes")
	verbose := flag.Bool("v", false, "log debug messages")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *floorServer {
		if err := runFloorServer(o.valueSize); err != nil {
			slog.Error("floor server failed", "err", err)
			os.Exit(1)
		}
		return
	}
	if *worker != "" {
		if err := runWorker(ctx, *worker); err != nil {
			slog.Error("worker failed", "err", err)
			os.Exit(1)
		}
		return
	}
	var err error
	if err = o.parse(*targets, *conc); err == nil {
		err = o.parseReplication(*scenarios, *killGossip)
	}
	if err == nil {
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ghostbench:", err)
		os.Exit(1)
	}
}

// parse checks the flags and fills in the fields parsed from lists.
func (o *options) parse(targets, conc string) error {
	for t := range strings.SplitSeq(targets, ",") {
		switch t = strings.TrimSpace(t); t {
		case targetGhost, targetMemcached, targetRedis, targetFloor:
			o.targets = append(o.targets, t)
		default:
			return fmt.Errorf("-targets: unknown target %q", t)
		}
	}
	for c := range strings.SplitSeq(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-conc: %q is not a positive number", c)
		}
		o.conc = append(o.conc, n)
	}
	g, s, ok := strings.Cut(o.ratio, ":")
	gets, err1 := strconv.Atoi(g)
	sets, err2 := strconv.Atoi(s)
	if !ok || err1 != nil || err2 != nil || gets < 0 || sets < 0 || gets+sets == 0 {
		return fmt.Errorf("-ratio %q: want gets:sets, such as 9:1", o.ratio)
	}
	o.getPct = 100 * gets / (gets + sets)
	switch {
	case o.nodes < 1:
		return errors.New("-nodes must be at least 1")
	case o.keys < 1:
		return errors.New("-keys must be at least 1")
	case o.valueSize < 0:
		return errors.New("-value must not be negative")
	case o.dist != "uniform" && o.dist != "zipf":
		return fmt.Errorf("-dist %q: want uniform or zipf", o.dist)
	case o.dist == "zipf" && o.zipfS <= 1:
		return errors.New("-zipf-s must be greater than 1")
	case o.duration <= 0 || o.warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	case o.passes < 1:
		return errors.New("-passes must be at least 1")
	}
	return nil
}

func (o *options) has(target string) bool { return slices.Contains(o.targets, target) }

func (o *options) wants(scenario string) bool { return slices.Contains(o.scenarios, scenario) }

// parseReplication checks the flags of the replication scenarios.
func (o *options) parseReplication(scenarios, killGossip string) error {
	for sc := range strings.SplitSeq(scenarios, ",") {
		switch sc = strings.TrimSpace(sc); sc {
		case "all":
			o.scenarios = append(o.scenarios, scenarioBase, scenarioReplicas, scenarioNear, scenarioJoin, scenarioKill)
		case scenarioBase, scenarioReplicas, scenarioNear, scenarioJoin, scenarioKill:
			o.scenarios = append(o.scenarios, sc)
		default:
			return fmt.Errorf("-scenarios: unknown scenario %q", sc)
		}
	}
	for g := range strings.SplitSeq(killGossip, ",") {
		switch g = strings.TrimSpace(g); g {
		case gossipLAN, gossipFast:
			o.killGossip = append(o.killGossip, g)
		default:
			return fmt.Errorf("-kill-gossip: unknown profile %q", g)
		}
	}
	switch {
	case o.replicas < 1:
		return errors.New("-replicas must be at least 1")
	case o.eventNodes < 2:
		return errors.New("-event-nodes must be at least 2")
	case o.joinKeys < 1 || o.killKeys < 1:
		return errors.New("-join-keys and -kill-keys must be at least 1")
	case o.paceRate <= 0 || o.steady <= 0:
		return errors.New("-pace-rate and -steady must be positive")
	case o.eventRuns < 1 || o.eventTimeout <= 0:
		return errors.New("-event-runs must be at least 1 and -event-timeout positive")
	}
	return nil
}

// report is the whole result, as printed and as JSON.
type report struct {
	Meta    meta      `json:"meta"`
	Cells   []*cell   `json:"cells"`
	PutCost []putCost `json:"put_cost,omitempty"`
	Near    *nearRun  `json:"near,omitempty"`
	Join    []joinRun `json:"join,omitempty"`
	Kill    []killRun `json:"kill,omitempty"`
	Checks  []check   `json:"checks"`
	Notes   []string  `json:"notes,omitempty"`
}

// meta describes the run.
type meta struct {
	Date      string  `json:"date"`
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	GoVersion string  `json:"go_version"`
	Memcached string  `json:"memcached,omitempty"`
	Redis     string  `json:"redis,omitempty"`
	Nodes     int     `json:"nodes"`
	Secret    bool    `json:"secret"` // the clusters ran with a SecretKey (TLS between nodes)
	Keys      int     `json:"keys"`
	ValueSize int     `json:"value_size"`
	Ratio     string  `json:"ratio"`
	Dist      string  `json:"dist"`
	ZipfS     float64 `json:"zipf_s,omitempty"`
	Duration  string  `json:"duration"`
	Warmup    string  `json:"warmup"`
	Passes    int     `json:"passes"`
	Conc      []int   `json:"conc"`
	Command   string  `json:"command"`
	Seconds   float64 `json:"wall_seconds"`

	Scenarios  []string `json:"scenarios"`
	Replicas   int      `json:"replicas"`
	EventNodes int      `json:"event_nodes,omitempty"`
	JoinKeys   int      `json:"join_keys,omitempty"`
	KillKeys   int      `json:"kill_keys,omitempty"`
	PaceRate   float64  `json:"pace_rate,omitempty"`
	Steady     string   `json:"steady,omitempty"`
}

// run is the whole benchmark: start everything, run the cells, then the
// join and kill, report, stop everything.
func run(ctx context.Context, o options) error {
	began := time.Now()
	r := &report{Meta: meta{
		Date: began.UTC().Format("2006-01-02 15:04 MST"), CPU: cpuModel(), Cores: runtime.NumCPU(),
		GoVersion: runtime.Version(), Nodes: o.nodes, Secret: o.secret, Keys: o.keys, ValueSize: o.valueSize,
		Ratio: o.ratio, Dist: o.dist, Duration: o.duration.String(), Warmup: o.warmup.String(),
		Passes: o.passes, Conc: o.conc, Command: strings.Join(append([]string{"ghostbench"}, os.Args[1:]...), " "),
		Scenarios: o.scenarios, Replicas: o.replicas,
	}}
	if o.dist == "zipf" {
		r.Meta.ZipfS = o.zipfS
	}
	if o.wants(scenarioJoin) || o.wants(scenarioKill) {
		r.Meta.EventNodes, r.Meta.PaceRate, r.Meta.Steady = o.eventNodes, o.paceRate, o.steady.String()
		if o.wants(scenarioJoin) {
			r.Meta.JoinKeys = o.joinKeys
		}
		if o.wants(scenarioKill) {
			r.Meta.KillKeys = o.killKeys
		}
	}
	if err := runTable(ctx, o, r); err != nil {
		return err
	}
	if err := runNear(ctx, o, r); err != nil {
		return err
	}
	if err := runEvents(ctx, o, r); err != nil {
		return err
	}
	finish(o, r)
	r.Meta.Seconds = time.Since(began).Seconds()
	return output(o, r)
}

// runTable runs the cells of the base and replicas scenarios, with the
// servers and clusters they need, and stops those at the end.
func runTable(ctx context.Context, o options, r *report) error {
	servers := map[string]*server{}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	if o.wants(scenarioBase) {
		if err := startServers(ctx, o, r, servers); err != nil {
			return err
		}
	}
	var main, r1 *cluster
	defer func() {
		for _, cl := range []*cluster{main, r1} {
			if cl != nil {
				cl.stop()
			}
		}
	}()
	var err error
	// The base scenario's load runs in a GhostDB worker, whatever the
	// targets.
	if o.wants(scenarioBase) || (o.has(targetGhost) && o.wants(scenarioReplicas)) {
		if main, err = startGhost(ctx, o, o.replicas); err != nil {
			return err
		}
	}
	if o.has(targetGhost) && o.wants(scenarioReplicas) {
		if r1, err = startGhost(ctx, o, 1); err != nil {
			return err
		}
	}
	if err := prefillAll(ctx, o, []*cluster{main, r1}, servers); err != nil {
		return err
	}
	r.Cells = plan(o, main, r1, servers)
	return runCells(ctx, o, r.Cells)
}

// startServers starts memcached and Redis, those that are targets and on
// PATH; a missing one is a note.
func startServers(ctx context.Context, o options, r *report, servers map[string]*server) error {
	for _, t := range []string{targetMemcached, targetRedis} {
		if !o.has(t) {
			continue
		}
		s, err := startServer(ctx, t)
		var missing missingServerError
		if errors.As(err, &missing) {
			slog.Warn("skipping a target", "target", t, "why", err)
			r.Notes = append(r.Notes, err.Error())
			continue
		}
		if err != nil {
			return err
		}
		servers[t] = s
		if t == targetMemcached {
			r.Meta.Memcached = s.version
		} else {
			r.Meta.Redis = s.version
		}
	}
	if o.has(targetFloor) {
		s, err := startFloor(ctx, o.valueSize)
		if err != nil {
			return err
		}
		servers[targetFloor] = s
	}
	return nil
}

// workerBase is the configuration every worker of a GhostDB cluster with
// replicas copies starts with.
func (o options) workerBase(replicas int) workerConfig {
	var secret []byte
	if o.secret {
		secret = make([]byte, 32)
		_, _ = cryptorand.Read(secret)
	}
	return workerConfig{Keys: o.keys, ValueSize: o.valueSize, Dist: o.dist, ZipfS: o.zipfS, Seed: o.seed, Replicas: replicas, Secret: secret}
}

// startGhost starts a cluster of o.nodes workers keeping replicas copies,
// and waits until each is Safe: its partition table settled.
func startGhost(ctx context.Context, o options, replicas int) (*cluster, error) {
	slog.Info("starting a GhostDB cluster", "processes", o.nodes, "replicas", replicas)
	cl, err := startCluster(ctx, o.workerBase(replicas), o.nodes)
	if err != nil {
		return nil, err
	}
	if _, err := waitSafe(ctx, o, cl.procs, o.nodes); err != nil {
		cl.stop()
		return nil, err
	}
	return cl, nil
}

// prefillAll stores every key in every target before the first cell.
func prefillAll(ctx context.Context, o options, clusters []*cluster, servers map[string]*server) error {
	var calls []call
	for _, cl := range clusters {
		if cl != nil && o.has(targetGhost) {
			for _, p := range cl.procs {
				calls = append(calls, call{p, command{Cmd: cmdPrefill, Target: targetGhost}})
			}
		}
	}
	if main := clusters[0]; main != nil {
		if o.has(targetGhost) && o.wants(scenarioBase) {
			for _, floor := range []string{targetSyncMap, targetOtter} {
				calls = append(calls, call{main.procs[0], command{Cmd: cmdPrefill, Target: floor}})
			}
		}
		for t, s := range servers {
			if t == targetFloor {
				continue // it stores nothing: every get answers -value bytes
			}
			calls = append(calls, call{main.procs[0], command{Cmd: cmdPrefill, Target: t, Addr: s.addr}})
		}
	}
	if len(calls) > 0 {
		slog.Info("prefilling", "keys", o.keys, "value_bytes", o.valueSize)
	}
	// Prefills run one at a time: the server ones share worker 0.
	for _, c := range calls {
		if _, err := c.p.call(ctx, c.cmd, time.Minute+time.Duration(o.keys)*time.Millisecond); err != nil {
			return fmt.Errorf("prefill %s from process %d: %w", c.cmd.Target, c.p.id, err)
		}
	}
	return nil
}

// output prints the table and writes the JSON.
func output(o options, r *report) error {
	if o.jsonOut != "-" {
		writeMarkdown(os.Stdout, r)
	}
	if o.jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if o.jsonOut == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(o.jsonOut, b, 0o644)
}

// cpuModel returns the CPU's model name from /proc/cpuinfo, or GOARCH.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}
