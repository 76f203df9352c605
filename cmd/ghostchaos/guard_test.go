package main

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func testGuard(t *testing.T) *addrGuard {
	t.Helper()
	g, err := newAddrGuard(netip.MustParsePrefix("10.199.7.0/24"),
		[]netip.Addr{netip.MustParseAddr("10.199.7.2"), netip.MustParseAddr("10.199.7.1")})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGuardAcceptsOnlyItsHosts(t *testing.T) {
	g := testGuard(t)
	for _, a := range []string{"10.199.7.1", "10.199.7.2:7991", "[::ffff:10.199.7.1]:7991"} {
		if err := g.check(a); err != nil {
			t.Errorf("check(%q) = %v, want nil", a, err)
		}
	}
	for _, a := range []string{
		"10.199.7.3",        // in the subnet, not a host
		"10.199.7.1:7992",   // a host, another port
		"127.0.0.1:7991",    // loopback is not a host of the suite
		"8.8.8.8",           // the world
		"example.com:7991",  // names are never resolved
		"10.199.7.1:bad",    // garbage port
		"",                  // nothing
		"[fd00::1]:7991",    // IPv6
		"10.199.8.1:7991",   // the next subnet
		"10.199.7.1 :7991",  // a space
		"0.0.0.0:7991",      // unspecified
		"10.199.7.255:7991", // broadcast
	} {
		if err := g.check(a); !errors.Is(err, errForeignAddr) {
			t.Errorf("check(%q) = %v, want errForeignAddr", a, err)
		}
	}
	if err := g.checkAll([]string{"10.199.7.1:7991", "10.0.0.1:7991"}); !errors.Is(err, errForeignAddr) {
		t.Errorf("checkAll let 10.0.0.1 pass: %v", err)
	}
}

func TestGuardRefusesBadSubnets(t *testing.T) {
	ip := netip.MustParseAddr
	for _, c := range []struct {
		subnet string
		hosts  []netip.Addr
	}{
		{"8.8.8.0/24", []netip.Addr{ip("8.8.8.1")}},       // public
		{"127.0.0.0/8", []netip.Addr{ip("127.0.0.2")}},    // loopback
		{"fd00::/64", []netip.Addr{ip("fd00::1")}},        // IPv6
		{"10.199.7.0/24", []netip.Addr{ip("10.199.8.1")}}, // host outside
		{"10.199.7.0/24", []netip.Addr{ip("10.199.7.0")}}, // the network address
		{"10.199.7.0/24", nil},                            // no hosts
	} {
		if _, err := newAddrGuard(netip.MustParsePrefix(c.subnet), c.hosts); err == nil {
			t.Errorf("newAddrGuard(%s, %v) accepted", c.subnet, c.hosts)
		}
	}
}

func TestCheckNodeFile(t *testing.T) {
	g := testGuard(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	mustOK(t, os.WriteFile(good, []byte("# hosts\n10.199.7.1\n\n10.199.7.2 # two\n"), 0o644))
	if err := checkNodeFile(good, g); err != nil {
		t.Errorf("good node file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	mustOK(t, os.WriteFile(bad, []byte("10.199.7.1\n192.168.1.1\n"), 0o644))
	if err := checkNodeFile(bad, g); !errors.Is(err, errForeignAddr) {
		t.Errorf("node file naming 192.168.1.1: %v, want errForeignAddr", err)
	}
	if err := checkNodeFile(filepath.Join(dir, "missing"), g); err == nil {
		t.Error("a missing node file passed")
	}
}
