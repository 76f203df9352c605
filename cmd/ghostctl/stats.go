package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
	"time"
)

// The figures of stats and top come from GET /dashboard/data: the node
// asked gathers every member's, at most once a second.

// clusterData is the part of GET /dashboard/data that ghostctl shows.
type clusterData struct {
	Node    string      `json:"node"`
	Time    int64       `json:"time"` // Unix ms
	Members []nodeStats `json:"members"`
}

// nodeStats is one member's figures.
type nodeStats struct {
	Addr               string   `json:"addr"`
	Name               string   `json:"name"`
	Self               bool     `json:"self"`
	State              string   `json:"state"`
	Error              string   `json:"error,omitempty"`
	Pairs              int64    `json:"pairs"`
	Bytes              int64    `json:"bytes"`
	HeapBytes          int64    `json:"heapBytes"`
	SysBytes           int64    `json:"sysBytes"`
	Goroutines         int64    `json:"goroutines"`
	Requests           int64    `json:"requests"`
	Gets               int64    `json:"gets"`
	Misses             int64    `json:"misses"`
	Forwarded          int64    `json:"forwarded"`
	HitRatio           *float64 `json:"hitRatio"`
	OpsPerSec          *float64 `json:"opsPerSec"`
	PartitionsOwned    int      `json:"partitionsOwned"`
	PartitionsBackedUp int      `json:"partitionsBackedUp"`
}

// rateWait is how long stats waits for a second reading when the node
// asked has only one: requests per second need two.
const rateWait = 1100 * time.Millisecond

func fetchStats(ctx context.Context, c *client) (clusterData, error) {
	var d clusterData
	// No points for charts: since the end of time.
	err := c.getJSON(ctx, "/dashboard/data?since="+strconv.FormatInt(math.MaxInt64, 10), &d)
	return d, err
}

// lacksRate reports whether a member that answered has no rate yet.
func (d clusterData) lacksRate() bool {
	for _, m := range d.Members {
		if m.OpsPerSec == nil && m.Error == "" && m.State != "left" {
			return true
		}
	}
	return false
}

func stats(ctx context.Context, c *client, o options, stdout io.Writer) error {
	d, err := fetchStats(ctx, c)
	if err != nil {
		return err
	}
	if d.lacksRate() {
		select {
		case <-time.After(rateWait):
		case <-ctx.Done():
			return ctx.Err()
		}
		if d, err = fetchStats(ctx, c); err != nil {
			return err
		}
	}
	if o.json {
		return printJSON(stdout, d.Members)
	}
	return printStats(stdout, d)
}

// top prints stats every o.interval, o.count times or until interrupted.
// A node that stops answering is reported and asked again.
func top(ctx context.Context, c *client, o options, stdout io.Writer) error {
	redraw := isTerminal(stdout) && !o.json
	for i := 0; o.count == 0 || i < o.count; i++ {
		if i > 0 {
			select {
			case <-time.After(o.interval):
			case <-ctx.Done():
				return nil // Ctrl-C is how top ends
			}
		}
		d, err := fetchStats(ctx, c)
		if err != nil && i == 0 {
			return err
		}
		switch {
		case o.json && err == nil:
			if err := printJSON(stdout, d); err != nil {
				return err
			}
			continue
		case o.json:
			fmt.Fprintf(stdout, "{\"error\": %q}\n", err.Error())
			continue
		case redraw:
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		case i > 0:
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "ghostctl top  %s  every %v, Ctrl-C to quit\n\n", time.Now().Format("15:04:05"), o.interval)
		if err != nil {
			fmt.Fprintf(stdout, "ghostctl: %v (asking again)\n", err)
			continue
		}
		if err := printStats(stdout, d); err != nil {
			return err
		}
	}
	return nil
}

// printStats prints one row per member and a total.
func printStats(w io.Writer, d clusterData) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tPAIRS\tDATA\tHIT\tREQ/S\tHEAP\tSYS\tGOROUTINES\tOWNS\tBACKS UP")
	var total nodeStats
	var rate *float64 // nil until a member has one
	for _, m := range d.Members {
		if m.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t%d\t%d\n", marked(m.Addr, m.Self), m.State, m.PartitionsOwned, m.PartitionsBackedUp)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", marked(m.Addr, m.Self), m.State, m.Pairs,
			bytesText(m.Bytes), percent(m.HitRatio), perSecond(m.OpsPerSec), bytesText(m.HeapBytes), bytesText(m.SysBytes),
			m.Goroutines, m.PartitionsOwned, m.PartitionsBackedUp)
		if m.State == "left" {
			continue
		}
		total.Pairs += m.Pairs
		total.Bytes += m.Bytes
		total.Gets += m.Gets
		total.Misses += m.Misses
		if m.OpsPerSec != nil {
			sum := *m.OpsPerSec
			if rate != nil {
				sum += *rate
			}
			rate = &sum
		}
	}
	var hit *float64
	if total.Gets > 0 {
		r := float64(total.Gets-total.Misses) / float64(total.Gets)
		hit = &r
	}
	fmt.Fprintf(tw, "total\t\t%d\t%s\t%s\t%s\n", total.Pairs, bytesText(total.Bytes), percent(hit), perSecond(rate))
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "* the node asked (%s). HIT: gets that found a pair since each node started; REQ/S: served, over the last second.\n", d.Node)
	return err
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i-1])
}

func percent(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", *r*100)
}

func perSecond(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *r)
}
