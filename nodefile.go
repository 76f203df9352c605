package ghost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The node list: one address per line, "#" starts a comment.

// maxNodeList bounds how much of a node list is read.
const maxNodeList = 1 << 20

// fetchTimeout bounds the download of a node list from a URL.
const fetchTimeout = 10 * time.Second

// loadSeeds reads cfg.PeersFile, when set, and adds cfg.Peers. Addresses
// come back as host:port, without duplicates, in the order given.
func loadSeeds(ctx context.Context, cfg Config) ([]string, error) {
	var seeds []string
	if cfg.PeersFile != "" {
		var err error
		if seeds, err = readNodeList(ctx, cfg.PeersFile); err != nil {
			return nil, err
		}
	}
	for i, p := range cfg.Peers {
		addr, err := parseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("ghost: Config.Peers[%d] %q: %w", i, p, err)
		}
		seeds = append(seeds, addr)
	}
	seen := make(map[string]bool, len(seeds))
	out := seeds[:0]
	for _, s := range seeds {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// ReadNodeList reads a node list in the format of Config.PeersFile, from
// a file path or an http:// or https:// URL, and returns its addresses as
// host:port, in order. Tools use it to find a cluster the way its nodes do.
func ReadNodeList(ctx context.Context, source string) ([]string, error) {
	return readNodeList(ctx, source)
}

// NodeAddr returns an address written as in a node list ("10.0.0.7",
// "10.0.0.7:7991", "[fd00::7]:7991", "cache-3.internal") as host:port; no
// port means DefaultPort.
func NodeAddr(s string) (string, error) {
	addr, err := parseAddr(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("ghost: address %q: %w", s, err)
	}
	return addr, nil
}

// readNodeList reads a node list from a file path or an http(s) URL.
func readNodeList(ctx context.Context, source string) ([]string, error) {
	var r io.Reader
	if strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://") {
		ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
		if err != nil {
			return nil, fmt.Errorf("ghost: node list %s: %w", source, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("ghost: node list %s: %w", source, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("ghost: node list %s: HTTP %s", source, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(source)
		if err != nil {
			return nil, fmt.Errorf("ghost: node list: %w", err)
		}
		defer f.Close()
		r = f
	}
	return parseNodeList(io.LimitReader(r, maxNodeList), source)
}

// parseNodeList parses a node list; source names it in errors.
func parseNodeList(r io.Reader, source string) ([]string, error) {
	var addrs []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		addr, err := parseAddr(text)
		if err != nil {
			return nil, fmt.Errorf("ghost: %s:%d: %q: %w", source, line, text, err)
		}
		addrs = append(addrs, addr)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ghost: node list %s: %w", source, err)
	}
	return addrs, nil
}

// parseAddr parses one node address: an IP, an IP and port, a bracketed
// IPv6 address and port, or a host name with or without a port. No port
// means DefaultPort.
func parseAddr(s string) (string, error) {
	if strings.ContainsAny(s, " \t") {
		return "", errors.New("one address per line, without spaces")
	}
	if ip := net.ParseIP(s); ip != nil {
		return net.JoinHostPort(ip.String(), strconv.Itoa(DefaultPort)), nil
	}
	host, port := s, strconv.Itoa(DefaultPort)
	if strings.HasPrefix(s, "[") || strings.Contains(s, ":") {
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", errors.New("not host:port, [IPv6]:port, an IP or a host name")
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
		port = strconv.Itoa(n) // one spelling per port: "+80" and "080" are 80
		if strings.HasPrefix(s, "[") {
			if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
				return "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
			}
		}
	}
	if ip := net.ParseIP(host); ip != nil {
		return net.JoinHostPort(ip.String(), port), nil
	}
	if !validHostName(host) {
		return "", fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return net.JoinHostPort(strings.ToLower(host), port), nil
}

func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
