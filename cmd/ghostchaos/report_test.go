package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ghostdb/ghost/internal/latency"
)

// slotAt is a slot of n calls of lat each, failed of them failing, around
// t.
func slotAt(t time.Time, n, failed int64, lat time.Duration) slot {
	var h latency.Histogram
	for range n {
		h.Record(lat)
	}
	s := slot{From: t.Add(-100 * time.Millisecond).UnixMilli(), To: t.Add(100 * time.Millisecond).UnixMilli(), Ops: n, Failed: failed, Hist: h.Sparse()}
	if failed > 0 {
		s.FirstFail, s.LastFail, s.FirstErr = t.UnixMilli(), t.Add(50*time.Millisecond).UnixMilli(), "ghost: no more servers"
	}
	return s
}

func TestSummarise(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	ph := phases{load: t0, fault: t0.Add(2 * time.Second), healed: t0.Add(6 * time.Second), stop: t0.Add(8 * time.Second)}
	rec := newRecorder()
	rec.slots = []slot{
		slotAt(t0.Add(time.Second), 100, 0, time.Millisecond),
		slotAt(t0.Add(3*time.Second), 100, 4, 500*time.Millisecond),
		slotAt(t0.Add(4*time.Second), 50, 1, 500*time.Millisecond),
		slotAt(t0.Add(7*time.Second), 100, 0, 2*time.Millisecond),
	}
	mustOK(t, rec.ledger.begin(opRef{1, 1}, "k", opPut, "v", 0, 0))
	mustOK(t, rec.ledger.end(opRef{1, 1}, outcomeOK, 0))
	r := &result{Name: "kill", Checked: true}
	r.summarise(rec, ph)
	if r.Ops != 350 || r.Failed != 5 || r.Writes.Acked != 1 || r.FailedBy["host0"] != 5 {
		t.Errorf("ops %d, failed %d (by host %v), acked %d", r.Ops, r.Failed, r.FailedBy, r.Writes.Acked)
	}
	if r.Before.Ops != 100 || r.During.Ops != 150 || r.After.Ops != 100 || r.During.Failed != 5 {
		t.Errorf("phases: before %+v, during %+v, after %+v", r.Before, r.During, r.After)
	}
	near := func(got, want float64) bool { return got > want*0.96 && got < want*1.04 }
	if !near(r.Before.P99, 1) || !near(r.During.P50, 500) || !near(r.After.P99, 2) || !near(r.During.Max, 500) {
		t.Errorf("latencies: before %+v, during %+v, after %+v", r.Before, r.During, r.After)
	}
	if r.FailFrom == nil || *r.FailFrom != 1 || *r.FailTo != 2.05 || r.FirstError != "ghost: no more servers" {
		t.Errorf("failures from %v to %v, first %q", r.FailFrom, r.FailTo, r.FirstError)
	}
	if !r.Pass || r.verdict() != "PASS" {
		t.Errorf("verdict %q, pass %v", r.verdict(), r.Pass)
	}
}

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		name string
		r    result
		bad  []string // reports the recorder refused
		want string
	}{
		{"clean", result{Checked: true}, nil, "PASS"},
		{"lost and stale", result{Checked: true, Check: checkResult{Lost: 2, Stale: 1}}, nil, "FAIL: lost, stale"},
		{"error", result{Err: "fault: boom"}, nil, "FAIL: error"},
		{"not checked", result{}, nil, "FAIL: not checked"},
		{"unreadable", result{Checked: true, Check: checkResult{Unreadable: 1}}, nil, "FAIL: unreadable"},
		{"bad reports", result{Checked: true}, []string{"host1: op {1 1} begun twice"}, "FAIL: bad reports"},
		{"never Safe", result{Checked: true, Unsettled: true, Err: "after healing: not Safe", Check: checkResult{Unreadable: 3}}, nil, "FAIL: not settled, unreadable"},
		{"came back", result{Checked: true, Check: checkResult{Stale: 2, Resurrected: 1, ExpiredBack: 1}}, nil, "FAIL: stale"},
		{"evicted is no loss", result{Checked: true, Check: checkResult{Evicted: 40, Expired: 100}}, nil, "PASS"},
		{"linearizable", result{Checked: true, Shared: &sharedVerdict{Linearizable: true}}, nil, "PASS"},
		{"not linearizable", result{Checked: true, Shared: &sharedVerdict{Excerpt: "client 1 ..."}}, nil, "FAIL: not linearizable"},
		{"undecided", result{Checked: true, Shared: &sharedVerdict{}}, nil, "FAIL: not linearizable"},
		{"started afresh", result{Checked: true, Shared: &sharedVerdict{Excerpt: "client 1 ...", Allowed: "split"}}, nil, "PASS"},
	} {
		r := c.r
		rec := newRecorder()
		rec.bad = c.bad
		r.summarise(rec, phases{})
		if got := r.verdict(); got != c.want || r.Pass != (c.want == "PASS") {
			t.Errorf("%s: verdict %q, pass %v; want %q", c.name, got, r.Pass, c.want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	detect, conv, from, to := 1.04, 0.21, -0.05, 3.1
	results := []*result{
		{Name: "kill", About: "SIGKILL", Ops: 10804, Writes: ledgerCounts{Acked: 3598}, Failed: 7,
			FailFrom: &from, FailTo: &to, Detect: &detect, Converge: &conv, Checked: true,
			Check:  checkResult{Lost: 63, Resurrected: 0, Examples: []string{"h1-w0-21 on host1: lost"}},
			Before: phaseStats{Ops: 1, P50: 0.2, P99: 1.1}, During: phaseStats{Ops: 1, P50: 0.17, P99: 136},
			Notes: []string{"a note"}, Shared: &sharedVerdict{Calls: 420, Linearizable: true}},
		{Name: "lossy", Checked: true, SafeKnown: true, Safe: &conv, Pass: true},
		{Name: "split", Err: "forming the cluster: members did not converge"},
	}
	var b bytes.Buffer
	writeTable(&b, results)
	out := b.String()
	for _, want := range []string{
		"| scenario | ops | acked writes | lost | stale | linearizable | failed calls |",
		"| kill | 10804 | 3598 | 63 | 0 | yes (420 calls) | 7 | -0.1 … +3.1 | 1.0s | 0.2s | n/a | 0.20/1.1 | 0.17/136 | - | FAIL: lost |",
		"| lossy | 0 | 0 | 0 | 0 | - | 0 | - | - | - | 0.2s | - | - | - | PASS |",
		"| split | 0 | 0 | - | - | - | 0 | - | - | - | n/a | - | - | - | FAIL: error |",
		"  - a note\n", "  - h1-w0-21 on host1: lost\n",
		"  - error: forming the cluster: members did not converge\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lossy (") {
		t.Errorf("a scenario without details got a details section:\n%s", out)
	}
	if lines := strings.Count(strings.SplitN(out, "\n\n", 2)[0], "\n"); lines != 2+len(results)-1 {
		t.Errorf("table has %d lines", lines+1)
	}
}

func TestWriteTableWidened(t *testing.T) {
	bound, conv := 30.0, 0.1
	results := []*result{
		{Name: "majority", Nodes: "-replicas 4", Checked: true, Unsettled: true, SafeKnown: true, SettleBound: &bound, Converge: &conv,
			Err: "after healing: not Safe after 30s", Check: checkResult{Unreadable: 630}},
		{Name: "longsplit", Nodes: "-tombstone-ttl 1s -max-keys 300", Checked: true, SafeKnown: true, Safe: &conv, TTLShare: 50,
			Evictions: 330, Expirations: 787, Check: checkResult{Stale: 8, Resurrected: 6, ExpiredBack: 2, Evicted: 43, Expired: 137}},
	}
	var b bytes.Buffer
	writeTable(&b, results)
	out := b.String()
	for _, want := range []string{
		"| majority | 0 | 0 | 0 | 0 | - | 0 | - | - | 0.1s | never | - | - | - | FAIL: not settled, unreadable |",
		"  - not every node listed every member and reported Safe within 30s of the heal\n",
		"  - nodes: -replicas 4\n",
		"  - 6 of the stale keys were deleted and came back\n",
		"  - 2 of the stale keys were read with a value after its TTL",
		"  - TTLs: 50% of warm and hot puts and adds; 137 keys read absent as their TTL allowed; the nodes expired 787 pairs\n",
		"  - full cache: the nodes evicted 330 pairs; 43 keys read absent as only an eviction explains (allowed)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteResultsJSON(t *testing.T) {
	var b bytes.Buffer
	o := options{jsonOut: "-", short: true, hosts: 5, scenarios: []string{"kill"}}
	mustOK(t, writeResults(o, []*result{{Name: "kill", Checked: true, Pass: true}}, &b))
	var rep report
	if err := json.Unmarshal(b.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	if !rep.Pass || rep.Hosts != 5 || len(rep.Results) != 1 || rep.Results[0].Name != "kill" {
		t.Errorf("report %+v", rep)
	}
	if strings.Contains(b.String(), "| scenario") {
		t.Error("-json - wrote the table too")
	}
}
