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
//
// The later scenarios widen the envelope beyond one short fault on a
// cluster with the library's defaults: they set node flags (more copies,
// short tombstone TTLs, a full cache, a skewed clock), give some writes a
// short TTL, and bound the time the cluster may take to settle.

// scenario is one fault, and the cluster it strikes.
type scenario struct {
	name        string
	about       string
	fault       func(ctx context.Context, c *cluster, f *faultRun) error
	coordinator bool // the victim is the coordinator

	// The zero values below are the first scenarios': the library's
	// defaults, no TTL, the suite's usual patience, in the short run.
	nodes nodeSettings         // every node's flags
	hosts map[int]nodeSettings // a host's own flags over nodes, by host number
	// ttlShare is the percentage of warm and hot puts and adds written
	// with a TTL of ttlMin to ttlMax.
	ttlShare int
	// settle bounds the time from the heal until every node lists every
	// member and reports Safe; past it the scenario fails, and its keys
	// are read back all the same. Zero: convergeTimeout, then
	// safeTimeout, and a cluster that does not settle is not read.
	settle time.Duration
	long   bool // left out of -short unless named
	// startsAfresh: the majority side may start afresh the partitions
	// whose every copy is across the split (replication.md, "What a
	// network split can do"): until the heal, their keys read as misses,
	// so a shared key there has no linearizable history. Its verdict is
	// shown, not judged; the ledger allows the same answers.
	startsAfresh bool
}

// The TTLs of the writes that have one: short, so that they run out
// during a fault and before the final reads.
const (
	ttlMin = time.Second
	ttlMax = 2 * time.Second
)

// settings are the node flags of host h in this scenario.
func (sc scenario) settings(h *host) nodeSettings { return sc.nodes.over(sc.hosts[h.num]) }

// ledgerRules are what the scenario's node flags allow the final reads:
// a full cache any key's absence, a skewed clock TTL deadlines that far
// off.
func (sc scenario) ledgerRules(hosts []*host) ledgerRules {
	r := ledgerRules{tolerance: baseTolerance}
	var skew time.Duration
	for _, h := range hosts {
		ns := sc.settings(h)
		r.evictable = r.evictable || ns.MaxKeys > 0
		skew = max(skew, ns.ClockOffset, -ns.ClockOffset)
	}
	r.tolerance += skew
	return r
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
	{name: "kill", about: "SIGKILL one node under load; after the fault a new process starts on its address", fault: faultKill},
	{name: "pause", about: "SIGSTOP one node until the others declare it dead, and 1s more; then SIGCONT: it returns with stale state", fault: faultPause},
	{name: "restart", about: "graceful restart of one node: Leave, then a new process on the same address", fault: faultRestart},
	{name: "rolling", about: "rolling restart of every node: Leave, a new process on the same address, wait until converged and Safe, next", fault: faultRolling},
	{name: "partition", about: "one node cut off from all others, both ways (iptables DROP)", fault: faultPartition},
	{name: "split", about: "a 2/3 split: two nodes cut off from the other three", fault: faultSplit, startsAfresh: true},
	{name: "oneway", about: "one-way partition: one node receives nothing from the others, which still receive from it", fault: faultOneWay},
	{name: "lossy", about: "one node's link loses packets and adds latency, each way", fault: faultLossy},
	{name: "joinleave", about: "a new node joins under load, serves for the fault's length, and leaves gracefully", fault: faultJoinLeave},
	{name: "killcoord", about: "SIGKILL the coordinator (the oldest member, which publishes the partition tables); a new process starts on its address", fault: faultKill, coordinator: true},
	{name: "pausecoord", about: "SIGSTOP the coordinator until the others declare it dead, and 1s more; then SIGCONT: it returns believing it still coordinates", fault: faultPause, coordinator: true},
	{name: "partcoord", about: "the coordinator cut off from all others, both ways, while it publishes tables", fault: faultPartition, coordinator: true},
	{
		name: "majority",
		about: "a lost majority: with 4 copies of each pair, SIGKILL 3 of 5 nodes at once; after the fault, new processes on their addresses; " +
			"the cluster must list every member and be Safe within 30s",
		fault:  faultMajority,
		nodes:  nodeSettings{Replicas: 4},
		settle: 30 * time.Second,
	},
	{
		name: "longsplit",
		about: "one node cut off for longer than the tombstone TTL (1s, crawled every 200ms) while the others delete and overwrite with 1-2s TTLs, " +
			"in a full cache (300 keys a node)",
		fault: faultLongSplit,
		// 300 keys a node is below the ~400 copies each of 5 nodes
		// holds with the default -writers and -keys (990 keys, 2
		// copies), so the nodes evict all along.
		nodes:    nodeSettings{TombstoneTTL: time.Second, CrawlerInterval: 200 * time.Millisecond, MaxKeys: 300},
		ttlShare: 50,
	},
	{
		name: "fullrestart",
		about: "every node stopped gracefully at once (Leave; each writes its last snapshot to its DataDir), then all started again " +
			"on their addresses: every acknowledged write comes back, nothing deleted or expired",
		fault:    faultFullRestart,
		nodes:    nodeSettings{SnapshotInterval: 500 * time.Millisecond},
		ttlShare: 50,
	},
	{
		name: "fullcrash",
		about: "the load stops and every node writes its snapshot (every 500ms), then every node is SIGKILLed at once and all started " +
			"again on their addresses: every write acknowledged before the snapshots comes back, nothing deleted or expired",
		fault:    faultFullCrash,
		nodes:    nodeSettings{SnapshotInterval: 500 * time.Millisecond},
		ttlShare: 50,
	},
	{
		name: "skew",
		about: "host 2's clock 5 min ahead (tombstones crawled every 1s); SIGKILL another node under load, " +
			"then a new process on its address",
		fault: faultKill,
		nodes: nodeSettings{CrawlerInterval: time.Second},
		hosts: map[int]nodeSettings{2: {ClockOffset: 5 * time.Minute}},
		long:  true,
	},
	{
		name: "calm",
		about: "no fault: longsplit's cluster (1s tombstones, a full cache, 1-2s TTLs) left alone for the fault's length; " +
			"a control of the suite's TTL and eviction judgements",
		fault:    faultNone,
		nodes:    nodeSettings{TombstoneTTL: time.Second, CrawlerInterval: 200 * time.Millisecond, MaxKeys: 300},
		ttlShare: 50,
		long:     true,
	},
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

// faultMajority kills a majority of the hosts at the same moment, the
// youngest ones, holds, and starts new processes on their addresses. With
// Replicas 4 of 5 every partition keeps a copy on a survivor, so nothing
// need be lost; what is tested is that the cluster finds its way back
// (the runner bounds it with the scenario's settle).
func faultMajority(ctx context.Context, c *cluster, f *faultRun) error {
	hosts := c.s.mainHosts()
	lost := hosts[len(hosts)-(len(hosts)/2+1):]
	kept := hosts[:len(hosts)-len(lost)]
	c.killAll(lost)
	f.note("killed %v at once; %v survive", lost, kept)
	if err := c.watchDetect(ctx, f, c.s.opts.timing.Fault, kept); err != nil {
		return err
	}
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	for _, h := range lost {
		if err := c.start(ctx, h, true, false); err != nil {
			return err
		}
	}
	// The suite's own check: the new processes are where the old ones
	// were, so that the cluster is asked to take back the same addresses.
	for _, h := range lost {
		m, err := c.status(ctx, h)
		if err != nil {
			return err
		}
		if m.Addr != h.addr() {
			return fmt.Errorf("%s: the new process listens on %s, not %s", h, m.Addr, h.addr())
		}
	}
	f.note("new processes on %v, on their old addresses, %v after the kill", lost, time.Since(f.start).Round(10*time.Millisecond))
	return nil
}

// faultFullRestart stops the whole cluster gracefully at once, holds,
// and starts every node again on its address, on its DataDir.
func faultFullRestart(ctx context.Context, c *cluster, f *faultRun) error {
	hosts := c.running()
	began := time.Now()
	errs := c.leaveAll(ctx, hosts)
	f.note("every node left at once in %v", time.Since(began).Round(10*time.Millisecond))
	for _, err := range errs {
		f.note("leave: %v", err)
	}
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	return c.restartAll(ctx, hosts, f)
}

// faultFullCrash stops the load, waits until every node has written a
// snapshot since, and kills every node at once, holds, and starts them
// all again on their addresses, on their DataDirs.
func faultFullCrash(ctx context.Context, c *cluster, f *faultRun) error {
	hosts := c.running()
	if err := c.stopLoad(ctx); err != nil {
		return err
	}
	stopped := time.Now()
	deadline := stopped.Add(10 * time.Second)
	for _, h := range hosts {
		for {
			m, err := c.status(ctx, h)
			if err != nil {
				return err
			}
			if int64(m.Stats[statSnapshot]) > stopped.Unix() {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s wrote no snapshot within 10s of the load's end", h)
			}
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
	f.note("every node wrote a snapshot %v after the load stopped", time.Since(stopped).Round(10*time.Millisecond))
	c.killAll(hosts)
	if err := c.hold(ctx, f); err != nil {
		return err
	}
	return c.restartAll(ctx, hosts, f)
}

// restartAll starts a node on each of hosts in turn, waits until they
// are Safe (every snapshot restored), notes the pairs they restored, and
// then starts their load again: from there on, every key reads as before
// the stop. (While a cluster restores, the keys not restored yet read as
// misses; the shared keys' histories would say so.)
func (c *cluster) restartAll(ctx context.Context, hosts []*host, f *faultRun) error {
	for _, h := range hosts {
		if err := c.start(ctx, h, false, false); err != nil {
			return err
		}
	}
	if _, _, err := c.waitSafe(ctx, safeTimeout); err != nil {
		return err
	}
	for _, h := range hosts {
		if err := c.load(ctx, h, false); err != nil {
			return err
		}
	}
	restored := 0.0
	for _, h := range hosts {
		m, err := c.status(ctx, h)
		if err != nil {
			return err
		}
		restored += m.Stats[statRestored]
	}
	f.note("the new processes restored %.0f pairs from their snapshots and were Safe %v after the fault", restored, time.Since(f.start).Round(10*time.Millisecond))
	if restored == 0 {
		return fmt.Errorf("no pair was restored")
	}
	return nil
}

// faultLongSplit cuts the victim off for longer than the tombstone TTL
// and the crawler together, so that by the heal the others have dropped
// the tombstones of what they deleted meanwhile, and the TTLs of what they
// overwrote have run out, while the victim still holds the older copies.
func faultLongSplit(ctx context.Context, c *cluster, f *faultRun) error {
	v := c.victim
	others := c.others(v)
	c.healLater(v)
	if err := c.s.nw.isolate(ctx, v, others); err != nil {
		return err
	}
	if err := c.checkCut(ctx, v, others, true); err != nil {
		return err
	}
	if err := c.watchDetect(ctx, f, c.s.opts.timing.Fault, others, []*host{v}); err != nil {
		return err
	}
	// The others delete and overwrite only once they have a table
	// without the victim, a read-lease term after gossip dropped it
	// (lease.go): from then on, long enough for the tombstones and TTLs
	// of the first of those writes to be crawled away.
	ns := c.sc.settings(v)
	since := time.Since(f.start)
	if f.detected {
		since = f.detect
	}
	since += leaseTerm
	long := max(c.s.opts.timing.Fault, since+2*ns.TombstoneTTL+2*ns.CrawlerInterval, since+ttlMax+2*ns.CrawlerInterval)
	f.note("%s cut off for %v: the tombstone TTL is %v, the crawler runs every %v, TTLs are %v-%v", v, long.Round(10*time.Millisecond), ns.TombstoneTTL, ns.CrawlerInterval, ttlMin, ttlMax)
	if err := sleepCtx(ctx, time.Until(f.start.Add(long))); err != nil {
		return err
	}
	if err := c.s.nw.heal(ctx, v); err != nil {
		return err
	}
	return c.checkCut(ctx, v, others, false)
}

// checkCut makes sure the network does what the fault says: with cut, no
// connection between v and any of others gets through, either way, while
// the others still reach each other; without, every one does.
func (c *cluster) checkCut(ctx context.Context, v *host, others []*host, cut bool) error {
	type path struct {
		from *host
		to   []*host
		cut  bool // the fault cuts it
	}
	paths := []path{{v, others, cut}}
	for _, o := range others {
		paths = append(paths, path{o, []*host{v}, cut})
	}
	if len(others) > 1 {
		paths = append(paths, path{others[0], others[1:], false})
	}
	for _, p := range paths {
		reached, blocked, err := c.probe(ctx, p.from, p.to)
		switch {
		case err != nil:
			return fmt.Errorf("probing the network: %w", err)
		case p.cut && len(reached) > 0:
			return fmt.Errorf("the cut leaks: %s reaches %v", p.from, reached)
		case !p.cut && len(blocked) > 0:
			return fmt.Errorf("%s cannot reach %v", p.from, blocked)
		}
	}
	return nil
}

// faultNone holds without a fault: what a scenario then reads wrong, the
// suite judged wrong, or the cluster got wrong without help.
func faultNone(ctx context.Context, c *cluster, f *faultRun) error { return c.hold(ctx, f) }
