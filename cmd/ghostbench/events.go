package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ghostdb/ghost/internal/latency"
)

// Replication events: a node joins a cluster full of pairs, or a node is
// killed with SIGKILL. Each runs on a cluster of its own, started for it
// and killed after it, while worker 0 runs a paced get/set load (paced.go)
// through the event. Every node is asked when it sees the new membership
// and when it is Safe again (every partition has its copies, nothing in
// flight); the load's timeline is cut at those moments.

// loadFigures condense a paced load over one window of its timeline.
// Latencies count from when each op was sent, but DueP99's, which counts
// from when it was due (paced.go).
type loadFigures struct {
	Seconds   float64 `json:"seconds"`
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Errors    int64   `json:"errors"`
	Misses    int64   `json:"misses"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
	P999      float64 `json:"p999_us"`
	Max       float64 `json:"max_us"`
	GetP99    float64 `json:"get_p99_us"`
	SetP99    float64 `json:"set_p99_us"`
	DueP99    float64 `json:"due_p99_us"`
}

// joinRun is one join: a node joins a cluster of Nodes holding Keys pairs.
type joinRun struct {
	Keys        int            `json:"keys"`
	Nodes       int            `json:"nodes_before"`
	PrefillSecs float64        `json:"prefill_seconds"`
	JoinSecs    float64        `json:"join_seconds"`          // ghost.Join in the new process
	SafeFirst   float64        `json:"to_first_safe_seconds"` // from Join to the first node Safe
	SafeSecs    float64        `json:"to_safe_seconds"`       // from Join to every node Safe
	PairsMoved  int64          `json:"pairs_moved"`           // streamed, summed over the nodes
	BytesMoved  int64          `json:"bytes_moved"`
	Resyncs     int64          `json:"resyncs"`
	Evicted     int64          `json:"evicted"`
	NewNode     string         `json:"new_node"`         // its address, as errors name it
	NewKeys     int64          `json:"new_node_keys"`    // pairs the new node holds once Safe
	CPUSteady   float64        `json:"cpu_cores_steady"` // cores the cluster's processes used before the join
	CPUMove     float64        `json:"cpu_cores_move"`   // and from the new process's start to every node Safe
	Steady      loadFigures    `json:"steady"`           // before the new process started
	Move        loadFigures    `json:"move"`             // from Join to every node Safe
	P99Ratio    float64        `json:"p99_ratio"`        // Move.P99 / Steady.P99
	FirstErr    string         `json:"first_op_error,omitempty"`
	Profile     []profilePoint `json:"profile"` // the load from the steady window on; times from Join
	Err         string         `json:"error,omitempty"`
}

// killRun is one SIGKILL of a node of a cluster of Nodes holding Keys
// pairs.
type killRun struct {
	Gossip      string         `json:"gossip"`
	Keys        int            `json:"keys"`
	Nodes       int            `json:"nodes_before"`
	VictimKeys  int64          `json:"victim_keys"`          // pairs the killed node held
	DetectFirst float64        `json:"detect_first_seconds"` // SIGKILL to the first survivor listing one member fewer
	DetectSecs  float64        `json:"detect_seconds"`       // to every survivor listing one member fewer
	SafeSecs    float64        `json:"to_safe_seconds"`      // SIGKILL to every survivor Safe
	SafeRatio   float64        `json:"safe_over_detect"`     // SafeSecs / DetectSecs
	PairsMoved  int64          `json:"pairs_moved"`
	BytesMoved  int64          `json:"bytes_moved"`
	Evicted     int64          `json:"evicted"`
	CPURepair   float64        `json:"cpu_cores_repair"` // cores the survivors used from the kill to Safe
	Before      loadFigures    `json:"before"`           // before the kill
	During      loadFigures    `json:"during"`           // from the kill to every survivor Safe
	FirstErr    string         `json:"first_op_error,omitempty"`
	Profile     []profilePoint `json:"profile"` // the load from the window before on; times from the kill
	Err         string         `json:"error,omitempty"`
}

// profilePoint is the paced load over one step of a profile.
type profilePoint struct {
	At     float64 `json:"at_seconds"` // from the event to the step's start
	Ops    int64   `json:"ops"`
	Errors int64   `json:"errors"`
	P50    float64 `json:"p50_us"`
	P99    float64 `json:"p99_us"`
	Max    float64 `json:"max_us"`
}

// runEvents runs the join and the kills -event-runs times, in turn.
func runEvents(ctx context.Context, o options, r *report) error {
	if !o.wants(scenarioJoin) && !o.wants(scenarioKill) {
		return nil
	}
	if !o.has(targetGhost) {
		r.Notes = append(r.Notes, "join and kill need the ghost target: not run")
		return nil
	}
	// failed logs an event's error and returns its text for the event's
	// row; stop is set when ctx has ended, which ends the whole run.
	failed := func(what string, err error) (msg string, stop error) {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if err != nil {
			slog.Warn(what+" failed", "err", err)
			return oneLine(err), nil
		}
		return "", nil
	}
	for run := 1; run <= o.eventRuns; run++ {
		runs := fmt.Sprintf("%d/%d", run, o.eventRuns)
		if o.wants(scenarioJoin) {
			slog.Info("join", "run", runs, "nodes", o.eventNodes, "keys", o.joinKeys)
			j, err := runJoin(ctx, o)
			if j.Err, err = failed("join", err); err != nil {
				return err
			}
			r.Join = append(r.Join, j)
		}
		for _, g := range o.killGossip {
			if !o.wants(scenarioKill) {
				break
			}
			slog.Info("kill", "run", runs, "gossip", g, "nodes", o.eventNodes+1, "keys", o.killKeys)
			k, err := runKill(ctx, o, g)
			if k.Err, err = failed("kill", err); err != nil {
				return err
			}
			r.Kill = append(r.Kill, k)
		}
	}
	return nil
}

// event is what a join and a kill share: a cluster filled with pairs,
// its nodes' figures before the event, and the paced load from worker 0.
type event struct {
	cl        *cluster
	before    []map[string]int64
	loadStart time.Time
}

// prepareEvent starts a cluster of nodes and fills it with keys pairs
// (startEventCluster), takes its figures, and starts the paced load, which
// then warms up for o.warmup. The caller kills e.cl when it is set.
func prepareEvent(ctx context.Context, o options, nodes, keys int, gossip string, prefillSecs *float64) (e event, err error) {
	if e.cl, err = startEventCluster(ctx, o, nodes, keys, gossip, prefillSecs); err != nil {
		return e, err
	}
	if e.before, err = clusterStats(ctx, e.cl.procs); err != nil {
		return e, err
	}
	if e.loadStart, err = startPace(ctx, o, e.cl.procs[0]); err != nil {
		return e, err
	}
	return e, sleep(ctx, o.warmup)
}

// finish stops the paced load and takes the figures of procs' nodes.
func (e event) finish(ctx context.Context, procs []*proc) (*timelineResult, []map[string]int64, error) {
	tl, err := stopPace(ctx, e.cl.procs[0])
	if err != nil {
		return nil, nil, err
	}
	after, err := clusterStats(ctx, procs)
	return tl, after, err
}

// runJoin fills a cluster of o.eventNodes with o.joinKeys pairs, runs the
// paced load for o.warmup+o.steady, then starts one more worker and waits
// until every node, the new one included, is Safe.
func runJoin(ctx context.Context, o options) (joinRun, error) {
	j := joinRun{Keys: o.joinKeys, Nodes: o.eventNodes}
	e, err := prepareEvent(ctx, o, o.eventNodes, o.joinKeys, gossipLAN, &j.PrefillSecs)
	if e.cl != nil {
		defer e.cl.kill()
	}
	if err != nil {
		return j, err
	}
	steadyCPU := startCPU(e.cl.pids())
	if err := sleep(ctx, o.steady); err != nil {
		return j, err
	}
	j.CPUSteady = steadyCPU.cores(e.cl.pids())
	spawned, moveCPU := time.Now(), startCPU(e.cl.pids())
	ready, ws, err := joinNode(ctx, o, e.cl)
	if err != nil {
		return j, err
	}
	j.CPUMove = moveCPU.cores(e.cl.pids())
	tl, after, err := e.finish(ctx, e.cl.procs)
	if err != nil {
		return j, err
	}
	began := time.Unix(0, ready.Began)
	first, last := safeSpan(ws)
	j.NewNode, j.JoinSecs = ready.Addr, time.Duration(ready.Joined-ready.Began).Seconds()
	j.SafeFirst, j.SafeSecs = first.Sub(began).Seconds(), last.Sub(began).Seconds()
	j.PairsMoved, j.BytesMoved = statDelta(e.before, after, "PairsMoved"), statDelta(e.before, after, "BytesMoved")
	j.Resyncs, j.Evicted = statDelta(e.before, after, "Resyncs"), statDelta(e.before, after, "Evicted")
	j.NewKeys = after[len(after)-1]["Keys"]
	j.Steady = tl.window(e.loadStart.Add(o.warmup), spawned, false)
	j.Move = tl.window(began, last, true)
	j.P99Ratio = ratioOf(j.Move.P99, j.Steady.P99)
	j.FirstErr, j.Profile = tl.FirstErr, tl.profile(began, e.loadStart.Add(o.warmup), profileStep)
	return j, nil
}

// joinNode starts one more worker in cl and waits until every node, the
// new one included, sees it and is Safe. It returns the new worker's
// ready line and when each node was Safe.
func joinNode(ctx context.Context, o options, cl *cluster) (reply, []waitResult, error) {
	// The old nodes are asked at once, so that none is Safe before it
	// has heard of the new member.
	olds := cl.procs
	type waited struct {
		ws  []waitResult
		err error
	}
	oldWait := make(chan waited, 1)
	go func() {
		ws, err := waitSafe(ctx, o, olds, len(olds)+1)
		oldWait <- waited{ws, err}
	}()
	joiner, ready, err := cl.grow(ctx)
	if err != nil {
		return ready, nil, err
	}
	ws, err := waitSafe(ctx, o, []*proc{joiner}, len(cl.procs))
	old := <-oldWait
	if err = errors.Join(err, old.err); err != nil {
		return ready, nil, err
	}
	return ready, append(old.ws, ws...), nil
}

// runKill fills a cluster of o.eventNodes+1 with o.killKeys pairs, runs
// the paced load for o.warmup+o.steady, then kills the last worker (not
// the coordinator, worker 0, which runs the load) with SIGKILL and waits
// until every survivor has dropped it and is Safe.
func runKill(ctx context.Context, o options, gossip string) (killRun, error) {
	nodes := o.eventNodes + 1
	k := killRun{Gossip: gossip, Keys: o.killKeys, Nodes: nodes}
	var prefill float64
	e, err := prepareEvent(ctx, o, nodes, o.killKeys, gossip, &prefill)
	if e.cl != nil {
		defer e.cl.kill()
	}
	if err != nil {
		return k, err
	}
	victim, survivors, pids := e.cl.procs[nodes-1], e.cl.procs[:nodes-1], e.cl.pids()[:nodes-1]
	k.VictimKeys = e.before[nodes-1]["Keys"]
	if err := sleep(ctx, o.steady); err != nil {
		return k, err
	}
	killed, repairCPU := time.Now(), startCPU(pids)
	if err := victim.cmd.Process.Kill(); err != nil {
		return k, err
	}
	ws, err := waitSafe(ctx, o, survivors, nodes-1)
	if err != nil {
		return k, err
	}
	k.CPURepair = repairCPU.cores(pids)
	tl, after, err := e.finish(ctx, survivors)
	if err != nil {
		return k, err
	}
	var detected []time.Time
	for _, w := range ws {
		detected = append(detected, time.Unix(0, w.Members))
	}
	_, safe := safeSpan(ws)
	k.DetectFirst, k.DetectSecs = slices.MinFunc(detected, time.Time.Compare).Sub(killed).Seconds(), slices.MaxFunc(detected, time.Time.Compare).Sub(killed).Seconds()
	k.SafeSecs = safe.Sub(killed).Seconds()
	k.SafeRatio = ratioOf(k.SafeSecs, k.DetectSecs)
	k.PairsMoved, k.BytesMoved = statDelta(e.before, after, "PairsMoved"), statDelta(e.before, after, "BytesMoved")
	k.Evicted = statDelta(e.before, after, "Evicted")
	k.Before = tl.window(e.loadStart.Add(o.warmup), killed, false)
	k.During = tl.window(killed, safe, true)
	k.FirstErr, k.Profile = tl.FirstErr, tl.profile(killed, e.loadStart.Add(o.warmup), profileStep)
	return k, nil
}

// startEventCluster starts a cluster of nodes workers sized so that
// nothing is evicted, waits until it is Safe, prefills keys pairs from
// every worker at once (each its own), and waits until it is Safe again.
// It returns the cluster whenever one was started, for the caller to kill.
func startEventCluster(ctx context.Context, o options, nodes, keys int, gossip string, prefillSecs *float64) (*cluster, error) {
	base := o.workerBase(o.replicas)
	base.Keys, base.Gossip = keys, gossip
	// A node holds at most one copy of each pair; a pair takes its key
	// (12 bytes) and its encoded value (value+2) in MaxBytes.
	base.MaxKeys = keys + keys/10 + 1024
	base.MaxBytes = max(256<<20, int64(keys)*int64(o.valueSize+64)*11/10)
	cl, err := startCluster(ctx, base, nodes)
	if err != nil {
		return nil, err
	}
	if _, err := waitSafe(ctx, o, cl.procs, nodes); err != nil {
		return cl, err
	}
	slog.Info("prefilling", "keys", keys, "processes", nodes)
	began := time.Now()
	calls := make([]call, nodes)
	for i, p := range cl.procs {
		calls[i] = call{p, command{Cmd: cmdPrefill, Target: targetGhost}}
	}
	if _, err := callAll(ctx, calls, time.Minute+time.Duration(keys)*time.Millisecond); err != nil {
		return cl, err
	}
	*prefillSecs = time.Since(began).Seconds()
	_, err = waitSafe(ctx, o, cl.procs, nodes)
	return cl, err
}

// waitSafe waits until every one of procs sees members members and is
// Safe, at most o.eventTimeout, and returns when each did.
func waitSafe(ctx context.Context, o options, procs []*proc, members int) ([]waitResult, error) {
	calls := make([]call, len(procs))
	for i, p := range procs {
		calls[i] = call{p, command{Cmd: cmdWaitSafe, Members: members, Duration: o.eventTimeout}}
	}
	reps, err := callAll(ctx, calls, o.eventTimeout+30*time.Second)
	if err != nil {
		return nil, err
	}
	out := make([]waitResult, len(reps))
	for i, rep := range reps {
		if rep.Wait == nil {
			return nil, fmt.Errorf("process %d: no wait result", procs[i].id)
		}
		out[i] = *rep.Wait
	}
	return out, nil
}

// safeSpan returns when the first and the last node were Safe.
func safeSpan(ws []waitResult) (first, last time.Time) {
	for i, w := range ws {
		t := time.Unix(0, w.Safe)
		if i == 0 || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	return first, last
}

// clusterStats returns the figures of every one of procs' nodes.
func clusterStats(ctx context.Context, procs []*proc) ([]map[string]int64, error) {
	calls := make([]call, len(procs))
	for i, p := range procs {
		calls[i] = call{p, command{Cmd: cmdStats}}
	}
	reps, err := callAll(ctx, calls, 30*time.Second)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]int64, len(reps))
	for i, rep := range reps {
		out[i] = rep.Stats
	}
	return out, nil
}

// statDelta is how much the counter name grew, summed over the nodes of
// after; before lists the same nodes first, and may lack the last ones.
func statDelta(before, after []map[string]int64, name string) int64 {
	var d int64
	for i, a := range after {
		d += a[name]
		if i < len(before) {
			d -= before[i][name]
		}
	}
	return d
}

// paceInFlight bounds the ops of the paced load in flight at once.
const paceInFlight = 1000

// startPace starts the paced load on p and returns when it began.
func startPace(ctx context.Context, o options, p *proc) (time.Time, error) {
	began := time.Now()
	cmd := command{Cmd: cmdPaceStart, Target: targetGhost, Conc: paceInFlight, GetPct: o.getPct, Rate: o.paceRate,
		Duration: o.warmup + o.steady + 2*o.eventTimeout}
	_, err := p.call(ctx, cmd, 30*time.Second)
	return began, err
}

// stopPace stops the paced load on p and returns its timeline.
func stopPace(ctx context.Context, p *proc) (*timelineResult, error) {
	rep, err := p.call(ctx, command{Cmd: cmdPaceStop}, time.Minute)
	if err == nil && rep.Timeline == nil {
		err = fmt.Errorf("process %d: no timeline", p.id)
	}
	return rep.Timeline, err
}

// cpuMark is the CPU processes had used at a moment.
type cpuMark struct {
	at  time.Time
	cpu float64
}

func startCPU(pids []int) cpuMark { return cpuMark{time.Now(), sumCPU(pids)} }

// cores is how many cores pids used on average since m (a process
// started since counts from zero).
func (m cpuMark) cores(pids []int) float64 {
	return ratioOf(sumCPU(pids)-m.cpu, time.Since(m.at).Seconds())
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// window condenses the slots of the timeline within [from, to): with
// overlap, every slot that overlaps it; without, only slots wholly inside.
func (tl *timelineResult) window(from, to time.Time, overlap bool) loadFigures {
	var all, gets, sets, due latency.Histogram
	var f loadFigures
	slots := 0
	for i, s := range tl.Slots {
		begin := time.Unix(0, tl.Start).Add(time.Duration(i) * tl.Slot)
		end := begin.Add(tl.Slot)
		inside := !begin.Before(from) && !end.After(to)
		if overlap {
			inside = end.After(from) && begin.Before(to)
		}
		if !inside {
			continue
		}
		slots++
		f.Ops += s.Ops
		f.Errors += s.Errors
		f.Misses += s.Misses
		// Buckets were checked by the histograms that made them.
		_ = gets.AddSparse(s.Get)
		_ = sets.AddSparse(s.Set)
		_ = due.AddSparse(s.Due)
	}
	all.Merge(&gets)
	all.Merge(&sets)
	f.Seconds = (time.Duration(slots) * tl.Slot).Seconds()
	if f.Seconds > 0 {
		f.OpsPerSec = float64(f.Ops) / f.Seconds
	}
	us := func(h *latency.Histogram, q float64) float64 { return h.Quantile(q).Seconds() * 1e6 }
	f.P50, f.P99, f.P999, f.Max = us(&all, 0.50), us(&all, 0.99), us(&all, 0.999), us(&all, 1)
	f.GetP99, f.SetP99, f.DueP99 = us(&gets, 0.99), us(&sets, 0.99), us(&due, 0.99)
	return f
}

// profileStep is the step of the profiles in the JSON report.
const profileStep = 250 * time.Millisecond

// profile condenses the timeline from from on in steps (a multiple of the
// slot), with times relative to event.
func (tl *timelineResult) profile(event, from time.Time, step time.Duration) []profilePoint {
	var out []profilePoint
	start := time.Unix(0, tl.Start)
	end := start.Add(time.Duration(len(tl.Slots)) * tl.Slot)
	from = start.Add(max(from.Sub(start), 0).Truncate(tl.Slot)) // on the slots' grid
	for t := from; t.Before(end); t = t.Add(step) {
		f := tl.window(t, t.Add(step), false)
		out = append(out, profilePoint{At: t.Sub(event).Seconds(), Ops: f.Ops, Errors: f.Errors, P50: f.P50, P99: f.P99, Max: f.Max})
	}
	return out
}

// oneLine is err's text on one line, for a table cell.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// ratioOf is a/b, or 0 when b is 0.
func ratioOf(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// writeReplication prints the put cost and the events as Markdown tables.
func writeReplication(w io.Writer, r *report) {
	if len(r.PutCost) > 0 {
		fmt.Fprintf(w, "Put cost of Replicas %d against Replicas 1, forwarded set only (×ops/s: median of the per-pass ratios; latencies: medians):\n\n", r.PutCost[0].Replicas)
		fmt.Fprintln(w, "| c | set ops/s | set ops/s, 1 copy | ×ops/s | p50 µs (1 copy) | ×p50 | p99 µs (1 copy) | ×p99 | get/set ×ops/s |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, pc := range r.PutCost {
			s, one := pc.set.Summary, pc.one.Summary
			mix := ""
			if pc.MixRatio != 0 {
				mix = fmt.Sprintf("%.2f×", pc.MixRatio)
			}
			fmt.Fprintf(w, "| %d | %s | %s | %.2f× | %s (%s) | %.2f× | %s (%s) | %.2f× | %s |\n", pc.Conc, si(s.OpsPerSec), si(one.OpsPerSec), pc.OpsRatio,
				micros(s.P50), micros(one.P50), pc.P50Ratio, micros(s.P99), micros(one.P99), pc.P99Ratio, mix)
		}
		fmt.Fprintln(w)
	}
	if len(r.Join) > 0 {
		j0 := r.Join[0]
		fmt.Fprintf(w, "Join: a node joins %d holding %d pairs, under a paced get/set %s load of %.0f ops/s from worker 0 (an open loop):\n\n", j0.Nodes, j0.Keys, r.Meta.Ratio, r.Meta.PaceRate)
		fmt.Fprintln(w, "| run | prefill s | Join s | to Safe s (first–last node) | pairs moved | MB moved | new node's pairs | steady p50/p99/p99.9 µs | during the move p50/p99/p99.9 µs | ×p99 | get / set p99 µs during | p99 µs from due, steady / during | CPU cores, steady / during | errors | misses |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for i, j := range r.Join {
			if j.Err != "" {
				fmt.Fprintf(w, "| %d | failed: %s |||||||||||||\n", i+1, j.Err)
				continue
			}
			fmt.Fprintf(w, "| %d | %.1f | %.3f | %.2f–%.2f | %d | %.1f | %d | %s | %s | %.2f× | %s / %s | %s / %s | %.2f / %.2f | %d | %d |\n", i+1, j.PrefillSecs, j.JoinSecs, j.SafeFirst, j.SafeSecs,
				j.PairsMoved, float64(j.BytesMoved)/1e6, j.NewKeys, percentiles(j.Steady), percentiles(j.Move), j.P99Ratio,
				micros(j.Move.GetP99), micros(j.Move.SetP99), micros(j.Steady.DueP99), micros(j.Move.DueP99), j.CPUSteady, j.CPUMove, j.Steady.Errors+j.Move.Errors, j.Steady.Misses+j.Move.Misses)
		}
		fmt.Fprintln(w)
	}
	if len(r.Kill) > 0 {
		fmt.Fprintf(w, "Kill: SIGKILL of the last of %d nodes holding %d pairs, under the same paced load:\n\n", r.Kill[0].Nodes, r.Kill[0].Keys)
		fmt.Fprintln(w, "| run | gossip | pairs on the node | detection s (first–last survivor) | Safe s | ×detection | pairs moved | p99 µs before | kill→Safe: p99 µs | get / set p99 µs | max µs | errors | CPU cores |")
		fmt.Fprintln(w, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for i, k := range r.Kill {
			if k.Err != "" {
				fmt.Fprintf(w, "| %d | %s | failed: %s |||||||||||\n", i+1, k.Gossip, k.Err)
				continue
			}
			fmt.Fprintf(w, "| %d | %s | %d | %.2f–%.2f | %.2f | %.2f× | %d | %s | %s | %s / %s | %s | %d | %.2f |\n", i+1, k.Gossip, k.VictimKeys, k.DetectFirst, k.DetectSecs, k.SafeSecs, k.SafeRatio,
				k.PairsMoved, micros(k.Before.P99), micros(k.During.P99), micros(k.During.GetP99), micros(k.During.SetP99), micros(k.During.Max), k.During.Errors, k.CPURepair)
		}
		fmt.Fprintln(w)
	}
}

func percentiles(f loadFigures) string {
	return micros(f.P50) + " / " + micros(f.P99) + " / " + micros(f.P999)
}
