package ghost

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// authRequest sends a command to url with the Authorization header auth
// (none when empty) and returns the status and the reply's value.
func authRequest(t *testing.T, hc *http.Client, method, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var rep wireReply
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	return resp.StatusCode, string(rep.Gobj.Value)
}

func TestHTTPTokenIsRequired(t *testing.T) {
	const token = "t0ken-never-logged"
	var logs logBuffer
	c := newCluster(t, 1, true, withSecret(testSecret), withLog(&logs), func(cfg *Config) { cfg.HTTPToken = token })
	n := c.nodes[0]
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(n.ClusterCA()) {
		t.Fatal("ClusterCA gives no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	put := sdkBody("k", "secret value", 0)
	get := sdkBody("k", nil, 0)
	for _, scheme := range []string{"http", "https"} {
		base := scheme + "://" + n.Addr() + "/"
		for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x"} {
			for _, path := range []string{"put", "get", "flush", "metrics", "dashboard"} {
				if code, v := authRequest(t, hc, http.MethodPost, base+path, auth, put); code != http.StatusUnauthorized || strings.Contains(v, "secret") {
					t.Fatalf("%s %q: HTTP %d, value %s; want 401", base+path, auth, code, v)
				}
			}
		}
		good := "Bearer " + token
		if code, _ := authRequest(t, hc, http.MethodPost, base+"put", good, put); code != http.StatusOK {
			t.Fatalf("%sput with the token: HTTP %d", base, code)
		}
		if code, v := authRequest(t, hc, http.MethodPost, base+"get", good, get); code != http.StatusOK || v != `"secret value"` {
			t.Fatalf("%sget with the token: HTTP %d, %s", base, code, v)
		}
		if code, _ := authRequest(t, hc, http.MethodGet, base+"metrics", good, ""); code != http.StatusOK {
			t.Fatalf("%smetrics with the token: HTTP %d", base, code)
		}
	}
	if !strings.Contains(logs.String(), "refused a peer") || strings.Contains(logs.String(), token) {
		t.Fatalf("want the refusal logged and the token not: %s", logs.String())
	}
}

// Loopback clients pass on a closed cluster without a token: the test
// runs on 127.0.0.1.
func TestHTTPLoopbackPassesWithoutToken(t *testing.T) {
	c := newCluster(t, 1, true, withSecret(testSecret))
	hc := newGatewayClient(t).hc
	if code, _ := authRequest(t, hc, http.MethodPost, "http://"+c.nodes[0].Addr()+"/ping", "", ""); code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
}

func TestGatewayRefusalRule(t *testing.T) {
	open := Config{}
	closed := Config{SecretKey: testSecret}
	pki := Config{TLS: &tls.Config{}}
	optIn := Config{SecretKey: testSecret, HTTPOpen: true}
	token := Config{SecretKey: testSecret, HTTPToken: "tok"}
	for _, tc := range []struct {
		name   string
		cfg    Config
		remote string
		auth   string
		want   int
	}{
		{"no secret, remote", open, "10.1.2.3:5000", "", 0},
		{"secret, loopback", closed, "127.0.0.1:5000", "", 0},
		{"secret, loopback v6", closed, "[::1]:5000", "", 0},
		{"secret, remote", closed, "10.1.2.3:5000", "", http.StatusForbidden},
		{"own PKI, remote", pki, "192.168.0.9:1", "", http.StatusForbidden},
		{"HTTPOpen, remote", optIn, "10.1.2.3:5000", "", 0},
		{"token, none given, loopback", token, "127.0.0.1:5000", "", http.StatusUnauthorized},
		{"token, wrong", token, "10.1.2.3:5000", "Bearer tok2", http.StatusUnauthorized},
		{"token, right", token, "10.1.2.3:5000", "Bearer tok", 0},
		{"token, scheme in lower case", token, "10.1.2.3:5000", "bearer tok", 0},
		{"token without secret", Config{HTTPToken: "tok"}, "10.1.2.3:5000", "", http.StatusUnauthorized},
	} {
		if got, _ := gatewayRefusal(tc.cfg, tc.remote, tc.auth); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestOpenGatewayWarnsAtStart(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		warn bool
	}{
		{Config{Addr: ":7991"}, true},
		{Config{Addr: ":7991", SecretKey: testSecret, HTTPOpen: true}, true},
		{Config{Addr: ":7991", SecretKey: testSecret}, false},
		{Config{Addr: ":7991", HTTPToken: "tok"}, false},
		{Config{Addr: "127.0.0.1:7991"}, false},
	} {
		var logs logBuffer
		n := &Node{cfg: tc.cfg, gateway: &gateway{}, log: slog.New(slog.NewTextHandler(&logs, nil))}
		n.warnOpenGateway()
		if got := strings.Contains(logs.String(), "open to the network"); got != tc.warn {
			t.Errorf("%+v: warned %v, want %v", tc.cfg, got, tc.warn)
		}
	}
}
