package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostdb/ghost"
)

func TestNodeFlagsRoundTrip(t *testing.T) {
	for _, ns := range []nodeSettings{
		{},
		{Replicas: 4},
		{Replicas: 3, TombstoneTTL: time.Second, MaxKeys: 300, CrawlerInterval: 200 * time.Millisecond, ClockOffset: 5 * time.Minute},
		{ClockOffset: -90 * time.Second},
	} {
		got, err := parseNodeFlags(ns.args(), io.Discard)
		if err != nil || got != ns {
			t.Errorf("%+v: args %q parsed as %+v, %v", ns, ns.args(), got, err)
		}
	}
	if a := (nodeSettings{}).args(); len(a) != 0 {
		t.Errorf("default settings render as %q, want no flags", a)
	}
	for _, bad := range [][]string{{"-replicas", "-1"}, {"-max-keys", "x"}, {"-clock-offset", "5"}, {"extra"}, {"-nonsense"}} {
		if _, err := parseNodeFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNodeSettingsOverAndApply(t *testing.T) {
	all := nodeSettings{Replicas: 4, CrawlerInterval: time.Second}
	one := all.over(nodeSettings{ClockOffset: 5 * time.Minute, Replicas: 3})
	if one != (nodeSettings{Replicas: 3, CrawlerInterval: time.Second, ClockOffset: 5 * time.Minute}) {
		t.Errorf("over: %+v", one)
	}
	var cfg ghost.Config
	one.apply(&cfg)
	if cfg.Replicas != 3 || cfg.CrawlerInterval != time.Second || cfg.Clock == nil {
		t.Fatalf("apply: %+v", cfg)
	}
	if ahead := time.Until(cfg.Clock()); ahead < 5*time.Minute-time.Second || ahead > 5*time.Minute+time.Second {
		t.Errorf("the node's clock is %v ahead, want 5m", ahead)
	}
	cfg = ghost.Config{}
	all.apply(&cfg)
	if cfg.Clock != nil {
		t.Error("a node without an offset got a clock of its own: leave the library's default")
	}
}

func TestScenarioSettingsAndRules(t *testing.T) {
	hosts := []*host{{num: 1}, {num: 2}, {num: 3}}
	sc := scenario{nodes: nodeSettings{MaxKeys: 300}, hosts: map[int]nodeSettings{2: {ClockOffset: -time.Minute}}}
	if s := sc.settings(hosts[1]); s.MaxKeys != 300 || s.ClockOffset != -time.Minute {
		t.Errorf("host2: %+v", s)
	}
	if s := sc.settings(hosts[0]); s.ClockOffset != 0 {
		t.Errorf("host1: %+v", s)
	}
	r := sc.ledgerRules(hosts)
	if !r.evictable || r.tolerance != baseTolerance+time.Minute {
		t.Errorf("rules %+v: want evictable, tolerance widened by the 1m offset", r)
	}
	if r := (scenario{}).ledgerRules(hosts); r.evictable || r.tolerance != baseTolerance {
		t.Errorf("default rules %+v", r)
	}
}

func TestShortLeavesLongScenariosOut(t *testing.T) {
	short, err := pickScenarios("", true)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := pickScenarios("", false)
	for _, want := range []string{"majority", "longsplit"} {
		if !slices.Contains(short, want) {
			t.Errorf("-short lacks %s: %v", want, short)
		}
	}
	if slices.Contains(short, "skew") || !slices.Contains(full, "skew") {
		t.Errorf("skew: short %v, full %v", short, full)
	}
	if named, err := pickScenarios("skew", true); err != nil || strings.Join(named, ",") != "skew" {
		t.Errorf("-short -scenarios skew: %v, %v", named, err)
	}
}
