package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ghostdb/ghost/internal/latency"
)

// The report: one result per scenario, as a Markdown table on stdout or
// as JSON.

// phaseStats are the calls of one phase, summed over every host.
type phaseStats struct {
	Ops    int64   `json:"ops"`
	Failed int64   `json:"failed"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	P999   float64 `json:"p999_ms"`
	Max    float64 `json:"max_ms"` // within 3%
	hist   latency.Histogram
}

// result is what one scenario showed.
type result struct {
	Name   string       `json:"name"`
	About  string       `json:"about"`
	Ops    int64        `json:"ops"` // calls, reads and writes, of the whole scenario
	Writes ledgerCounts `json:"writes"`
	Failed int64        `json:"failed_calls"`
	// FailedBy counts the failed calls by the host that made them.
	FailedBy   map[string]int64 `json:"failed_by_host,omitempty"`
	FailFrom   *float64         `json:"failed_from_s,omitempty"` // first and last failed call, seconds from the start of the fault
	FailTo     *float64         `json:"failed_to_s,omitempty"`
	FirstError string           `json:"first_error,omitempty"`
	Checked    bool             `json:"checked"` // the final reads were made
	Check      checkResult      `json:"check"`
	// Shared: the check of the shared keys' histories (shared.go); nil
	// when there were none.
	Shared    *sharedVerdict `json:"shared,omitempty"`
	Detect    *float64       `json:"detect_s,omitempty"`   // fault → the others agree on the new membership
	Converge  *float64       `json:"converge_s,omitempty"` // heal → every node lists every member
	Safe      *float64       `json:"safe_s,omitempty"`     // heal → every node reports Safe
	SafeKnown bool           `json:"safe_known"`           // the nodes have Node.Safe
	// Unsettled: the nodes did not all list every member and report Safe
	// within SettleBound of the heal (or the suite's patience): never,
	// as far as the run could tell.
	Unsettled   bool     `json:"unsettled,omitempty"`
	SettleBound *float64 `json:"settle_bound_s,omitempty"`
	Nodes       string   `json:"nodes"`               // the nodes' flags, as a node process takes them ("defaults" for none)
	TTLShare    int      `json:"ttl_share,omitempty"` // percent of warm and hot puts and adds with a short TTL
	// Evictions and Expirations are the nodes' own counts of pairs
	// evicted and expired, summed over the processes running at the end
	// (not those killed before).
	Evictions   int64      `json:"evictions"`
	Expirations int64      `json:"expirations"`
	Before      phaseStats `json:"before"`
	During      phaseStats `json:"during"`
	After       phaseStats `json:"after"`
	BadReports  []string   `json:"bad_reports,omitempty"`
	Notes       []string   `json:"notes,omitempty"`
	Err         string     `json:"error,omitempty"` // the scenario could not run to its end
	Seconds     float64    `json:"seconds"`
	Pass        bool       `json:"pass"`
}

// summarise fills in the counts and latencies from the recorder, and the
// verdict.
func (r *result) summarise(rec *recorder, ph phases) {
	r.Writes = rec.ledger.counts()
	rec.mu.Lock()
	slots := rec.slots
	r.BadReports = rec.bad
	rec.mu.Unlock()
	var firstFail, lastFail int64
	for _, s := range slots {
		p := r.phaseOf(time.UnixMilli((s.From+s.To)/2), ph)
		p.Ops += s.Ops
		p.Failed += s.Failed
		_ = p.hist.AddSparse(s.Hist) // node processes send Sparse's output
		r.Ops += s.Ops
		r.Failed += s.Failed
		if s.Failed > 0 {
			if r.FailedBy == nil {
				r.FailedBy = map[string]int64{}
			}
			r.FailedBy[fmt.Sprintf("host%d", s.Host)] += s.Failed
		}
		if s.Failed > 0 {
			if firstFail == 0 || s.FirstFail < firstFail {
				firstFail, r.FirstError = s.FirstFail, s.FirstErr
			}
			lastFail = max(lastFail, s.LastFail)
		}
	}
	for _, p := range []*phaseStats{&r.Before, &r.During, &r.After} {
		p.P50 = ms(p.hist.Quantile(0.50))
		p.P99 = ms(p.hist.Quantile(0.99))
		p.P999 = ms(p.hist.Quantile(0.999))
		p.Max = ms(p.hist.Quantile(1))
	}
	if firstFail != 0 && !ph.fault.IsZero() {
		from := time.UnixMilli(firstFail).Sub(ph.fault).Seconds()
		to := time.UnixMilli(lastFail).Sub(ph.fault).Seconds()
		r.FailFrom, r.FailTo = &from, &to
	}
	r.Pass = r.Err == "" && r.Checked && len(r.BadReports) == 0 &&
		r.Check.Lost == 0 && r.Check.Stale == 0 && r.Check.Unreadable == 0 &&
		(r.Shared == nil || r.Shared.Linearizable || r.Shared.Allowed != "")
}

// phaseOf is the phase a moment falls in.
func (r *result) phaseOf(t time.Time, ph phases) *phaseStats {
	switch {
	case ph.fault.IsZero() || t.Before(ph.fault):
		return &r.Before
	case ph.healed.IsZero() || t.Before(ph.healed):
		return &r.During
	}
	return &r.After
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// verdict is the result column.
func (r *result) verdict() string {
	var why []string
	switch {
	case r.Unsettled: // its error says so
		why = append(why, "not settled")
	case r.Err != "":
		why = append(why, "error")
	case !r.Checked:
		why = append(why, "not checked")
	}
	if r.Check.Lost > 0 {
		why = append(why, "lost")
	}
	if r.Check.Stale > 0 {
		why = append(why, "stale")
	}
	if r.Check.Unreadable > 0 {
		why = append(why, "unreadable")
	}
	if r.Shared != nil && !r.Shared.Linearizable && r.Shared.Allowed == "" {
		why = append(why, "not linearizable")
	}
	if len(r.BadReports) > 0 {
		why = append(why, "bad reports")
	}
	if r.Pass {
		return "PASS"
	}
	return "FAIL: " + strings.Join(why, ", ")
}

// writeTable writes the results as a Markdown table, then the details of
// each scenario that has any.
func writeTable(w io.Writer, results []*result) {
	fmt.Fprintln(w, "| scenario | ops | acked writes | lost | stale | linearizable | failed calls | failures (s from fault) | detect | converge | Safe | p50/p99 ms before | during | after | result |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range results {
		window := "-"
		if r.FailFrom != nil {
			window = fmt.Sprintf("%+.1f … %+.1f", *r.FailFrom, *r.FailTo)
		}
		safe := seconds(r.Safe)
		switch {
		case r.Unsettled:
			safe = "never"
		case !r.SafeKnown:
			safe = "n/a"
		}
		lost, stale := "-", "-"
		if r.Checked {
			lost, stale = fmt.Sprint(r.Check.Lost), fmt.Sprint(r.Check.Stale)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Name, r.Ops, r.Writes.Acked, lost, stale, r.Shared.cell(), r.Failed, window,
			seconds(r.Detect), seconds(r.Converge), safe,
			r.Before.latencies(), r.During.latencies(), r.After.latencies(), r.verdict())
	}
	for _, r := range results {
		var lines []string
		if r.Err != "" {
			lines = append(lines, "error: "+r.Err)
		}
		lines = append(lines, r.Notes...)
		if r.Check.Lost+r.Check.Stale > 0 && len(r.Check.ByClass) > 0 {
			var parts []string
			for _, c := range []string{classCold, classWarm, classHot} {
				if cc := r.Check.ByClass[c]; cc != nil {
					parts = append(parts, fmt.Sprintf("%s %d lost, %d stale of %d", c, cc.Lost, cc.Stale, cc.Keys))
				}
			}
			lines = append(lines, "by key class: "+strings.Join(parts, "; "))
		}
		if r.Nodes != "defaults" && r.Nodes != "" {
			lines = append(lines, "nodes: "+r.Nodes)
		}
		if r.Unsettled {
			bound := "the suite's patience"
			if r.SettleBound != nil {
				bound = fmt.Sprintf("%.0fs", *r.SettleBound)
			}
			lines = append(lines, "not every node listed every member and reported Safe within "+bound+" of the heal")
		}
		if r.Check.Resurrected > 0 {
			lines = append(lines, fmt.Sprintf("%d of the stale keys were deleted and came back", r.Check.Resurrected))
		}
		if r.Check.ExpiredBack > 0 {
			lines = append(lines, fmt.Sprintf("%d of the stale keys were read with a value after its TTL, or with an older one once the newer one's TTL was over", r.Check.ExpiredBack))
		}
		if r.TTLShare > 0 || r.Check.Expired > 0 {
			lines = append(lines, fmt.Sprintf("TTLs: %d%% of warm and hot puts and adds; %d keys read absent as their TTL allowed; the nodes expired %d pairs", r.TTLShare, r.Check.Expired, r.Expirations))
		}
		if r.Check.Evicted > 0 || r.Evictions > 0 {
			lines = append(lines, fmt.Sprintf("full cache: the nodes evicted %d pairs; %d keys read absent as only an eviction explains (allowed)", r.Evictions, r.Check.Evicted))
		}
		if r.Check.Odd > 0 {
			lines = append(lines, fmt.Sprintf("%d acknowledged results contradicted the ledger while the load ran (NOT_FOUND for a key that must be held, REMOVED or NOT_STORED for one that must be absent)", r.Check.Odd))
			for _, ex := range r.Check.OddExamples {
				lines = append(lines, "  "+ex)
			}
		}
		if r.Check.Unreadable > 0 {
			lines = append(lines, fmt.Sprintf("%d keys could not be read on some host", r.Check.Unreadable))
		}
		if r.FirstError != "" {
			lines = append(lines, "first failed call: "+r.FirstError)
			var by []string
			for _, h := range slices.Sorted(maps.Keys(r.FailedBy)) {
				by = append(by, fmt.Sprintf("%s %d", h, r.FailedBy[h]))
			}
			lines = append(lines, "failed calls by the host that made them: "+strings.Join(by, ", "))
		}
		if r.Shared != nil && !r.Shared.Linearizable {
			if r.Shared.Allowed != "" {
				lines = append(lines, "shared keys not linearizable, as allowed here: "+r.Shared.Allowed)
			}
			lines = append(lines, fmt.Sprintf("shared keys: %s; report in %s", r.Shared.Result, r.Shared.Report))
			for _, l := range strings.Split(strings.TrimSpace(r.Shared.Excerpt), "\n") {
				lines = append(lines, "  "+l)
			}
		}
		lines = append(lines, r.Check.Examples...)
		lines = append(lines, r.BadReports...)
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s, %.0fs):\n", r.Name, r.About, r.Seconds)
		for _, l := range lines {
			fmt.Fprintf(w, "  - %s\n", l)
		}
	}
}

func (p phaseStats) latencies() string {
	if p.Ops == 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%s", latencyText(p.P50), latencyText(p.P99))
}

// latencyText prints milliseconds with two significant digits or so.
func latencyText(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2f", ms)
	case ms < 10:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

func seconds(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fs", *v)
}
