package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
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
		`(?m)^cluster formed in .*: every node lists 3 members$`,
		// Written on node 1, read on node 2, owned by node 3.
		`(?m)^node 1  put user:\d+ +"Ada Lovelace" -> STORED +owner node 3 `,
		`(?m)^node 2  get user:\d+ +-> OK Ada Lovelace +owner node 3 `,
		`(?m)^node 2  ping: ` + addr + ` ` + addr + ` ` + addr + ` \(3 of 3 nodes answered\)$`,
		`(?m)^  node [123] keys \d+ .* goroutines \d+`,
		`(?m)^  node [123] requests \d+ .* forwarded \d+$`,
		`(?m)^== Crash: SIGKILL node 3 `,
		`(?m)^node 1  ping after .*: ` + addr + ` ` + addr + ` \(2 of 3 nodes answered\)$`,
		// After the kill: the survivors' own pairs are served, the dead
		// node's are missing, and new writes work.
		`(?m)^node 2  get city:\d+ +-> OK Dublin +owner node 1$`,
		`(?m)^node 2  get user:\d+ +-> CACHE_MISS +owner node [12]$`,
		`(?m)^node 1  put user:\d+ +-> STORED +owner node [12]$`,
		`(?m)^node 2  get user:\d+ +-> OK Ada Lovelace +owner node [12]$`,
		`(?m)^node 1 left the cluster$`,
		`(?m)^node 2 left the cluster$`,
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
