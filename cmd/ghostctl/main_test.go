package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/ghostdb/ghost/internal/poll"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// As in the root package: memberlist does not wait for a probe under way.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

// startCluster starts size nodes on 127.0.0.1, each joining the first, and
// waits until each lists all of them. They leave when the test ends.
func startCluster(t *testing.T, size int, tune ...func(*ghost.Config)) []*ghost.Node {
	t.Helper()
	var nodes []*ghost.Node
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
	})
	for i := range size {
		cfg := ghost.Config{Addr: "127.0.0.1:0", RejoinInterval: 100 * time.Millisecond, RequestTimeout: 5 * time.Second}
		if i > 0 {
			cfg.Peers = []string{nodes[0].Addr()}
		}
		for _, f := range tune {
			f(&cfg)
		}
		n, err := ghost.Join(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		nodes = append(nodes, n)
	}
	poll.Until(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if got := len(n.Members()); got != size {
				return fmt.Errorf("%s lists %d members, want %d", n.Addr(), got, size)
			}
		}
		return nil
	})
	return nodes
}

// result is what one run of ghostctl did.
type result struct {
	code           int
	stdout, stderr string
}

func ctl(args ...string) result {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// must runs ghostctl and checks its exit status.
func must(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := ctl(args...)
	if r.code != code {
		t.Fatalf("ghostctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

func TestKeyCommands(t *testing.T) {
	nodes := startCluster(t, 3)
	t.Run("values", func(t *testing.T) { testValues(t, nodes) })
	t.Run("outcomes", func(t *testing.T) { testOutcomes(t, nodes[0].Addr()) })
	t.Run("TTL and flush", func(t *testing.T) { testTTLAndFlush(t, nodes) })
}

// testValues puts values of every kind and reads them in Go and back.
func testValues(t *testing.T, nodes []*ghost.Node) {
	addr := nodes[0].Addr()
	for _, tc := range []struct {
		value string
		want  any // as the Go API reads it
	}{
		{`{"name": "Ada", "langs": ["en", "fr"]}`, map[string]any{"name": "Ada", "langs": []any{"en", "fr"}}},
		{`42`, int64(42)},
		{`-5`, int64(-5)},
		{`1.5`, 1.5},
		{`true`, true},
		{`"quoted"`, "quoted"},
		{`hello world`, "hello world"},
		{`{not json`, "{not json"},
		{``, ""},
	} {
		key := "user:" + tc.value
		if r := must(t, 0, "-addr", addr, "put", key, tc.value); r.stdout != "STORED\n" {
			t.Errorf("put %s: %q", tc.value, r.stdout)
		}
		for _, n := range nodes {
			it, err := n.Get(context.Background(), key)
			if err != nil || !reflect.DeepEqual(it.Value, tc.want) {
				t.Errorf("put %s, read in Go on %s: %#v %v, want %#v", tc.value, n.Addr(), it.Value, err, tc.want)
			}
		}
		r := must(t, 0, "get", key, "-addr", nodes[2].Addr())
		var got any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Errorf("get %s printed %q: not JSON", key, r.stdout)
		}
	}
	// A value that looks like a flag goes after --.
	must(t, 0, "-addr", addr, "put", "dash", "--", "-hello-")
	if r := must(t, 0, "-addr", addr, "get", "dash"); r.stdout != "\"-hello-\"\n" {
		t.Errorf("get dash: %q", r.stdout)
	}
	// -json prints the node's reply.
	r := must(t, 0, "-json", "-addr", addr, "get", "user:42")
	var rep struct {
		Gobj    struct{ Key, Value any }
		Status  int
		Message string
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Status != 1 || rep.Message != "OK" || rep.Gobj.Value != 42.0 {
		t.Errorf("-json get: %q (%v)", r.stdout, err)
	}
}

// testOutcomes checks the words and exit statuses of the cache's answers,
// and of an error a node reports.
func testOutcomes(t *testing.T, addr string) {
	must(t, 0, "-addr", addr, "add", "fresh", "1")
	for _, tc := range []struct {
		args []string
		word string
	}{
		{[]string{"add", "fresh", "2"}, "NOT_STORED"},
		{[]string{"get", "never-put"}, "CACHE_MISS"},
		{[]string{"delete", "never-put"}, "NOT_FOUND"},
	} {
		r := must(t, 1, append([]string{"-addr", addr}, tc.args...)...)
		if r.stderr != tc.word+"\n" || r.stdout != "" {
			t.Errorf("%v: stdout %q stderr %q, want %s on stderr", tc.args, r.stdout, r.stderr, tc.word)
		}
	}
	if r := must(t, 0, "-addr", addr, "delete", "fresh"); r.stdout != "REMOVED\n" {
		t.Errorf("delete: %q", r.stdout)
	}
	// Errors the node reports: exit status 2, with its words.
	key := strings.Repeat("k", ghost.MaxKeyLen+1)
	if r := must(t, 2, "-addr", addr, "get", key); !strings.Contains(r.stderr, "KEY_ERR") {
		t.Errorf("long key: %q", r.stderr)
	}
}

// testTTLAndFlush checks that -ttl reaches the node and flush empties
// every node.
func testTTLAndFlush(t *testing.T, nodes []*ghost.Node) {
	addr := nodes[0].Addr()
	must(t, 0, "-addr", addr, "put", "short", "v", "-ttl", "1s")
	must(t, 0, "-addr", addr, "add", "long", "v", "-ttl", "1h")
	must(t, 0, "-addr", addr, "put", "forever", "v", "-ttl", "never")
	poll.Until(t, 10*time.Second, func() error {
		if r := ctl("-addr", addr, "get", "short"); r.code != 1 {
			return fmt.Errorf("short still there: exit %d", r.code)
		}
		return nil
	})
	must(t, 0, "-addr", addr, "get", "long")
	must(t, 0, "-addr", addr, "get", "forever")
	if r := must(t, 0, "-addr", addr, "flush"); r.stdout != "FLUSHED\n" {
		t.Errorf("flush: %q", r.stdout)
	}
	for _, n := range nodes {
		if _, err := n.Get(context.Background(), "long"); !errors.Is(err, ghost.ErrCacheMiss) {
			t.Errorf("after flush, %s: %v", n.Addr(), err)
		}
	}
}

func TestMembersAndPing(t *testing.T) {
	nodes := startCluster(t, 3)
	var want []string
	for _, n := range nodes {
		want = append(want, n.Addr())
	}
	slices.Sort(want)
	r := must(t, 0, "-addr", nodes[1].Addr(), "members")
	for _, addr := range want {
		if !strings.Contains(r.stdout, addr) {
			t.Errorf("members does not list %s:\n%s", addr, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, nodes[1].Addr()+" *") || strings.Count(r.stdout, "alive") != 3 {
		t.Errorf("members:\n%s", r.stdout)
	}
	var ms []member
	r = must(t, 0, "-addr", nodes[1].Addr(), "-json", "members")
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil || len(ms) != 3 {
		t.Fatalf("-json members: %q %v", r.stdout, err)
	}
	for i, m := range ms {
		if m.Addr != want[i] || m.State != "alive" || m.Self != (m.Addr == nodes[1].Addr()) {
			t.Errorf("-json members[%d]: %+v", i, m)
		}
	}

	r = must(t, 0, "-addr", nodes[0].Addr(), "ping")
	if strings.Count(r.stdout, " OK ") != 3 {
		t.Errorf("ping:\n%s", r.stdout)
	}
	// A member without the HTTP gateway cannot be pinged from here.
	quiet := startClusterMember(t, nodes[0], func(c *ghost.Config) { c.DisableHTTP = true })
	poll.Until(t, 10*time.Second, func() error {
		if got := len(nodes[0].Members()); got != 4 {
			return fmt.Errorf("%d members", got)
		}
		return nil
	})
	r = must(t, 2, "-addr", nodes[0].Addr(), "ping")
	if !strings.Contains(r.stdout, quiet.Addr()+"  ") || !strings.Contains(r.stdout, "DOWN") || !strings.Contains(r.stderr, "1 of 4 members did not answer") {
		t.Errorf("ping with a member without HTTP:\n%s%s", r.stdout, r.stderr)
	}
	var results []pingResult
	r = must(t, 2, "-json", "-addr", nodes[0].Addr(), "ping")
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil || len(results) != 4 {
		t.Fatalf("-json ping: %q %v", r.stdout, err)
	}
}

// startClusterMember starts one more node that joins seed.
func startClusterMember(t *testing.T, seed *ghost.Node, tune func(*ghost.Config)) *ghost.Node {
	t.Helper()
	cfg := ghost.Config{Addr: "127.0.0.1:0", Peers: []string{seed.Addr()}, RejoinInterval: 100 * time.Millisecond}
	tune(&cfg)
	n, err := ghost.Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestStatsAndTop(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	for i := range 30 {
		if err := nodes[i%3].Put(ctx, fmt.Sprint("stats-", i), i, ghost.NoExpiry); err != nil {
			t.Fatal(err)
		}
		_, _ = nodes[i%3].Get(ctx, fmt.Sprint("stats-", i))
		_, _ = nodes[i%3].Get(ctx, fmt.Sprint("missing-", i))
	}
	addr := nodes[0].Addr()
	r := must(t, 0, "-addr", addr, "stats")
	lines := strings.Split(r.stdout, "\n")
	if len(lines) < 5 || !strings.Contains(lines[0], "PAIRS") || !strings.Contains(lines[0], "REQ/S") || !strings.Contains(lines[0], "HEAP") {
		t.Fatalf("stats:\n%s", r.stdout)
	}
	for _, n := range nodes {
		if !strings.Contains(r.stdout, n.Addr()) {
			t.Errorf("stats does not list %s:\n%s", n.Addr(), r.stdout)
		}
	}
	if total := strings.Fields(lines[4]); len(total) < 5 || total[0] != "total" || total[1] != "60" || total[4] != "50.0%" {
		t.Errorf("stats total line %q: want 60 pairs (30, each with a backup) and 50.0%% hits\n%s", lines[4], r.stdout)
	}

	var ns []nodeStats
	r = must(t, 0, "-json", "-addr", addr, "stats")
	if err := json.Unmarshal([]byte(r.stdout), &ns); err != nil || len(ns) != 3 {
		t.Fatalf("-json stats: %q %v", r.stdout, err)
	}
	var pairs int64
	for _, m := range ns {
		pairs += m.Pairs
		if m.OpsPerSec == nil || m.HitRatio == nil || m.HeapBytes == 0 || m.Gets == 0 {
			t.Errorf("-json stats: %+v", m)
		}
	}
	if pairs != 60 { // 30 pairs, each with a backup
		t.Errorf("-json stats: %d pairs, want 60", pairs)
	}

	r = must(t, 0, "-addr", addr, "top", "-n", "2", "-interval", "100ms")
	if n := strings.Count(r.stdout, "ghostctl top"); n != 2 || strings.Count(r.stdout, "total") != 2 {
		t.Errorf("top -n 2 drew %d frames:\n%s", n, r.stdout)
	}
	r = must(t, 0, "-json", "-addr", addr, "top", "-n", "3", "-interval", "100ms")
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for i := range 3 {
		var d clusterData
		if err := dec.Decode(&d); err != nil || len(d.Members) != 3 || d.Node != addr {
			t.Fatalf("-json top frame %d: %+v %v", i, d, err)
		}
	}
}

func TestNodesFile(t *testing.T) {
	nodes := startCluster(t, 3)
	if err := nodes[0].Put(context.Background(), "k", "v", ghost.NoExpiry); err != nil {
		t.Fatal(err)
	}
	dead := closedAddr(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "nodes.conf")
	text := "# a dead node first, then a live one\n" + dead + "\n" + nodes[1].Addr() + "  # live\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := must(t, 0, "-nodes", file, "get", "k"); r.stdout != "\"v\"\n" {
		t.Errorf("get through the node file: %q", r.stdout)
	}
	must(t, 0, "-nodes", file, "stats")

	deadOnly := filepath.Join(dir, "dead.conf")
	if err := os.WriteFile(deadOnly, []byte(dead+"\n"+closedAddr(t)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := must(t, 2, "-nodes", deadOnly, "get", "k"); !strings.Contains(r.stderr, "no node answered") || !strings.Contains(r.stderr, dead) {
		t.Errorf("only dead nodes: %q", r.stderr)
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("10.0.0.7:99999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := must(t, 2, "-nodes", bad, "members"); !strings.Contains(r.stderr, "bad.conf:1") {
		t.Errorf("bad node file: %q", r.stderr)
	}
	if r := must(t, 2, "-nodes", filepath.Join(dir, "missing.conf"), "members"); !strings.Contains(r.stderr, "missing.conf") {
		t.Errorf("missing node file: %q", r.stderr)
	}
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestToken(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		fmt.Fprint(w, `{"Gobj": {"Key": "k", "Value": 1}, "Status": 1, "Message": "OK"}`)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	must(t, 0, "-addr", addr, "-token", "s3cret", "get", "k")
	must(t, 0, "-addr", addr, "get", "k")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []string{"Bearer s3cret", ""}) {
		t.Errorf("Authorization headers %q", got)
	}
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "token required", http.StatusUnauthorized)
	}))
	defer refused.Close()
	if r := must(t, 2, "-addr", strings.TrimPrefix(refused.URL, "http://"), "get", "k"); !strings.Contains(r.stderr, "check -token") {
		t.Errorf("refused: %q", r.stderr)
	}
}

func TestUsage(t *testing.T) {
	r := must(t, 0, "-h")
	for _, want := range []string{"-addr", "-nodes", "-token", "-json", "-timeout", "-ttl", "-interval", "-n N",
		"members", "ping", "get KEY", "put KEY VALUE", "add KEY VALUE", "delete KEY", "flush", "stats", "top", "Exit status"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help does not mention %s", want)
		}
	}
	if help := must(t, 0, "help"); help.stdout != r.stdout {
		t.Error("ghostctl help differs from ghostctl -h")
	}
	dead := closedAddr(t)
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"get"}, "get wants KEY"},
		{[]string{"put", "k"}, "put wants KEY VALUE"},
		{[]string{"get", "a", "b"}, "get wants KEY"},
		{[]string{"flush", "now"}, "flush takes no arguments"},
		{[]string{"get", "k", "-ttl", "5m"}, "-ttl goes with put and add, not get"},
		{[]string{"stats", "-n", "3"}, "-n goes with top, not stats"},
		{[]string{"put", "k", "v", "-ttl", "1.5s"}, "whole number of seconds"},
		{[]string{"put", "k", "v", "-ttl", "0"}, "whole number of seconds"},
		{[]string{"-addr", "a:1", "-nodes", "f", "members"}, "-addr and -nodes: give one"},
		{[]string{"-addr", "10.0.0.7:99999", "members"}, "port \"99999\""},
		{[]string{"-frob", "members"}, "flag provided but not defined: -frob"},
		{[]string{"top", "-interval", "1ms"}, "-interval 1ms"},
		{[]string{"-addr", dead, "members"}, "cannot reach " + dead},
	} {
		r := must(t, 2, tc.args...)
		if !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("ghostctl %v: stderr %q (stdout %q), want %q", tc.args, r.stderr, r.stdout, tc.want)
		}
	}
}
