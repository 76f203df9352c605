package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// The runner: one scenario is a fresh cluster on the main hosts, load on
// every host, then
//
//	before  the load runs undisturbed for timing.Before
//	during  the fault is applied, held and healed
//	after   the writers leave their warm keys alone (protocol.go), the
//	        cluster converges (members, then Safe) and the load runs
//	        timing.After more
//
// and then the load stops and every key of the ledger is read back from
// every host and judged.

const (
	convergeTimeout = 30 * time.Second
	safeTimeout     = 60 * time.Second
)

// timing is the length of a scenario's phases.
type timing struct {
	Before time.Duration `json:"before"`
	Fault  time.Duration `json:"fault"`
	After  time.Duration `json:"after"`
}

// suite is one run of the suite.
type suite struct {
	opts     options
	exe      string // this program, for the child processes
	nw       *network
	nodeFile string
	epoch    int // the last node process's epoch
	stderr   io.Writer
}

// mainHosts are the hosts of the cluster; the spare host after them joins
// in the joinleave scenario only.
func (s *suite) mainHosts() []*host { return s.nw.hosts[:s.opts.hosts] }
func (s *suite) spare() *host       { return s.nw.hosts[s.opts.hosts] }
func (s *suite) victim() *host      { return s.nw.hosts[s.opts.hosts-1] }

func (s *suite) logf(format string, a ...any) {
	fmt.Fprintf(s.stderr, "ghostchaos: "+format+"\n", a...)
}

// loadSpec is the workload of host h: writers on the main hosts, readers
// everywhere. The load stops by itself well after the scenario should be
// over.
func (s *suite) loadSpec(sc scenario, h *host, fresh bool) loadSpec {
	o := s.opts
	spec := loadSpec{
		Keys: o.keys, WriteEvery: o.writeEvery, Readers: o.readers, ReadEvery: o.readEvery,
		WriterHosts: o.hosts, Fresh: fresh,
		Until:    time.Now().Add(10*(o.timing.Before+o.timing.Fault+o.timing.After) + 5*time.Minute),
		TTLShare: sc.ttlShare, TTLMin: ttlMin, TTLMax: ttlMax,
	}
	if h.num <= o.hosts {
		spec.Writers = o.writers
		spec.Shared, spec.SharedEvery = o.shared, o.writeEvery
	}
	return spec
}

// phases are the boundaries of a scenario's phases; zero when not reached.
type phases struct {
	load, fault, healed, stop time.Time
}

// runScenario runs one scenario and returns its result, failed or not.
func (s *suite) runScenario(ctx context.Context, sc scenario) *result {
	res := &result{Name: sc.name, About: sc.about, Nodes: sc.nodes.String(), TTLShare: sc.ttlShare}
	for _, h := range s.mainHosts() {
		if _, own := sc.hosts[h.num]; own {
			res.Notes = append(res.Notes, fmt.Sprintf("%s runs with %s", h, sc.settings(h)))
		}
	}
	if sc.settle > 0 {
		res.SettleBound = secs(sc.settle)
	}
	began := time.Now()
	c := newCluster(s, sc)
	if sc.coordinator {
		c.victim = s.mainHosts()[0] // started first
	}
	var ph phases
	err := s.drive(ctx, sc, c, res, &ph)
	c.teardown()
	if err != nil {
		res.Err = err.Error()
	}
	res.summarise(c.rec, ph)
	res.Seconds = time.Since(began).Seconds()
	return res
}

// drive runs the phases of a scenario.
func (s *suite) drive(ctx context.Context, sc scenario, c *cluster, res *result, ph *phases) error {
	t := s.opts.timing
	if err := c.form(ctx); err != nil {
		return fmt.Errorf("forming the cluster: %w", err)
	}
	ph.load = time.Now()
	for _, h := range s.mainHosts() {
		if err := c.load(ctx, h, true); err != nil {
			return err
		}
	}
	if err := sleepCtx(ctx, t.Before); err != nil {
		return err
	}

	s.logf("%s: fault: %s", sc.name, sc.about)
	f := &faultRun{start: time.Now()}
	ph.fault = f.start
	err := sc.fault(ctx, c, f)
	ph.healed = time.Now()
	res.Notes = append(res.Notes, f.notes...)
	if f.detected {
		res.Detect = secs(f.detect)
	}
	if err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	if err := c.freeze(ctx); err != nil {
		return err
	}

	unsettled := c.settle(ctx, sc, f, res)
	if unsettled != nil && (sc.settle == 0 || ctx.Err() != nil) {
		return fmt.Errorf("after healing: %w", unsettled)
	}
	if err := sleepCtx(ctx, t.After); err != nil {
		return err
	}

	ph.stop = time.Now()
	if unsettled != nil {
		// A scenario with a bound on settling is judged on its keys
		// all the same: what does a cluster that never settled serve?
		return errors.Join(fmt.Errorf("after healing: %w", unsettled), c.verify(ctx, res))
	}
	return c.verify(ctx, res)
}

// settle waits until every node lists every member, then until every node
// is Safe, within the scenario's bound when it has one, and records how
// long each took from the heal; res.Unsettled when they did not.
func (c *cluster) settle(ctx context.Context, sc scenario, f *faultRun, res *result) error {
	convLimit, safeLimit := convergeTimeout, safeTimeout
	if sc.settle > 0 {
		convLimit = sc.settle
	}
	conv, err := c.waitMembers(ctx, c.running(), c.want, convLimit)
	if err != nil {
		res.Unsettled = true
		return err
	}
	res.Converge = secs(max(conv, f.converge))
	if sc.settle > 0 {
		safeLimit = sc.settle - conv
	}
	safe, known, err := c.waitSafe(ctx, safeLimit)
	if err != nil {
		res.Unsettled = true
		return err
	}
	if res.SafeKnown = known; known {
		res.Safe = secs(max(conv+safe, f.safe))
	}
	c.s.logf("%s: healed; converged in %v, Safe in %v", sc.name, conv.Round(10*time.Millisecond), (conv + safe).Round(10*time.Millisecond))
	return nil
}

// form starts a node on every main host and waits until they are one
// cluster, and Safe.
func (c *cluster) form(ctx context.Context) error {
	for _, h := range c.s.mainHosts() {
		if err := c.start(ctx, h, false, true); err != nil {
			return err
		}
	}
	if _, err := c.waitMembers(ctx, c.running(), c.want, convergeTimeout); err != nil {
		return err
	}
	_, _, err := c.waitSafe(ctx, safeTimeout)
	return err
}

// verify stops the load, reads every key back from every host and judges
// the reads against the ledger.
func (c *cluster) verify(ctx context.Context, res *result) error {
	if err := c.stopLoad(ctx); err != nil {
		return err
	}
	if st, err := c.stats(ctx); err == nil {
		res.Evictions, res.Expirations = int64(st[statEvictions]), int64(st[statExpired])
	}
	reads, err := c.readBack(ctx)
	if err != nil {
		return fmt.Errorf("reading back: %w", err)
	}
	res.Check = c.rec.ledger.check(reads)
	res.Checked = true
	res.Shared = c.checkShared(reads)
	if err := c.converged(ctx, c.running(), c.want); err != nil {
		return fmt.Errorf("members diverged by the end: %w", err)
	}
	return nil
}

func secs(d time.Duration) *float64 {
	v := d.Seconds()
	return &v
}
