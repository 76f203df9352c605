package ghost

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// Peer traffic over TLS: with Config.SecretKey set, every node derives the
// cluster's certificate authority from the secret and issues itself a
// short-lived certificate; peers prove they hold the secret by presenting a
// certificate the CA signed. Config.TLS replaces the derived CA with the
// user's own.

// preambleTLS is the first byte of a TLS ClientHello (a handshake record).
const preambleTLS = 0x16

// caLabel is the HKDF info that turns a secret into the CA's key. A new
// label makes a new CA: change it only with a protocol version.
const caLabel = "ghostdb cluster CA v1"

const (
	leafLifetime  = 24 * time.Hour
	leafRenewal   = 12 * time.Hour // a certificate with less left is replaced
	leafBackdate  = time.Hour      // tolerates clocks behind ours
	handshakeTime = 10 * time.Second
)

// errNotMember is why a peer without a cluster certificate is refused.
var errNotMember = errors.New("peer presented no certificate of this cluster")

// clusterTLS holds a node's TLS configurations, for the connections it
// accepts and those it dials.
type clusterTLS struct {
	server *tls.Config
	client func(addr string) *tls.Config
	caPEM  []byte // the derived CA's certificate; nil with Config.TLS
}

// newClusterTLS returns the node's TLS setup, or nil when cfg asks for
// none.
func newClusterTLS(cfg Config, addr string) (*clusterTLS, error) {
	if cfg.TLS != nil {
		return userTLS(cfg.TLS), nil
	}
	if len(cfg.SecretKey) == 0 {
		return nil, nil
	}
	return derivedTLS(append([][]byte{cfg.SecretKey}, cfg.SecretKeys...), addr)
}

// userTLS uses the user's configuration both ways. Peers must present a
// certificate it verifies; HTTPS clients need not (the gateway has its own
// rules), so a configuration that asks for no client certificate asks for
// one if given.
func userTLS(user *tls.Config) *clusterTLS {
	server := user.Clone()
	server.MinVersion = tls.VersionTLS13
	if server.ClientAuth < tls.VerifyClientCertIfGiven {
		server.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return &clusterTLS{
		server: server,
		client: func(addr string) *tls.Config {
			c := user.Clone()
			c.MinVersion = tls.VersionTLS13
			if c.ServerName == "" {
				c.ServerName, _, _ = net.SplitHostPort(addr)
			}
			return c
		},
	}
}

// derivedTLS trusts the CAs of all secrets and presents a certificate of
// the first one's.
func derivedTLS(secrets [][]byte, addr string) (*clusterTLS, error) {
	pool := x509.NewCertPool()
	var issuer *x509.Certificate
	var issuerKey ed25519.PrivateKey
	var caPEM []byte
	for i, secret := range secrets {
		ca, key, err := clusterCA(secret)
		if err != nil {
			return nil, err
		}
		pool.AddCert(ca)
		if i == 0 {
			issuer, issuerKey = ca, key
			caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
		}
	}
	leaf := &leafCert{ca: issuer, caKey: issuerKey, addr: addr}
	if _, err := leaf.get(); err != nil {
		return nil, err
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errNotMember
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		return err
	}
	server := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return leaf.get() },
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
	}
	client := &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return leaf.get() },
		// Every member is equally trusted and addresses change: the chain
		// to the cluster's CA is the check, not the name.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
	}
	return &clusterTLS{server: server, client: func(string) *tls.Config { return client }, caPEM: caPEM}, nil
}

// clusterCA derives the CA of a secret. Every node builds the same
// certificate: the key comes from the secret, the template is fixed and
// ed25519 signatures are deterministic.
func clusterCA(secret []byte) (*x509.Certificate, ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, secret, nil, caLabel, ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("ghost: derive the cluster CA: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"GhostDB"}, CommonName: "GhostDB cluster CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("ghost: derive the cluster CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ghost: derive the cluster CA: %w", err)
	}
	return ca, key, nil
}

// leafCert is the node's own certificate, issued again when it nears its
// end.
type leafCert struct {
	ca    *x509.Certificate
	caKey ed25519.PrivateKey
	addr  string

	mu   sync.Mutex
	cert *tls.Certificate
}

func (l *leafCert) get() (*tls.Certificate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cert != nil && time.Until(l.cert.Leaf.NotAfter) > leafRenewal {
		return l.cert, nil
	}
	cert, err := issueLeaf(l.ca, l.caKey, l.addr, time.Now())
	if err != nil {
		return nil, err
	}
	l.cert = cert
	return cert, nil
}

// issueLeaf makes a certificate for the node at addr, valid for both ends
// of a connection, and for the names a local curl would use.
func issueLeaf(ca *x509.Certificate, caKey ed25519.PrivateKey, addr string, now time.Time) (*tls.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"GhostDB"}, CommonName: addr},
		NotBefore:    now.Add(-leafBackdate),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("ghost: issue the node's certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ClusterCA returns the PEM certificate of the CA the node derives from
// Config.SecretKey, for HTTPS clients of the gateway (curl --cacert), or
// nil when the node has no SecretKey or uses Config.TLS.
func (n *Node) ClusterCA() []byte {
	if n.tls == nil {
		return nil
	}
	return n.tls.caPEM
}

// secureClient runs the TLS handshake on a connection the node dialled to
// addr, when the node speaks TLS; else it returns conn as it is. It closes
// conn when it fails.
func (n *Node) secureClient(ctx context.Context, conn net.Conn, addr string) (net.Conn, error) {
	if n.tls == nil {
		return conn, nil
	}
	tc := tls.Client(conn, n.tls.client(addr))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return &tlsConn{Conn: tc, raw: conn}, nil
}

// secureServer runs the server side of the TLS handshake on an accepted
// connection whose first byte, preambleTLS, dispatch has read. It returns
// the connection, and whether the peer proved it is a member.
func (n *Node) secureServer(conn net.Conn) (net.Conn, bool, error) {
	tc := tls.Server(&prefixConn{Conn: conn, first: preambleTLS}, n.tls.server)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTime)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, false, err
	}
	return &tlsConn{Conn: tc, raw: conn}, len(tc.ConnectionState().VerifiedChains) > 0, nil
}

// tlsConn is a TLS connection whose Close closes the socket at once.
// tls.Conn's would first send a close_notify alert, waiting up to 5
// seconds on a peer that may be frozen, under the lock of the caller that
// gave up on it. Our protocols frame their messages, so an end without
// the alert is no risk of truncation.
type tlsConn struct {
	*tls.Conn
	raw net.Conn
}

func (c *tlsConn) Close() error { return c.raw.Close() }

// refusalLog lets the log line for a refused peer through once a minute
// per host, so that a peer retrying in a loop cannot flood the log.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const (
	refusalLogEvery = time.Minute
	refusalLogHosts = 1024 // hosts remembered at most
)

func (l *refusalLog) allow(host string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last[host]) < refusalLogEvery {
		return false
	}
	if len(l.last) >= refusalLogHosts {
		for h, t := range l.last {
			if now.Sub(t) >= refusalLogEvery {
				delete(l.last, h)
			}
		}
		if len(l.last) >= refusalLogHosts {
			return false // a flood from many hosts: stay quiet until it ages
		}
	}
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	l.last[host] = now
	return true
}

// refusePeer logs a refused peer, once a minute per host.
func (n *Node) refusePeer(remote, reason string, err error) {
	host, _, splitErr := net.SplitHostPort(remote)
	if splitErr != nil {
		host = remote
	}
	if !n.refusals.allow(host, time.Now()) {
		return
	}
	if err != nil {
		n.log.Warn("ghost: refused a peer", "remote", remote, "reason", reason, "err", err)
		return
	}
	n.log.Warn("ghost: refused a peer", "remote", remote, "reason", reason)
}
