package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runMainEnv makes the test binary act as ghostbench, so the smoke test
// runs the command as built for the test (with -race when the tests have
// it), and its workers, copies of the same binary, do too.
const runMainEnv = "GHOSTBENCH_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runGhostbench runs ghostbench with args and -json, fails the test when
// it fails, and returns its stdout and its report.
func runGhostbench(t *testing.T, args ...string) (string, report) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	cmd := exec.CommandContext(ctx, os.Args[0], append(args, "-json", jsonPath)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ghostbench: %v\nstderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "level=INFO") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("JSON does not parse: %v\n%s", err, b)
	}
	return stdout.String(), r
}

func assertContains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestSmoke runs the base scenario for a second or two against GhostDB
// alone and checks that it prints a table and writes JSON that parses.
func TestSmoke(t *testing.T) {
	out, r := runGhostbench(t, "-scenarios", "base", "-targets", "ghost", "-nodes", "2", "-keys", "1000",
		"-conc", "2", "-duration", "300ms", "-warmup", "100ms", "-passes", "1")
	assertContains(t, out,
		"| target | scenario | c |",
		"| GhostDB | forwarded get/set 9:1, Replicas 2 | 2 |",
		"| GhostDB | owner-local get only | 2 |",
		"| sync.Map | get only (floor) | 2 |",
		"n/a (no batch API yet)",
		"SKIP forwarded Get/Put",
		"owner-local Get ≤ 2× sync.Map Get",
	)
	if r.Meta.Nodes != 2 || r.Meta.Replicas != 2 || len(r.Checks) == 0 {
		t.Errorf("meta %+v, %d checks", r.Meta, len(r.Checks))
	}
	measured := 0
	for _, c := range r.Cells {
		if c.NA != "" {
			continue
		}
		measured++
		if len(c.Passes) != 1 || c.Summary.OpsPerSec <= 0 || c.Summary.Errors != 0 || c.Summary.HitRate < 0.99 {
			t.Errorf("cell %s %s c=%d: %+v", c.Target, c.Scenario, c.Conc, *c.Summary)
		}
	}
	if measured != 5 {
		t.Errorf("%d cells measured, want 5", measured)
	}
}

// TestSmokeReplication runs a tiny version of the replication scenarios:
// forwarded sets with 2 copies and with 1, a node joining 2 that hold 2,000
// pairs, and a SIGKILL of one of 3 with fast failure detection.
func TestSmokeReplication(t *testing.T) {
	out, r := runGhostbench(t, "-scenarios", "replicas,join,kill", "-targets", "ghost", "-nodes", "2", "-keys", "1000",
		"-conc", "2", "-duration", "300ms", "-warmup", "100ms", "-passes", "1",
		"-event-nodes", "2", "-join-keys", "2000", "-kill-keys", "2000", "-steady", "300ms", "-pace-rate", "200",
		"-kill-gossip", "fast", "-event-timeout", "1m")
	assertContains(t, out,
		"| GhostDB | forwarded set only, Replicas 2 | 2 |",
		"| GhostDB | forwarded set only, Replicas 1 | 2 |",
		"| GhostDB | forwarded get/set 9:1, Replicas 1 | 2 |",
		"Put cost of Replicas 2 against Replicas 1",
		"Join: a node joins 2 holding 2000 pairs",
		"Kill: SIGKILL of the last of 3 nodes holding 2000 pairs",
		"join of a node to 2 holding 2000 pairs: p99 of get/set during the move ≤ 2× steady state",
		"SIGKILL of 1 of 3 nodes holding 2000 pairs, fast gossip: Safe again within 2× the failure-detection time",
	)
	if strings.Contains(out, "owner-local") || strings.Contains(out, "sync.Map") {
		t.Errorf("the base scenario ran:\n%s", out)
	}
	if len(r.PutCost) != 1 || r.PutCost[0].OpsRatio <= 0 || r.PutCost[0].P99Ratio <= 0 {
		t.Errorf("put cost %+v", r.PutCost)
	}
	if len(r.Join) != 1 {
		t.Fatalf("%d joins, want 1", len(r.Join))
	}
	if j := r.Join[0]; j.Err != "" || j.SafeSecs <= 0 || j.PairsMoved <= 0 || j.NewKeys <= 0 || j.Evicted != 0 || j.Steady.Ops == 0 || j.Move.Ops == 0 || len(j.Profile) == 0 {
		t.Errorf("join %+v", j)
	}
	if len(r.Kill) != 1 {
		t.Fatalf("%d kills, want 1", len(r.Kill))
	}
	if k := r.Kill[0]; k.Err != "" || k.Gossip != gossipFast || k.VictimKeys <= 0 || k.DetectSecs <= 0 || k.SafeSecs < k.DetectSecs || k.Before.Ops == 0 {
		t.Errorf("kill %+v", k)
	}
}
