package ghost

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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
