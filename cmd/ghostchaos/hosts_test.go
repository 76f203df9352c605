package main

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanNetwork(t *testing.T) {
	nw, err := planNetwork("gchaos-42-", netip.MustParsePrefix("10.199.7.0/24"), 6)
	if err != nil {
		t.Fatal(err)
	}
	if nw.bridge != "gchaos-42-br" || len(nw.hosts) != 6 {
		t.Fatalf("bridge %q, %d hosts", nw.bridge, len(nw.hosts))
	}
	h := nw.hosts[5]
	if h.num != 6 || h.ns != "gchaos-42-h6" || h.ip.String() != "10.199.7.6" || h.veth != "veth6" || h.addr() != "10.199.7.6:7991" {
		t.Errorf("host 6 = %+v, addr %s", h, h.addr())
	}
	for _, h := range nw.hosts {
		if err := nw.guard.check(h.addr()); err != nil {
			t.Errorf("the guard refuses its own host: %v", err)
		}
		if !strings.HasPrefix(h.ns, "gchaos-42-") || len(h.veth) > 15 {
			t.Errorf("host %v: namespace %q, veth %q", h, h.ns, h.veth)
		}
	}
	if _, err := planNetwork("x-", netip.MustParsePrefix("10.199.7.0/30"), 3); err == nil {
		t.Error("3 hosts fit in a /30")
	}
	if _, err := planNetwork("x-", netip.MustParsePrefix("100.64.0.0/24"), 3); err == nil {
		t.Error("a subnet that is not RFC 1918 was accepted")
	}
}

func TestRoutesStayIn(t *testing.T) {
	subnet := netip.MustParsePrefix("10.199.7.0/24")
	good := `10.199.7.0/24 dev eth0 proto kernel scope link src 10.199.7.1
local 10.199.7.1 dev eth0 table local proto kernel scope host src 10.199.7.1
broadcast 10.199.7.255 dev eth0 table local proto kernel scope link src 10.199.7.1
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1
::1 dev lo proto kernel metric 256 pref medium
fe80::/64 dev eth0 proto kernel metric 256 pref medium
local ::1 dev lo table local proto kernel metric 0 pref medium
local fe80::a0b1:c2ff:fed3:e4f5 dev eth0 table local proto kernel metric 0 pref medium
multicast ff00::/8 dev eth0 table local proto kernel metric 256 pref medium
`
	if err := routesStayIn(subnet, good); err != nil {
		t.Errorf("a host's own routes refused: %v", err)
	}
	for _, bad := range []string{
		"default via 10.199.7.254 dev eth0",
		"10.0.0.0/8 dev eth0 scope link",
		"10.199.0.0/16 dev eth0 scope link", // wider than the subnet
		"192.168.1.0/24 via 10.199.7.9 dev eth0",
		"default via fe80::1 dev eth0 proto ra",
		"2001:db8::/32 dev eth0",
		"unreachable default",
	} {
		if err := routesStayIn(subnet, good+bad+"\n"); err == nil {
			t.Errorf("route %q accepted", bad)
		}
	}
}

func TestCheckSystem(t *testing.T) {
	found := func(string) (string, error) { return "/usr/sbin/x", nil }
	if err := checkSystem(1000, found); !errors.Is(err, errNotRoot) {
		t.Errorf("not root: %v, want errNotRoot", err)
	}
	if !strings.Contains(errNotRoot.Error(), "needs root") {
		t.Errorf("the refusal does not say why: %v", errNotRoot)
	}
	if err := checkSystem(0, found); err != nil {
		t.Errorf("root with every tool: %v", err)
	}
	noTC := func(name string) (string, error) {
		if name == "iptables-restore" {
			return "", errors.New("not found")
		}
		return "/usr/sbin/" + name, nil
	}
	if err := checkSystem(0, noTC); err == nil || !strings.Contains(err.Error(), "iptables-restore") {
		t.Errorf("missing iptables-restore: %v", err)
	}
}

func TestRulesScript(t *testing.T) {
	ip := netip.MustParseAddr
	got := hostRules{
		dropFrom: []netip.Addr{ip("10.199.7.1")},
		dropTo:   []netip.Addr{ip("10.199.7.2")},
		lossPct:  5,
		queue:    7,
	}.script()
	want := `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 10.199.7.1/32 -j DROP
-A OUTPUT -d 10.199.7.2/32 -j DROP
-A INPUT -i eth0 -m statistic --mode random --probability 0.05 -j DROP
-A OUTPUT -o eth0 -m statistic --mode random --probability 0.05 -j DROP
-A INPUT -i eth0 -j NFQUEUE --queue-num 7 --queue-bypass
-A OUTPUT -o eth0 -j NFQUEUE --queue-num 7 --queue-bypass
COMMIT
`
	if got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
	if empty := (hostRules{}).script(); strings.Contains(empty, "-A ") {
		t.Errorf("healed rules still hold a rule:\n%s", empty)
	}
	im := impairment{lossPct: 2.5, delay: 20 * 1e6}
	if a := strings.Join(im.netemArgs(), " "); a != "netem delay 20000us loss 2.5%" {
		t.Errorf("netem args %q", a)
	}
}

func TestRemoveTempDirs(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	mk := func(name string, files ...string) string {
		d := filepath.Join(os.TempDir(), name)
		mustOK(t, os.Mkdir(d, 0o755))
		for _, f := range files {
			mustOK(t, os.WriteFile(filepath.Join(d, f), nil, 0o644))
		}
		return d
	}
	dead := mk("ghostchaos-999999999-1", nodeFileName) // no such process
	mine := mk(tempPrefix()+"1", nodeFileName)         // this process: still running
	other := mk("ghostchaos-999999999-2", nodeFileName, "more")
	named := mk("ghostchaos-notapid-3", nodeFileName)
	removed := removeTempDirs(false)
	if len(removed) != 1 || removed[0] != dead {
		t.Errorf("removed %q, want only %q", removed, dead)
	}
	for _, d := range []string{mine, other, named} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
}
