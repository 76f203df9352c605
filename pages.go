package ghost

import (
	"context"
	"net/http"
	"strings"
)

// The HTTP pages beside the original protocol, served on the node's port
// by the same gateway (and so under the same access rules):
//
//	GET /metrics          Prometheus metrics of this node (prometheus.go)
//	GET /dashboard        the live dashboard page (dashboard.go)
//	GET /dashboard/data   the cluster's figures as JSON, for the page and ghostctl
//
// and one more command of the original protocol's shape, POST /members.

// pages serves a node's pages.
type pages struct {
	metrics http.Handler
	dash    *dashboard
}

func newPages(n *Node) *pages {
	return &pages{metrics: newMetricsHandler(n), dash: newDashboard(n, n.addr)}
}

// serve answers r when its path is one of the pages, and reports whether
// it did. Other paths are the original protocol's commands.
func (p *pages) serve(w http.ResponseWriter, r *http.Request) bool {
	var h http.Handler
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case "/metrics":
		h = p.metrics
	case "/dashboard":
		h = http.HandlerFunc(p.dash.servePage)
	case "/dashboard/data":
		h = http.HandlerFunc(p.dash.serveData)
	default:
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method "+r.Method+" not allowed: use GET", http.StatusMethodNotAllowed)
		return true
	}
	h.ServeHTTP(w, r)
	return true
}

// members answers POST /members: the live members as this node sees them,
// sorted by address, each {"addr", "name", "self", "state"}.
func (g *gateway) members(context.Context, *gobjIn) gatewayReply {
	rep := reply(OpPing, "", nil) // "OK"
	rep.Gobj.Value = g.n.memberView()
	return rep
}
