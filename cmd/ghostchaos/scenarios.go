package main

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"
)

// The scenarios: each applies one fault to a running, loaded cluster,
// holds it, and heals it; the runner (suite.go) does the rest. The victim
// is the last host, the youngest member, or for the scenarios named
// *coord the first, the oldest: the coordinator, which publishes the
// partition tables. Every host runs writers and readers.

// scenario is one fault.
type scenario struct {
	name        string
	about       string
	fault       func(ctx context.Context, c *cluster, f *faultRun) error
	coordinator bool // the victim is the coordinator
}

// faultRun is what a fault reports to the runner.
type faultRun struct {
	start    time.Time
	detect   time.Duration // from the fault until the others agreed on the new membership
	detected bool
	// converge and safe are the longest waits of a fault made of steps
	// (the rolling restart), each measured from the step's start.
	converge, safe time.Duration
	notes          []string
}

func (f *faultRun) note(format string, a ...any) {
	f.notes = append(f.notes, fmt.Sprintf(format, a...))
}

// maxDetect bounds the wait for a paused node to be declared dead.
const maxDetect = 30 * time.Second

var scenarios = []scenario{
	{"kill", "SIGKILL one node under load; after the fault a new process starts on its address", faultKill, false},
	{"pause", "SIGSTOP one node until the others declare it dead, and 1s more; then SIGCONT: it returns with stale state", faultPause, false},
	{"restart", "graceful restart of one node: Leave, then a new process on the same address", faultRestart, false},
	{"rolling", "rolling restart of every node: Leave, a new process on the same address, wait until converged and Safe, next", faultRolling, false},
	{"partition", "one node cut off from all others, both ways (iptables DROP)", faultPartition, false},
	{"split", "a 2/3 split: two nodes cut off from the other three", faultSplit, false},
	{"oneway", "one-way partition: one node receives nothing from the others, which still receive from it", faultOneWay, false},
	{"lossy", "one node's link loses packets and adds latency, each way", faultLossy, false},
	{"joinleave", "a new node joins under load, serves for the fault's length, and leaves gracefully", faultJoinLeave, false},
	{"killcoord", "SIGKILL the coordinator (the oldest member, which publishes the partition tables); a new process starts on its address", faultKill, true},
	{"pausecoord", "SIGSTOP the coordinator until the others declare it dead, and 1s more; then SIGCONT: it returns believing it still coordinates", faultPause, true},
	{"partcoord", "the coordinator cut off from all others, both ways, while it publishes tables", faultPartition, true},
}

// others returns the main hosts but h.
func (c *cluster) others(h *host) []*host {
	var out []*host
	for _, o := range c.s.mainHosts() {
		if o != h {
			out = append(out, o)
		}
	}
	return out
}

// hold waits until the fault has lasted its length.
func (c *cluster) hold(ctx context.Context, f *faultRun) error {
	return sleepCtx(ctx, time.Until(f.start.Add(c.s.opts.timing.Fault)))
}

// watchDetect waits, at most until limit from the fault's start, for the
// observers to list exactly themselves: the moment they do is the fault's
// detection. Each of the others groups (the far side of a partition) is
// then given the same deadline to do the same, and noted.
func (c *cluster) watchDetect(ctx context.Context, f *faultRun, limit time.Duration, observers []*host, others ...[]*host) error {
	deadline := f.start.Add(limit)
	for i, g := range append([][]*host{observers}, others...) {
		_, err := c.waitMembers(ctx, g, g, time.Until(deadline))
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			f.note("%v did not list only %v within %v of the fault: %v", g, g, limit.Round(100*time.Millisecond), err)
		case i == 0:
			f.detect, f.detected = time.Since(f.start), true
		default:
			f.note("%v listed only %v %v after the fault", g, g, time.Since(f.start).Round(10*time.Millisecond))
		}
	}
	return nil
}

func faultKill(ctx context.Context, c *cluster, f *faultRun) error {
	v := c.victim
	c.kill(v)
	if err := c.watchDetect(ctx, f, c.s.opts.timing.Fault, c.others(v)); err != nil {
		return err
	}
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	return c.start(ctx, v, true, false)
}

func faultPause(ctx context.Context, c *cluster, f *faultRun) error {
	v := c.victim
	p := c.procs[v.num]
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	if err := c.watchDetect(ctx, f, maxDetect, c.others(v)); err != nil {
		return err
	}
	wait := time.Until(f.start.Add(c.s.opts.timing.Fault))
	if f.detected {
		wait = max(wait, time.Until(f.start.Add(f.detect+time.Second)))
	}
	if err := sleepCtx(ctx, wait); err != nil {
		return err
	}
	return p.signal(syscall.SIGCONT)
}

func faultRestart(ctx context.Context, c *cluster, f *faultRun) error {
	v := c.victim
	if err := c.leave(ctx, v); err != nil {
		return err
	}
	return c.start(ctx, v, true, false)
}

func faultRolling(ctx context.Context, c *cluster, f *faultRun) error {
	for _, h := range c.s.mainHosts() {
		step := time.Now()
		if err := c.leave(ctx, h); err != nil {
			return err
		}
		if err := c.start(ctx, h, true, false); err != nil {
			return err
		}
		if _, err := c.waitMembers(ctx, c.running(), c.want, convergeTimeout); err != nil {
			return fmt.Errorf("after restarting %s: %w", h, err)
		}
		f.converge = max(f.converge, time.Since(step))
		if _, _, err := c.waitSafe(ctx, safeTimeout); err != nil {
			return fmt.Errorf("after restarting %s: %w", h, err)
		}
		f.safe = max(f.safe, time.Since(step))
	}
	f.note("slowest step: converged %v, Safe %v after its Leave", f.converge.Round(10*time.Millisecond), f.safe.Round(10*time.Millisecond))
	return nil
}

// healLater makes sure h's rules go at teardown, whatever happens.
func (c *cluster) healLater(h *host) {
	c.cleanups = append(c.cleanups, func(ctx context.Context) error { return c.s.nw.heal(ctx, h) })
}

func faultPartition(ctx context.Context, c *cluster, f *faultRun) error {
	v := c.victim
	c.healLater(v)
	if err := c.s.nw.isolate(ctx, v, c.others(v)); err != nil {
		return err
	}
	if err := c.watchDetect(ctx, f, c.s.opts.timing.Fault, c.others(v), []*host{v}); err != nil {
		return err
	}
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	return c.s.nw.heal(ctx, v)
}

func faultSplit(ctx context.Context, c *cluster, f *faultRun) error {
	hosts := c.s.mainHosts()
	small, big := hosts[:len(hosts)*2/5], hosts[len(hosts)*2/5:]
	if len(small) == 0 {
		return fmt.Errorf("a split needs at least 3 hosts")
	}
	for _, h := range small {
		c.healLater(h)
		if err := c.s.nw.isolate(ctx, h, big); err != nil {
			return err
		}
	}
	f.note("sides: %v | %v", small, big)
	if err := c.watchDetect(ctx, f, c.s.opts.timing.Fault, big, small); err != nil {
		return err
	}
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	for _, h := range small {
		if err := c.s.nw.heal(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

func faultOneWay(ctx context.Context, c *cluster, f *faultRun) error {
	v := c.victim
	c.healLater(v)
	if err := c.s.nw.deafen(ctx, v, c.others(v)); err != nil {
		return err
	}
	if err := c.watchDetect(ctx, f, c.s.opts.timing.Fault, c.others(v)); err != nil {
		return err
	}
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	return c.s.nw.heal(ctx, v)
}

func faultLossy(ctx context.Context, c *cluster, f *faultRun) error {
	v := c.victim
	im, err := c.s.nw.impair(ctx, v, c.s.opts.impair, c.startDelayer)
	if err != nil {
		return err
	}
	c.cleanups = append(c.cleanups, func(ctx context.Context) error { return im.undo(ctx) })
	f.note("%s: %v, with %s", v, c.s.opts.impair, im.how)
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	err = im.undo(ctx)
	c.cleanups = c.cleanups[:len(c.cleanups)-1]
	return err
}

func faultJoinLeave(ctx context.Context, c *cluster, f *faultRun) error {
	sp := c.s.spare()
	if err := c.start(ctx, sp, true, false); err != nil {
		return err
	}
	main := c.want
	c.want = append(c.running()[:0:0], c.running()...)
	took, err := c.waitMembers(ctx, c.running(), c.want, convergeTimeout)
	if err != nil {
		return fmt.Errorf("%s joining: %w", sp, err)
	}
	f.note("%s joined: every node listed it %v after its start", sp, took.Round(10*time.Millisecond))
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	c.want = main
	return c.leave(ctx, sp)
}

// startDelayer starts the delayer in host h's namespace.
func (c *cluster) startDelayer(ctx context.Context, h *host, d time.Duration) (*proc, error) {
	raw, err := json.Marshal(delayerConfig{Queue: delayQueue, Delay: d})
	if err != nil {
		return nil, err
	}
	return startProc(ctx, c.s.exe, h, 0, nil, delayerFlag, string(raw))
}
