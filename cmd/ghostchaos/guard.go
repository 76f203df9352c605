package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
)

// The address guard: the suite sends traffic only to the hosts it made.

// nodePort is the port every node listens on, as in the original GhostDB.
const nodePort = 7991

// errForeignAddr is the guard's refusal.
var errForeignAddr = errors.New("not one of the suite's hosts")

// addrGuard is the set of addresses the suite may reach: the IPs of the
// hosts it created, on a private subnet it owns. Every address a node is
// started on, finds in its node file or reports as a member passes through
// check, in the suite and in the node processes alike.
type addrGuard struct {
	subnet netip.Prefix
	hosts  []netip.Addr // sorted
}

// newAddrGuard returns the guard for hosts on subnet. The subnet must be
// private IPv4 (RFC 1918) and hold every host.
func newAddrGuard(subnet netip.Prefix, hosts []netip.Addr) (*addrGuard, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || !subnet.Addr().IsPrivate() {
		return nil, fmt.Errorf("subnet %s: want a private IPv4 subnet (10/8, 172.16/12, 192.168/16)", subnet)
	}
	if len(hosts) == 0 {
		return nil, errors.New("no hosts")
	}
	for _, h := range hosts {
		if !subnet.Contains(h) || h == subnet.Addr() {
			return nil, fmt.Errorf("host %s: not a host address of subnet %s", h, subnet)
		}
	}
	hosts = slices.Clone(hosts)
	slices.SortFunc(hosts, netip.Addr.Compare)
	return &addrGuard{subnet: subnet, hosts: slices.Compact(hosts)}, nil
}

// check accepts an IP or an IP:port of one of the hosts; the port, when
// given, must be nodePort.
func (g *addrGuard) check(addr string) error {
	host, port := addr, ""
	if h, p, err := net.SplitHostPort(addr); err == nil {
		host, port = h, p
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%q: %w (not an IP address)", addr, errForeignAddr)
	}
	ip = ip.Unmap()
	if _, found := slices.BinarySearchFunc(g.hosts, ip, netip.Addr.Compare); !found || !g.subnet.Contains(ip) {
		return fmt.Errorf("%s: %w (%s)", addr, errForeignAddr, g.subnet)
	}
	if port != "" && port != strconv.Itoa(nodePort) {
		return fmt.Errorf("%s: %w (port %s, want %d)", addr, errForeignAddr, port, nodePort)
	}
	return nil
}

// checkAll checks every address and returns the first refusal.
func (g *addrGuard) checkAll(addrs []string) error {
	for _, a := range addrs {
		if err := g.check(a); err != nil {
			return err
		}
	}
	return nil
}
