package ghost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testSecret      = []byte("0123456789abcdef0123456789abcdef")
	otherTestSecret = []byte("another secret, other cluster!!!")
)

func withSecret(key []byte, accepted ...[]byte) func(*Config) {
	return func(c *Config) { c.SecretKey, c.SecretKeys = key, accepted }
}

// logBuffer collects a node's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func withLog(buf *logBuffer) func(*Config) {
	return func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

func TestSecretClusterServesOverTLS(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(fmt.Sprint("tcp=", tcp), func(t *testing.T) {
			c := newCluster(t, 3, tcp, withSecret(testSecret))
			c.checkServes("tls")
			// The peer connections are TLS ones.
			conn, err := dialPeer(context.Background(), c.nodes[0].peerSetup(), c.nodes[1].Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.fail(io.EOF)
			if _, ok := conn.conn.(*tlsConn); !ok {
				t.Fatalf("peer connection is a %T, want a *tlsConn", conn.conn)
			}
		})
	}
}

// A node with another secret, or none, gets nothing from a closed cluster:
// no membership, no cache connection (so no read, write or flush).
func TestForeignNodeGetsNothing(t *testing.T) {
	var logs logBuffer
	c := newCluster(t, 2, true, withSecret(testSecret), withLog(&logs))
	ctx := context.Background()
	if err := c.nodes[0].Put(ctx, "k", "secret value", NoExpiry); err != nil {
		t.Fatal(err)
	}
	for name, tune := range map[string]func(*Config){
		"other secret": withSecret(otherTestSecret),
		"no secret":    func(*Config) {},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(nil)
			tune(&cfg)
			cfg.RejoinInterval = time.Hour
			foreign, err := Join(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer foreign.Close()
			if joined, err := foreign.ml.Join([]string{c.nodes[0].Addr()}); joined != 0 || err == nil {
				t.Fatalf("foreign node joined %d members, err %v", joined, err)
			}
			if got := len(c.nodes[0].Members()); got != 2 {
				t.Fatalf("the cluster has %d members, want 2", got)
			}
			if conn, err := dialPeer(ctx, foreign.peerSetup(), c.nodes[0].Addr()); err == nil {
				conn.fail(io.EOF)
				t.Fatal("foreign node opened a cache connection")
			}
			// Its own calls reach only itself.
			_ = foreign.Flush(ctx)
			_ = foreign.Put(ctx, "k", "forged", NoExpiry)
			if it, err := c.nodes[1].Get(ctx, "k"); err != nil || it.Value != "secret value" {
				t.Fatalf("the cluster still serves: %v, %v", it.Value, err)
			}
		})
	}
	waitFor(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "refused a peer") {
			return fmt.Errorf("no refusal logged")
		}
		return nil
	})
}

// A plaintext client that speaks the cache protocol to a closed node is
// not answered.
func TestPlaintextCacheClientGetsNoValue(t *testing.T) {
	c := newCluster(t, 1, true, withSecret(testSecret))
	n := c.nodes[0]
	if err := n.Put(context.Background(), "k", "secret value", NoExpiry); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := append(cacheHello(), requestFrame(&request{id: 1, op: OpGet, key: "k"})...)
	conn.Write(msg) // may fail: the node closes the connection
	got, _ := io.ReadAll(conn)
	if len(got) != 0 {
		t.Fatalf("plaintext client read %q", got)
	}
	// The node keeps serving.
	if it, err := n.Get(context.Background(), "k"); err != nil || it.Value != "secret value" {
		t.Fatalf("Get after the attempt: %v, %v", it.Value, err)
	}
}

// testCA is a certificate authority of the user's own PKI.
type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// config is a node's Config.TLS with a certificate of the CA for 127.0.0.1.
func (ca *testCA) config(t *testing.T) *tls.Config {
	t.Helper()
	leaf, err := issueLeaf(ca.cert, ca.key, "127.0.0.1:0", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*leaf},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

func TestOwnPKI(t *testing.T) {
	ca := newTestCA(t)
	c := newCluster(t, 3, true, func(cfg *Config) { cfg.TLS = ca.config(t) })
	c.checkServes("pki")
	// A node with a certificate of another CA is refused both ways.
	cfg := testConfig(nil)
	cfg.TLS = newTestCA(t).config(t)
	cfg.RejoinInterval = time.Hour
	foreign, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	if conn, err := dialPeer(context.Background(), foreign.peerSetup(), c.nodes[0].Addr()); err == nil {
		conn.fail(io.EOF)
		t.Fatal("a node of another CA opened a cache connection")
	}
	if conn, err := dialPeer(context.Background(), c.nodes[0].peerSetup(), foreign.Addr()); err == nil {
		conn.fail(io.EOF)
		t.Fatal("a cluster node accepted a node of another CA")
	}
	if joined, _ := foreign.ml.Join([]string{c.nodes[0].Addr()}); joined != 0 {
		t.Fatal("a node of another CA joined")
	}
	c.checkServes("pki-after")
}

// Every node derives the same CA from a secret, and another from another.
func TestClusterCAIsDerivedFromTheSecret(t *testing.T) {
	a, _, err := clusterCA(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := clusterCA(testSecret)
	other, _, _ := clusterCA(otherTestSecret)
	if !bytes.Equal(a.Raw, b.Raw) || bytes.Equal(a.Raw, other.Raw) {
		t.Fatal("the CA is not a function of the secret")
	}
}

func TestLeafIsRenewedBeforeItEnds(t *testing.T) {
	ca, key, _ := clusterCA(testSecret)
	l := &leafCert{ca: ca, caKey: key, addr: "127.0.0.1:7991"}
	first, err := l.get()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := l.get(); again != first {
		t.Fatal("a fresh certificate was replaced")
	}
	l.cert, _ = issueLeaf(ca, key, l.addr, time.Now().Add(-leafLifetime+time.Hour))
	renewed, _ := l.get()
	if time.Until(renewed.Leaf.NotAfter) < leafLifetime-time.Hour {
		t.Fatalf("a certificate ending at %v was not renewed", l.cert.Leaf.NotAfter)
	}
}

func TestRefusalsAreLoggedOncePerHost(t *testing.T) {
	var l refusalLog
	now := time.Now()
	if !l.allow("10.0.0.1", now) || l.allow("10.0.0.1", now.Add(time.Second)) || !l.allow("10.0.0.2", now) {
		t.Fatal("want the first refusal of each host logged, not the second")
	}
	if !l.allow("10.0.0.1", now.Add(refusalLogEvery)) {
		t.Fatal("want a refusal logged again after a while")
	}
	for i := range 2 * refusalLogHosts {
		l.allow(fmt.Sprint("host", i), now)
	}
	if len(l.last) > refusalLogHosts {
		t.Fatalf("remembers %d hosts", len(l.last))
	}
}

// The rotation recipe of the README, under load: every node accepts both
// keys, then sends the new one, then forgets the old one. Nothing is lost,
// and afterwards a node with the old key gets nothing.
func TestKeyRotationUnderLoadLosesNothing(t *testing.T) {
	oldKey, newKey := testSecret, otherTestSecret
	c := newCluster(t, 3, true, withSecret(oldKey))
	l := newLedger()
	c.preload(l, "pre", 500)
	w := c.startWriters(l, 3, 300)
	for step, tune := range []func(*Config){
		withSecret(oldKey, newKey),
		withSecret(newKey, oldKey),
		withSecret(newKey),
	} {
		for i := range c.nodes {
			w.waitOps(t, 50)
			start := time.Now()
			c.restart(i, tune)
			c.waitConverged()
			t.Logf("step %d, node %d: restarted and converged in %v", step+1, i, time.Since(start))
		}
	}
	w.waitOps(t, 50)
	w.halt()
	checkLedger(t, c, l, w)

	cfg := testConfig(nil)
	withSecret(oldKey)(&cfg)
	cfg.RejoinInterval = time.Hour
	leaked, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer leaked.Close()
	if conn, err := dialPeer(context.Background(), leaked.peerSetup(), c.nodes[0].Addr()); err == nil {
		conn.fail(io.EOF)
		t.Fatal("a node with the retired key opened a cache connection")
	}
	if joined, _ := leaked.ml.Join([]string{c.nodes[0].Addr()}); joined != 0 {
		t.Fatal("a node with the retired key joined")
	}
}

// Clients that speak TLS but cannot show a valid certificate of the
// cluster get no value from the cache protocol, and plaintext gossip
// streams are refused; the node keeps serving.
func TestPeersWithoutAValidCertificateGetNoValue(t *testing.T) {
	c := newCluster(t, 1, true, withSecret(testSecret))
	n := c.nodes[0]
	ctx := context.Background()
	if err := n.Put(ctx, "k", "secret value", NoExpiry); err != nil {
		t.Fatal(err)
	}
	ca, caKey, _ := clusterCA(testSecret)
	expired, _ := issueLeaf(ca, caKey, "127.0.0.1:1", time.Now().Add(-2*leafLifetime))
	otherCA, otherKey, _ := clusterCA(otherTestSecret)
	foreign, _ := issueLeaf(otherCA, otherKey, "127.0.0.1:1", time.Now())
	getFrame := append(cacheHello(), requestFrame(&request{id: 1, op: OpGet, key: "k"})...)
	for name, certs := range map[string][]tls.Certificate{
		"no certificate":      nil,
		"expired certificate": {*expired},
		"foreign certificate": {*foreign},
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.Addr(), &tls.Config{
			Certificates: certs, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		})
		if err != nil {
			continue // refused at the handshake
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write(getFrame)
		got, _ := io.ReadAll(conn)
		conn.Close()
		if len(got) != 0 {
			t.Errorf("%s: read %q", name, got)
		}
	}
	// The same client with a valid certificate is answered: the refusals
	// above are the certificate's doing.
	valid, _ := issueLeaf(ca, caKey, "127.0.0.1:1", time.Now())
	conn, err := tls.Dial("tcp", n.Addr(), &tls.Config{
		Certificates: []tls.Certificate{*valid}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write(getFrame)
	br := bufio.NewReader(conn)
	if _, err := io.ReadFull(br, make([]byte, len(magic)+2)); err != nil {
		t.Fatal(err)
	}
	if resp, err := readResponse(br); err != nil || resp.status != statusOK {
		t.Fatalf("member's get: %+v, %v", resp, err)
	}
	// A plaintext gossip stream is closed unanswered.
	raw, err := net.DialTimeout("tcp", n.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	raw.Write([]byte{preambleGossip, 0x06, 0x00})
	if got, _ := io.ReadAll(raw); len(got) != 0 {
		t.Errorf("plaintext gossip stream: read %q", got)
	}
	raw.Close()
	if it, err := n.Get(ctx, "k"); err != nil || it.Value != "secret value" {
		t.Fatalf("Get after the attempts: %v, %v", it.Value, err)
	}
}
