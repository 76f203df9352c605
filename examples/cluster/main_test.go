package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a node process: the demo starts
// its nodes by running its own executable, which under go test is this
// binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == nodeFlag {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDemo runs the whole demo, three node processes and a kill, and checks
// what it reports.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"-nodes", "3"}, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}

	addr := `127\.0\.0\.1:\d+`
	for _, want := range []string{
		`(?m)^cluster formed in .*: every node lists 3 members and is Safe$`,
		// Written on node 1, read on node 2, owned by node 3.
		`(?m)^node 1  put user:\d+ +"Ada Lovelace" -> STORED +owner node 3 `,
		`(?m)^node 2  get user:\d+ +-> OK Ada Lovelace +owner node 3 `,
		`(?m)^node 2  ping: ` + addr + ` ` + addr + ` ` + addr + ` \(3 of 3 nodes answered\)$`,
		`(?m)^  node [123] keys \d+ .* goroutines \d+`,
		`(?m)^  node [123] requests \d+ .* forwarded \d+$`,
		`(?m)^== Crash: SIGKILL node 3 `,
		`(?m)^node 1  ping after .*: ` + addr + ` ` + addr + ` \(2 of 3 nodes answered\)$`,
		// After the kill every pair is still served, the dead node's too.
		`(?m)^node 2  get city:\d+ +-> OK Dublin +owner node [12]$`,
		`(?m)^node 2  get user:\d+ +-> OK Ada Lovelace +owner node [12]$`,
		`(?m)^the survivors are Safe .* after the kill`,
		`(?m)^node 3 is back and the cluster Safe after `,
		// A rolling restart of every node loses nothing.
		`(?m)^node 1 restarted, Safe after .*; node 2  get user:\d+ -> OK Ada Lovelace$`,
		`(?m)^node 2 restarted, Safe after .*; node 3  get user:\d+ -> OK Ada Lovelace$`,
		`(?m)^node 3 restarted, Safe after .*; node 1  get user:\d+ -> OK Ada Lovelace$`,
		`(?m)^node 1 left the cluster$`,
		`(?m)^node 2 left the cluster$`,
		`(?m)^node 3 left the cluster$`,
		`(?m)^demo finished in `,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output has no line matching %s", want)
		}
	}

	// The node killed must not be pinged after the kill.
	_, after, _ := strings.Cut(out.String(), "== Crash")
	dead := regexp.MustCompile(`(?m)^  node 3  pid \d+ +(` + addr + `)$`).FindStringSubmatch(out.String())
	if dead == nil {
		t.Fatal("output does not list node 3's address")
	}
	if ping, _, _ := strings.Cut(after, "\n== The survivors"); strings.Contains(ping, dead[1]) {
		t.Errorf("node 3 (%s) still listed after the kill:\n%s", dead[1], ping)
	}
}

// syncBuffer is a bytes.Buffer that the demo writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDemoWait runs the demo with -wait: the cluster, the killed node
// restarted, stays up; its dashboards and metrics answer at the URLs
// printed, until the demo is interrupted.
func TestDemoWait(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-nodes", "3", "-wait"}, &out) }()
	defer func() { t.Logf("demo output:\n%s", out.String()) }()

	deadline := time.After(60 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C to stop") {
		select {
		case err := <-done:
			t.Fatalf("demo ended before waiting: %v", err)
		case <-deadline:
			t.Fatal("demo did not reach the wait")
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, waiting, _ := strings.Cut(out.String(), "== The cluster stays up")
	urls := regexp.MustCompile(`(?m)^  node ([123])  (http://\S+/dashboard)  (http://\S+/metrics)$`).FindAllStringSubmatch(waiting, -1)
	if len(urls) != 3 {
		t.Fatalf("%d nodes' URLs printed at the wait, want 3", len(urls))
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	get := func(url string) string {
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", url, resp.StatusCode)
		}
		return string(body)
	}
	for _, u := range urls {
		if page := get(u[2]); !strings.Contains(page, "<title>GhostDB dashboard</title>") {
			t.Errorf("node %s: %s is not the dashboard", u[1], u[2])
		}
		// Every node, the restarted one included, sees the three, and
		// the traffic reaches them.
		metrics := regexp.MustCompile(`(?m)^ghost_members\{node="[^"]+"\} 3$`)
		served := regexp.MustCompile(`(?m)^ghost_requests_total\{node="[^"]+",op="get"\} [1-9]`)
		var text string
		for wait := time.Now().Add(10 * time.Second); time.Now().Before(wait); time.Sleep(100 * time.Millisecond) {
			if text = get(u[3]); metrics.MatchString(text) && served.MatchString(text) {
				break
			}
		}
		if !metrics.MatchString(text) || !served.MatchString(text) {
			t.Errorf("node %s: %s shows no 3 members or no gets served:\n%s", u[1], u[3], text)
		}
	}

	interrupt() // as Ctrl-C does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo failed after the wait: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not end after the interrupt")
	}
	for _, want := range []string{
		`(?m)^== The cluster stays up until Ctrl-C$`,
		`(?m)^node 1 left the cluster$`,
		`(?m)^node 2 left the cluster$`,
		`(?m)^node 3 left the cluster$`,
		`(?m)^demo finished in `,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output has no line matching %s", want)
		}
	}
}
