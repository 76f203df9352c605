package ghost

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseNodeList(t *testing.T) {
	good := "10.0.0.7\n10.0.0.8:7000\n[fd00::7]:7991\nfd00::8\n\n  # a comment\ncache-1.example.internal\ncache-2:8000 # trailing comment\n"
	got, err := parseNodeList(strings.NewReader(good), "nodes.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.7:7991", "10.0.0.8:7000", "[fd00::7]:7991", "[fd00::8]:7991", "cache-1.example.internal:7991", "cache-2:8000"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{
		"10.0.0.7:",
		"10.0.0.7:abc",
		"10.0.0.7:70000",
		"10.0.0.7:0",
		"[fd00::7",
		"[10.0.0.7]:7991",
		"two words",
		"bad_host!name",
		"-leading-dash",
		"a:b:c:d:zz",
	} {
		_, err := parseNodeList(strings.NewReader("10.0.0.1\n\n"+bad+"\n"), "nodes.conf")
		if err == nil || !strings.Contains(err.Error(), "nodes.conf:3") {
			t.Errorf("line %q: err %v, want one naming nodes.conf:3", bad, err)
		}
	}
}

func TestNodeListLinesAreBounded(t *testing.T) {
	long := "10.0.0.1\n" + strings.Repeat("a.", 40000) + "\n"
	if _, err := parseNodeList(strings.NewReader(long), "nodes.conf"); err == nil {
		t.Fatal("a line of 80,000 bytes was taken")
	}
}

func TestJoinRejectsMalformedNodeList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gdb.conf")
	os.WriteFile(file, []byte("127.0.0.1\n127.0.0.1:notaport\n"), 0o644)
	cfg := testConfig(NewMemNetwork())
	cfg.PeersFile = file
	_, err := Join(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), file+":2") {
		t.Fatalf("Join: %v, want an error naming %s:2", err, file)
	}
	cfg.PeersFile = filepath.Join(t.TempDir(), "missing.conf")
	if _, err := Join(context.Background(), cfg); err == nil {
		t.Fatal("Join with a missing node list succeeded")
	}
	cfg.PeersFile = ""
	cfg.Peers = []string{"not a seed"}
	if _, err := Join(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "Peers[0]") {
		t.Fatalf("Join with a bad seed: %v", err)
	}
}

// FuzzParseNodeList feeds the node-list parser any text: it must never
// panic, and every address it returns must be one host:port, with a port
// from 1 to 65535, that it parses to itself again. The seeds include the
// bytes of the attacks of issue 7, as a node file could hold them too. Run
// it for a while with
//
//	go test -run='^$' -fuzz='^FuzzParseNodeList$' -fuzztime=10m -parallel=1 .
func FuzzParseNodeList(f *testing.F) {
	for _, seed := range []string{
		"10.0.0.7\n10.0.0.8:7000\n[fd00::7]:7991\nfd00::8\n\n  # a comment\ncache-1.example.internal\ncache-2:8000 # trailing comment\n",
		"10.0.0.7:\n", "10.0.0.7:70000\n", "[fd00::7\n", "[10.0.0.7]:7991\n", "bad_host!name\n", "a:b:c:d:zz\n",
		"host:+80\n", "host:0080\n", "::ffff:10.0.0.1\n", "[fe80::1%eth0]:7991\n", "Cache-1.Example.\n",
		"\xdd\xff\xff\xff\xff\n\xdf\xf8\x00\x00\x00\x00\x01\x00", // attack 1's values
		"\x00\x00\x00\x0d\x95\x01\x02\xdb\xff\xff\xff\xffkey..",  // attack 2's frame
		strings.Repeat("\x91", 1<<10),                            // attack 3, shortened
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		addrs, err := parseNodeList(bytes.NewReader(text), "fuzz.conf")
		if err != nil {
			return
		}
		for _, addr := range addrs {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host == "" {
				t.Fatalf("%q: %v", addr, err)
			}
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
				t.Fatalf("%q: port %q", addr, port)
			}
			if again, err := parseAddr(addr); err != nil || again != addr {
				t.Fatalf("%q parses to %q, %v", addr, again, err)
			}
		}
	})
}
