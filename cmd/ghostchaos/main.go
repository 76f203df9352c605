// Command ghostchaos runs GhostDB on real hosts and breaks them: a
// fault-injection suite that checks, with a ledger of every acknowledged
// write, what the cluster still holds once each fault is healed.
//
// It builds N hosts (default 5, plus a spare) as Linux network namespaces
// on one bridge that lives in a namespace of its own, each host with one
// address on a private subnet and no route elsewhere. Each host runs a
// node as its own OS process (this program again), on port 7991, joining
// from a node file of the hosts' IP addresses. The clients run inside the
// node processes, calling the embedded node as an application does: every
// host has writers (put, add, delete; each key has one writer) and readers.
// A third of each writer's keys are cold (added once at the start, then
// only read), a third warm (written until the fault is healed), a third
// hot (written all along), so that what a fault did is not overwritten
// before the end. Every write is reported to the suite before and after
// its call. Beside them, a shared client on every host calls a few keys
// that every host writes; their history is checked for linearizability
// (shared.go). All
// traffic stays in the namespaces the suite made, and the suite refuses any
// address that is not one of its hosts.
//
// Scenarios (-scenarios, default all; -list describes them): kill, pause,
// restart, rolling, partition, split, oneway, lossy, joinleave, killcoord,
// pausecoord, partcoord, and beyond one short fault on a cluster with the
// library's defaults: majority (3 of 5 nodes killed at once, with 4
// copies; the cluster must be Safe again within 30 s), longsplit (a node
// cut off for longer than a 1 s tombstone TTL, with TTL writes and a full
// cache), skew (a node's clock 5 minutes ahead, and a kill) and calm
// (longsplit's cluster without the split: a control of the suite's own
// TTL and eviction judgements); skew and calm are long scenarios, which
// -short runs only when named. Each starts a fresh cluster,
// its nodes with the scenario's node flags (nodeflags.go), loads it,
// applies its fault, heals it, waits for the members to converge and for
// Safe, loads it some more, then reads every key of the ledger from every
// host. A read is right when it shows the key's last acknowledged state,
// or a state a later failed (indeterminate) write could have left, judged
// at the read's time for writes with a TTL; lost is an acknowledged value
// read as absent (save in a full cache, where any key may be evicted),
// stale any other wrong value (a deleted key that came back, and a value
// read after its TTL, included).
//
// Usage:
//
//	ghostchaos -short            # every scenario but skew and calm briefly (CI): about 3½ minutes
//	ghostchaos                   # longer phases: about 10 minutes
//	ghostchaos -scenarios kill,split -json out.json
//	ghostchaos -short -scenarios majority,longsplit,skew
//	ghostchaos -cleanup          # remove what runs that died left behind
//
// It needs root, iproute2 (ip, tc) and iptables. The table goes to stdout,
// progress to stderr. It exits 1 when a scenario loses or serves stale
// acknowledged writes or cannot run to its end, 2 when it cannot run at
// all.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command line flags.
type options struct {
	hosts      int
	short      bool
	scenarios  []string
	jsonOut    string
	subnet     netip.Prefix
	verbose    bool
	timing     timing
	writers    int
	keys       int
	readers    int
	shared     int
	writeEvery time.Duration
	readEvery  time.Duration
	impair     impairment
}

// Exit codes.
const (
	exitPass   = 0
	exitFail   = 1 // a scenario failed
	exitCannot = 2 // the suite cannot run here
)

func main() {
	if len(os.Args) > 2 && (os.Args[1] == nodeFlag || os.Args[1] == delayerFlag) {
		os.Exit(child(os.Args[1], os.Args[2], os.Args[3:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// child is main for the suite's child processes: raw is the JSON
// configuration, flags the node flags after it (nodeflags.go).
func child(kind, raw string, flags []string) int {
	// Ctrl-C reaches the whole process group: the suite handles it and
	// then ends its children itself.
	signal.Ignore(os.Interrupt)
	run := func(raw string, stdin io.Reader, stdout io.Writer) error {
		ns, err := parseNodeFlags(flags, os.Stderr)
		if err != nil {
			return err
		}
		return runNode(raw, ns, stdin, stdout)
	}
	if kind == delayerFlag {
		run = runDelayer
	}
	if err := run(raw, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "ghostchaos %s: %v\n", kind, err)
		return 1
	}
	return 0
}

// run is the suite's main.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, cleanup, force, list, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitPass
		}
		fmt.Fprintln(stderr, "ghostchaos:", err)
		return exitCannot
	}
	if list {
		for _, sc := range scenarios {
			about := sc.about
			if sc.long {
				about += " (not in -short unless named)"
			}
			fmt.Fprintf(stdout, "%-10s %s\n", sc.name, about)
		}
		return exitPass
	}
	if err := checkSystem(os.Geteuid(), exec.LookPath); err != nil {
		fmt.Fprintln(stderr, "ghostchaos:", err)
		return exitCannot
	}
	removed, err := cleanupLeftovers(ctx, force)
	if len(removed) > 0 {
		fmt.Fprintf(stderr, "ghostchaos: removed leftovers of earlier runs: %s\n", strings.Join(removed, " "))
	}
	if cleanup {
		if err != nil {
			fmt.Fprintln(stderr, "ghostchaos: cleanup:", err)
			return exitCannot
		}
		return exitPass
	}
	results, err := runSuite(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ghostchaos:", err)
		if len(results) == 0 {
			return exitCannot
		}
	}
	if err := writeResults(o, results, stdout); err != nil {
		fmt.Fprintln(stderr, "ghostchaos:", err)
		return exitCannot
	}
	// The verdict comes last, where the tail of a CI log shows it.
	var failed []string
	for _, r := range results {
		if !r.Pass {
			failed = append(failed, r.Name+" ("+strings.TrimPrefix(r.verdict(), "FAIL: ")+")")
		}
	}
	if err != nil {
		failed = append(failed, "the suite: "+err.Error())
	}
	if len(results) < len(o.scenarios) {
		failed = append(failed, fmt.Sprintf("%d of %d scenarios ran", len(results), len(o.scenarios)))
	}
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "ghostchaos: FAIL: %s\n", strings.Join(failed, "; "))
		return exitFail
	}
	fmt.Fprintf(stderr, "ghostchaos: PASS: %d of %d scenarios\n", len(results), len(o.scenarios))
	return exitPass
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (o options, cleanup, force, list bool, err error) {
	fs := flag.NewFlagSet("ghostchaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.hosts, "hosts", 5, "hosts in the cluster, at least 3 (a spare joins in joinleave)")
	fs.BoolVar(&o.short, "short", false, "short phases, and every scenario but the long ones (skew, calm), for CI")
	names := fs.String("scenarios", "", "comma-separated scenarios to run, e.g. majority,longsplit (default all, or with -short all but the long ones; see -list)")
	fs.StringVar(&o.jsonOut, "json", "", "write the results as JSON to this file (- for stdout, in place of the table)")
	subnet := fs.String("subnet", "10.199.7.0/24", "the hosts' private subnet, inside the namespaces only")
	fs.BoolVar(&o.verbose, "v", false, "node warnings to stderr")
	fs.IntVar(&o.writers, "writers", 2, "writers per host")
	fs.IntVar(&o.keys, "keys", 99, "keys per writer: a third each cold, warm and hot")
	fs.IntVar(&o.readers, "readers", 2, "readers per host")
	fs.IntVar(&o.shared, "shared", 8, "keys that every host's shared client writes and reads, checked for linearizability (0: none)")
	fs.DurationVar(&o.writeEvery, "write-every", 20*time.Millisecond, "pace of each writer")
	fs.DurationVar(&o.readEvery, "read-every", 10*time.Millisecond, "pace of each reader")
	fs.Float64Var(&o.impair.lossPct, "loss", 5, "lossy: packet loss each way, percent")
	fs.DurationVar(&o.impair.delay, "delay", 20*time.Millisecond, "lossy: added latency each way")
	fs.BoolVar(&cleanup, "cleanup", false, "only remove the namespaces (and their processes) and node files of earlier runs that are gone")
	fs.BoolVar(&force, "force", false, "with -cleanup: also those of runs still going")
	fs.BoolVar(&list, "list", false, "list the scenarios")
	if err = fs.Parse(args); err != nil {
		return
	}
	if fs.NArg() > 0 {
		return o, false, false, false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.subnet, err = netip.ParsePrefix(*subnet); err != nil {
		return o, false, false, false, fmt.Errorf("-subnet: %w", err)
	}
	o.timing = timing{Before: 10 * time.Second, Fault: 20 * time.Second, After: 10 * time.Second}
	if o.short {
		o.timing = timing{Before: 2 * time.Second, Fault: 4 * time.Second, After: 2 * time.Second}
	}
	o.scenarios, err = pickScenarios(*names, o.short)
	switch {
	case err != nil:
	case o.hosts < 3:
		err = fmt.Errorf("-hosts %d: want at least 3", o.hosts)
	case o.writers < 1 || o.keys < 3 || o.readers < 0 || o.writeEvery <= 0 || o.readEvery <= 0:
		err = errors.New("-writers must be positive, -keys at least 3 (a cold, a warm and a hot one), -readers not negative, the paces positive")
	case o.impair.lossPct < 0 || o.impair.lossPct >= 100 || o.impair.delay < 0:
		err = errors.New("-loss must be in [0, 100), -delay not negative")
	}
	return
}

// pickScenarios checks a comma-separated list of names; empty means all,
// or with short those not marked long.
func pickScenarios(list string, short bool) ([]string, error) {
	var all, dflt []string
	for _, sc := range scenarios {
		all = append(all, sc.name)
		if !short || !sc.long {
			dflt = append(dflt, sc.name)
		}
	}
	if strings.TrimSpace(list) == "" {
		return dflt, nil
	}
	var out []string
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(all, name) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (have %s)", name, strings.Join(all, ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

// runSuite builds the hosts, runs the scenarios and removes the hosts.
func runSuite(ctx context.Context, o options, stderr io.Writer) ([]*result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	nw, err := planNetwork(runPrefix(), o.subnet, o.hosts+1)
	if err != nil {
		return nil, err
	}
	s := &suite{opts: o, exe: exe, nw: nw, stderr: stderr}
	began := time.Now()
	s.logf("building %d hosts (namespaces %s*) on %s", len(nw.hosts), nw.prefix, nw.subnet)
	if err := nw.build(ctx); err != nil {
		return nil, err
	}
	var results []*result
	defer func() {
		nw.destroy()
		s.logf("removed the hosts; %d of %d scenarios ran in %v", len(results), len(o.scenarios), time.Since(began).Round(time.Second))
	}()
	dir, err := os.MkdirTemp("", tempPrefix())
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if s.nodeFile, err = writeNodeFile(dir, s.mainHosts(), nw.guard); err != nil {
		return nil, err
	}
	if !nw.netem {
		s.logf("this kernel has no netem qdisc: lossy uses iptables loss and an NFQUEUE delayer")
	}
	for _, name := range o.scenarios {
		i := slices.IndexFunc(scenarios, func(sc scenario) bool { return sc.name == name })
		s.logf("%s: starting %d nodes", name, o.hosts)
		r := s.runScenario(ctx, scenarios[i])
		results = append(results, r)
		s.logf("%s: %s in %.0fs: %d ops, %d acked writes, %d lost, %d stale, %d failed calls",
			name, r.verdict(), r.Seconds, r.Ops, r.Writes.Acked, r.Check.Lost, r.Check.Stale, r.Failed)
		if ctx.Err() != nil {
			return results, fmt.Errorf("interrupted: %w", ctx.Err())
		}
	}
	return results, nil
}

// writeNodeFile writes the node list: the hosts' IP addresses, one per
// line, as the original GhostDB's users write it.
func writeNodeFile(dir string, hosts []*host, guard *addrGuard) (string, error) {
	var b strings.Builder
	b.WriteString("# GhostDB node list, written by ghostchaos\n")
	for _, h := range hosts {
		if err := guard.check(h.ip.String()); err != nil {
			return "", err
		}
		b.WriteString(h.ip.String() + "\n")
	}
	path := filepath.Join(dir, nodeFileName)
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// report is the JSON output.
type report struct {
	Date      time.Time `json:"date"`
	Short     bool      `json:"short"`
	Hosts     int       `json:"hosts"`
	CPUs      int       `json:"cpus"`
	Kernel    string    `json:"kernel"`
	Timing    timing    `json:"timing"`
	Results   []*result `json:"results"`
	Pass      bool      `json:"pass"`
	Scenarios int       `json:"scenarios"`
}

// writeResults writes the table, or the JSON, or both.
func writeResults(o options, results []*result, stdout io.Writer) error {
	if o.jsonOut != "-" {
		writeTable(stdout, results)
	}
	if o.jsonOut == "" {
		return nil
	}
	rep := report{Date: time.Now().UTC(), Short: o.short, Hosts: o.hosts, CPUs: runtime.NumCPU(),
		Kernel: kernelRelease(), Timing: o.timing, Results: results, Scenarios: len(o.scenarios),
		Pass: len(results) == len(o.scenarios)}
	for _, r := range results {
		rep.Pass = rep.Pass && r.Pass
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if o.jsonOut == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(o.jsonOut, b, 0o644)
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
