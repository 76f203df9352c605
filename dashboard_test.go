package ghost

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// dashboardData reads n's GET /dashboard/data.
func dashboardData(t *testing.T, hc *http.Client, n *Node, since int64) dashData {
	t.Helper()
	resp, err := hc.Get(fmt.Sprintf("http://%s/dashboard/data?since=%d", n.Addr(), since))
	if err != nil {
		t.Fatalf("GET /dashboard/data: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /dashboard/data: HTTP %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var d dashData
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("GET /dashboard/data: %v", err)
	}
	return d
}

func (d dashData) member(addr string) (dashMember, bool) {
	for _, m := range d.Members {
		if m.Addr == addr {
			return m, true
		}
	}
	return dashMember{}, false
}

func TestDashboardData(t *testing.T) {
	c := newCluster(t, 3, true)
	hc := newGatewayClient(t).hc
	ctx := context.Background()
	for i := range 30 {
		if err := c.nodes[i%3].Put(ctx, fmt.Sprint("dash-", i), i, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	serving := c.nodes[1]
	asked := time.Now()
	d := dashboardData(t, hc, serving, 0)
	if d.Node != serving.Addr() || len(d.Members) != 3 || d.Window != dashWindow.Milliseconds() {
		t.Fatalf("node %s, %d members, window %d", d.Node, len(d.Members), d.Window)
	}
	owned := 0
	for _, n := range c.nodes {
		m, ok := d.member(n.Addr())
		if !ok || m.State != stateAlive || m.Self != (n == serving) || m.Name != n.name {
			t.Errorf("member %s: %+v", n.Addr(), m)
		}
		if m.Pairs != n.store.len() || m.Bytes != n.store.size() || m.Requests != int64(n.stats.putRequests.Load()) {
			t.Errorf("member %s: pairs %d bytes %d requests %d; holds %d, %d bytes, served %d puts", n.Addr(), m.Pairs, m.Bytes, m.Requests, n.store.len(), n.store.size(), n.stats.putRequests.Load())
		}
		if m.OpsPerSec != nil || m.HitRatio != nil || m.HeapBytes == 0 || m.Goroutines == 0 {
			t.Errorf("member %s: first gathering %+v; want no rate, no hit ratio yet, memory figures", n.Addr(), m)
		}
		if pts := d.Series[n.name]; len(pts) != 1 || pts[0].Pairs != m.Pairs || pts[0].Requests != m.Requests {
			t.Errorf("member %s: series %+v", n.Addr(), pts)
		}
		owned += m.PartitionsOwned
	}
	if len(d.Partitions) != serving.cfg.PartitionCount || owned != len(d.Partitions) {
		t.Errorf("%d partitions, %d owned", len(d.Partitions), owned)
	}
	// Viewers within dashMinInterval share one gathering.
	if again := dashboardData(t, hc, serving, 0); again.Time != d.Time && time.Since(asked) < dashMinInterval {
		t.Errorf("figures gathered again after %v", time.Duration(again.Time-d.Time)*time.Millisecond)
	}

	// A hit and a miss on node 0; the next gathering has rates.
	owner := c.nodes[0]
	key := c.keyOwnedBy(owner, "dash-hit")
	if err := owner.Put(ctx, key, 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	_, _ = c.nodes[2].Get(ctx, key)
	_, _ = c.nodes[2].Get(ctx, c.keyOwnedBy(owner, "dash-miss"))
	var next dashData
	waitFor(t, 5*time.Second, func() error {
		if next = dashboardData(t, hc, serving, 0); next.Time == d.Time {
			return fmt.Errorf("no new gathering")
		}
		return nil
	})
	m, _ := next.member(owner.Addr())
	pts := next.Series[owner.name]
	if m.OpsPerSec == nil || *m.OpsPerSec <= 0 || len(pts) != 2 || pts[1].Requests != pts[0].Requests+3 {
		t.Fatalf("owner after a put and two gets: %+v, series %+v", m, pts)
	}
	if pts[1].Gets-pts[0].Gets != 2 || pts[1].Misses-pts[0].Misses != 1 || m.HitRatio == nil || *m.HitRatio != 0.5 {
		t.Errorf("owner after a hit and a miss: series %+v, hit ratio %v; want 0.5", pts, m.HitRatio)
	}
	// ?since= leaves out the points the page has.
	for name, pts := range dashboardData(t, hc, serving, next.Time).Series {
		for _, p := range pts {
			if p.T <= next.Time {
				t.Errorf("%s: point at %d, asked for those after %d", name, p.T, next.Time)
			}
		}
	}
}

// A member that stops is shown unreachable, then, once gossip has dropped
// it, as left with its last figures.
func TestDashboardMemberStates(t *testing.T) {
	c := newCluster(t, 3, true, fastFailureDetection)
	hc := newGatewayClient(t).hc
	gone := c.nodes[2]
	if err := gone.Put(context.Background(), c.keyOwnedBy(gone, "gone"), 1, NoExpiry); err != nil {
		t.Fatal(err)
	}
	if m, _ := dashboardData(t, hc, c.nodes[0], 0).member(gone.Addr()); m.State != stateAlive || m.Pairs != 1 {
		t.Fatalf("before the halt: %+v", m)
	}
	gone.halt()
	states := map[string]bool{}
	waitFor(t, 15*time.Second, func() error {
		m, ok := dashboardData(t, hc, c.nodes[0], 0).member(gone.Addr())
		if !ok {
			return fmt.Errorf("%s not listed", gone.Addr())
		}
		states[m.State] = true
		if m.State != stateLeft {
			return fmt.Errorf("state %s", m.State)
		}
		if m.Pairs != 1 || m.Self || m.OpsPerSec != nil || m.PartitionsOwned != 0 {
			return fmt.Errorf("left member %+v: want its last pairs, no rate, no partitions", m)
		}
		return nil
	})
	t.Logf("states seen after the halt: %v", states)
}

func TestDashboardPage(t *testing.T) {
	c := newCluster(t, 1, true)
	hc := newGatewayClient(t).hc
	base := "http://" + c.nodes[0].Addr()
	for _, path := range []string{"/dashboard", "/dashboard/"} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: HTTP %d, %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if !strings.Contains(string(body), "<title>GhostDB dashboard</title>") {
			t.Errorf("GET %s: not the dashboard", path)
		}
		// Self-contained: no script or style file, no address of another host.
		if m := regexp.MustCompile(`<script [^>]*src=|<link rel="stylesheet"|(src|href|url)\(?=?"?(https?:)?//`).FindString(string(body)); m != "" {
			t.Errorf("GET %s: the page loads something: %s", path, m)
		}
	}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/dashboard", 405},
		{"DELETE", "/dashboard/data", 405},
		{"GET", "/dashboard/data?since=yesterday", 400},
		{"HEAD", "/dashboard/data", 200},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: HTTP %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
	}
}

func TestMembersCommand(t *testing.T) {
	c := newCluster(t, 3, true)
	gw := newGatewayClient(t)
	for _, n := range c.nodes {
		rep := gw.post(t, n, "members", "")
		expect(t, "members", rep, 1, "OK")
		var members []memberInfo
		if err := json.Unmarshal(rep.Gobj.Value, &members); err != nil {
			t.Fatalf("members: %s: %v", rep.Gobj.Value, err)
		}
		var addrs []string
		for _, m := range members {
			addrs = append(addrs, m.Addr)
			if m.Self != (m.Addr == n.Addr()) || m.State != stateAlive {
				t.Errorf("asked %s: %+v", n.Addr(), m)
			}
		}
		if want := n.Members(); fmt.Sprint(addrs) != fmt.Sprint(want) {
			t.Errorf("asked %s: members %v, want %v", n.Addr(), addrs, want)
		}
	}
}
