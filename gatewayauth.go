package ghost

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
)

// Who may use the HTTP gateway: with Config.HTTPToken, whoever presents
// it; else, when the cluster is closed by a secret or by Config.TLS, only
// loopback clients, unless Config.HTTPOpen; else everyone, as the original
// GhostDB.

const (
	errCodeAuth      = "UNAUTHORIZED_ERR"
	errCodeForbidden = "FORBIDDEN_ERR"
)

// gatewayRefusal returns the status that refuses a request from
// remoteAddr carrying the Authorization header auth, and why; or 0 when
// the request may go on.
func gatewayRefusal(cfg Config, remoteAddr, auth string) (int, string) {
	if cfg.HTTPToken != "" {
		if !tokenMatches(auth, cfg.HTTPToken) {
			return http.StatusUnauthorized, "missing or wrong bearer token"
		}
		return 0, ""
	}
	if closedCluster(cfg) && !cfg.HTTPOpen && !isLoopback(remoteAddr) {
		return http.StatusForbidden, "the gateway serves only loopback clients (set HTTPToken or HTTPOpen)"
	}
	return 0, ""
}

// closedCluster reports whether peers must prove they are members.
func closedCluster(cfg Config) bool { return len(cfg.SecretKey) > 0 || cfg.TLS != nil }

// tokenMatches compares in constant time; hashing first hides the
// token's length as well.
func tokenMatches(auth, token string) bool {
	const scheme = "Bearer "
	if len(auth) < len(scheme) || !strings.EqualFold(auth[:len(scheme)], scheme) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(auth[len(scheme):])))
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authorize answers a request the rules refuse, and reports whether the
// request may go on.
func (g *gateway) authorize(w http.ResponseWriter, r *http.Request) bool {
	status, reason := gatewayRefusal(g.cfg, r.RemoteAddr, r.Header.Get("Authorization"))
	if status == 0 {
		return true
	}
	g.n.refusePeer(r.RemoteAddr, "HTTP: "+reason, nil)
	code := errCodeForbidden
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ghostdb"`)
		code = errCodeAuth
	}
	writeReply(w, status, gatewayReply{Message: reason, Error: code})
	return false
}

// warnOpenGateway logs, once at start, that anyone who reaches the port
// can use the gateway.
func (n *Node) warnOpenGateway() {
	if n.gateway == nil || n.cfg.HTTPToken != "" || (closedCluster(n.cfg) && !n.cfg.HTTPOpen) {
		return
	}
	if host, _, _ := net.SplitHostPort(n.cfg.Addr); isLoopback(host) {
		return
	}
	n.log.Warn("ghost: the HTTP gateway is open to the network without a token: anyone who reaches the port can read, write and flush; set HTTPToken", "addr", n.addr)
}
