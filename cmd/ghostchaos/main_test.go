package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	o, cleanup, _, _, err := parseFlags([]string{"-short", "-scenarios", "kill, split"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cleanup || o.hosts != 5 || !o.short || o.timing.Fault != 4*time.Second || strings.Join(o.scenarios, ",") != "kill,split" {
		t.Errorf("options %+v", o)
	}
	if o, _, _, _, _ := parseFlags(nil, &stderr); len(o.scenarios) != len(scenarios) || o.timing.Fault != 20*time.Second {
		t.Errorf("defaults: %d scenarios, timing %+v", len(o.scenarios), o.timing)
	}
	for _, bad := range [][]string{
		{"-scenarios", "kill,meteor"},
		{"-hosts", "2"},
		{"-subnet", "nonsense"},
		{"-loss", "100"},
		{"-keys", "0"},
		{"extra"},
	} {
		if _, _, _, _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRunWithoutTheSystem(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-list"}, &stdout, &stderr); code != exitPass {
		t.Errorf("-list: exit %d", code)
	}
	for _, sc := range scenarios {
		if !strings.Contains(stdout.String(), sc.name) {
			t.Errorf("-list lacks %s", sc.name)
		}
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"-hosts", "1"}, &stdout, &stderr); code != exitCannot || !strings.Contains(stderr.String(), "-hosts") {
		t.Errorf("-hosts 1: exit %d, %q", code, stderr.String())
	}
}

func TestScenarioNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range scenarios {
		if seen[sc.name] || sc.name == "" || sc.about == "" || sc.fault == nil {
			t.Errorf("scenario %q: duplicate or incomplete", sc.name)
		}
		seen[sc.name] = true
	}
}
