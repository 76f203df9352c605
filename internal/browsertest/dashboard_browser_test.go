package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/ghostdb/ghost"
)

// The dashboard in a real browser: headless Chromium, driven by chromedp.

// findChromium returns the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// browserErrors collects the page's script exceptions and console errors.
type browserErrors struct {
	mu   sync.Mutex
	list []string
}

func (b *browserErrors) add(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.list = append(b.list, s)
}

func (b *browserErrors) all() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.list)
}

// newBrowser starts headless Chromium for the test and returns a tab's
// context. The browser is stopped, and its profile removed, when the test
// ends. It reaches loopback addresses only: every host name resolves to
// nothing and every other address goes through a proxy that is not there.
func newBrowser(t *testing.T, chrome string) (context.Context, *browserErrors) {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1440, 1000),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("proxy-server", "http://127.0.0.1:9"), // loopback is never proxied
		chromedp.Flag("force-color-profile", "srgb"),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	errs := &browserErrors{}
	err := chromedp.Listen(ctx, func(ev any) { // starts the browser
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			errs.add(fmt.Sprintf("exception: %s %s", ev.ExceptionDetails.Text, ev.ExceptionDetails.Exception.Description))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				errs.add("console.error: " + strings.Join(args, " "))
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				errs.add(fmt.Sprintf("%s error: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
	if err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start %s: %v", chrome, err)
	}
	t.Cleanup(func() {
		cancelTab() // closes the browser and waits for it
		cancelAlloc()
	})
	return ctx, errs
}

// pageState is what the test reads off the dashboard.
type pageState struct {
	Status  string `json:"status"`
	Served  string `json:"served"`
	Members []struct {
		Addr  string `json:"addr"`
		State string `json:"state"`
		Pairs string `json:"pairs"`
		Ops   string `json:"ops"`
	} `json:"members"`
	SumPairs  string            `json:"sumPairs"`
	SumOps    string            `json:"sumOps"`
	Cells     []string          `json:"cells"`     // owner of each partition cell
	Lines     map[string][]int  `json:"lines"`     // chart → points drawn, per line
	LineNodes map[string]string `json:"lineNodes"` // chart → nodes with a line, joined
	Origin    string            `json:"origin"`
	Resources []string          `json:"resources"` // every URL the page loaded
}

const readPage = `(() => {
	const text = (id) => document.getElementById(id).textContent;
	const lines = {}, lineNodes = {};
	for (const p of document.querySelectorAll("svg[data-chart] path.line")) {
		const c = p.closest("svg").dataset.chart;
		(lines[c] = lines[c] || []).push((p.getAttribute("d").match(/[ML]/g) || []).length);
		lineNodes[c] = ((lineNodes[c] || "") + " " + p.dataset.node).trim();
	}
	return {
		status: text("status"), served: text("served"),
		members: [...document.querySelectorAll("#members tbody tr[data-addr]")].map((r) => ({
			addr: r.dataset.addr, state: r.dataset.state,
			pairs: r.querySelector('[data-field="pairs"]').textContent,
			ops: r.querySelector('[data-field="ops"]').textContent,
		})),
		sumPairs: text("sum-pairs"), sumOps: text("sum-ops"),
		cells: [...document.querySelectorAll("#pmap .cell")].map((c) => c.dataset.owner),
		lines, lineNodes,
		origin: location.origin,
		resources: performance.getEntriesByType("resource").map((e) => e.name),
	};
})()`

func (p pageState) member(addr string) (state, pairs, ops string, ok bool) {
	for _, m := range p.Members {
		if m.Addr == addr {
			return m.State, m.Pairs, m.Ops, true
		}
	}
	return "", "", "", false
}

// pageNumber reads a figure the page printed with thousands separators.
func pageNumber(s string) (float64, error) {
	return strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
}

// showsMembers checks that the page lists every node of c, alive, with the
// pairs it holds now (asked of the serving node, whose SnitchMetrics ask
// every member), and the total the nodes hold.
func (p pageState) showsMembers(ctx context.Context, c *cluster, served *ghost.Node) error {
	if p.Status != "live" || p.Served != served.Addr() {
		return fmt.Errorf("status %q, served by %q", p.Status, p.Served)
	}
	held, err := pairsHeld(ctx, served)
	if err != nil {
		return fmt.Errorf("pairs held: %w", err)
	}
	var total int64
	for _, n := range c.nodes {
		state, pairs, _, ok := p.member(n.Addr())
		holds, known := held[n.Addr()]
		if !known {
			return fmt.Errorf("member %s: no snitch figures", n.Addr())
		}
		if !ok || state != stateAlive || pairs != fmt.Sprint(holds) {
			return fmt.Errorf("member %s: listed %v, state %q, pairs %q (holds %d)", n.Addr(), ok, state, pairs, holds)
		}
		total += holds
	}
	if len(p.Members) != len(c.nodes) {
		return fmt.Errorf("%d members listed", len(p.Members))
	}
	if got, err := pageNumber(p.SumPairs); err != nil || got != float64(total) {
		return fmt.Errorf("total pairs %q, the nodes hold %d", p.SumPairs, total)
	}
	return nil
}

// showsTraffic checks that the page shows requests per second and draws a
// line of several points for every node in the charts.
func (p pageState) showsTraffic(c *cluster) error {
	if ops, err := pageNumber(p.SumOps); err != nil || ops <= 0 {
		return fmt.Errorf("requests/s %q, want > 0 with traffic", p.SumOps)
	}
	for _, chart := range []string{"pairs", "bytes", "ops"} {
		for _, n := range c.nodes {
			if !strings.Contains(p.LineNodes[chart], n.Addr()) {
				return fmt.Errorf("chart %s has no line for %s (has %q)", chart, n.Addr(), p.LineNodes[chart])
			}
		}
		for _, points := range p.Lines[chart] {
			if points < 2 {
				return fmt.Errorf("chart %s: a line of %d points", chart, points)
			}
		}
	}
	if len(p.Lines["hit"]) == 0 {
		return fmt.Errorf("hit ratio chart draws no line after gets")
	}
	return nil
}

// checkPartitionMap checks that the map shows every partition with the
// owner n reports, and that every member owns some.
func (p pageState) checkPartitionMap(ctx context.Context, t *testing.T, c *cluster, n *ghost.Node) {
	t.Helper()
	view, err := partitionOwners(ctx, n)
	if err != nil {
		t.Fatalf("partition map of %s: %v", n.Addr(), err)
	}
	if len(p.Cells) != len(view) {
		t.Errorf("partition map shows %d cells, want %d", len(p.Cells), len(view))
	}
	for i, owner := range p.Cells {
		if i < len(view) && owner != view[i] {
			t.Fatalf("partition %d shown owned by %s, the node says %s", i, owner, view[i])
		}
	}
	for _, m := range c.nodes {
		if !slices.Contains(p.Cells, m.Addr()) {
			t.Errorf("%s owns no cell of the partition map", m.Addr())
		}
	}
}

// startTraffic keeps getting keys from every node of c, "first-0" to
// "first-59", until the function it returns is called.
func startTraffic(c *cluster) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			_, _ = c.nodes[i%len(c.nodes)].Get(context.Background(), fmt.Sprint("first-", i%60))
		}
	}()
	return sync.OnceFunc(func() { close(done); <-stopped })
}

// saveScreenshot saves the page as a PNG in the test's temporary directory,
// and where GHOST_DASHBOARD_PNG says (GHOST_DASHBOARD_PNG=docs/dashboard.png
// refreshes the image of docs/metrics.md). A relative path is taken from the
// repository root, where go test ./... runs, not from this directory, where
// the test runs.
func saveScreenshot(t *testing.T, tab context.Context) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if dst := os.Getenv("GHOST_DASHBOARD_PNG"); dst != "" {
		if !filepath.IsAbs(dst) {
			dst = filepath.Join("..", "..", dst)
		}
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Error(err)
		}
	}
}

func TestDashboardInBrowser(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		t.Skip("no Chromium or Chrome found (chromium, chromium-browser, google-chrome, headless-shell on PATH, or /usr/bin/chromium): " +
			"install one (apt-get install chromium) to test the dashboard in a browser")
	}
	c := newCluster(t, 3)
	ctx := context.Background()
	for i := range 30 {
		if err := c.nodes[i%3].Put(ctx, fmt.Sprint("first-", i), strings.Repeat("v", i), ghost.NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	tab, errs := newBrowser(t, chrome)
	tab, cancel := context.WithTimeout(tab, 60*time.Second)
	defer cancel()
	serving := c.nodes[0]
	url := "http://" + serving.Addr() + "/dashboard"
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	var page pageState
	read := func() (err error) {
		page, err = chromedp.Run(tab, chromedp.Evaluate[pageState](readPage))
		return err
	}

	// Every member appears, alive, with the pairs it holds.
	waitFor(t, 20*time.Second, func() error {
		if err := read(); err != nil {
			return err
		}
		return page.showsMembers(tab, c, serving)
	})
	before := page.SumPairs

	// Traffic: more pairs, and gets that hit and miss until the page has
	// shown them. The figures change and the charts draw every node.
	for i := range 45 {
		if err := c.nodes[i%3].Put(ctx, fmt.Sprint("second-", i), i, ghost.NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	stopTraffic := startTraffic(c)
	defer stopTraffic()
	waitFor(t, 20*time.Second, func() error {
		if err := read(); err != nil {
			return err
		}
		if page.SumPairs == before {
			return fmt.Errorf("total pairs still %s", before)
		}
		if err := page.showsMembers(tab, c, serving); err != nil {
			return err
		}
		return page.showsTraffic(c)
	})
	stopTraffic()

	page.checkPartitionMap(tab, t, c, serving)
	// Nothing came from anywhere but the node.
	for _, r := range page.Resources {
		if !strings.HasPrefix(r, page.Origin+"/") {
			t.Errorf("the page loaded %s, not from %s", r, page.Origin)
		}
	}
	if e := errs.all(); len(e) > 0 {
		t.Errorf("errors in the browser:\n%s", strings.Join(e, "\n"))
	}
	saveScreenshot(t, tab)
}
