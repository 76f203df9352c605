package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// The cluster of one scenario: a node process per running host, their
// reports, and the waits the scenarios are made of.

const (
	statusTimeout = 3 * time.Second  // one status call
	stopTimeout   = 30 * time.Second // a stop: in-flight calls return within callTimeout
	checkTimeout  = 5 * time.Minute  // the final reads of every key on one host
	pollEvery     = 100 * time.Millisecond
)

// recorder is the observer of one scenario: the ledger, and the latency
// slots of every node process.
type recorder struct {
	ledger *ledger
	shared sharedLog
	mu     sync.Mutex
	slots  []slot
	bad    []string // reports the ledger refused: a bug in the suite
}

func newRecorder() *recorder { return newRecorderWith(ledgerRules{tolerance: baseTolerance}) }

func newRecorderWith(rules ledgerRules) *recorder { return &recorder{ledger: newLedgerWith(rules)} }

func (r *recorder) report(h *host, m message) {
	var err error
	switch m.T {
	case msgBegin:
		err = r.ledger.begin(m.Ref, m.Key, m.Kind, m.Value, m.TTL, m.At)
	case msgEnd:
		err = r.ledger.end(m.Ref, m.Result, m.At)
	case msgSharedBegin:
		err = r.shared.begin(m)
	case msgSharedEnd:
		err = r.shared.end(m)
	case msgSlot:
		if m.Slot != nil {
			r.mu.Lock()
			r.slots = append(r.slots, *m.Slot)
			r.mu.Unlock()
		}
	default:
		err = fmt.Errorf("unexpected report %q", m.T)
	}
	if err != nil {
		r.mu.Lock()
		if len(r.bad) < maxExamples {
			r.bad = append(r.bad, fmt.Sprintf("%s: %v", h, err))
		}
		r.mu.Unlock()
	}
}

// cluster is the node processes of one scenario.
type cluster struct {
	s     *suite
	sc    scenario
	rec   *recorder
	procs map[int]*proc // by host number: the running process of each host
	// want is the membership the cluster should converge to: the hosts
	// that are members once the fault is healed.
	want     []*host
	victim   *host                             // the host the fault strikes
	frozen   bool                              // the writers leave their warm keys alone
	cleanups []func(ctx context.Context) error // undo faults, last first
}

func newCluster(s *suite, sc scenario) *cluster {
	return &cluster{s: s, sc: sc, rec: newRecorderWith(sc.ledgerRules(s.nw.hosts)), procs: map[int]*proc{}, want: s.mainHosts(), victim: s.victim()}
}

// start starts a node process on h and waits until it serves; with
// withLoad it then starts its workload.
func (c *cluster) start(ctx context.Context, h *host, withLoad, fresh bool) error {
	if err := c.s.nw.guard.check(h.addr()); err != nil {
		return err
	}
	c.s.epoch++
	cfg := nodeConfig{
		Host: h.num, Epoch: c.s.epoch, Addr: h.addr(), NodeFile: c.s.nodeFile,
		Subnet: c.s.nw.subnet.String(), Verbose: c.s.opts.verbose,
	}
	for _, a := range c.s.nw.hosts {
		cfg.Hosts = append(cfg.Hosts, a.ip.String())
	}
	if c.sc.settings(h).SnapshotInterval > 0 { // the host's own, for this scenario
		cfg.DataDir = filepath.Join(filepath.Dir(c.s.nodeFile), "data", c.sc.name, h.String())
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	args := append([]string{nodeFlag, string(raw)}, c.sc.settings(h).args()...)
	p, err := startProc(ctx, c.s.exe, h, cfg.Epoch, c.rec, args...)
	if err != nil {
		return err
	}
	c.procs[h.num] = p
	if withLoad {
		return c.load(ctx, h, fresh)
	}
	return nil
}

// load starts the workload of host h's process.
func (c *cluster) load(ctx context.Context, h *host, fresh bool) error {
	spec := c.s.loadSpec(c.sc, h, fresh)
	spec.Frozen = c.frozen
	_, err := c.procs[h.num].call(ctx, command{Cmd: cmdLoad, Load: &spec}, statusTimeout)
	return err
}

// kill kills host h's process, as a crash would.
func (c *cluster) kill(h *host) {
	if p := c.procs[h.num]; p != nil {
		p.kill()
		delete(c.procs, h.num)
	}
}

// killAll kills the processes of hosts at the same moment, as a power cut
// would: every one is sent SIGKILL before any is waited for.
func (c *cluster) killAll(hosts []*host) {
	var ps []*proc
	for _, h := range hosts {
		if p := c.procs[h.num]; p != nil {
			_ = p.cmd.Process.Kill() // one already gone is as good
			ps = append(ps, p)
			delete(c.procs, h.num)
		}
	}
	for _, p := range ps {
		p.kill() // waits until it is gone and its reports are read
	}
}

// leave has host h's node leave the cluster gracefully, and waits for its
// process to exit.
func (c *cluster) leave(ctx context.Context, h *host) error {
	p := c.procs[h.num]
	if p == nil {
		return fmt.Errorf("%s: no process to leave", h)
	}
	delete(c.procs, h.num)
	_, err := p.call(ctx, command{Cmd: cmdLeave}, stopTimeout)
	p.close(10 * time.Second)
	return err
}

// leaveAll has the nodes of hosts leave at the same moment, as a whole
// cluster stopped for a redeploy, and waits for every process to exit. It
// returns what each Leave answered: with no member staying, a hand-off
// may not finish, which is no fault.
func (c *cluster) leaveAll(ctx context.Context, hosts []*host) []error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		p := c.procs[h.num]
		if p == nil {
			errs[i] = fmt.Errorf("%s: no process to leave", h)
			continue
		}
		delete(c.procs, h.num)
		wg.Go(func() {
			if _, err := p.call(ctx, command{Cmd: cmdLeave}, stopTimeout); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h, err)
			}
			p.close(10 * time.Second)
		})
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

// running returns the hosts that have a process, in host order.
func (c *cluster) running() []*host {
	var out []*host
	for _, h := range c.s.nw.hosts {
		if c.procs[h.num] != nil {
			out = append(out, h)
		}
	}
	return out
}

// members asks host h's node whom it lists.
func (c *cluster) members(ctx context.Context, h *host) ([]string, error) {
	m, err := c.status(ctx, h)
	return m.Members, err
}

// status asks host h's node for its status.
func (c *cluster) status(ctx context.Context, h *host) (message, error) {
	p := c.procs[h.num]
	if p == nil {
		return message{}, fmt.Errorf("%s: not running", h)
	}
	return p.call(ctx, command{Cmd: cmdStatus}, statusTimeout)
}

// probe dials the node address of each of to from host from, and returns
// those that the network let through and those it did not, with why.
func (c *cluster) probe(ctx context.Context, from *host, to []*host) (reached []*host, blocked map[*host]string, err error) {
	p := c.procs[from.num]
	if p == nil {
		return nil, nil, fmt.Errorf("%s: not running", from)
	}
	var addrs []string
	for _, h := range to {
		addrs = append(addrs, h.addr())
	}
	m, err := p.call(ctx, command{Cmd: cmdProbe, Probe: addrs}, statusTimeout+time.Duration(len(to))*probeTimeout)
	if err != nil {
		return nil, nil, err
	}
	blocked = map[*host]string{}
	for _, h := range to {
		why, ok := m.Reached[h.addr()]
		switch {
		case !ok:
			blocked[h] = "not probed"
		case why == "":
			reached = append(reached, h)
		default:
			blocked[h] = why
		}
	}
	return reached, blocked, nil
}

// stats sums a figure of every running node's status.
func (c *cluster) stats(ctx context.Context) (map[string]float64, error) {
	sum := map[string]float64{}
	for _, h := range c.running() {
		m, err := c.status(ctx, h)
		if err != nil {
			return sum, err
		}
		for k, v := range m.Stats {
			sum[k] += v
		}
	}
	return sum, nil
}

// converged checks that each observer lists exactly the hosts of want.
func (c *cluster) converged(ctx context.Context, observers, want []*host) error {
	var addrs []string
	for _, h := range want {
		addrs = append(addrs, h.addr())
	}
	slices.Sort(addrs)
	for _, h := range observers {
		got, err := c.members(ctx, h)
		if err != nil {
			return err
		}
		if !slices.Equal(got, addrs) {
			return fmt.Errorf("%s lists %v, want %v", h, got, addrs)
		}
	}
	return nil
}

// waitMembers polls until each observer lists exactly want, and returns how
// long that took; at timeout, the error says who disagreed last.
func (c *cluster) waitMembers(ctx context.Context, observers, want []*host, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		err := c.converged(ctx, observers, want)
		if err == nil {
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("members did not converge in %v: %w", timeout, err)
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return 0, err
		}
	}
}

// waitSafe polls until every running node reports Safe. known is false
// when the nodes cannot tell (no Node.Safe in this build): then it returns
// at once, and convergence stands for Safe.
func (c *cluster) waitSafe(ctx context.Context, timeout time.Duration) (took time.Duration, known bool, err error) {
	start := time.Now()
	for {
		all := true
		for _, h := range c.running() {
			m, err := c.status(ctx, h)
			if err != nil {
				return 0, true, err
			}
			if m.Safe == safeUnknown {
				return time.Since(start), false, nil
			}
			all = all && m.Safe == safeYes
		}
		if all {
			return time.Since(start), true, nil
		}
		if time.Since(start) > timeout {
			return 0, true, fmt.Errorf("not Safe after %v", timeout.Round(10*time.Millisecond))
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return 0, true, err
		}
	}
}

// freeze tells every writer to leave its warm keys alone from now on.
func (c *cluster) freeze(ctx context.Context) error {
	c.frozen = true
	for _, h := range c.running() {
		if _, err := c.procs[h.num].call(ctx, command{Cmd: cmdFreeze}, statusTimeout); err != nil {
			return err
		}
	}
	return nil
}

// stopLoad stops the workload everywhere and waits until every write has
// returned and been reported.
func (c *cluster) stopLoad(ctx context.Context) error {
	for _, h := range c.running() {
		if _, err := c.procs[h.num].call(ctx, command{Cmd: cmdStop}, stopTimeout); err != nil {
			return err
		}
	}
	return nil
}

// readBack reads every key of the ledger, and the shared keys, on every
// running host, in parallel.
func (c *cluster) readBack(ctx context.Context) (map[string]map[string]readResult, error) {
	keys := c.rec.ledger.keys()
	for i := range c.s.opts.shared {
		keys = append(keys, sharedKey(i))
	}
	hosts := c.running()
	out := make(map[string]map[string]readResult, len(hosts))
	errs := make([]error, len(hosts))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, h := range hosts {
		p := c.procs[h.num]
		wg.Go(func() {
			m, err := p.call(ctx, command{Cmd: cmdCheck, Keys: keys}, checkTimeout)
			mu.Lock()
			out[h.String()], errs[i] = m.Reads, err
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// teardown undoes the faults and ends every process.
func (c *cluster) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := len(c.cleanups) - 1; i >= 0; i-- {
		if err := c.cleanups[i](ctx); err != nil {
			c.s.logf("cleanup: %v", err)
		}
	}
	c.cleanups = nil
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Go(func() { p.close(5 * time.Second) })
	}
	wg.Wait()
	c.procs = map[int]*proc{}
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
