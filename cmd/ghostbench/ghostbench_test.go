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

// TestSmoke runs ghostbench for a second or two against GhostDB alone and
// checks that it prints a table and writes JSON that parses.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	cmd := exec.CommandContext(ctx, os.Args[0], "-targets", "ghost", "-nodes", "2", "-keys", "1000",
		"-conc", "2", "-duration", "300ms", "-warmup", "100ms", "-passes", "1", "-json", jsonPath)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ghostbench: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"| target | scenario | c |",
		"| GhostDB | forwarded get/set 9:1 | 2 |",
		"| GhostDB | owner-local get only | 2 |",
		"| sync.Map | get only (floor) | 2 |",
		"n/a (no batch API yet)",
		"SKIP forwarded Get/Put",
		"owner-local Get ≤ 2× sync.Map Get",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "cell") {
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
	if r.Meta.Nodes != 2 || len(r.Checks) == 0 {
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
