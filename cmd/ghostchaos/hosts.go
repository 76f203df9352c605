package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The hosts: one network namespace per host, each with one veth link to a
// bridge in a namespace of its own, so the suite adds nothing to the root
// namespace but the namespaces' names. Every name starts with the run's
// prefix, "gchaos-PID-", which -cleanup looks for. A host's namespace has
// its loopback and eth0 on the suite's subnet, and no other route: its
// processes cannot reach anything but the other hosts.

// namePrefix starts the name of every namespace the suite makes.
const namePrefix = "gchaos-"

// cmdTimeout bounds one ip, tc or iptables command.
const cmdTimeout = 20 * time.Second

// host is one namespace with a node's address.
type host struct {
	num  int        // from 1
	ns   string     // namespace name
	ip   netip.Addr // on eth0
	veth string     // the bridge's end of its link, in the bridge namespace
}

// addr is the node's address on this host.
func (h *host) addr() string { return netip.AddrPortFrom(h.ip, nodePort).String() }

func (h *host) String() string { return "host" + strconv.Itoa(h.num) }

// network is the set of hosts the suite built.
type network struct {
	prefix string // every namespace's name starts with it
	subnet netip.Prefix
	bridge string // namespace of the bridge
	hosts  []*host
	guard  *addrGuard
	netem  bool // the kernel has the netem qdisc
}

// runPrefix is the name prefix of this process's namespaces.
func runPrefix() string { return fmt.Sprintf("%s%d-", namePrefix, os.Getpid()) }

// hostIP is address num of subnet.
func hostIP(subnet netip.Prefix, num int) (netip.Addr, error) {
	b := subnet.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	size := uint64(1) << (32 - subnet.Bits())
	if num < 1 || uint64(num) >= size-1 {
		return netip.Addr{}, fmt.Errorf("subnet %s has no room for host %d", subnet, num)
	}
	v += uint32(num)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// planNetwork names the hosts and their addresses and builds their guard,
// without touching the system.
func planNetwork(prefix string, subnet netip.Prefix, count int) (*network, error) {
	nw := &network{prefix: prefix, subnet: subnet.Masked(), bridge: prefix + "br"}
	var ips []netip.Addr
	for i := 1; i <= count; i++ {
		ip, err := hostIP(subnet, i)
		if err != nil {
			return nil, err
		}
		nw.hosts = append(nw.hosts, &host{num: i, ns: fmt.Sprintf("%sh%d", prefix, i), ip: ip, veth: fmt.Sprintf("veth%d", i)})
		ips = append(ips, ip)
	}
	var err error
	if nw.guard, err = newAddrGuard(nw.subnet, ips); err != nil {
		return nil, err
	}
	return nw, nil
}

// build creates the namespaces, the bridge and the links. On error it
// removes what it made.
func (nw *network) build(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			nw.destroy()
		}
	}()
	steps := [][]string{
		{"ip", "netns", "add", nw.bridge},
		{"ip", "-n", nw.bridge, "link", "set", "lo", "up"},
		{"ip", "-n", nw.bridge, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", nw.bridge, "link", "set", "br0", "up"},
	}
	for _, h := range nw.hosts {
		steps = append(steps,
			[]string{"ip", "netns", "add", h.ns},
			[]string{"ip", "-n", nw.bridge, "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
			[]string{"ip", "-n", nw.bridge, "link", "set", h.veth, "master", "br0", "up"},
			[]string{"ip", "-n", h.ns, "addr", "add", netip.PrefixFrom(h.ip, nw.subnet.Bits()).String(), "dev", "eth0"},
			[]string{"ip", "-n", h.ns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", h.ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if _, err := runCmd(ctx, s...); err != nil {
			return err
		}
	}
	for _, h := range nw.hosts {
		if err := nw.checkRoutes(ctx, h); err != nil {
			return err
		}
	}
	nw.netem = nw.probeNetem(ctx)
	return nil
}

// checkRoutes asserts that a host can reach its subnet and nothing else.
func (nw *network) checkRoutes(ctx context.Context, h *host) error {
	out, err := runCmd(ctx, "ip", "-n", h.ns, "route", "show", "table", "all")
	if err != nil {
		return err
	}
	if err := routesStayIn(nw.subnet, out); err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	return nil
}

// routesStayIn checks the output of "ip route show table all": every
// route must lead to subnet, loopback, or IPv6 link-local or multicast
// addresses on the bridge. A default route, or any other, is refused.
func routesStayIn(subnet netip.Prefix, routes string) error {
	for line := range strings.Lines(routes) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		switch dst {
		case "local", "broadcast", "multicast", "anycast", "unreachable", "blackhole", "prohibit", "throw":
			if len(f) < 2 {
				return fmt.Errorf("route %q: cannot tell where it goes", strings.TrimSpace(line))
			}
			dst = f[1]
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			ip, err := netip.ParseAddr(dst)
			if err != nil {
				return fmt.Errorf("route %q leads outside the suite's subnet %s", strings.TrimSpace(line), subnet)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		a := p.Addr()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || subnet.Contains(a) && p.Bits() >= subnet.Bits() {
			continue
		}
		return fmt.Errorf("route %q leads outside the suite's subnet %s", strings.TrimSpace(line), subnet)
	}
	return nil
}

// probeNetem reports whether the kernel has the netem qdisc.
func (nw *network) probeNetem(ctx context.Context) bool {
	veth := nw.hosts[0].veth
	if _, err := runCmd(ctx, "ip", "netns", "exec", nw.bridge, "tc", "qdisc", "add", "dev", veth, "root", "netem", "delay", "1ms"); err != nil {
		return false
	}
	_, _ = runCmd(ctx, "ip", "netns", "exec", nw.bridge, "tc", "qdisc", "del", "dev", veth, "root")
	return true
}

// destroy kills every process left in the run's namespaces and deletes
// them, which removes their links, rules and qdiscs too. It uses a context
// of its own: it runs when the run's has ended.
func (nw *network) destroy() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	removeNamespaces(ctx, nw.prefix)
}

// removeNamespaces removes every namespace whose name starts with prefix,
// killing the processes inside first, and returns the names removed.
func removeNamespaces(ctx context.Context, prefix string) []string {
	out, err := runCmd(ctx, "ip", "netns", "list")
	if err != nil {
		return nil
	}
	var removed []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		ns := f[0]
		if pids, err := runCmd(ctx, "ip", "netns", "pids", ns); err == nil {
			for p := range strings.FieldsSeq(pids) {
				if pid, err := strconv.Atoi(p); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if _, err := runCmd(ctx, "ip", "netns", "del", ns); err == nil {
			removed = append(removed, ns)
		}
	}
	return removed
}

// cleanupLeftovers removes the namespaces of earlier runs whose process is
// gone (or all of them, with force), for -cleanup.
func cleanupLeftovers(ctx context.Context, force bool) ([]string, error) {
	out, err := runCmd(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	runs := map[string]bool{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], namePrefix) {
			continue
		}
		pidText, _, ok := strings.Cut(strings.TrimPrefix(f[0], namePrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil {
			continue // not a name this suite makes
		}
		if !force && pid != os.Getpid() && processAlive(pid) {
			continue // a run still going
		}
		runs[namePrefix+pidText+"-"] = true
	}
	var removed []string
	for prefix := range runs {
		removed = append(removed, removeNamespaces(ctx, prefix)...)
	}
	return append(removed, removeTempDirs(force)...), nil
}

// tempPrefix starts the name of the run's directory for its node file.
func tempPrefix() string { return fmt.Sprintf("ghostchaos-%d-", os.Getpid()) }

// nodeFileName is the node file in that directory.
const nodeFileName = "nodes.conf"

// removeTempDirs removes the node-file directories of runs that are gone
// (or of all, with force), as a killed run leaves them: only directories
// named by tempPrefix that hold nothing but a node file.
func removeTempDirs(force bool) []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "ghostchaos-*-*"))
	var removed []string
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "ghostchaos-"), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || !force && (pid == os.Getpid() || processAlive(pid)) {
			continue
		}
		entries, err := os.ReadDir(d)
		if err != nil || len(entries) > 1 || len(entries) == 1 && entries[0].Name() != nodeFileName {
			continue
		}
		if os.RemoveAll(d) == nil {
			removed = append(removed, d)
		}
	}
	return removed
}

// processAlive reports whether a ghostchaos process has this pid.
func processAlive(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.Contains(string(comm), "ghostchaos")
}

// runCmd runs a command and returns its standard output; the error carries
// its standard error.
func runCmd(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	return runCmdInput(ctx, nil, args...)
}

func runCmdInput(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.String(), fmt.Errorf("%s: %s", strings.Join(args, " "), msg)
	}
	return stdout.String(), nil
}

// errNotRoot is the suite's refusal to run without root.
var errNotRoot = errors.New("needs root: it creates network namespaces, links, iptables rules and qdiscs (try: sudo go run ./cmd/ghostchaos -short)")

// checkSystem checks for root and the tools the suite uses.
func checkSystem(euid int, lookPath func(string) (string, error)) error {
	if !onLinux {
		return errors.New("needs Linux: its hosts are network namespaces")
	}
	if euid != 0 {
		return errNotRoot
	}
	var missing []string
	for _, tool := range []string{"ip", "tc", "iptables-restore"} {
		if _, err := lookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("needs %s on PATH (Debian: apt-get install iproute2 iptables)", strings.Join(missing, ", "))
	}
	return nil
}
